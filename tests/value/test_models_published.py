"""The models reproduce the estimates and predictions published by Fader, Hardie and co-authors."""

from __future__ import annotations

import math
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from crmkit.value.models import (  # noqa: E402
    BetaGeo,
    BetaGeoBetaBinom,
    GammaGamma,
    ModifiedBetaGeo,
    ParetoNBD,
    ShiftedBetaGeometric,
    datasets,
)

# Fader & Hardie (2007), "How to project customer retention", Table 1: survivors of 1,000
# "regular" customers at the start of years 0..7.
REGULAR_SURVIVORS = [1000, 631, 468, 382, 326, 289, 262, 241]


@pytest.fixture(scope="module")
def cdnow() -> dict[str, Any]:
    return datasets.load_cdnow_summary()


@pytest.fixture(scope="module")
def bgnbd(cdnow: dict[str, Any]) -> BetaGeo:
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def pareto(cdnow: dict[str, Any]) -> ParetoNBD:
    return ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def rounded(params: dict[str, float], digits: int) -> dict[str, float]:
    return {k: round(v, digits) for k, v in params.items()}


def within_last_digit(params: dict[str, float], published: dict[str, float], unit: float) -> bool:
    """Every estimate within ``unit`` of the published value."""
    return set(params) == set(published) and all(abs(params[k] - v) <= unit for k, v in published.items())


def test_bgnbd_matches_fader_hardie_lee_2005(bgnbd: BetaGeo) -> None:
    # "Counting your customers" the easy way (Marketing Science 2005), CDNOW sample, 39 weeks.
    assert rounded(bgnbd.params, 3) == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert round(bgnbd.log_likelihood, 1) == -9582.4
    assert all(type(v) is float for v in bgnbd.params.values())


def test_bgnbd_conditional_expectation_of_customer_1(bgnbd: BetaGeo) -> None:
    # The paper's worked example: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226.
    assert round(bgnbd.conditional_expected_purchases(39, 2, 30.43, 38.86), 3) == 1.226


def test_bgnbd_at_the_published_parameters_gives_the_published_likelihood(cdnow: dict[str, Any]) -> None:
    model = BetaGeo.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
    ll = model.log_likelihood_of(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert ll == pytest.approx(-9582.4, abs=0.5)
    with pytest.raises(Exception, match="not fitted"):
        _ = model.log_likelihood


def test_pareto_nbd_matches_fader_hardie_lee_2005(pareto: ParetoNBD) -> None:
    # Same paper, Pareto/NBD column. Our beta is 11.6679: the likelihood is very flat in beta
    # (fixing beta at the published 11.669 costs 1.5e-8 of log-likelihood) and an independent
    # optimisation of the closed-form likelihood lands on our estimate.
    published = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
    assert within_last_digit(pareto.params, published, 2e-3)
    assert rounded(pareto.params, 3) == published | {"beta": 11.668}
    assert round(pareto.log_likelihood, 1) == -9595.0


def test_pareto_nbd_likelihood_agrees_with_the_hypergeometric_closed_form(
    pareto: ParetoNBD, cdnow: dict[str, Any]
) -> None:
    """The quadrature form is checked against the textbook 2F1 expression (Fader, Hardie and Lee's
    Pareto/NBD note), which is well-conditioned on this data."""
    from scipy.special import gammaln, hyp2f1

    r, alpha, s, beta = pareto.params.values()
    x, tx, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    k = r + s + x
    if alpha >= beta:

        def f(tau: Any) -> Any:
            return hyp2f1(k, s + 1, k + 1, (alpha - beta) / (alpha + tau)) / (alpha + tau) ** k
    else:

        def f(tau: Any) -> Any:
            return hyp2f1(k, r + x, k + 1, (beta - alpha) / (beta + tau)) / (beta + tau) ** k

    a0 = f(tx) - f(T)
    terms = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + s * np.log(beta)
        + np.log((alpha + T) ** -(r + x) * (beta + T) ** -s + s / k * a0)
    )
    assert pareto.log_likelihood == pytest.approx(float(terms.sum()), abs=1e-8)


def test_pareto_nbd_has_standard_errors(pareto: ParetoNBD) -> None:
    se = pareto.standard_errors
    assert set(se) == {"r", "alpha", "s", "beta"}
    assert all(0 < v < pareto.params[k] for k, v in se.items())
    lo, hi = pareto.confidence_intervals(0.95)["r"]
    assert lo < pareto.params["r"] < hi


def test_bgnbd_standard_errors_and_intervals(bgnbd: BetaGeo) -> None:
    se = bgnbd.standard_errors
    # Wald errors from the observed information, as reported by other implementations.
    assert se["r"] == pytest.approx(0.0126, abs=2e-4)
    assert se["alpha"] == pytest.approx(0.378, abs=3e-3)
    ci90, ci99 = bgnbd.confidence_intervals(0.90), bgnbd.confidence_intervals(0.99)
    for name, value in bgnbd.params.items():
        assert ci99[name][0] < ci90[name][0] < value < ci90[name][1] < ci99[name][1]
    assert bgnbd.aic == pytest.approx(2 * 4 - 2 * bgnbd.log_likelihood)
    assert bgnbd.bic == pytest.approx(4 * math.log(2357) - 2 * bgnbd.log_likelihood)
    assert bgnbd.n_observations == 2357
    assert bgnbd.covariance.shape == (4, 4)
    assert repr(bgnbd).startswith("BetaGeo(r=0.2425")


def test_gamma_gamma_matches_fader_hardie_lee_rfm_clv() -> None:
    # "RFM and CLV: using iso-value curves" (JMR 2005): p=6.25, q=3.74, gamma (our v)=15.44,
    # fitted on the 946 customers with repeat purchases. The exact optimum has v = 15.4477
    # (lifetimes finds the same), one unit of the last published digit away.
    d = datasets.load_cdnow_summary_with_monetary_value()
    repeat = d["frequency"] > 0
    assert int(repeat.sum()) == 946
    gg = GammaGamma().fit(d["frequency"][repeat], d["monetary_value"][repeat])
    assert within_last_digit(gg.params, {"p": 6.25, "q": 3.74, "v": 15.44}, 0.01)
    assert rounded(gg.params, 2) == {"p": 6.25, "q": 3.74, "v": 15.45}
    # customers without repeat purchases are ignored, so fitting on everyone gives the same
    assert GammaGamma().fit(d["frequency"], d["monetary_value"]).params == pytest.approx(gg.params, rel=1e-9)
    # the posterior mean is a weighted average of the population mean and the customer's own mean
    p, q, v = gg.params.values()
    population = p * v / (q - 1)
    assert gg.expected_spend() == pytest.approx(population)
    own = gg.conditional_expected_spend(2, 22.35)
    weight = (q - 1) / (p * 2 + q - 1)
    assert own == pytest.approx(weight * population + (1 - weight) * 22.35)
    assert gg.conditional_expected_spend(0, 0.0) == pytest.approx(population)


def test_bgbb_matches_fader_hardie_shang_2010() -> None:
    # Fader, Hardie and Shang (2010), "Customer-base analysis in a discrete-time noncontractual
    # setting", Marketing Science 29(6): alpha 1.204, beta 0.750, gamma 0.657, delta 2.783 and
    # LL -33,225.6 on the 11,104 donors (also Hardie's BG/BB note). Confirmed by our own fit.
    d = datasets.load_donations()
    bb = BetaGeoBetaBinom().fit(d["frequency"], d["recency"], d["n_periods"], d["weights"])
    assert rounded(bb.params, 3) == {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
    assert round(bb.log_likelihood, 1) == -33225.6
    assert bb.n_observations == 11104


def test_sbg_matches_fader_hardie_2007() -> None:
    # Fader and Hardie (2007), "How to project customer retention", J. Interactive Marketing
    # 21(1): alpha 0.704, beta 1.182 for the regular customers. Confirmed by our own fit.
    sbg = ShiftedBetaGeometric().fit_survivors(REGULAR_SURVIVORS)
    assert rounded(sbg.params, 3) == {"alpha": 0.704, "beta": 1.182}
    # the same data given per churn period with weights
    churned_in = np.arange(1, 8)
    lost = -np.diff(REGULAR_SURVIVORS)
    periods = np.concatenate([churned_in, [7]])
    churned = np.concatenate([np.ones(7, dtype=bool), [False]])
    again = ShiftedBetaGeometric().fit(periods, churned, np.concatenate([lost, [241]]))
    assert again.params == pytest.approx(sbg.params, rel=1e-9)
    assert again.log_likelihood == pytest.approx(sbg.log_likelihood, rel=1e-12)
    # the fitted curve follows the observed survivors closely over the calibration years
    fitted = 1000 * np.asarray(sbg.survival(np.arange(8)))
    assert np.max(np.abs(fitted - REGULAR_SURVIVORS)) < 10


def test_mbgnbd_fits_cdnow_at_least_as_well_as_bgnbd(cdnow: dict[str, Any], bgnbd: BetaGeo) -> None:
    mbg = ModifiedBetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert mbg.log_likelihood == pytest.approx(-9582.13, abs=0.01)
    assert mbg.log_likelihood >= bgnbd.log_likelihood - 1.0


def test_datasets_load_as_numpy_arrays() -> None:
    summary = datasets.load_cdnow_summary()
    assert summary["frequency"].shape == (2357,) and summary["T"].dtype == np.float64
    assert summary["customer_id"][0] == 1 and summary["recency"][0] == 30.43
    tx = datasets.load_cdnow_transactions()
    assert tx["value"].shape == (6919,)
    assert str(tx["date"].min()) == "1997-01-01" and str(tx["date"].max()) == "1998-06-30"
    assert set(np.unique(tx["sample_id"])) == set(range(1, 2358))
    donations = datasets.load_donations()
    assert donations["weights"].sum() == 11104 and donations["n_periods"].max() == 6

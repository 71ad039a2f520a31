"""What lifetimes has and crmkit now has too: the L2 penalizer, diagnostics, the spend-independence check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from crmkit import ValidationError

models = pytest.importorskip("crmkit.value.models")
from crmkit.value import customer_summary  # noqa: E402
from crmkit.value.datasets import (  # noqa: E402
    CDNOW_CALIBRATION_END,
    CDNOW_OBSERVATION_END,
    cdnow_customer_id,
    cdnow_transactions,
)
from crmkit.value.models import (  # noqa: E402
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    SpendFrequencyWarning,
    customer_lifetime_value,
    datasets,
    diagnostics,
    spend_frequency_correlation,
)


def homogeneous_rates(n: int = 2000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD customers who all buy at the same rate: r and alpha run off to infinity unpenalised."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20, 40, n)
    p = rng.beta(2, 6, n)
    events = rng.poisson(0.3 * T)
    x = np.minimum(events, rng.geometric(p))
    tx = np.zeros(n)
    pos = x > 0
    tx[pos] = T[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)
    return x.astype(float), tx, T


def test_the_penalizer_keeps_parameters_finite_where_the_data_do_not() -> None:
    x, tx, T = homogeneous_rates()
    try:
        loose = BetaGeo().fit(x, tx, T)
    except ValidationError as err:  # r and alpha run off: the data cannot say how large
        assert err.field in ("r", "alpha") and "penalizer_coef" in err.message
    else:  # or the optimiser stops far out on the flat ridge, with a huge estimate and error
        assert loose.params["r"] > 1e4 and loose.standard_errors["r"] > 0.5 * loose.params["r"]
    fitted = BetaGeo(penalizer_coef=0.001).fit(x, tx, T)
    assert all(0 < v < 100 for v in fitted.params.values())
    assert fitted.params["r"] / fitted.params["alpha"] == pytest.approx(0.3, rel=0.25)  # near the common rate
    # the reported log-likelihood is the data's, without the penalty
    assert fitted.log_likelihood == pytest.approx(fitted.log_likelihood_of(x, tx, T), rel=1e-12)
    assert "penalizer_coef=0.001" in repr(fitted)


def test_the_penalizer_shrinks_the_estimates_as_in_lifetimes() -> None:
    d = datasets.load_cdnow_summary()
    plain = BetaGeo().fit(d["frequency"], d["recency"], d["T"])
    shrunk = BetaGeo(penalizer_coef=0.1).fit(d["frequency"], d["recency"], d["T"])
    assert shrunk.params["alpha"] < plain.params["alpha"] and shrunk.params["b"] < plain.params["b"]
    assert shrunk.log_likelihood < plain.log_likelihood  # the unpenalised optimum is the best fit
    # the objective is -LL/n + c * sum(params^2): at the penalised optimum its gradient vanishes
    c, n = 0.1, len(d["frequency"])

    def objective(p: np.ndarray) -> float:
        return -BetaGeo.from_params(**dict(zip(["r", "alpha", "a", "b"], p, strict=True))).log_likelihood_of(
            d["frequency"], d["recency"], d["T"]) / n + c * float(np.sum(p**2))

    best = np.array(list(shrunk.params.values()))
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-4 * best[i]
        assert objective(best + step) >= objective(best) - 1e-10
        assert objective(best - step) >= objective(best) - 1e-10
    pn = ParetoNBD(penalizer_coef=0.01).fit(d["frequency"], d["recency"], d["T"])
    assert pn.params["beta"] < ParetoNBD().fit(d["frequency"], d["recency"], d["T"]).params["beta"]


@pytest.mark.parametrize("bad", [-1.0, math.inf, "0.1", True])
def test_a_bad_penalizer_is_named(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        GammaGamma(penalizer_coef=bad)  # type: ignore[arg-type]
    assert info.value.field == "penalizer_coef"


def test_gamma_gamma_checks_that_spend_does_not_follow_frequency() -> None:
    d = datasets.load_cdnow_summary_with_monetary_value()
    r = spend_frequency_correlation(d["frequency"], d["monetary_value"])
    assert 0.05 < r < 0.2  # CDNOW: weak, as Fader, Hardie and Lee report (0.11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for CDNOW
        gg = GammaGamma().fit(d["frequency"], d["monetary_value"])
    assert gg.spend_correlation == pytest.approx(r, rel=1e-9)
    rng = np.random.default_rng(3)
    x = rng.integers(1, 20, 500).astype(float)
    z = 5.0 * x * rng.gamma(20, 1 / 20, 500)  # spend grows with frequency
    with pytest.warns(SpendFrequencyWarning, match=r"r = 0\.\d\d"):
        GammaGamma().fit(x, z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GammaGamma().fit(x, z, check_independence=False).spend_correlation is None


def test_gamma_gamma_corrected_clv_with_a_discount_rate() -> None:
    d = datasets.load_cdnow_summary_with_monetary_value()
    bg = BetaGeo().fit(d["frequency"], d["recency"], d["T"])
    gg = GammaGamma().fit(d["frequency"], d["monetary_value"])
    args = (d["frequency"], d["recency"], d["T"], d["monetary_value"])
    clv = gg.customer_lifetime_value(bg, *args, horizon=12, time_unit="week", discount_rate=0.01)
    assert np.array_equal(clv, customer_lifetime_value(bg, gg, *args, horizon=12, time_unit="week",
                                                       discount_rate=0.01))
    undiscounted = gg.customer_lifetime_value(bg, *args, horizon=12, time_unit="week", discount_rate=0.0)
    assert np.all(clv <= undiscounted) and np.any(clv < undiscounted)
    # the spend is the Gamma-Gamma corrected one, not the raw mean: a one-purchase-high spender is pulled in
    one = gg.customer_lifetime_value(bg, 1, 30.0, 38.0, 500.0, horizon=12, time_unit="week", discount_rate=0.0)
    purchases = float(np.sum(np.diff(np.concatenate([[0.0], bg._expected_purchase_curve(
        np.arange(1, 13) * 365.25 / 12 / 7, 1, 30.0, 38.0).reshape(-1)]))))
    assert one == pytest.approx(purchases * gg.conditional_expected_spend(1, 500.0), rel=1e-9)
    assert gg.conditional_expected_spend(1, 500.0) < 500.0


@pytest.fixture(scope="module")
def calibrated() -> tuple[BetaGeo, object]:
    s = customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
    return BetaGeo().fit(s.frequency, s.recency, s.T), s


def test_period_transactions_counts_match_the_data_and_the_model(calibrated: tuple[BetaGeo, object]) -> None:
    model, s = calibrated
    pt = diagnostics.period_transactions(model, s.frequency, s.recency, s.T)  # type: ignore[attr-defined]
    assert pt.labels == ("0", "1", "2", "3", "4", "5", "6", "7+")
    assert pt.actual.sum() == len(s) and pt.expected.sum() == pytest.approx(len(s))  # type: ignore[arg-type]
    assert pt.actual[0] == sum(f == 0 for f in s.frequency)  # type: ignore[attr-defined]
    assert np.all(np.abs(pt.expected - pt.actual) < 0.06 * len(s))  # type: ignore[arg-type]
    assert pt.expected[0] == pytest.approx(pt.actual[0], rel=0.02)


def test_probability_alive_history_is_what_the_model_said_at_each_age(calibrated: tuple[BetaGeo, object]) -> None:
    model, s = calibrated
    mine = [t for t in cdnow_transactions() if t.customer_id == cdnow_customer_id(1)]
    h = diagnostics.probability_alive_history(model, mine, unit="week", observation_end=CDNOW_CALIBRATION_END)
    row = s.get(cdnow_customer_id(1))  # type: ignore[attr-defined]
    assert list(h.purchases) == pytest.approx([17 / 7, row.recency])
    assert np.all(h.probability[h.ages < h.purchases[0]] == 1.0)  # BG/NBD: alive until a repeat purchase
    assert h.probability[-1] == pytest.approx(model.probability_alive(row.frequency, row.recency, row.T), abs=1e-12)
    after = (h.ages >= h.purchases[-1])
    assert np.all(np.diff(h.probability[after]) <= 1e-15)  # silence only lowers it
    before = h.probability[np.searchsorted(h.ages, h.purchases[-1]) - 1]
    assert h.probability[np.searchsorted(h.ages, h.purchases[-1])] > before  # a purchase raises it


def test_cumulative_purchases_adds_up_the_repeat_purchase_days(calibrated: tuple[BetaGeo, object]) -> None:
    model, _ = calibrated
    c = diagnostics.cumulative_purchases(model, cdnow_transactions(), unit="week",
                                         observation_end=CDNOW_OBSERVATION_END, calibration_end=CDNOW_CALIBRATION_END)
    whole = customer_summary(cdnow_transactions(), unit="day", observation_end=CDNOW_OBSERVATION_END)
    assert c.actual[-1] == sum(whole.frequency)  # every repeat purchase day by the end
    assert np.all(np.diff(c.actual) >= 0) and np.all(np.diff(c.expected) >= -1e-9)
    at_cal = int(np.searchsorted(c.times, c.calibration_end))
    assert c.expected[at_cal] == pytest.approx(c.actual[at_cal], rel=0.03)  # the fit tracks its own period
    assert c.expected[-1] == pytest.approx(c.actual[-1], rel=0.06)  # and forecasts the holdout

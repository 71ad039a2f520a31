"""Robustness: finite likelihoods, gradients and predictions for extreme inputs, optimisation
that does not depend on the start, and clear errors for data that cannot be fitted."""

from __future__ import annotations

import math
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from crmkit._errors import ValidationError  # noqa: E402
from crmkit.value.models import (  # noqa: E402
    BetaGeo,
    BetaGeoBetaBinom,
    GammaGamma,
    ModifiedBetaGeo,
    NotFittedError,
    ParetoNBD,
    ShiftedBetaGeometric,
    customer_lifetime_value,
    datasets,
)
from crmkit.value.models._rfm import prepare_rfm  # noqa: E402

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTINUOUS = [BetaGeo, ModifiedBetaGeo, ParetoNBD]

positive = st.floats(-3, 3).map(lambda e: 10.0**e)  # 0.001 .. 1000
frequencies = st.one_of(st.sampled_from([0, 1, 2, 10_000]), st.integers(0, 200))
ages = st.one_of(st.sampled_from([1e-6, 1.0, 38.86]), st.floats(-6, 4).map(lambda e: 10.0**e))
shares = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1))


@st.composite
def customers(draw: Any, min_size: int = 1, max_size: int = 6) -> tuple[Any, Any, Any]:
    rows = draw(st.lists(st.tuples(frequencies, shares, ages), min_size=min_size, max_size=max_size))
    x = np.array([float(f) for f, _, _ in rows])
    T = np.array([t for _, _, t in rows])
    tx = np.where(x > 0, np.array([u for _, u, _ in rows]) * T, 0.0)
    return x, np.minimum(tx, T), T


def params_for(cls: Any, values: list[float]) -> dict[str, float]:
    return dict(zip(cls._param_names, values, strict=False))


# ----------------------------------------------------------------------------- likelihoods
@pytest.mark.parametrize("cls", CONTINUOUS)
@FAST
@given(values=st.lists(positive, min_size=4, max_size=4), data=customers())
def test_likelihood_and_gradient_are_finite_for_extreme_inputs(cls: Any, values: list[float], data: Any) -> None:
    x, tx, T = data
    x[0] = max(x[0], 1.0)  # the fit data needs a repeat buyer
    tx[0] = T[0] if tx[0] == 0 else tx[0]
    model = cls.from_params(**params_for(cls, values))
    prepared = prepare_rfm(x, tx, T, None, model="test")
    ll, grad = model._loglik(np.array(values), prepared)
    assert math.isfinite(ll)  # a density in time: may be large and positive for 10,000 purchases in 1e-6
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("cls", CONTINUOUS)
def test_analytic_gradients_match_finite_differences(cls: Any) -> None:
    d = datasets.load_cdnow_summary()
    prepared = prepare_rfm(d["frequency"], d["recency"], d["T"], None, model="test")
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = np.exp(rng.uniform(-1.5, 1.5, 4)) * np.array([0.5, 8.0, 0.8, 5.0])
        _, grad = cls.from_params(**params_for(cls, list(p)))._loglik(p, prepared)
        for i in range(4):
            h = 1e-6 * p[i]
            up, down = p.copy(), p.copy()
            up[i] += h
            down[i] -= h
            model = cls.from_params(**params_for(cls, list(p)))
            numeric = (model._loglik(up, prepared)[0] - model._loglik(down, prepared)[0]) / (2 * h)
            assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-4)


def test_discrete_and_spend_gradients_match_finite_differences() -> None:
    dn = datasets.load_donations()
    bb = BetaGeoBetaBinom()
    x, tx, n, w = bb._prepare(dn["frequency"], dn["recency"], dn["n_periods"], dn["weights"])
    dm = datasets.load_cdnow_summary_with_monetary_value()
    gx, gz, gw = GammaGamma._prepare(dm["frequency"], dm["monetary_value"], None)
    st_t, st_c, st_w = ShiftedBetaGeometric._prepare([1, 2, 3, 4, 4], [1, 1, 1, 1, 0], [369, 163, 86, 56, 326])
    cases = [
        (lambda p: bb._loglik(p, x, tx, n, w), np.array([1.1, 0.8, 0.7, 2.5])),
        (lambda p: GammaGamma._loglik(p, gx, gz, gw), np.array([5.0, 3.0, 14.0])),
        (lambda p: ShiftedBetaGeometric._loglik(p, st_t, st_c, st_w), np.array([0.8, 1.3])),
    ]
    for fn, p in cases:
        _, grad = fn(p)
        for i in range(p.size):
            h = 1e-6 * p[i]
            up, down = p.copy(), p.copy()
            up[i] += h
            down[i] -= h
            assert grad[i] == pytest.approx((fn(up)[0] - fn(down)[0]) / (2 * h), rel=1e-5, abs=1e-4)


@FAST
@given(values=st.lists(positive, min_size=4, max_size=4), n=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_bgbb_likelihood_is_finite(values: list[float], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tx = rng.integers(0, n + 1, 8).astype(float)
    x = np.where(tx > 0, np.minimum(rng.integers(1, n + 1, 8), tx), 0).astype(float)
    x[0], tx[0] = 1.0, 1.0
    ll = BetaGeoBetaBinom.from_params(**params_for(BetaGeoBetaBinom, values)).log_likelihood_of(
        x, tx, np.full(8, float(n))
    )
    assert math.isfinite(ll) and ll <= 0


# ----------------------------------------------------------------------------- predictions
@pytest.mark.parametrize("cls", CONTINUOUS)
@FAST
@given(values=st.lists(positive, min_size=4, max_size=4), data=customers(), t=ages)
def test_predictions_are_finite_and_in_range(cls: Any, values: list[float], data: Any, t: float) -> None:
    x, tx, T = data
    model = cls.from_params(**params_for(cls, values))
    alive = np.asarray(model.probability_alive(x, tx, T))
    assert np.all((alive >= 0) & (alive <= 1))
    expected = np.asarray(model.conditional_expected_purchases(t, x, tx, T))
    assert np.all(np.isfinite(expected) & (expected >= 0))
    new = model.expected_purchases(t)
    assert math.isfinite(new) and new >= 0
    pmf = np.asarray(model.probability_of_purchases(np.array([0, 1, 5, 10_000]), t))
    assert np.all((pmf >= 0) & (pmf <= 1 + 1e-12))


def test_a_plus_b_below_one_and_the_extreme_corners_of_the_brief() -> None:
    for a, b in [(0.3, 0.4), (0.05, 0.05), (1.0, 1.0)]:
        for cls in (BetaGeo, ModifiedBetaGeo):
            model = cls.from_params(r=0.24, alpha=4.4, a=a, b=b)
            values = model.conditional_expected_purchases(
                39, [0, 1, 10_000, 10_000], [0, 1e-6, 1e-6, 38.86], [38.86, 1e-6, 1e-6, 38.86]
            )
            assert np.all(np.isfinite(values) & (values >= 0))
            assert math.isfinite(model.expected_purchases(1e6))
    pn = ParetoNBD.from_params(r=0.55, alpha=10.6, s=0.6, beta=11.7)
    big = pn.conditional_expected_purchases(39, 10_000, 38.86, 38.86)
    assert math.isfinite(big) and big > 1000


@pytest.mark.filterwarnings("ignore::crmkit.value.models.ConvergenceWarning")  # tiny odd samples: flat optima
@FAST
@given(
    spends=st.lists(st.floats(-3, 12).map(lambda e: 10.0**e), min_size=3, max_size=30, unique=True),
    freq=st.lists(st.integers(1, 10_000), min_size=30, max_size=30),
)
def test_gamma_gamma_copes_with_huge_spends(spends: list[float], freq: list[int]) -> None:
    x = np.array(freq[: len(spends)], dtype=float)
    z = np.array(spends)
    try:
        gg = GammaGamma().fit(x, z, check_independence=False)  # tiny random samples correlate by chance
    except ValidationError as err:  # a tiny sample may not pin the model down: say so, clearly
        assert err.field in ("monetary_value", "p", "q", "v")  # the data, or the parameter they leave free
        return
    assert all(math.isfinite(v) and v > 0 for v in gg.params.values())
    assert math.isfinite(gg.log_likelihood)
    spend = np.asarray(gg.conditional_expected_spend(x, z))
    assert np.all(spend > 0)


def test_gamma_gamma_scales_with_the_currency() -> None:
    d = datasets.load_cdnow_summary_with_monetary_value()
    dollars = GammaGamma().fit(d["frequency"], d["monetary_value"])
    huge = GammaGamma().fit(d["frequency"], d["monetary_value"] * 1e10)
    assert huge.params["p"] == pytest.approx(dollars.params["p"], rel=1e-6)
    assert huge.params["q"] == pytest.approx(dollars.params["q"], rel=1e-6)
    assert huge.params["v"] == pytest.approx(dollars.params["v"] * 1e10, rel=1e-6)
    assert huge.conditional_expected_spend(2, 22.35e10) == pytest.approx(
        dollars.conditional_expected_spend(2, 22.35) * 1e10, rel=1e-6
    )


def test_time_unit_only_rescales_alpha_and_beta() -> None:
    d = datasets.load_cdnow_summary()
    x, tx, T = d["frequency"], d["recency"], d["T"]
    for cls in CONTINUOUS:
        weeks = cls().fit(x, tx, T)
        days = cls().fit(x, tx * 7, T * 7)
        for name, value in weeks.params.items():
            factor = 7.0 if name in ("alpha", "beta") else 1.0
            assert days.params[name] == pytest.approx(value * factor, rel=1e-5), (cls, name)
        # a density in time: the log-likelihood moves by -sum(x) log 7
        assert days.log_likelihood == pytest.approx(weeks.log_likelihood - x.sum() * math.log(7), abs=1e-5)
        assert days.conditional_expected_purchases(273, 2, 213.01, 272.02) == pytest.approx(
            weeks.conditional_expected_purchases(39, 2, 30.43, 38.86), rel=1e-5
        )


# ----------------------------------------------------------------------------- optimisation
STARTS = {
    BetaGeo: [{"r": 0.01, "alpha": 0.1, "a": 0.05, "b": 0.05}, {"r": 20.0, "alpha": 500.0, "a": 30.0, "b": 40.0}],
    ModifiedBetaGeo: [
        {"r": 0.01, "alpha": 0.1, "a": 0.05, "b": 0.05},
        {"r": 20.0, "alpha": 500.0, "a": 30.0, "b": 40.0},
    ],
    ParetoNBD: [
        {"r": 0.01, "alpha": 0.1, "s": 0.05, "beta": 0.05},
        {"r": 20.0, "alpha": 500.0, "s": 30.0, "beta": 400.0},
    ],
}


@pytest.mark.parametrize("cls", CONTINUOUS)
def test_fits_from_different_starts_reach_the_same_optimum(cls: Any) -> None:
    d = datasets.load_cdnow_summary()
    reference = cls().fit(d["frequency"], d["recency"], d["T"])
    for start in STARTS[cls]:
        other = cls().fit(d["frequency"], d["recency"], d["T"], initial_params=start)
        assert other.log_likelihood == pytest.approx(reference.log_likelihood, abs=1e-6)
        assert other.params == pytest.approx(reference.params, rel=1e-5)


def test_discrete_spend_and_retention_fits_do_not_depend_on_the_start() -> None:
    dn = datasets.load_donations()
    args = (dn["frequency"], dn["recency"], dn["n_periods"], dn["weights"])
    ref = BetaGeoBetaBinom().fit(*args)
    for s in (
        {"alpha": 0.05, "beta": 20.0, "gamma": 10.0, "delta": 0.1},
        {"alpha": 30.0, "beta": 0.1, "gamma": 0.1, "delta": 40.0},
    ):
        assert BetaGeoBetaBinom().fit(*args, initial_params=s).params == pytest.approx(ref.params, rel=1e-5)
    dm = datasets.load_cdnow_summary_with_monetary_value()
    gg = GammaGamma().fit(dm["frequency"], dm["monetary_value"])
    for s in ({"p": 0.1, "q": 0.5, "v": 1000.0}, {"p": 100.0, "q": 50.0, "v": 0.5}):
        other = GammaGamma().fit(dm["frequency"], dm["monetary_value"], initial_params=s)
        assert other.params == pytest.approx(gg.params, rel=1e-5)
    survivors = [1000, 631, 468, 382, 326, 289, 262, 241]
    sbg = ShiftedBetaGeometric().fit_survivors(survivors)
    for s in ({"alpha": 0.01, "beta": 100.0}, {"alpha": 50.0, "beta": 0.02}):
        assert ShiftedBetaGeometric().fit_survivors(survivors, initial_params=s).params == pytest.approx(
            sbg.params, rel=1e-5
        )


def test_weights_are_the_same_as_repeated_rows() -> None:
    d = datasets.load_cdnow_summary()
    rows = np.stack([d["frequency"], d["recency"], d["T"]], axis=1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    assert counts.size < 1100  # the fit works on distinct rows anyway
    for cls in CONTINUOUS:
        weighted = cls().fit(unique[:, 0], unique[:, 1], unique[:, 2], weights=counts)
        repeated = cls().fit(d["frequency"], d["recency"], d["T"])
        assert weighted.params == pytest.approx(repeated.params, rel=1e-6)
        assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-10)
        assert weighted.n_observations == 2357


# ----------------------------------------------------------------------------- input errors
CDNOW = datasets.load_cdnow_summary()
F, R, T_ = CDNOW["frequency"], CDNOW["recency"], CDNOW["T"]


@pytest.mark.parametrize("cls", CONTINUOUS)
@pytest.mark.parametrize(
    "args,field",
    [
        (([], [], []), "frequency"),  # empty
        ((np.zeros(5), np.zeros(5), np.ones(5)), "frequency"),  # nobody bought again
        (([1, -1], [1, 0], [2, 2]), "frequency"),  # negative
        (([1.5, 1], [1, 1], [2, 2]), "frequency"),  # not a count
        (([1, 1], [3, 1], [2, 2]), "recency"),  # recency > T
        (([1, 0], [1, 0.5], [2, 2]), "recency"),  # recency without repeat purchase
        (([1, 1], [1, 1], [2, -2]), "T"),
        (([1, 1, 2], [1, 1], [2, 2, 3]), "recency"),  # lengths differ
        (([1, 1], [1, float("nan")], [2, 2]), "recency"),
        (([1, 1], [1, 1], [2, float("inf")]), "T"),
        ((["a", 1], [1, 1], [2, 2]), "frequency"),
        ((5, 1, 2), "frequency"),  # a scalar is not a data set
    ],
)
def test_bad_fit_data_names_the_argument(cls: Any, args: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        cls().fit(*args)
    assert err.value.field == field


def test_bad_weights_and_start_values_are_named() -> None:
    with pytest.raises(ValidationError) as err:
        BetaGeo().fit(F, R, T_, weights=-np.ones(F.size))
    assert err.value.field == "weights"
    with pytest.raises(ValidationError) as err:
        BetaGeo().fit(F, R, T_, weights=np.ones(3))
    assert err.value.field == "weights"
    with pytest.raises(ValidationError) as err:
        BetaGeo().fit(F, R, T_, initial_params={"r": 1.0, "alpha": 1.0, "a": 1.0})
    assert err.value.field == "initial_params"
    with pytest.raises(ValidationError) as err:
        BetaGeo.from_params(r=1.0, alpha=-1.0, a=1.0, b=1.0)
    assert err.value.field == "params"


@pytest.mark.parametrize(
    "x,z,field",
    [
        ([0, 0, 0], [0.0, 0.0, 0.0], "frequency"),  # no repeat buyers
        ([1, 2, 3], [0.0, 0.0, 0.0], "monetary_value"),  # all-zero spend
        ([1, 2, 3], [5.0, -1.0, 3.0], "monetary_value"),
        ([1, 2, 3], [5.0, 5.0, 5.0], "monetary_value"),  # no variation: p, q, v not identified
        ([1, 2], [5.0, 4.0, 3.0], "monetary_value"),
        ([], [], "frequency"),
    ],
)
def test_gamma_gamma_rejects_unusable_spend(x: Any, z: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        GammaGamma().fit(x, z)
    assert err.value.field == field


def test_discrete_models_reject_impossible_histories() -> None:
    cases = [
        (([2, 1], [1, 1], [6, 6]), "frequency"),  # more purchases than periods up to the last one
        (([1, 1], [7, 1], [6, 6]), "recency"),
        (([0, 1], [2, 1], [6, 6]), "recency"),
        (([0, 0], [0, 0], [6, 6]), "frequency"),
    ]
    for args, field in cases:
        with pytest.raises(ValidationError) as err:
            BetaGeoBetaBinom().fit(*args)
        assert err.value.field == field
    for survivors, field in [([1000], "survivors"), ([1000, 1100], "survivors"), ([0, 0], "survivors")]:
        with pytest.raises(ValidationError) as err:
            ShiftedBetaGeometric().fit_survivors(survivors)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        ShiftedBetaGeometric().fit_survivors([1000, 1000, 1000])  # nobody churned
    assert err.value.field == "churned"
    with pytest.raises(ValidationError) as err:
        ShiftedBetaGeometric().fit([0, 1], [1, 1])
    assert err.value.field == "periods"


def test_data_that_cannot_identify_a_parameter_is_an_error_not_garbage() -> None:
    # every customer bought at exactly the same steady rate and is still buying: there is no
    # sign of drop-out at all, so the drop-out parameters run off to a boundary
    n = 200
    x = np.full(n, 10.0)
    T = np.full(n, 20.0)
    with pytest.raises(ValidationError) as err:
        BetaGeo().fit(x, T, T)
    # the error names a parameter the data leave free
    assert err.value.field in ("r", "alpha", "a", "b") and "cannot identify" in err.value.message
    assert f"parameter {err.value.field}" in err.value.message


def test_unfitted_models_say_so() -> None:
    for model, call in [
        (BetaGeo(), lambda m: m.conditional_expected_purchases(39, 2, 30.43, 38.86)),
        (ParetoNBD(), lambda m: m.probability_alive(2, 30.43, 38.86)),
        (GammaGamma(), lambda m: m.conditional_expected_spend(2, 22.35)),
        (BetaGeoBetaBinom(), lambda m: m.expected_purchases(6)),
        (ShiftedBetaGeometric(), lambda m: m.survival(3)),
        (ModifiedBetaGeo(), lambda m: m.params),
        (BetaGeo(), lambda m: m.standard_errors),
    ]:
        with pytest.raises(NotFittedError, match="not fitted"):
            call(model)
        assert repr(model).endswith("(not fitted)")
        assert not model.is_fitted


def test_prediction_inputs_are_checked() -> None:
    bg = BetaGeo.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
    with pytest.raises(ValidationError) as err:
        bg.conditional_expected_purchases(-1, 2, 30.43, 38.86)
    assert err.value.field == "t"
    with pytest.raises(ValidationError) as err:
        bg.probability_alive(2, 40.0, 38.86)
    assert err.value.field == "recency"
    with pytest.raises(ValidationError) as err:
        bg.probability_alive([1, 2], [1, 2, 3], [5, 5])
    assert err.value.field == "recency"
    with pytest.raises(ValidationError):
        bg.probability_of_purchases(1.5, 10)


def test_columns_from_pandas_are_accepted() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"frequency": F, "recency": R, "T": T_})
    fitted = BetaGeo().fit(frame["frequency"], frame["recency"], frame["T"])
    assert round(fitted.params["alpha"], 3) == 4.414
    alive = fitted.probability_alive(frame["frequency"], frame["recency"], frame["T"])
    assert alive.shape == (len(frame),)


def test_clv_rejects_unclear_units_and_models() -> None:
    bg = BetaGeo.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
    gg = GammaGamma.from_params(p=6.25, q=3.74, v=15.44)
    good = {"horizon": 12, "time_unit": "week", "discount_rate": 0.01}
    for change, field in [
        ({"time_unit": "fortnight"}, "time_unit"),
        ({"time_unit": "year"}, "time_unit"),
        ({"horizon": -1}, "horizon"),
        ({"horizon": 1.5}, "horizon"),
        ({"discount_rate": -0.1}, "discount_rate"),
        ({"period": "decade"}, "period"),
    ]:
        with pytest.raises(ValidationError) as err:
            customer_lifetime_value(bg, gg, 2, 30.43, 38.86, 22.35, **(good | change))
        assert err.value.field == field
    with pytest.raises(TypeError):
        customer_lifetime_value(bg, gg, 2, 30.43, 38.86, 22.35, horizon=12, discount_rate=0.01)  # type: ignore[call-arg]
    with pytest.raises(ValidationError) as err:
        customer_lifetime_value(gg, gg, 2, 30.43, 38.86, 22.35, **good)  # type: ignore[arg-type]
    assert err.value.field == "transaction_model"

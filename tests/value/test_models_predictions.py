"""Predictions checked against independent derivations: simulation of each model's generative
process with a fixed seed, sums of probabilities, and high-precision quadrature (mpmath)."""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from crmkit.value.models import (  # noqa: E402
    BetaGeo,
    BetaGeoBetaBinom,
    ModifiedBetaGeo,
    ParetoNBD,
    ShiftedBetaGeometric,
)
from crmkit.value.models._numerics import bgnbd_future  # noqa: E402

N = 200_000
HORIZON = 39.0
BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PN = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
BB = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}


def close_in_mean(predicted: Any, actual: Any, sigmas: float = 4.0) -> bool:
    """The mean prediction error is within ``sigmas`` standard errors of zero."""
    diff = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    return bool(abs(diff.mean()) <= sigmas * diff.std() / np.sqrt(diff.size))


def simulate_bg(modified: bool, seed: int) -> dict[str, Any]:
    """BG/NBD (or MBG/NBD) customers over a calibration period [0, T] and a holdout (T, T+39]."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(1.0, 40.0, N)
    lam = rng.gamma(BG["r"], 1 / BG["alpha"], N)
    p = rng.beta(BG["a"], BG["b"], N)
    # purchases made before the drop-out (the customer dies right after the k-th purchase;
    # under MBG/NBD possibly right at time 0, k = 0)
    k = rng.geometric(p) - (1 if modified else 0)
    m1 = rng.poisson(lam * T)
    m2 = rng.poisson(lam * HORIZON)
    x = np.minimum(m1, k)
    alive = k > m1
    recency = np.zeros(N)
    pos = x > 0
    recency[pos] = T[pos] * rng.beta(x[pos], m1[pos] - x[pos] + 1)  # x-th of m1 uniform times
    holdout = np.where(alive, np.minimum(m2, k - m1), 0)
    new = np.minimum(m2, k)  # a new customer's purchases in (0, 39]
    return {"x": x, "tx": recency, "T": T, "alive": alive, "holdout": holdout, "new": new}


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo])
def test_bg_family_predictions_match_simulation(cls: type[BetaGeo]) -> None:
    modified = cls is ModifiedBetaGeo
    sim = simulate_bg(modified, seed=7)
    model = cls.from_params(**BG)
    assert close_in_mean(model.expected_purchases(HORIZON), sim["new"])
    assert close_in_mean(model.probability_alive(sim["x"], sim["tx"], sim["T"]), sim["alive"])
    expected = model.conditional_expected_purchases(HORIZON, sim["x"], sim["tx"], sim["T"])
    assert close_in_mean(expected, sim["holdout"])


def test_pareto_nbd_predictions_match_simulation() -> None:
    rng = np.random.default_rng(11)
    T = rng.uniform(1.0, 40.0, N)
    lam = rng.gamma(PN["r"], 1 / PN["alpha"], N)
    mu = rng.gamma(PN["s"], 1 / PN["beta"], N)
    life = rng.exponential(1 / mu)
    active = np.minimum(life, T)
    x = rng.poisson(lam * active)
    recency = np.where(x > 0, active * rng.beta(np.maximum(x, 1), 1), 0.0)
    alive = life > T
    holdout = np.where(alive, rng.poisson(lam * np.clip(life - T, 0, HORIZON)), 0)
    new = rng.poisson(lam * np.minimum(life, HORIZON))
    model = ParetoNBD.from_params(**PN)
    assert close_in_mean(model.expected_purchases(HORIZON), new)
    assert close_in_mean(model.probability_alive(x, recency, T), alive)
    assert close_in_mean(model.conditional_expected_purchases(HORIZON, x, recency, T), holdout)


def test_bgbb_predictions_match_simulation() -> None:
    rng = np.random.default_rng(5)
    n, future = 6, 5
    p = rng.beta(BB["alpha"], BB["beta"], N)
    theta = rng.beta(BB["gamma"], BB["delta"], N)
    survived = rng.geometric(theta) - 1  # opportunities the customer is still alive for
    buys = rng.random((N, n + future)) < p[:, None]
    periods = np.arange(1, n + future + 1)
    buys &= periods[None, :] <= survived[:, None]
    cal = buys[:, :n]
    x = cal.sum(axis=1)
    tx = np.where(x > 0, n - np.argmax(cal[:, ::-1], axis=1), 0)
    holdout = buys[:, n:].sum(axis=1)
    model = BetaGeoBetaBinom.from_params(**BB)
    assert close_in_mean(model.expected_purchases(n), x)
    assert close_in_mean(model.probability_alive(x, tx, n), survived >= n + 1)
    assert close_in_mean(model.conditional_expected_purchases(future, x, tx, n), holdout)
    pmf = np.asarray(model.probability_of_purchases(np.arange(n + 1), n))
    observed = np.bincount(x, minlength=n + 1) / N
    assert np.max(np.abs(pmf - observed)) < 0.005


@pytest.mark.parametrize("cls,params", [(BetaGeo, BG), (ModifiedBetaGeo, BG), (ParetoNBD, PN)])
def test_probabilities_of_purchase_counts_sum_to_one_and_have_the_right_mean(cls: Any, params: Any) -> None:
    model = cls.from_params(**params)
    n = np.arange(3000)
    for t in (0.5, 39.0, 200.0):
        pmf = np.asarray(model.probability_of_purchases(n, t))
        assert np.all((pmf >= 0) & (pmf <= 1))
        assert pmf.sum() == pytest.approx(1.0, abs=1e-6)
        assert (n * pmf).sum() == pytest.approx(model.expected_purchases(t), rel=1e-4)
    assert model.probability_of_purchases(0, 0.0) == pytest.approx(1.0, abs=1e-12)


def test_pareto_nbd_probability_of_purchases_against_mpmath() -> None:
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    r, alpha, s, beta = (mp.mpf(v) for v in PN.values())

    def exact(n: int, t: float) -> float:
        def nb(tau: Any) -> Any:
            return (
                mp.gamma(r + n)
                / (mp.gamma(r) * mp.factorial(n))
                * (alpha / (alpha + tau)) ** r
                * (tau / (alpha + tau)) ** n
            )

        alive = nb(t) * (beta / (beta + t)) ** s
        dead = mp.quad(lambda tau: s * beta**s / (beta + tau) ** (s + 1) * nb(tau), [0, t / 4, t])
        return float(alive + dead)

    model = ParetoNBD.from_params(**PN)
    for n, t in [(0, 39.0), (1, 39.0), (3, 10.0), (12, 78.0), (40, 500.0)]:
        assert model.probability_of_purchases(n, t) == pytest.approx(exact(n, t), rel=1e-9)


def test_bgnbd_future_purchases_against_mpmath_in_hard_corners() -> None:
    """The kernel behind every BG/NBD expectation, where the textbook 2F1 form overflows."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 20

    def exact(a: float, bp: float, rp: float, al: float, t: float) -> float:
        # the defining integral E_p[(1 - (al / (al + p t))**rp) / p], p ~ Beta(a, bp)
        a_, bp_, rp_, al_, t_ = (mp.mpf(v) for v in (a, bp, rp, al, t))
        log_b = mp.log(mp.beta(a_, bp_))

        def f(u: Any) -> Any:  # integrand in u = log p, which tames the p**(a-1) singularity
            p = mp.exp(u)
            h = -mp.expm1(-rp_ * mp.log1p(p * t_ / al_)) / p
            return h * mp.exp(a_ * u + (bp_ - 1) * mp.log1p(-p) - log_b)

        marks = {v for v in (a_ / (a_ + bp_), 10 * a_ / (a_ + bp_), al_ / t_ / rp_) if 0 < v < 1}
        return float(mp.quad(f, [-mp.inf, -50, *sorted(mp.log(v) for v in marks), 0]))

    cases = [
        (0.793, 2.426, 0.243, 4.414, 39.0),  # CDNOW, new customer
        (0.793, 10002.426, 10000.243, 4.414001, 39.0),  # frequency 10,000, T = 1e-6
        (0.793, 10002.426, 10000.243, 42.414, 39.0),
        (0.3, 0.4, 0.243, 4.414, 1e5),  # a + b < 1, far horizon
        (81.8, 3.7, 3.02, 0.0059, 1597.7),  # large a, tiny alpha
        (0.05, 2.1, 1.9, 4.98, 345.6),
        (1.0000002, 2.0, 0.5, 3.0, 10.0),  # a next to 1, where the closed forms divide by zero
        (2.5, 1.2, 0.7, 5.0, 1e-9),  # tiny horizon
        (1.0, 1e9, 0.5, 4.0, 10.0),  # b huge: nobody drops out, the closed forms cancel
        (3.0, 2e7, 50.5, 4.0, 1000.0),
    ]
    for a, bp, rp, al, t in cases:
        got = float(bgnbd_future(a, np.array(bp), np.array(rp), np.array(al), np.array(t), bp - rp))
        assert got == pytest.approx(exact(a, bp, rp, al, t), rel=1e-7), (a, bp, rp, al, t)


def test_probability_alive_bounds_and_known_cases() -> None:
    bg = BetaGeo.from_params(**BG)
    assert bg.probability_alive(0, 0, 38.86) == 1.0  # BG/NBD: no repeat purchase, no chance to die yet
    assert bg.probability_alive(2, 30.43, 38.86) == pytest.approx(
        1 / (1 + 0.793 / (2.426 + 1) * ((4.414 + 38.86) / (4.414 + 30.43)) ** (0.243 + 2))
    )
    # the longer the silence, the lower the probability; a purchase "just now" helps
    grid = np.asarray(bg.probability_alive(5, np.linspace(1, 38, 20), 38.86))
    assert np.all(np.diff(grid) > 0) and np.all((grid > 0) & (grid <= 1))
    mbg = ModifiedBetaGeo.from_params(**BG)
    assert 0 < mbg.probability_alive(0, 0, 38.86) < 1  # MBG: may have left right after the first purchase
    pn = ParetoNBD.from_params(**PN)
    assert pn.probability_alive(2, 38.86, 38.86) > pn.probability_alive(2, 5.0, 38.86)


def test_mbgnbd_reduces_to_bgnbd_behaviour_where_it_should() -> None:
    bg, mbg = BetaGeo.from_params(**BG), ModifiedBetaGeo.from_params(**BG)
    # new customers: MBG loses the share p of customers right away, so it expects fewer purchases
    assert mbg.expected_purchases(39.0) < bg.expected_purchases(39.0)
    # after many purchases the extra drop-out chance at time 0 matters little
    ratio = mbg.conditional_expected_purchases(39, 50, 38.0, 38.86) / bg.conditional_expected_purchases(
        39, 50, 38.0, 38.86
    )
    assert ratio == pytest.approx(1.0, abs=0.02)
    # with b huge, p is nearly 0: nobody dies, and both are the NBD: E[X(t)] = r t / alpha
    nbd = {"r": 0.5, "alpha": 4.0, "a": 1.0, "b": 1e9}
    for cls in (BetaGeo, ModifiedBetaGeo):
        assert cls.from_params(**nbd).expected_purchases(10.0) == pytest.approx(0.5 * 10 / 4, rel=1e-6)


def test_conditional_expectation_of_a_customer_with_no_history_is_the_new_customer_expectation() -> None:
    # a BG/NBD customer just acquired (x = 0, T = 0) is a new customer
    bg = BetaGeo.from_params(**BG)
    assert bg.conditional_expected_purchases(39, 0, 0, 0) == pytest.approx(bg.expected_purchases(39), rel=1e-10)
    pn = ParetoNBD.from_params(**PN)
    assert pn.conditional_expected_purchases(39, 0, 0, 0) == pytest.approx(pn.expected_purchases(39), rel=1e-10)


def test_predictions_accept_scalars_and_arrays_alike() -> None:
    bg = BetaGeo.from_params(**BG)
    one = bg.conditional_expected_purchases(39, 2, 30.43, 38.86)
    assert isinstance(one, float)
    many = bg.conditional_expected_purchases(39, [2, 2], [30.43, 30.43], [38.86, 38.86])
    assert isinstance(many, np.ndarray) and many.shape == (2,)
    assert np.allclose(many, one)
    per_t = bg.conditional_expected_purchases(np.array([13.0, 26.0, 39.0]), 2, 30.43, 38.86)
    assert per_t.shape == (3,) and np.all(np.diff(per_t) > 0) and per_t[-1] == pytest.approx(one)


def test_sbg_curves_are_consistent() -> None:
    sbg = ShiftedBetaGeometric.from_params(alpha=0.704, beta=1.182)
    t = np.arange(1, 30)
    churn = np.asarray(sbg.churn_probability(t))
    survival = np.asarray(sbg.survival(t))
    assert np.allclose(np.cumsum(churn) + survival, 1.0)
    assert np.allclose(sbg.retention_rate(t), survival / np.asarray(sbg.survival(t - 1)))
    assert np.all(np.diff(sbg.retention_rate(t)) > 0)  # retention rises as the cohort sorts itself
    d = 0.1
    horizon = np.arange(0, 3000)
    direct = float(np.sum(np.asarray(sbg.survival(horizon)) / (1 + d) ** horizon))
    assert sbg.discounted_expected_lifetime(d) == pytest.approx(direct, rel=1e-10)
    assert sbg.discounted_expected_lifetime(0.0) == float("inf")  # alpha < 1: E[T] is infinite

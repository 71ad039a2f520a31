"""Benchmark crmkit.value.models against the ``lifetimes`` package, in the same process.

``lifetimes`` is a benchmark-only dependency: it is listed in ``benchmarks/requirements.txt``,
never in the project's own dependencies. Install it into the virtualenv that runs the
benchmark (the project's, or one of its own):

    pip install -r benchmarks/requirements.txt        # into the project's virtualenv, or
    python -m venv bench-env
    bench-env/bin/pip install -r benchmarks/requirements.txt "attrs>=23.1" "pluggy>=1.3"

lifetimes 0.11.3 installs with current numpy, scipy and pandas (checked with numpy 2.4,
scipy 1.17, pandas 3.1). Should a future release break it, pin older versions, for example
``"numpy<2" "scipy<1.13" "pandas<2.2"``. Then, from the repository root:

    PYTHONPATH=src bench-env/bin/python benchmarks/bench_models.py            # full run, ~10 min
    PYTHONPATH=src bench-env/bin/python benchmarks/bench_models.py --quick    # 100,000 instead of 1,000,000
    PYTHONPATH=src bench-env/bin/python benchmarks/bench_models.py --continuous-only   # the BG/NBD case below

(``pip install -e .`` instead of ``PYTHONPATH=src`` works too.) Every timing is the best of
``--repeat`` runs (default 3; the 1,000,000-customer lifetimes fits run once). Both fits
are scored with crmkit's exact total log-likelihood, so "LL" compares like with like.

Synthetic data are drawn from the BG/NBD and Pareto/NBD generative processes at the CDNOW
estimates (Fader, Hardie and Lee 2005) with a fixed seed, shaped like the CDNOW summary:
customers are acquired on one of the first 84 days and observed to day 273, purchases are
recorded to the day, and recency and T are in weeks rounded to 2 decimals. Identical
(frequency, recency, T) rows are therefore common, as in such data.

The "continuous times" BG/NBD case draws the same process with acquisition and purchase
times kept to the full float precision (recency and T in weeks, unrounded): every row is
distinct, so grouping identical rows does not help, as with data recorded to the second.

On processors where the environment sets ``OPENBLAS_CORETYPE`` (and ``OPENBLAS_L2_SIZE``)
for older OpenBLAS builds, a current numpy runs slower with them; both sides of the
comparison run in the same process, so they share whatever setting is in force.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from crmkit.value.models import BetaGeo, GammaGamma, ParetoNBD, customer_lifetime_value, datasets

BG_PARAMS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PN_PARAMS = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
GG_PARAMS = {"p": 6.25, "q": 3.74, "v": 15.44}


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def cohort(n: int, rng: np.random.Generator) -> np.ndarray:
    """Customers' ages at the end of observation, in days (acquired on days 0..83, observed to 273)."""
    return 273 - rng.integers(0, 84, n)


def weeks(days: np.ndarray) -> np.ndarray:
    return np.round(days / 7.0, 2)


def simulate_bgnbd(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age_days = cohort(n, rng)
    T = age_days / 7.0
    lam = rng.gamma(BG_PARAMS["r"], 1 / BG_PARAMS["alpha"], n)
    p = rng.beta(BG_PARAMS["a"], BG_PARAMS["b"], n)
    events = rng.poisson(lam * T)
    x = np.minimum(events, rng.geometric(p))  # the customer drops out right after purchase k
    last = np.zeros(n)
    pos = x > 0
    last[pos] = T[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)  # x-th of the event times
    return x.astype(float), weeks(np.floor(last * 7)), weeks(age_days)


def simulate_bgnbd_continuous(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD customers with continuous acquisition and purchase times (no two rows alike)."""
    rng = np.random.default_rng(seed)
    T = (273.0 - rng.uniform(0.0, 84.0, n)) / 7.0  # weeks, unrounded
    lam = rng.gamma(BG_PARAMS["r"], 1 / BG_PARAMS["alpha"], n)
    p = rng.beta(BG_PARAMS["a"], BG_PARAMS["b"], n)
    events = rng.poisson(lam * T)
    x = np.minimum(events, rng.geometric(p))
    last = np.zeros(n)
    pos = x > 0
    last[pos] = T[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)  # the x-th of the event times
    return x.astype(float), last, T


def simulate_paretonbd(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age_days = cohort(n, rng)
    T = age_days / 7.0
    lam = rng.gamma(PN_PARAMS["r"], 1 / PN_PARAMS["alpha"], n)
    mu = rng.gamma(PN_PARAMS["s"], 1 / PN_PARAMS["beta"], n)
    active = np.minimum(rng.exponential(1 / mu), T)
    x = rng.poisson(lam * active)
    last = np.where(x > 0, active * rng.beta(np.maximum(x, 1), 1), 0.0)
    return x.astype(float), weeks(np.floor(last * 7)), weeks(age_days)


def simulate_spend(x: np.ndarray, seed: int) -> np.ndarray:
    """Average repeat-transaction value of each repeat customer (Gamma-Gamma process)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(GG_PARAMS["q"], 1 / GG_PARAMS["v"], x.size)
    return np.round(rng.gamma(GG_PARAMS["p"] * x, 1 / (nu * x)), 2)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float, str]] = []

    def add(self, task: str, size: str, ours: float, theirs: float, note: str) -> None:
        self.rows.append((task, size, ours, theirs, note))
        print(f"{task:<34} {size:>10}  crmkit {ours:8.3f} s  lifetimes {theirs:8.3f} s  x{theirs / ours:6.1f}  {note}")
        sys.stdout.flush()

    def markdown(self) -> str:
        lines = [
            "| task | customers | crmkit (s) | lifetimes (s) | speed-up | notes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for task, size, ours, theirs, note in self.rows:
            lines.append(f"| {task} | {size} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.1f}x | {note} |")
        return "\n".join(lines)


def fit_pair(
    report: Report,
    task: str,
    ours_cls: type[Any],
    theirs_cls: type[Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    repeat: int,
    theirs_repeat: int,
) -> None:
    x, tx, T = data
    t_ours, ours = best_of(lambda: ours_cls().fit(x, tx, T), repeat)
    t_theirs, theirs = best_of(lambda: theirs_cls().fit(x, tx, T), theirs_repeat)
    their_params = {k: float(v) for k, v in theirs.params_.items()}
    ll_theirs = ours_cls.from_params(**their_params).log_likelihood_of(x, tx, T)
    delta = ours.log_likelihood - ll_theirs
    note = f"LL {ours.log_likelihood:,.2f} vs {ll_theirs:,.2f} (crmkit better by {delta:.2g})"
    report.add(task, f"{x.size:,}", t_ours, t_theirs, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 synthetic customers instead of 1,000,000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    parser.add_argument(
        "--continuous-only", action="store_true", help="only the BG/NBD fit on continuous times (1,000,000 customers)"
    )
    args = parser.parse_args()

    warnings.filterwarnings("ignore")  # lifetimes and pandas deprecation noise
    import lifetimes
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    big = 100_000 if args.quick else 1_000_000
    rep = args.repeat
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, lifetimes {lifetimes.__version__}, "
        f"{platform.machine()}\n"
    )
    report = Report()
    continuous = simulate_bgnbd_continuous(big, seed=7)
    distinct = np.unique(np.column_stack(continuous), axis=0).shape[0]
    fit_pair(report, "BG/NBD fit (continuous times)", BetaGeo, BetaGeoFitter, continuous, rep, 1)
    print(f"  ({distinct:,} distinct rows)")
    if args.continuous_only:
        print("\n" + report.markdown())
        return
    cdnow = datasets.load_cdnow_summary_with_monetary_value()
    small = (cdnow["frequency"], cdnow["recency"], cdnow["T"])

    fit_pair(report, "BG/NBD fit (CDNOW sample)", BetaGeo, BetaGeoFitter, small, rep, rep)
    bg_big = simulate_bgnbd(big, seed=1)
    fit_pair(report, "BG/NBD fit (synthetic)", BetaGeo, BetaGeoFitter, bg_big, rep, 1)
    fit_pair(report, "Pareto/NBD fit (CDNOW sample)", ParetoNBD, ParetoNBDFitter, small, rep, rep)
    fit_pair(report, "Pareto/NBD fit (synthetic)", ParetoNBD, ParetoNBDFitter, simulate_paretonbd(23_570, 2), rep, 1)
    fit_pair(report, "Pareto/NBD fit (synthetic)", ParetoNBD, ParetoNBDFitter, simulate_paretonbd(big, 3), 1, 1)

    repeat_ = cdnow["frequency"] > 0
    fx, fz = cdnow["frequency"][repeat_], cdnow["monetary_value"][repeat_]
    t_ours, gg = best_of(lambda: GammaGamma().fit(fx, fz), rep)
    t_theirs, ggl = best_of(lambda: GammaGammaFitter().fit(fx, fz), rep)
    ll_theirs = GammaGamma.from_params(**dict(zip("pqv", ggl.params_.values, strict=True))).log_likelihood_of(fx, fz)
    report.add(
        "Gamma-Gamma fit (CDNOW repeaters)",
        f"{fx.size:,}",
        t_ours,
        t_theirs,
        f"LL {gg.log_likelihood:,.3f} vs {ll_theirs:,.3f}",
    )
    bx = bg_big[0][bg_big[0] > 0]
    bz = simulate_spend(bx, seed=4)
    t_ours, gg_big = best_of(lambda: GammaGamma().fit(bx, bz), rep)
    t_theirs, ggl_big = best_of(lambda: GammaGammaFitter().fit(bx, bz), 1)
    ll_theirs = GammaGamma.from_params(**dict(zip("pqv", ggl_big.params_.values, strict=True))).log_likelihood_of(
        bx, bz
    )
    report.add(
        "Gamma-Gamma fit (synthetic repeaters)",
        f"{bx.size:,}",
        t_ours,
        t_theirs,
        f"LL {gg_big.log_likelihood:,.2f} vs {ll_theirs:,.2f}",
    )

    # predictions for the large synthetic base, with the same parameters on both sides
    x, tx, T = bg_big
    ours = BetaGeo.from_params(**BG_PARAMS)
    theirs = BetaGeoFitter()
    theirs.params_ = pd.Series(BG_PARAMS)
    theirs.predict = theirs.conditional_expected_number_of_purchases_up_to_time  # set by fit() otherwise

    def ours_predict() -> Any:
        return ours.conditional_expected_purchases(39.0, x, tx, T), ours.probability_alive(x, tx, T)

    def theirs_predict() -> Any:
        return (
            theirs.conditional_expected_number_of_purchases_up_to_time(39.0, x, tx, T),
            theirs.conditional_probability_alive(x, tx, T),
        )

    t_ours, (e1, a1) = best_of(ours_predict, rep)
    t_theirs, (e2, a2) = best_of(theirs_predict, 1)
    diff = max(float(np.max(np.abs(e1 - np.asarray(e2)))), float(np.max(np.abs(a1 - np.asarray(a2)))))
    report.add("BG/NBD E[Y(39)] + P(alive)", f"{x.size:,}", t_ours, t_theirs, f"max abs difference {diff:.1e}")

    pn_ours = ParetoNBD.from_params(**PN_PARAMS)
    pn_theirs = ParetoNBDFitter()
    pn_theirs.params_ = pd.Series(PN_PARAMS)
    t_ours, (pe1, pa1) = best_of(
        lambda: (pn_ours.conditional_expected_purchases(39.0, x, tx, T), pn_ours.probability_alive(x, tx, T)), rep
    )
    t_theirs, (pe2, pa2) = best_of(
        lambda: (
            pn_theirs.conditional_expected_number_of_purchases_up_to_time(39.0, x, tx, T),
            pn_theirs.conditional_probability_alive(x, tx, T),
        ),
        1,
    )
    diff = max(float(np.nanmax(np.abs(pe1 - np.asarray(pe2)))), float(np.nanmax(np.abs(pa1 - np.asarray(pa2)))))
    bad = int(np.sum(~np.isfinite(np.asarray(pe2))) + np.sum(~np.isfinite(np.asarray(pa2))))
    report.add(
        "Pareto/NBD E[Y(39)] + P(alive)",
        f"{x.size:,}",
        t_ours,
        t_theirs,
        f"max abs difference {diff:.1e}; lifetimes non-finite: {bad}",
    )

    z = np.where(x > 0, simulate_spend(np.maximum(x, 1), seed=5), 0.0)
    gg_ours = GammaGamma.from_params(**GG_PARAMS)
    gg_theirs = GammaGammaFitter()
    gg_theirs.params_ = pd.Series(GG_PARAMS)
    t_ours, clv1 = best_of(
        lambda: customer_lifetime_value(ours, gg_ours, x, tx, T, z, horizon=12, time_unit="week", discount_rate=0.01),
        rep,
    )
    t_theirs, clv2 = best_of(
        lambda: gg_theirs.customer_lifetime_value(
            theirs, pd.Series(x), pd.Series(tx), pd.Series(T), pd.Series(z), time=12, discount_rate=0.01, freq="W"
        ),
        1,
    )
    rel = float(np.max(np.abs(clv1 - np.asarray(clv2)) / np.maximum(np.abs(clv1), 1e-9)))
    report.add(
        "CLV, 12 months (BG/NBD + GG)",
        f"{x.size:,}",
        t_ours,
        t_theirs,
        f"max rel. difference {rel:.1e} (a month is 4.348 weeks here, 4.345 in lifetimes)",
    )

    print("\n" + report.markdown())


if __name__ == "__main__":
    main()

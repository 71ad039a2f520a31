"""The large-data fit path: no grouping on continuous times, BFGS on a sample, Newton on all rows.

Speed is measured in benchmarks/bench_models.py; here: the path is taken, and it reaches the
same optimum as BFGS on all rows, with a log-likelihood no worse.
"""

from __future__ import annotations

import numpy as np
import pytest

models = pytest.importorskip("crmkit.value.models")
from crmkit.value.models import (  # noqa: E402
    BetaGeo,
    ModifiedBetaGeo,
    _rfm,
)

BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def continuous(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = (273.0 - rng.uniform(0.0, 84.0, n)) / 7.0
    lam = rng.gamma(BG["r"], 1 / BG["alpha"], n)
    p = rng.beta(BG["a"], BG["b"], n)
    events = rng.poisson(lam * T)
    x = np.minimum(events, rng.geometric(p))
    last = np.zeros(n)
    pos = x > 0
    last[pos] = T[pos] * rng.beta(x[pos], events[pos] - x[pos] + 1)
    return x.astype(float), last, T


def test_grouping_is_skipped_only_when_rows_are_distinct() -> None:
    x, tx, T = continuous(50_000, 1)
    assert not _rfm._worth_grouping([x, tx, T])
    rounded = [x, np.round(tx, 1), np.round(T, 1)]
    assert _rfm._worth_grouping(rounded)
    data = _rfm.prepare_rfm(x, tx, T, None, model="BG/NBD")
    assert data.x.size == 50_000 and data.n_obs == 50_000
    assert np.array_equal(data.ux[data.ix], data.x)  # frequency tallies point back to every row


@pytest.mark.parametrize("cls", [BetaGeo, ModifiedBetaGeo])
def test_the_sample_start_reaches_the_full_optimum(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    x, tx, T = continuous(200_000, 2)
    fast = cls().fit(x, tx, T)
    assert fast.converged
    monkeypatch.setattr("crmkit.value.models.bgnbd.sample_rfm", lambda data: None)  # BFGS on all rows
    full = cls().fit(x, tx, T)
    assert fast.log_likelihood >= full.log_likelihood - 1e-7
    for name, value in full.params.items():
        assert fast.params[name] == pytest.approx(value, rel=1e-6)
    for name, value in full.standard_errors.items():
        assert fast.standard_errors[name] == pytest.approx(value, rel=1e-3)
    assert fast._summary.evaluations < full._summary.evaluations  # type: ignore[union-attr]

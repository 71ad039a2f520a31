"""Frequency/recency/age data prepared for fitting: validated, grouped, weighted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crmkit._errors import ValidationError
from crmkit.value.models._validation import FloatArray, compress_rows, dot, group_rows, rfm_arrays, weights_array

__all__ = ["RFMData", "default_rate_scale", "prepare_rfm", "rfm_data", "sample_rfm"]


@dataclass(frozen=True)
class RFMData:
    """Distinct (x, t_x, T) rows with the number of customers behind each."""

    x: FloatArray
    tx: FloatArray
    T: FloatArray
    w: FloatArray
    n_obs: float
    ux: FloatArray  # distinct frequencies
    wx: FloatArray  # total weight per distinct frequency
    # the same rows split into customers without (T0, w0) and with repeat purchases
    T0: FloatArray
    w0: FloatArray
    x1: FloatArray
    tx1: FloatArray
    T1: FloatArray
    w1: FloatArray
    # position of each row's frequency in ``ux`` (all rows, and the repeat rows)
    ix: npt.NDArray[np.intp]
    ix1: npt.NDArray[np.intp]

    @property
    def repeat_weight(self) -> float:
        return float(self.w[self.x > 0].sum())


# Grouping identical rows pays when many rows repeat (data recorded to the day, times
# rounded); on continuous times every row is distinct and the sort costs more than a fit.
# A strided sample of this many rows decides: grouping is skipped when nearly all differ.
_GROUP_PROBE = 4096
_GROUP_WORTH = 0.9


def _worth_grouping(columns: list[FloatArray]) -> bool:
    n = columns[0].size
    if n <= 2 * _GROUP_PROBE:
        return True
    step = n // _GROUP_PROBE
    probe = [c[: step * _GROUP_PROBE : step] for c in columns]
    distinct, _ = group_rows(probe)
    return distinct[0].size < _GROUP_WORTH * probe[0].size


def prepare_rfm(frequency: Any, recency: Any, T: Any, weights: Any, *, model: str) -> RFMData:
    x, tx, tt = rfm_arrays(frequency, recency, T, fit=True)
    w = weights_array(weights, "frequency", x)
    if _worth_grouping([x, tx, tt]):
        (x, tx, tt), w = compress_rows([x, tx, tt], w)
    elif not np.all(w > 0):
        keep = w > 0
        x, tx, tt, w = x[keep], tx[keep], tt[keep], w[keep]
    if not np.any(x > 0):
        raise ValidationError(
            "frequency",
            f"no customer made a repeat purchase: the data cannot identify the {model} model",
            0,
        )
    if not np.any(tt > 0):
        raise ValidationError("T", f"every customer has age 0: the data cannot identify the {model} model", 0)
    return rfm_data(x, tx, tt, w)


def rfm_data(x: FloatArray, tx: FloatArray, tt: FloatArray, w: FloatArray) -> RFMData:
    """The fitting layout of validated rows: contiguous float64 columns, split at frequency 0."""
    x, tx, tt, w = (np.ascontiguousarray(v, dtype=np.float64) for v in (x, tx, tt, w))
    top = float(x.max())
    if top <= 4 * x.size + 1024:  # frequencies are whole numbers: tally them without a sort
        xi = x.astype(np.intp)
        tally = np.bincount(xi, weights=w)
        present = np.flatnonzero(tally > 0)
        position = np.zeros(tally.size, dtype=np.intp)
        position[present] = np.arange(present.size)
        ux = present.astype(np.float64)
        wx = np.asarray(tally[present], dtype=np.float64)
        inverse = position[xi]
    else:
        ux, inverse = np.unique(x, return_inverse=True)
        wx = np.bincount(inverse, weights=w, minlength=ux.size).astype(np.float64)
    inverse = np.asarray(inverse, dtype=np.intp).reshape(-1)
    zero = x == 0
    rep = ~zero
    return RFMData(
        x=x,
        tx=tx,
        T=tt,
        w=w,
        n_obs=float(w.sum()),
        ux=ux,
        wx=wx,
        T0=tt[zero],
        w0=w[zero],
        x1=x[rep],
        tx1=tx[rep],
        T1=tt[rep],
        w1=w[rep],
        ix=inverse,
        ix1=inverse[rep],
    )


#: Above this many (distinct) rows a fit first runs on a sample of ``SAMPLE_ROWS`` of them:
#: its optimum is a start from which Newton steps on all rows converge in a few evaluations.
WARM_START_ROWS = 150_000
SAMPLE_ROWS = 60_000


def sample_rfm(data: RFMData, rows: int = SAMPLE_ROWS, seed: int = 20050401) -> RFMData | None:
    """A seeded random sample of the rows, weights rescaled to the same total; None when small already."""
    n = data.x.size
    if n <= WARM_START_ROWS:
        return None
    pick = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    x = data.x[pick]
    if not np.any(x > 0):
        return None
    w = data.w[pick]
    w = w * (data.n_obs / float(w.sum()))
    return rfm_data(x, data.tx[pick], data.T[pick], w)


def default_rate_scale(data: RFMData) -> float:
    """Rough inverse purchase rate ``sum(T) / sum(x)``: the start for alpha and beta."""
    return float(dot(data.w, data.T) / max(dot(data.w, data.x), 1e-12))

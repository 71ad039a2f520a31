"""Frequency/recency/age data prepared for fitting: validated, grouped, weighted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crmkit._errors import ValidationError
from crmkit.value.models._validation import FloatArray, compress_rows, dot, rfm_arrays, weights_array

__all__ = ["RFMData", "prepare_rfm"]


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

    @property
    def repeat_weight(self) -> float:
        return float(self.w[self.x > 0].sum())


def prepare_rfm(frequency: Any, recency: Any, T: Any, weights: Any, *, model: str) -> RFMData:
    x, tx, tt = rfm_arrays(frequency, recency, T, fit=True)
    w = weights_array(weights, "frequency", x)
    (x, tx, tt), w = compress_rows([x, tx, tt], w)
    if not np.any(x > 0):
        raise ValidationError(
            "frequency",
            f"no customer made a repeat purchase: the data cannot identify the {model} model",
            0,
        )
    if not np.any(tt > 0):
        raise ValidationError("T", f"every customer has age 0: the data cannot identify the {model} model", 0)
    ux, inverse = np.unique(x, return_inverse=True)
    wx = np.bincount(inverse, weights=w, minlength=ux.size).astype(np.float64)
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
    )


def default_rate_scale(data: RFMData) -> float:
    """Rough inverse purchase rate ``sum(T) / sum(x)``: the start for alpha and beta."""
    return float(dot(data.w, data.T) / max(dot(data.w, data.x), 1e-12))

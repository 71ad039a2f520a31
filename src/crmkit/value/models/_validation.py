"""Input checks shared by the models: every bad input becomes a ValidationError naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from crmkit._errors import ValidationError

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "FloatArray",
    "as_array",
    "check_integer",
    "check_nonnegative",
    "check_same_shape",
    "compress_rows",
    "dot",
    "fail_where",
    "group_rows",
    "result",
    "rfm_arrays",
    "weights_array",
]


def _first_bad(mask: npt.NDArray[np.bool_]) -> int | None:
    """Flat index of the first True in ``mask`` (the offending row), or None."""
    flat = np.flatnonzero(mask)
    return int(flat[0]) if flat.size else None


def fail_where(name: str, message: str, arr: FloatArray, mask: npt.NDArray[np.bool_]) -> None:
    idx = _first_bad(mask)
    if idx is None:
        return
    value: Any = arr.reshape(-1)[idx].item()
    row = idx if arr.ndim >= 1 else None
    raise ValidationError(name, message, value, row=row)


def as_array(name: str, value: Any, *, one_dimensional: bool = False) -> FloatArray:
    """``value`` as a finite float64 array (sequences, numpy, pandas or polars columns)."""
    if value is None:
        raise ValidationError(name, "is required", value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, "must be numeric (missing values are not allowed)", value) from exc
    if one_dimensional:
        if arr.ndim == 0:
            raise ValidationError(name, "must be a sequence with one value per customer", value)
        if arr.ndim != 1:
            raise ValidationError(name, f"must be one-dimensional, got shape {arr.shape}", value)
        if arr.size == 0:
            raise ValidationError(name, "is empty: there is no customer to fit", value)
    fail_where(name, "must be finite (no NaN or infinity)", arr, ~np.isfinite(arr))
    return arr


def check_nonnegative(name: str, arr: FloatArray, *, strict: bool = False) -> None:
    if strict:
        fail_where(name, "must be > 0", arr, arr <= 0)
    else:
        fail_where(name, "must be >= 0", arr, arr < 0)


def check_integer(name: str, arr: FloatArray) -> None:
    fail_where(name, "must be a whole number", arr, arr != np.floor(arr))


def counts_and_times(n: Any, t: Any) -> tuple[FloatArray, FloatArray]:
    """``n`` (whole, >= 0) and ``t`` (>= 0) as broadcast arrays, for P(X(t) = n)."""
    nn = as_array("n", n)
    check_nonnegative("n", nn)
    check_integer("n", nn)
    tt = as_array("t", t)
    check_nonnegative("t", tt)
    nn, tt = np.broadcast_arrays(nn, tt)
    return nn, tt


def check_same_shape(first: str, a: FloatArray, name: str, b: FloatArray) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValidationError(name, f"shape {b.shape} does not match {first} (shape {a.shape})", b.shape) from None


def check_same_length(first: str, a: FloatArray, name: str, b: FloatArray) -> None:
    if a.shape != b.shape:
        raise ValidationError(name, f"has {b.size} values but {first} has {a.size}", b.size)


def weights_array(weights: Any, like_name: str, like: FloatArray) -> FloatArray:
    """Per-row weights (number of customers a row stands for); defaults to ones."""
    if weights is None:
        return np.ones_like(like)
    w = as_array("weights", weights, one_dimensional=True)
    check_same_length(like_name, like, "weights", w)
    check_nonnegative("weights", w)
    if not np.any(w > 0):
        raise ValidationError("weights", "all weights are zero: there is no customer to fit", weights)
    return w


def rfm_arrays(frequency: Any, recency: Any, T: Any, *, fit: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validated (frequency, recency, T) of continuous-time models.

    ``fit=True`` demands equal-length 1-D columns; otherwise scalars and arrays broadcast.
    """
    x = as_array("frequency", frequency, one_dimensional=fit)
    tx = as_array("recency", recency, one_dimensional=fit)
    tt = as_array("T", T, one_dimensional=fit)
    if fit:
        check_same_length("frequency", x, "recency", tx)
        check_same_length("frequency", x, "T", tt)
    else:
        check_same_shape("frequency", x, "recency", tx)
        check_same_shape("frequency", x, "T", tt)
        x, tx, tt = np.broadcast_arrays(x, tx, tt)
    check_nonnegative("frequency", x)
    check_integer("frequency", x)
    check_nonnegative("recency", tx)
    check_nonnegative("T", tt)
    fail_where("recency", "must not exceed T (the customer's age)", tx, tx > tt)
    fail_where("recency", "must be 0 when frequency is 0", tx, (x == 0) & (tx != 0))
    return x, tx, tt


def group_rows(columns: list[FloatArray]) -> tuple[list[FloatArray], npt.NDArray[np.intp]]:
    """Distinct rows of equal-length 1-D columns (sorted), and each input row's group index.

    Each column is replaced by its rank among its distinct values and the ranks are packed
    into one integer key, which sorts much faster than the columns themselves.
    """
    uniques = [np.unique(c) for c in columns]
    sizes = [max(u.size, 1) for u in uniques]
    if float(np.prod(np.array(sizes, dtype=np.float64))) >= 2.0**62:
        return _group_rows_lexsort(columns)
    key = np.zeros(columns[0].size, dtype=np.int64)
    for c, u in zip(columns, uniques, strict=True):
        key = key * u.size + np.searchsorted(u, c)
    distinct, inverse = np.unique(key, return_inverse=True)
    out: list[FloatArray] = []
    for u in reversed(uniques):
        out.append(u[distinct % u.size])
        distinct = distinct // u.size
    return out[::-1], np.asarray(inverse, dtype=np.intp).reshape(-1)


def _group_rows_lexsort(columns: list[FloatArray]) -> tuple[list[FloatArray], npt.NDArray[np.intp]]:
    n = columns[0].size
    order = np.lexsort(tuple(reversed(columns)))
    sorted_cols = [c[order] for c in columns]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for c in sorted_cols:
        change[1:] |= c[1:] != c[:-1]
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(change) - 1
    starts = np.flatnonzero(change)
    return [c[starts] for c in sorted_cols], inverse


def compress_rows(columns: list[FloatArray], weights: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Group identical rows, summing their weights (rows of weight 0 are dropped).

    The log-likelihood of a row depends only on its values, so the fit works on the
    distinct rows with their multiplicities, which is much cheaper on real data.
    """
    keep = weights > 0
    if not np.all(keep):
        columns = [c[keep] for c in columns]
        weights = weights[keep]
    unique, inverse = group_rows(columns)
    summed = np.bincount(inverse, weights=weights, minlength=unique[0].size).astype(np.float64)
    return unique, summed


def dot(a: FloatArray, b: FloatArray) -> float:
    """Inner product of two 1-D arrays without BLAS.

    BLAS would hand large products to its thread pool, whose waking and spinning threads
    cost far more than they save on the short vectors of a fit, and much more again on a
    busy machine.
    """
    return float(np.einsum("i,i->", a, b))


def result(arr: FloatArray) -> float | FloatArray:
    """A plain float for 0-d results, the array otherwise."""
    if arr.ndim == 0:
        return float(arr)
    return arr

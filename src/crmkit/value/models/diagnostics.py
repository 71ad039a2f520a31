"""The numbers behind the standard checks of a fitted model (``crmkit.value.plots`` draws them).

* ``period_transactions``: how many customers made 0, 1, 2... repeat purchases, actual
  against the model's expectation ``sum_i P(X(T_i) = k)`` over the customers' own ages.
* ``probability_alive_history``: one customer's P(alive) at every age from the first
  purchase to the end of observation, as the model would have said at the time.
* ``cumulative_purchases``: repeat purchases of the whole base accumulated over calendar
  time, actual against ``sum_i E[X(t - first purchase of i)]``.
* ``spend_frequency_correlation``: the Pearson correlation between repeat customers'
  number of repeat purchases and mean spend, which the Gamma-Gamma model assumes is nil.

Purchase timing counts every purchase whatever its currency (see ``crmkit.value.currencies``);
purchases on the same UTC day merge into one, as in the repeat-purchase summary.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crmkit._errors import ValidationError
from crmkit.transactions import Transaction
from crmkit.value.models._validation import FloatArray, as_array, check_same_length, rfm_arrays
from crmkit.value.periods import boundary, check_unit, day_of

__all__ = [
    "CumulativePurchases",
    "PeriodTransactions",
    "ProbabilityAliveHistory",
    "cumulative_purchases",
    "period_transactions",
    "probability_alive_history",
    "spend_frequency_correlation",
]

_DAYS = {"day": 1.0, "week": 7.0}


@dataclass(frozen=True)
class PeriodTransactions:
    """Customers by number of repeat purchases: ``counts[k]`` for k = 0.. max_frequency - 1, then "max or more"."""

    labels: tuple[str, ...]
    actual: FloatArray
    expected: FloatArray


@dataclass(frozen=True)
class ProbabilityAliveHistory:
    """P(alive) of one customer at each age (in the model's unit since the first purchase)."""

    ages: FloatArray
    probability: FloatArray
    purchases: FloatArray  # ages of the repeat purchase days


@dataclass(frozen=True)
class CumulativePurchases:
    """Cumulative repeat purchases of the base at ``times`` (in the unit since ``start``)."""

    start: dt.date
    unit: str
    times: FloatArray
    actual: FloatArray
    expected: FloatArray
    calibration_end: float | None


def period_transactions(
    model: Any, frequency: Any, recency: Any, T: Any, *, max_frequency: int = 7
) -> PeriodTransactions:
    """Actual and expected numbers of customers with 0, 1, ... repeat purchases in their own observation time."""
    if isinstance(max_frequency, bool) or not isinstance(max_frequency, int) or max_frequency < 1:
        raise ValidationError("max_frequency", "must be a positive integer", max_frequency)
    x, _, tt = rfm_arrays(frequency, recency, T, fit=True)
    ks = np.arange(max_frequency, dtype=np.float64)
    ages, count = np.unique(tt, return_counts=True)  # one prediction per distinct age
    probs = np.asarray(model.probability_of_purchases(ks[:, None], ages[None, :]), dtype=np.float64)
    expected = np.empty(max_frequency + 1)
    expected[:max_frequency] = probs @ count.astype(np.float64)
    expected[max_frequency] = x.size - expected[:max_frequency].sum()
    actual = np.bincount(np.minimum(x, max_frequency).astype(np.intp), minlength=max_frequency + 1)
    labels = (*(str(k) for k in range(max_frequency)), f"{max_frequency}+")
    return PeriodTransactions(labels, actual.astype(np.float64), expected)


def _purchase_days(items: Iterable[Any], field: str) -> list[dt.date]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValidationError(field, "must be an iterable of crmkit.Transaction or aware datetimes", items)
    days: set[dt.date] = set()
    for row, item in enumerate(items):
        if isinstance(item, Transaction):
            if item.kind == "purchase":
                days.add(day_of(item.occurred_at))
        elif isinstance(item, dt.datetime) and item.tzinfo is not None:
            days.add(day_of(item))
        else:
            raise ValidationError(field, "must hold crmkit.Transaction objects or aware datetimes", item).at_row(row)
    return sorted(days)


def probability_alive_history(
    model: Any,
    purchases: Iterable[Transaction] | Iterable[dt.datetime],
    *,
    unit: str,
    observation_end: dt.date | dt.datetime,
    points: int = 200,
) -> ProbabilityAliveHistory:
    """One customer's P(alive) over its life, from its purchases (any currency) and a model fitted in ``unit``.

    At each age t the model sees what was known then: the repeat purchase days up to t, the
    last of them, and age t. Ages run from 0 (the first purchase day) to the observation
    end on a grid of ``points`` values plus every purchase day (just before and at it).
    """
    unit = check_unit(unit, ("day", "week"))
    end_day, _ = boundary(observation_end, "observation_end")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValidationError("points", "must be an integer >= 2", points)
    days = [d for d in _purchase_days(purchases, "purchases") if d <= end_day]
    if not days:
        raise ValidationError("purchases", "the customer has no purchase by the observation end", observation_end)
    scale = _DAYS[unit]
    first = days[0]
    bought = np.array([(d - first).days / scale for d in days[1:]], dtype=np.float64)
    age = (end_day - first).days / scale
    tiny = 1e-9 * max(age, 1.0)
    grid = np.unique(np.concatenate([np.linspace(0.0, age, points), bought, np.maximum(bought - tiny, 0.0)]))
    x = np.searchsorted(bought, grid, side="right").astype(np.float64)
    last = np.where(x > 0, bought[np.maximum(x.astype(np.intp) - 1, 0)] if bought.size else 0.0, 0.0)
    p = np.asarray(model.probability_alive(x, last, grid), dtype=np.float64)
    return ProbabilityAliveHistory(grid, p, bought)


def cumulative_purchases(
    model: Any,
    transactions: Iterable[Transaction],
    *,
    unit: str,
    observation_end: dt.date | dt.datetime,
    calibration_end: dt.date | dt.datetime | None = None,
    step: float = 1.0,
) -> CumulativePurchases:
    """Repeat purchase days of all customers accumulated over time, actual and expected by ``model``.

    Time runs in ``unit`` (day or week, the unit the model was fitted in) from the first
    purchase day in the data to ``observation_end``, in steps of ``step``. A customer
    enters the expectation at its first purchase: its expected repeat purchases by time t
    are ``model.expected_purchases(t - first purchase)``. With ``calibration_end`` (the end
    of the data the model was fitted on) the result remembers it, for the plot's marker.
    """
    unit = check_unit(unit, ("day", "week"))
    end_day, until = boundary(observation_end, "observation_end")
    cal = None if calibration_end is None else boundary(calibration_end, "calibration_end")[0]
    step_f = float(as_array("step", step))
    if not step_f > 0:
        raise ValidationError("step", "must be > 0", step)
    if isinstance(transactions, (str, bytes)) or not isinstance(transactions, Iterable):
        raise ValidationError("transactions", "must be an iterable of crmkit.Transaction", transactions)
    by_customer: dict[Any, set[dt.date]] = {}
    for row, t in enumerate(transactions):
        if not isinstance(t, Transaction):
            raise ValidationError("transactions", "must hold crmkit.Transaction objects", t).at_row(row)
        if t.kind == "purchase" and t.occurred_at <= until:
            by_customer.setdefault(t.customer_id, set()).add(day_of(t.occurred_at))
    if not by_customer:
        raise ValidationError("transactions", "has no purchase by the observation end", observation_end)
    start = min(min(days) for days in by_customer.values())
    scale = _DAYS[unit]
    births = np.array([(min(days) - start).days / scale for days in by_customer.values()], dtype=np.float64)
    repeats = np.sort(
        np.array(
            [(d - start).days / scale for days in by_customer.values() for d in sorted(days)[1:]], dtype=np.float64
        )
    )
    horizon = (end_day - start).days / scale
    times = np.arange(0.0, horizon + step_f / 2, step_f)
    actual = np.searchsorted(repeats, times, side="right").astype(np.float64)
    born, inverse = np.unique(births, return_inverse=True)
    counts = np.bincount(inverse, minlength=born.size).astype(np.float64)
    since = np.maximum(times[:, None] - born[None, :], 0.0)
    expected = np.asarray(model.expected_purchases(since), dtype=np.float64) @ counts
    cal_t = None if cal is None else (cal - start).days / scale
    return CumulativePurchases(start, unit, times, actual, expected, cal_t)


def spend_frequency_correlation(frequency: Any, monetary_value: Any) -> float:
    """Pearson correlation of repeat purchases and mean spend over the customers with repeat purchases.

    The Gamma-Gamma model assumes a customer's spend per purchase does not depend on how
    often it buys; a correlation far from 0 (say beyond +-0.3) says the assumption fails.
    NaN when either column is constant among the repeat customers.
    """
    x = as_array("frequency", frequency, one_dimensional=True)
    z = as_array("monetary_value", monetary_value, one_dimensional=True)
    check_same_length("frequency", x, "monetary_value", z)
    repeat = x > 0
    if int(repeat.sum()) < 2:
        raise ValidationError("frequency", "needs at least two customers with repeat purchases", int(repeat.sum()))
    xr, zr = x[repeat], z[repeat]
    dx, dz = xr - xr.mean(), zr - zr.mean()
    denom = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dz, dz)))
    return float(np.dot(dx, dz)) / denom if denom > 0 else math.nan

"""Customer lifetime value from a transaction model and a spend model."""

from __future__ import annotations

from typing import Any

import numpy as np

from crmkit._errors import ValidationError
from crmkit.value.models._validation import FloatArray, as_array, result
from crmkit.value.models.bgnbd import BetaGeo, ModifiedBetaGeo, _BetaGeoBase
from crmkit.value.models.gammagamma import GammaGamma
from crmkit.value.models.paretonbd import ParetoNBD

__all__ = ["DAYS_PER_UNIT", "customer_lifetime_value"]

#: Length of each supported time unit in days (a month is a twelfth of 365.25 days).
DAYS_PER_UNIT: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12, "year": 365.25}
_DATA_UNITS = ("day", "week", "month")


def customer_lifetime_value(
    transaction_model: BetaGeo | ModifiedBetaGeo | ParetoNBD,
    spend_model: GammaGamma,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon: int,
    time_unit: str,
    discount_rate: float,
    period: str = "month",
    margin: float = 1.0,
) -> float | FloatArray:
    """Discounted expected value of each customer's purchases over the next ``horizon`` periods.

    ``time_unit`` is the unit of ``recency`` and ``T`` in the data ("day", "week" or
    "month"); it has no default because a wrong unit silently rescales every prediction.
    The projection runs in steps of one ``period`` (default a month of 365.25/12 days);
    ``horizon`` counts those steps and ``discount_rate`` is the rate per step (0.01 a month
    is about 12.7% a year). The value is::

        margin * E[spend] * sum_{i=1..horizon} (E[Y(i)] - E[Y(i-1)]) / (1 + discount_rate)**i

    with ``E[Y(i)]`` the expected purchases in the first ``i`` periods from now (conditional
    on the customer's history) and ``E[spend]`` the Gamma-Gamma conditional expected
    transaction value: each period's purchases are discounted from the end of that period.
    """
    if not isinstance(transaction_model, (_BetaGeoBase, ParetoNBD)):
        raise ValidationError(
            "transaction_model",
            "must be a BetaGeo, ModifiedBetaGeo or ParetoNBD model (continuous time)",
            type(transaction_model).__name__,
        )
    if not isinstance(spend_model, GammaGamma):
        raise ValidationError("spend_model", "must be a GammaGamma model", type(spend_model).__name__)
    if time_unit not in _DATA_UNITS:
        raise ValidationError("time_unit", f"must be one of {', '.join(_DATA_UNITS)}", time_unit)
    if period not in DAYS_PER_UNIT:
        raise ValidationError("period", f"must be one of {', '.join(DAYS_PER_UNIT)}", period)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise ValidationError("horizon", "must be a whole number of periods >= 0", horizon)
    d = float(as_array("discount_rate", discount_rate))
    if d < 0:
        raise ValidationError("discount_rate", "must be >= 0 (a rate per period)", discount_rate)
    m = float(as_array("margin", margin))
    spend = np.asarray(spend_model.conditional_expected_spend(frequency, monetary_value), dtype=np.float64)
    step = DAYS_PER_UNIT[period] / DAYS_PER_UNIT[time_unit]
    times = step * np.arange(1, int(horizon) + 1, dtype=np.float64)
    curve = transaction_model._expected_purchase_curve(times, frequency, recency, T)
    increments = np.diff(np.concatenate([np.zeros((1, *curve.shape[1:])), curve]), axis=0)
    factors = (1.0 + d) ** -np.arange(1, int(horizon) + 1, dtype=np.float64)
    discounted = np.einsum("i,i...->...", factors, increments) if horizon else np.zeros(curve.shape[1:])
    try:
        value = m * spend * discounted
    except ValueError:
        raise ValidationError(
            "monetary_value", "shape does not match frequency, recency and T", np.shape(spend)
        ) from None
    return result(np.asarray(value, dtype=np.float64))

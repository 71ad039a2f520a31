"""Historic value: what customers have been worth so far (revenue, average order value, frequency, CLV).

Computed from purchase summaries (``crm.purchase_summaries()`` or ``crmkit.summaries.summarize``):

* revenue = purchases - refunds;
* average order value (AOV) = revenue / orders;
* purchase frequency = orders / customers;
* historic CLV of a customer = revenue x margin (the gross margin earned so far); its mean
  over customers equals AOV x purchase frequency x margin.

Money is in ``currency``: purchases in another currency count (as orders and revenue) when
``rates`` converts them, and are left out otherwise; first and last purchase cover every
currency (see ``crmkit.value.currencies``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal

import attrs

from crmkit._errors import ValidationError
from crmkit.summaries import PurchaseSummary
from crmkit.value.currencies import Rates, check_currency, check_rates, merge_purchases, rate_for

__all__ = ["HistoricValue", "ValueMetrics", "historic_values", "value_metrics"]

_ZERO = Decimal(0)


@attrs.frozen
class HistoricValue:
    """What one customer has bought so far and the margin it earned (``clv``)."""

    customer_id: uuid.UUID
    currency: str
    orders: int
    revenue: Decimal
    average_order_value: Decimal
    first_purchase_at: dt.datetime
    last_purchase_at: dt.datetime
    clv: Decimal


@attrs.frozen
class ValueMetrics:
    """Averages over all customers: AOV, purchase frequency and the mean historic CLV."""

    currency: str | None
    customers: int
    orders: int
    revenue: Decimal
    average_order_value: Decimal
    purchase_frequency: Decimal
    customer_value: Decimal
    historic_clv: Decimal


def check_margin(margin: object, field: str = "margin") -> Decimal:
    """A gross-margin rate: a Decimal (or int) from 0 to 1."""
    if isinstance(margin, bool) or not isinstance(margin, (Decimal, int)) or not 0 <= margin <= 1:
        raise ValidationError(field, "must be a Decimal rate from 0 to 1 (floats are not exact money)", margin)
    return Decimal(margin)


def _purchases(
    purchases: Iterable[PurchaseSummary], currency: str | None, rates: Rates | None
) -> Iterator[PurchaseSummary]:
    """One summary per customer with money in ``currency`` (streamed: input grouped by customer)."""
    if isinstance(purchases, (str, bytes)) or not isinstance(purchases, Iterable):
        raise ValidationError("purchases", "must be an iterable of crmkit.PurchaseSummary", purchases)
    currency = check_currency(currency)
    checked_rates = check_rates(rates)

    def checked() -> Iterator[PurchaseSummary]:
        first: str | None = None
        for row, p in enumerate(purchases):
            if not isinstance(p, PurchaseSummary):
                raise ValidationError("purchases", "must hold crmkit.PurchaseSummary objects", p).at_row(row)
            if currency is None:
                if first is not None and p.currency != first:
                    msg = f"purchases are in {first} and {p.currency}: pass currency= (and rates= to convert)"
                    raise ValidationError("currency", msg, None).at_row(row)
                first = p.currency
            yield p

    if currency is None:
        yield from checked()
        return
    for p in merge_purchases(checked(), currency=currency, rate=rate_for(currency, checked_rates)):
        if p.purchases:
            yield p


def historic_values(
    purchases: Iterable[PurchaseSummary],
    *,
    margin: Decimal = Decimal(1),
    currency: str | None = None,
    rates: Rates | None = None,
) -> Iterator[HistoricValue]:
    """Each customer's historic value, one at a time in input order (bounded memory)."""
    rate = check_margin(margin)
    for p in _purchases(purchases, currency, rates):
        revenue = p.total - p.refunds
        yield HistoricValue(
            customer_id=p.customer_id,
            currency=p.currency,
            orders=p.purchases,
            revenue=revenue,
            average_order_value=revenue / p.purchases,
            first_purchase_at=p.first_purchase_at,
            last_purchase_at=p.last_purchase_at,
            clv=revenue * rate,
        )


def value_metrics(
    purchases: Iterable[PurchaseSummary],
    *,
    margin: Decimal = Decimal(1),
    currency: str | None = None,
    rates: Rates | None = None,
) -> ValueMetrics:
    """AOV, purchase frequency, revenue per customer and mean historic CLV, in one pass."""
    rate = check_margin(margin)
    customers = orders = 0
    revenue = _ZERO
    seen: str | None = None
    for p in _purchases(purchases, currency, rates):
        customers += 1
        orders += p.purchases
        revenue += p.total - p.refunds
        seen = p.currency
    aov = revenue / orders if orders else _ZERO
    frequency = Decimal(orders) / customers if customers else _ZERO
    per_customer = revenue / customers if customers else _ZERO
    return ValueMetrics(
        currency=seen if currency is None else currency,
        customers=customers,
        orders=orders,
        revenue=revenue,
        average_order_value=aov,
        purchase_frequency=frequency,
        customer_value=per_customer,
        historic_clv=per_customer * rate,
    )

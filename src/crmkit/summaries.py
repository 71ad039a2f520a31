"""Per-customer purchase summaries: the facts value models and lifecycle rules start from.

Backends compute them inside the store (the ``crmkit_purchase_summaries`` hook); the
pure-Python ``summarize`` here is the reference and the fallback for stores without one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal

import attrs

from crmkit.transactions import Transaction

__all__ = ["PurchaseSummary", "summarize"]


@attrs.frozen
class PurchaseSummary:
    """A customer's purchases in one currency (refunds reported apart).

    ``purchase_days`` counts distinct UTC calendar days with a purchase, so purchases on the
    same day count once, as repeat-purchase models expect; ``first_day_total`` lets the mean
    of repeat purchases be derived without the rows: (total - first_day_total) / (purchase_days - 1).
    """

    customer_id: uuid.UUID
    currency: str
    purchases: int
    first_purchase_at: dt.datetime
    last_purchase_at: dt.datetime
    purchase_days: int
    total: Decimal
    first_day_total: Decimal
    refunds: Decimal = Decimal(0)

    @property
    def mean(self) -> Decimal:
        """Mean amount per purchase transaction."""
        return self.total / self.purchases

    @property
    def repeat_mean(self) -> Decimal:
        """Mean spend per repeat purchase day (0 when there is none), as in Fader-Hardie's zbar."""
        if self.purchase_days < 2:
            return Decimal(0)
        return (self.total - self.first_day_total) / (self.purchase_days - 1)


@attrs.define
class _Acc:
    purchases: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    days: set[dt.date] = attrs.field(factory=set)
    total: Decimal = Decimal(0)
    by_day: dict[dt.date, Decimal] = attrs.field(factory=dict)
    refunds: Decimal = Decimal(0)


def summarize(
    transactions: Iterable[Transaction],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[PurchaseSummary]:
    """Summaries from transactions, one per (customer, currency) with a purchase, sorted by customer then currency."""
    accs: dict[tuple[uuid.UUID, str], _Acc] = {}
    for t in transactions:
        if (since is not None and t.occurred_at < since) or (until is not None and t.occurred_at > until):
            continue
        acc = accs.setdefault((t.customer_id, t.currency), _Acc())
        if t.kind == "refund":
            acc.refunds += t.amount
            continue
        acc.purchases += 1
        acc.first = t.occurred_at if acc.first is None else min(acc.first, t.occurred_at)
        acc.last = t.occurred_at if acc.last is None else max(acc.last, t.occurred_at)
        day = t.occurred_at.astimezone(dt.timezone.utc).date()
        acc.days.add(day)
        acc.by_day[day] = acc.by_day.get(day, Decimal(0)) + t.amount
        acc.total += t.amount
    out = []
    for (customer_id, currency), acc in sorted(accs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if acc.purchases == 0 or acc.first is None or acc.last is None:
            continue
        first_day = acc.first.astimezone(dt.timezone.utc).date()
        out.append(
            PurchaseSummary(
                customer_id=customer_id,
                currency=currency,
                purchases=acc.purchases,
                first_purchase_at=acc.first,
                last_purchase_at=acc.last,
                purchase_days=len(acc.days),
                total=acc.total,
                first_day_total=acc.by_day[first_day],
                refunds=acc.refunds,
            )
        )
    return out

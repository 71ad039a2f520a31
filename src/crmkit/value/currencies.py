"""How customer value treats purchases in several currencies.

* **Timing is currency-free.** A purchase is a purchase whatever its currency: first and
  last purchase, distinct purchase days or periods, frequency, recency, T, RFM recency and
  frequency, cohorts and probability alive count every purchase.
* **Money is in one currency.** Spend, revenue and profit are stated in the ``currency``
  asked for. An amount in another currency counts when the application supplies a rate
  for it (``rates=`` here, the ``crmkit_exchange_rate`` hook for ``crm.value``): it is
  multiplied by the rate. Without a rate it is left out of the money figures (spend is
  then per currency: what the customer spent in ``currency``), but still counts for timing.
  Amounts of different currencies are never added up unconverted.

Per-currency purchase summaries (``crmkit.PurchaseSummary``) are merged here into one per
customer. Their distinct purchase days cannot simply be added: a day with purchases in two
currencies is one purchase day. The merge subtracts the days it can see were shared (a
currency's first or last purchase day that is also another's), which is exact unless two
currencies share a day strictly inside both of their spans; ``crm.value`` reads the
purchases of such multi-currency customers to count their days exactly.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Union

from crmkit._errors import ValidationError
from crmkit.summaries import PurchaseSummary
from crmkit.value.periods import day_of

__all__ = ["Rates", "check_rates", "merge_purchases", "rate_for"]

#: Exchange rates into the target currency: ``amount_in_target = amount * rates[source]``.
Rates = Mapping[str, Decimal]
#: What a rate lookup gives: the rate into the target, or None when the amount does not count.
RateOf = Callable[[str], Union[Decimal, None]]

_ZERO = Decimal(0)


def check_currency(currency: object, field: str = "currency") -> str | None:
    if currency is not None and not isinstance(currency, str):
        raise ValidationError(field, "must be an ISO 4217 code or None", currency)
    return currency


def check_rates(rates: object) -> Rates | None:
    """``rates`` as given if it is None or a mapping of currency codes to positive Decimal rates."""
    if rates is None:
        return None
    if not isinstance(rates, Mapping):
        raise ValidationError("rates", "must be a mapping of currency code to Decimal rate, or None", rates)
    return rates


def valid_rate(value: object, source: str, target: str, field: str = "rates") -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)) or not Decimal(value).is_finite():
        raise ValidationError(field, f"the {source} to {target} rate must be a finite Decimal", value)
    rate = Decimal(value)
    if rate <= 0:
        raise ValidationError(field, f"the {source} to {target} rate must be > 0", value)
    return rate


def rate_for(target: str | None, rates: Rates | None) -> RateOf:
    """A lookup of each source currency's rate into ``target`` (1 for the target itself, None if unknown)."""
    cache: dict[str, Decimal | None] = {}

    def rate(source: str) -> Decimal | None:
        if target is None:
            return None
        if source == target:
            return Decimal(1)
        if source not in cache:
            value = None if rates is None else rates.get(source)
            cache[source] = None if value is None else valid_rate(value, source, target)
        return cache[source]

    return rate


def several_currencies(names: Iterable[str]) -> ValidationError:
    listed = ", ".join(sorted(set(names)))
    return ValidationError(
        "currency",
        f"purchases are in several currencies ({listed}): pass currency= to state money in one of them "
        "(amounts in the others count when a rate converts them: rates= or the crmkit_exchange_rate hook)",
        None,
    )


def target_currency(found: Iterable[str], currency: str | None, *, money: bool) -> str | None:
    """The currency money is stated in: ``currency``, else the only one found.

    With several currencies found and no ``currency``, money cannot be stated: an error when
    ``money`` is needed, None (timing only) otherwise.
    """
    if currency is not None:
        return currency
    names = set(found)
    if len(names) > 1:
        if money:
            raise several_currencies(names)
        return None
    return next(iter(names), None)


def _union_days(parts: list[PurchaseSummary]) -> int:
    """Distinct purchase days of one customer over several currencies (see the module docstring)."""
    if len(parts) == 1:
        return parts[0].purchase_days
    ends: collections.Counter[dt.date] = collections.Counter()
    for p in parts:
        ends.update({day_of(p.first_purchase_at), day_of(p.last_purchase_at)})
    shared = sum(n - 1 for n in ends.values())
    total = sum(p.purchase_days for p in parts) - shared
    return max(total, len(ends), max(p.purchase_days for p in parts))


def merge_purchases(
    purchases: Iterable[PurchaseSummary],
    *,
    currency: str | None,
    rate: RateOf,
    days: Mapping[uuid.UUID, int] | None = None,
) -> Iterator[PurchaseSummary]:
    """One ``PurchaseSummary`` per customer, in input order of first appearance (input grouped by customer).

    Timing fields (first and last purchase, ``purchase_days``) cover every currency;
    ``days`` gives the exact distinct purchase days of customers whose count is known.
    Money fields (``total``, ``first_day_total``, ``refunds``) and ``purchases`` (the
    number of purchases whose amount is counted) are in ``currency``: amounts converted by
    ``rate``, those without a rate left out. ``currency`` is the merged summary's currency
    (``""`` when money is not stated).
    """
    group: list[PurchaseSummary] = []
    done: set[uuid.UUID] = set()
    for row, p in enumerate(purchases):
        if group and p.customer_id != group[0].customer_id:
            done.add(group[0].customer_id)
            yield _merge(group, currency, rate, days)
            group = []
        if p.customer_id in done:
            raise ValidationError(
                "purchases",
                f"customer {p.customer_id} appears again after other customers: summaries must be grouped by "
                "customer (as crm.purchase_summaries and summarize return them)",
                p,
            ).at_row(row)
        group.append(p)
    if group:
        yield _merge(group, currency, rate, days)


def _merge(
    parts: list[PurchaseSummary], currency: str | None, rate: RateOf, days: Mapping[uuid.UUID, int] | None
) -> PurchaseSummary:
    customer_id = parts[0].customer_id
    if len(parts) == 1 and (currency is None or parts[0].currency == currency):
        only = parts[0]
        if days is None or customer_id not in days:
            return only
    first = min(p.first_purchase_at for p in parts)
    first_day = day_of(first)
    count = 0
    total = first_total = refunds = _ZERO
    for p in parts:
        r = rate(p.currency)
        if r is None:
            continue
        count += p.purchases
        total += p.total * r
        refunds += p.refunds * r
        if day_of(p.first_purchase_at) == first_day:
            first_total += p.first_day_total * r
    known = None if days is None else days.get(customer_id)
    return PurchaseSummary(
        customer_id=customer_id,
        currency=currency or "",
        purchases=count,
        first_purchase_at=first,
        last_purchase_at=max(p.last_purchase_at for p in parts),
        purchase_days=_union_days(parts) if known is None else known,
        total=total,
        first_day_total=first_total,
        refunds=refunds,
    )

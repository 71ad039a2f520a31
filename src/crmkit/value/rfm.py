"""RFM: recency, frequency and monetary scores by quantile, and the named segments built on them.

Raw values per customer, from purchase summaries as of a moment:

* recency: days since the last purchase (fewer is better);
* frequency: distinct purchase days (same-day purchases count once);
* monetary: total spend net of refunds.

A score is the quantile bin of the value among all customers scored together: with ``n``
customers and ``bins`` bins, a value beaten by ``k`` customers' values (strictly worse
ones) scores ``1 + floor(bins * k / n)``. Equal values always get equal scores, whatever
the input order, so the highest bins can stay empty when many customers tie (most have
one purchase day, for instance). See docs/value.md for the segment rules.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal

import attrs

from crmkit._errors import NotFound, ValidationError
from crmkit._validation import utc
from crmkit.summaries import PurchaseSummary
from crmkit.value.currencies import Rates, check_currency, check_rates, merge_purchases, rate_for, target_currency

__all__ = ["SEGMENTS", "RFMScore", "RFMTable", "rfm_scores", "rfm_segment"]

#: Segment names, best first; ``rfm_segment`` documents the rule of each.
SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)


@attrs.frozen
class RFMScore:
    """One customer's raw RFM values, scores (1 = worst, ``bins`` = best) and segment."""

    customer_id: uuid.UUID
    recency_days: float
    frequency: int
    monetary: Decimal
    r: int
    f: int
    m: int
    segment: str

    @property
    def code(self) -> str:
        """The scores as one string, such as ``"545"`` (r, f, m)."""
        return f"{self.r}{self.f}{self.m}"


@attrs.frozen
class RFMTable(Sequence[RFMScore]):
    """RFM scores of every customer (sorted by customer id), with segment views."""

    rows: tuple[RFMScore, ...]
    bins: int
    as_of: dt.datetime

    def __getitem__(self, index: int) -> RFMScore:  # type: ignore[override]
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RFMScore]:
        return iter(self.rows)

    def get(self, customer_id: uuid.UUID) -> RFMScore:
        """The scores of one customer; NotFound if it was not scored."""
        for row in self.rows:
            if row.customer_id == customer_id:
                return row
        raise NotFound("RFM score", customer_id)

    def segment(self, name: str) -> tuple[RFMScore, ...]:
        """The customers in one segment."""
        if name not in SEGMENTS:
            raise ValidationError("segment", f"must be one of {', '.join(SEGMENTS)}", name)
        return tuple(r for r in self.rows if r.segment == name)

    def sizes(self) -> Mapping[str, int]:
        """How many customers each segment holds, in ``SEGMENTS`` order (empty segments included)."""
        counts = dict.fromkeys(SEGMENTS, 0)
        for row in self.rows:
            counts[row.segment] += 1
        return counts


def _level(score: int, bins: int) -> int:
    """A score on the 1..5 scale the segment rules are written for (half up, exact integers)."""
    return 1 + ((score - 1) * 8 + (bins - 1)) // (2 * (bins - 1))


def rfm_segment(r: int, f: int, m: int, *, bins: int = 5) -> str:
    """The segment of a customer from its scores; rules on the 1-5 scale, first match wins.

    ====================  ====================================
    champions             r >= 4, f >= 4, m >= 4
    loyal                 r >= 3, f >= 4
    cant_lose             r <= 2, f >= 4, m >= 4
    at_risk               r <= 2, f >= 3
    new                   r = 5, f = 1
    promising             r = 4, f = 1
    potential_loyalists   r >= 4, f = 2 or 3
    need_attention        r = 3, f = 3
    about_to_sleep        r = 3, f <= 2
    hibernating           r <= 2, f = 2; or r = 2, f = 1
    lost                  r = 1, f = 1
    ====================  ====================================

    With another number of bins, each score is first mapped linearly onto 1..5.
    """
    bins = _check_bins(bins)
    for name, value in (("r", r), ("f", f), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bins:
            raise ValidationError(name, f"must be a score from 1 to {bins}", value)
    r, f, m = _level(r, bins), _level(f, bins), _level(m, bins)
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r >= 3 and f >= 4:
        return "loyal"
    if r <= 2 and f >= 4 and m >= 4:
        return "cant_lose"
    if r <= 2 and f >= 3:
        return "at_risk"
    if f == 1 and r >= 4:
        return "new" if r == 5 else "promising"
    if r >= 4:
        return "potential_loyalists"
    if r == 3:
        return "need_attention" if f == 3 else "about_to_sleep"
    if f == 2 or r == 2:
        return "hibernating"
    return "lost"


def _check_bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
        raise ValidationError("bins", "must be an integer from 2 to 100", bins)
    return bins


def _scores(values: Sequence[float | int | Decimal], bins: int) -> list[int]:
    """Quantile bin of each value, higher values scoring higher; ties share the bin of their first rank."""
    ordered = sorted(values)
    n = len(ordered)
    return [1 + (bins * bisect.bisect_left(ordered, v)) // n for v in values]


def rfm_scores(
    purchases: Iterable[PurchaseSummary],
    *,
    as_of: dt.datetime,
    bins: int = 5,
    currency: str | None = None,
    rates: Rates | None = None,
) -> RFMTable:
    """Score every customer in ``purchases`` (e.g. ``crm.purchase_summaries()`` or ``summarize(...)``).

    Recency and frequency count purchases in every currency; monetary is in ``currency``
    (amounts in another currency count when ``rates`` converts them), and only customers
    with a purchase whose amount counts are scored. With ``currency=None`` the purchases
    must be in one currency. The summaries must be grouped by customer, as stores return
    them. A summary whose last purchase is after ``as_of`` is an error.
    """
    return _rfm_scores(purchases, as_of=as_of, bins=bins, currency=currency, rates=rates)


def _rfm_scores(
    purchases: Iterable[PurchaseSummary],
    *,
    as_of: dt.datetime,
    bins: int,
    currency: str | None,
    rates: Rates | None,
    days: Mapping[uuid.UUID, int] | None = None,
) -> RFMTable:
    as_of = utc(as_of, "as_of")
    bins = _check_bins(bins)
    currency = check_currency(currency)
    checked_rates = check_rates(rates)
    if isinstance(purchases, (str, bytes)) or not isinstance(purchases, Iterable):
        raise ValidationError("purchases", "must be an iterable of crmkit.PurchaseSummary", purchases)
    parts: list[PurchaseSummary] = []
    for row, p in enumerate(purchases):
        if not isinstance(p, PurchaseSummary):
            raise ValidationError("purchases", "must hold crmkit.PurchaseSummary objects", p).at_row(row)
        if p.last_purchase_at > as_of:
            err = ValidationError("as_of", f"is before the last purchase of customer {p.customer_id}", as_of)
            raise err.at_row(row)
        parts.append(p)
    target = target_currency([p.currency for p in parts], currency, money=True)
    merged = merge_purchases(parts, currency=target, rate=rate_for(target, checked_rates), days=days)
    kept = [p for p in merged if p.purchases > 0]
    kept.sort(key=lambda p: p.customer_id)
    recency = [(as_of - p.last_purchase_at).total_seconds() / 86400 for p in kept]
    frequency = [p.purchase_days for p in kept]
    monetary = [p.total - p.refunds for p in kept]
    r_scores = _scores([-v for v in recency], bins)
    f_scores = _scores(frequency, bins)
    m_scores = _scores(monetary, bins)
    columns = zip(kept, recency, frequency, monetary, r_scores, f_scores, m_scores, strict=True)
    rows = tuple(
        RFMScore(p.customer_id, rec, freq, mon, r, f, m, rfm_segment(r, f, m, bins=bins))
        for p, rec, freq, mon, r, f, m in columns
    )
    return RFMTable(rows, bins, as_of)

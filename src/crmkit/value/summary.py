"""The per-customer repeat-purchase summary (frequency, recency, T, monetary value) the models start from.

For each customer with a purchase up to the end of the (calibration) period:

* ``frequency``: the number of repeat purchase periods, i.e. distinct purchase periods
  minus one (purchases in the same period are merged into one);
* ``recency``: time from the first to the last purchase period;
* ``T``: the customer's age, time from the first purchase period to the end of observation;
* ``monetary_value``: mean spend per repeat period (period totals of every period but the
  first), 0 when ``frequency`` is 0.

With unit ``"day"`` and ``"week"`` purchases are merged per UTC day and times are counted
in days, divided by 7 for weeks (the convention of Fader, Hardie and Lee's CDNOW analyses).
With ``"month"`` purchases are merged per calendar month and times are whole months.
Refunds are not purchases and are left out.

Several currencies (see ``crmkit.value.currencies``): timing (frequency, recency, T) counts
every purchase whatever its currency; spend is in ``currency``, amounts in other
currencies counting only when ``rates`` convert them. A customer is in the summary when
it has a purchase whose amount counts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import overload

import attrs

from crmkit._errors import NotFound, ValidationError
from crmkit.summaries import PurchaseSummary
from crmkit.transactions import Transaction
from crmkit.value.currencies import (
    Rates,
    check_currency,
    check_rates,
    merge_purchases,
    rate_for,
    target_currency,
)
from crmkit.value.periods import SUMMARY_UNITS, SummaryUnit, boundary, check_unit, day_of

__all__ = ["CustomerSummary", "Summary", "customer_summary", "summary_from_purchases"]

_ZERO = Decimal(0)


@attrs.frozen
class CustomerSummary:
    """One customer's repeat-purchase facts, in the summary's time unit (holdout fields None without a split)."""

    customer_id: uuid.UUID
    frequency: int
    recency: float
    T: float
    monetary_value: Decimal
    frequency_holdout: int | None = None
    monetary_value_holdout: Decimal | None = None


@attrs.frozen
class Summary(Sequence[CustomerSummary]):
    """Per-customer summaries (sorted by customer id) with column accessors for the models.

    ``BetaGeo().fit(s.frequency, s.recency, s.T)`` works as is: every column is a tuple in
    row order. ``calibration_end`` is None when there is no holdout split; otherwise the
    model columns describe the calibration period and the ``*_holdout`` columns the time
    from ``calibration_end`` (exclusive) to ``observation_end`` (inclusive).
    """

    rows: tuple[CustomerSummary, ...]
    unit: str
    observation_end: dt.date
    calibration_end: dt.date | None = None
    currency: str | None = None

    @overload
    def __getitem__(self, index: int) -> CustomerSummary: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CustomerSummary]: ...

    def __getitem__(self, index: int | slice) -> CustomerSummary | Sequence[CustomerSummary]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[CustomerSummary]:
        return iter(self.rows)

    @property
    def customer_ids(self) -> tuple[uuid.UUID, ...]:
        return tuple(r.customer_id for r in self.rows)

    @property
    def frequency(self) -> tuple[int, ...]:
        return tuple(r.frequency for r in self.rows)

    @property
    def recency(self) -> tuple[float, ...]:
        return tuple(r.recency for r in self.rows)

    @property
    def T(self) -> tuple[float, ...]:
        return tuple(r.T for r in self.rows)

    @property
    def monetary_value(self) -> tuple[Decimal, ...]:
        return tuple(r.monetary_value for r in self.rows)

    @property
    def frequency_holdout(self) -> tuple[int, ...]:
        self._require_holdout()
        return tuple(r.frequency_holdout or 0 for r in self.rows)

    @property
    def monetary_value_holdout(self) -> tuple[Decimal, ...]:
        self._require_holdout()
        return tuple(r.monetary_value_holdout or _ZERO for r in self.rows)

    @property
    def duration_holdout(self) -> float | None:
        """Length of the holdout period in the summary's unit (None without a split)."""
        if self.calibration_end is None:
            return None
        return _span(_key(self.calibration_end, self.unit), _key(self.observation_end, self.unit), self.unit)

    def _require_holdout(self) -> None:
        if self.calibration_end is None:
            raise ValidationError("calibration_end", "this summary has no holdout period", None)

    def get(self, customer_id: uuid.UUID) -> CustomerSummary:
        """The row of one customer; NotFound if the customer had no purchase in the period."""
        for row in self.rows:
            if row.customer_id == customer_id:
                return row
        raise NotFound("customer summary", customer_id)

    def rounded(self, places: int = 2) -> Summary:
        """A copy with times rounded and money quantized (half up) to ``places`` decimals, for reports."""
        if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 6:
            raise ValidationError("places", "must be an integer from 0 to 6", places)
        step = Decimal(1).scaleb(-places)

        def money(value: Decimal) -> Decimal:
            return value.quantize(step, ROUND_HALF_UP)

        rows = tuple(
            attrs.evolve(
                r,
                recency=round(r.recency, places),
                T=round(r.T, places),
                monetary_value=money(r.monetary_value),
                monetary_value_holdout=None if r.monetary_value_holdout is None else money(r.monetary_value_holdout),
            )
            for r in self.rows
        )
        return attrs.evolve(self, rows=rows)

    def repeaters(self) -> Summary:
        """Only customers with at least one repeat purchase (what Gamma-Gamma is fitted on)."""
        return attrs.evolve(self, rows=tuple(r for r in self.rows if r.frequency > 0))


def _key(day: dt.date, unit: str) -> int:
    """Purchase-period number: the day (for day and week summaries) or the calendar month."""
    return day.year * 12 + day.month - 1 if unit == "month" else day.toordinal()


def _span(start: int, end: int, unit: str) -> float:
    return (end - start) / 7 if unit == "week" else float(end - start)


def _row(
    customer_id: uuid.UUID,
    *,
    first: int,
    last: int,
    periods: int,
    total: Decimal,
    first_total: Decimal,
    end: int,
    unit: str,
    holdout: tuple[int, Decimal] | None,
) -> CustomerSummary:
    frequency = periods - 1
    monetary = (total - first_total) / frequency if frequency else _ZERO
    hold_n, hold_mean = None, None
    if holdout is not None:
        hold_n = holdout[0]
        hold_mean = holdout[1] / hold_n if hold_n else _ZERO
    return CustomerSummary(
        customer_id=customer_id,
        frequency=frequency,
        recency=_span(first, last, unit),
        T=_span(first, end, unit),
        monetary_value=monetary,
        frequency_holdout=hold_n,
        monetary_value_holdout=hold_mean,
    )


def _ends(
    unit: object, observation_end: object, calibration_end: object
) -> tuple[str, dt.date, dt.datetime, dt.date | None, dt.datetime | None]:
    unit = check_unit(unit, SUMMARY_UNITS)
    end_day, until = boundary(observation_end, "observation_end")
    if calibration_end is None:
        return unit, end_day, until, None, None
    cal_day, cal_until = boundary(calibration_end, "calibration_end")
    if cal_until >= until:
        raise ValidationError("calibration_end", f"must be before observation_end ({observation_end})", calibration_end)
    return unit, end_day, until, cal_day, cal_until


def customer_summary(
    transactions: Iterable[Transaction],
    *,
    unit: SummaryUnit,
    observation_end: dt.date | dt.datetime,
    calibration_end: dt.date | dt.datetime | None = None,
    currency: str | None = None,
    rates: Rates | None = None,
) -> Summary:
    """Summarise purchases per customer from any iterable of transactions (one pass).

    ``unit`` is ``"day"``, ``"week"`` or ``"month"`` and has no default. Period ends are
    inclusive: a date means the whole UTC day, a datetime that instant. Transactions after
    ``observation_end`` are ignored; with ``calibration_end`` the model columns cover
    purchases up to it and the holdout columns those after it, for customers already
    acquired by then. Timing counts purchases in every currency; spend is in ``currency``
    (amounts in another currency count when ``rates`` maps it to its rate into
    ``currency``). With ``currency=None`` the purchases must be in one currency. Memory
    grows with the number of (customer, purchase period) pairs, not of transactions.
    """
    return _customer_summary(
        transactions,
        unit=unit,
        observation_end=observation_end,
        calibration_end=calibration_end,
        currency=currency,
        rates=rates,
        money=True,
    )


def _customer_summary(
    transactions: Iterable[Transaction],
    *,
    unit: object,
    observation_end: object,
    calibration_end: object,
    currency: object,
    rates: object,
    money: bool,
) -> Summary:
    """``customer_summary``; with ``money=False`` only the timing columns are meaningful (no currency needed)."""
    _, end_day, until, cal_day, cal_until = _ends(unit, observation_end, calibration_end)
    unit = str(unit)
    wanted = check_currency(currency)
    rate = rate_for(wanted, check_rates(rates))
    if isinstance(transactions, (str, bytes)) or not isinstance(transactions, Iterable):
        raise ValidationError("transactions", "must be an iterable of crmkit.Transaction", transactions)
    model_until = until if cal_until is None else cal_until
    # per customer: purchase period -> spend counted in the target currency (None: no amount counted)
    calibration: dict[uuid.UUID, dict[int, Decimal | None]] = {}
    holdout: dict[uuid.UUID, dict[int, Decimal | None]] = {}
    found: set[str] = set()
    provisional: str | None = None  # without currency=, the first currency seen (others are an error)
    for row, t in enumerate(transactions):
        if not isinstance(t, Transaction):
            raise ValidationError("transactions", "must hold crmkit.Transaction objects", t).at_row(row)
        if t.kind != "purchase" or t.occurred_at > until:
            continue
        found.add(t.currency)
        if wanted is None:
            provisional = provisional or t.currency
            r = Decimal(1) if t.currency == provisional else None
        else:
            r = rate(t.currency)
        target = calibration if t.occurred_at <= model_until else holdout
        periods = target.setdefault(t.customer_id, {})
        key = _key(day_of(t.occurred_at), unit)
        spent = periods.get(key)
        if r is not None:
            spent = (_ZERO if spent is None else spent) + t.amount * r
        periods[key] = spent
    summary_currency = target_currency(found, wanted, money=money)
    end = _key(end_day if cal_day is None else cal_day, unit)
    rows = []
    for customer_id, periods in sorted(calibration.items()):
        if summary_currency is not None and all(v is None for v in periods.values()):
            continue  # no purchase whose amount counts in the currency
        first = min(periods)
        held = None
        if cal_day is not None:
            later = holdout.get(customer_id, {})
            held = (len(later), sum((v for v in later.values() if v is not None), _ZERO))
        rows.append(
            _row(
                customer_id,
                first=first,
                last=max(periods),
                periods=len(periods),
                total=sum((v for v in periods.values() if v is not None), _ZERO),
                first_total=periods[first] or _ZERO,
                end=end,
                unit=unit,
                holdout=held,
            )
        )
    return Summary(tuple(rows), unit, end_day, cal_day, summary_currency)


def summary_from_purchases(
    calibration: Iterable[PurchaseSummary],
    *,
    unit: SummaryUnit,
    observation_end: dt.date | dt.datetime,
    calibration_end: dt.date | dt.datetime | None = None,
    holdout: Iterable[PurchaseSummary] = (),
    currency: str | None = None,
    rates: Rates | None = None,
) -> Summary:
    """The day- or week-based summary from purchase summaries a store computed (no transaction rows).

    ``calibration`` holds the summaries up to ``calibration_end`` (or ``observation_end``
    without a split); ``holdout`` those after ``calibration_end`` up to ``observation_end``;
    both grouped by customer, as stores return them. Month summaries need distinct months,
    which purchase summaries do not carry: compute them with ``customer_summary`` from the
    transactions. Currencies as in ``customer_summary``; the distinct purchase days of a
    customer who bought in several currencies are merged as ``crmkit.value.currencies``
    describes.
    """
    return _summary_from_purchases(
        calibration,
        unit=unit,
        observation_end=observation_end,
        calibration_end=calibration_end,
        holdout=holdout,
        currency=currency,
        rates=rates,
        money=True,
    )


def _summary_from_purchases(
    calibration: Iterable[PurchaseSummary],
    *,
    unit: object,
    observation_end: object,
    calibration_end: object,
    holdout: Iterable[PurchaseSummary],
    currency: object,
    rates: object,
    money: bool,
    days: Mapping[uuid.UUID, int] | None = None,
    holdout_days: Mapping[uuid.UUID, int] | None = None,
) -> Summary:
    """``summary_from_purchases``; ``days`` and ``holdout_days`` are exact distinct-day counts where known."""
    _, end_day, _, cal_day, _ = _ends(unit, observation_end, calibration_end)
    if unit == "month":
        raise ValidationError("unit", "month summaries need the transactions: use customer_summary", unit)
    unit = str(unit)
    wanted = check_currency(currency)
    checked_rates = check_rates(rates)
    parts = list(_checked_purchases(calibration, "calibration"))
    held_parts = list(_checked_purchases(holdout, "holdout"))
    summary_currency = target_currency([p.currency for p in parts + held_parts], wanted, money=money)
    rate = rate_for(summary_currency, checked_rates)
    merged = list(merge_purchases(parts, currency=summary_currency, rate=rate, days=days))
    later = {
        p.customer_id: p for p in merge_purchases(held_parts, currency=summary_currency, rate=rate, days=holdout_days)
    }
    end = _key(end_day if cal_day is None else cal_day, unit)
    rows = []
    for p in sorted(merged, key=lambda p: p.customer_id):
        if summary_currency is not None and p.purchases == 0:
            continue  # no purchase whose amount counts in the currency
        held = None
        if cal_day is not None:
            h = later.get(p.customer_id)
            held = (0, _ZERO) if h is None else (h.purchase_days, h.total)
        rows.append(
            _row(
                p.customer_id,
                first=_key(day_of(p.first_purchase_at), unit),
                last=_key(day_of(p.last_purchase_at), unit),
                periods=p.purchase_days,
                total=p.total,
                first_total=p.first_day_total,
                end=end,
                unit=unit,
                holdout=held,
            )
        )
    return Summary(tuple(rows), unit, end_day, cal_day, summary_currency)


def _checked_purchases(items: Iterable[PurchaseSummary], field: str) -> Iterator[PurchaseSummary]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValidationError(field, "must be an iterable of crmkit.PurchaseSummary", items)
    for row, item in enumerate(items):
        if not isinstance(item, PurchaseSummary):
            raise ValidationError(field, "must hold crmkit.PurchaseSummary objects", item).at_row(row)
        yield item

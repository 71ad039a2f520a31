"""``crm.value``: the value calculations over a CRM's store, aggregating where the data is.

Summaries for day and week units, RFM and historic value come from the backend's
``crmkit_purchase_summaries`` hook (one aggregate query in SQL and MongoDB). Month
summaries, cohorts and profitability need per-period detail that purchase summaries do
not carry; they stream the records ordered by customer, a page at a time, and keep only
one customer's records (plus the per-cohort counters) in memory.

Several currencies (``crmkit.value.currencies``): timing counts every purchase; money is in
``currency=``, converted by the rates of the ``crmkit_exchange_rate`` hook. A customer who
bought in several currencies has its distinct purchase days counted from its purchases.

Next purchase (``baskets``, ``next_purchase``) reads only the customer, time and products
of purchases, through the backend's ``crmkit_baskets`` hook, and fits
``crmkit.value.recommend.NextPurchase`` (the ``models`` extra) on them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from crmkit._errors import BackendError, ValidationError
from crmkit._validation import utc
from crmkit.interactions import Interaction
from crmkit.query import And, Compare, Expr, In
from crmkit.transactions import LineItem, Transaction
from crmkit.value.cohorts import CohortCounter, CohortTable
from crmkit.value.currencies import valid_rate
from crmkit.value.historic import HistoricValue, ValueMetrics, historic_values, value_metrics
from crmkit.value.periods import (
    PERIOD_UNITS,
    SUMMARY_UNITS,
    PeriodUnit,
    SummaryUnit,
    boundary,
    check_unit,
    day_of,
    period_index,
)
from crmkit.value.profitability import AcquisitionCost, CostToServe, Ledger, Profitability, ProfitBook
from crmkit.value.rfm import RFMTable, _rfm_scores
from crmkit.value.rules import AliveModel, probability_alive
from crmkit.value.summary import Summary, _customer_summary, _summary_from_purchases

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.value.recommend import NextPurchase

__all__ = ["CRMValue"]

_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_BY_CUSTOMER = ("customer_id", "occurred_at")


class CRMValue:
    """Customer-value calculations over one CRM tenant (``crm.value``)."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def __repr__(self) -> str:
        return f"<CRMValue of {self._crm!r}>"

    # ------------------------------------------------------------------ summaries
    def summary(
        self,
        *,
        unit: SummaryUnit,
        observation_end: dt.date | dt.datetime,
        calibration_end: dt.date | dt.datetime | None = None,
        customer_ids: Sequence[uuid.UUID] | None = None,
        currency: str | None = None,
    ) -> Summary:
        """The repeat-purchase summary (see ``crmkit.value.customer_summary``), aggregated by the store.

        Day and week summaries are derived from ``crm.purchase_summaries`` (distinct purchase
        days, first-day spend); month summaries stream the purchases, because purchase
        summaries do not count distinct months. Timing counts purchases in every currency;
        spend is in ``currency``, other currencies converted by the ``crmkit_exchange_rate``
        hook (left out without a rate). Without ``currency`` the purchases must be in one.
        """
        return self._summary(unit, observation_end, calibration_end, customer_ids, currency, money=True)

    def _summary(
        self,
        unit: object,
        observation_end: dt.date | dt.datetime,
        calibration_end: dt.date | dt.datetime | None,
        customer_ids: Sequence[uuid.UUID] | None,
        currency: str | None,
        *,
        money: bool,
    ) -> Summary:
        check_unit(unit, SUMMARY_UNITS)
        _, until = boundary(observation_end, "observation_end")
        cal_until = None if calibration_end is None else boundary(calibration_end, "calibration_end")[1]
        ids = _ids(customer_ids)
        rates = None if currency is None else self._rates(currency, until)
        if ids is not None and not ids:
            end_day = boundary(observation_end, "observation_end")[0]
            cal_day = None if calibration_end is None else boundary(calibration_end, "calibration_end")[0]
            return Summary((), str(unit), end_day, cal_day, currency)
        if unit == "month":
            return _customer_summary(
                self._purchases(ids, until),
                unit=unit,
                observation_end=observation_end,
                calibration_end=calibration_end,
                currency=currency,
                rates=rates,
                money=money,
            )
        crm = self._crm
        model_until = until if cal_until is None else cal_until
        calibration = crm.purchase_summaries(ids, until=model_until)
        holdout = []
        if cal_until is not None:
            holdout = crm.purchase_summaries(ids, since=cal_until + _ONE_MICROSECOND, until=until)
        return _summary_from_purchases(
            calibration,
            unit=unit,
            observation_end=observation_end,
            calibration_end=calibration_end,
            holdout=holdout,
            currency=currency,
            rates=rates,
            money=money,
            days=self._exact_days(calibration, None, model_until),
            holdout_days=None if cal_until is None else self._exact_days(holdout, cal_until + _ONE_MICROSECOND, until),
        )

    def rfm(self, *, as_of: dt.datetime | None = None, bins: int = 5, currency: str | None = None) -> RFMTable:
        """RFM scores and segments of every customer with a purchase up to ``as_of`` (default: now).

        Recency and frequency count purchases in every currency; monetary is in ``currency``
        (other currencies converted by the ``crmkit_exchange_rate`` hook, left out without a rate).
        """
        moment = self._crm.now() if as_of is None else utc(as_of, "as_of")
        purchases = self._crm.purchase_summaries(until=moment)
        rates = None if currency is None else self._rates(currency, moment)
        days = self._exact_days(purchases, None, moment)
        return _rfm_scores(purchases, as_of=moment, bins=bins, currency=currency, rates=rates, days=days)

    def historic(
        self,
        *,
        margin: Decimal = Decimal(1),
        currency: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[HistoricValue]:
        """Each customer's historic value (revenue, AOV, historic CLV) in the time window, money in ``currency``."""
        purchases = self._crm.purchase_summaries(since=since, until=until)
        rates = None if currency is None else self._rates(currency, until)
        return list(historic_values(purchases, margin=margin, currency=currency, rates=rates))

    def metrics(
        self,
        *,
        margin: Decimal = Decimal(1),
        currency: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> ValueMetrics:
        """Average order value, purchase frequency and mean historic CLV in the time window, in ``currency``."""
        purchases = self._crm.purchase_summaries(since=since, until=until)
        rates = None if currency is None else self._rates(currency, until)
        return value_metrics(purchases, margin=margin, currency=currency, rates=rates)

    def probability_alive(
        self,
        model: AliveModel,
        *,
        unit: SummaryUnit,
        as_of: dt.date | dt.datetime | None = None,
        customer_ids: Sequence[uuid.UUID] | None = None,
    ) -> dict[uuid.UUID, float]:
        """P(alive) of every customer with a purchase up to ``as_of`` (default: now), from a fitted model.

        Only timing matters here, so purchases in every currency count and no ``currency``
        is needed.
        """
        end = self._crm.now() if as_of is None else as_of
        summary = self._summary(unit, end, None, customer_ids, None, money=False)
        return probability_alive(model, summary)

    # ------------------------------------------------------------------ cohorts and profit
    def cohorts(self, *, unit: PeriodUnit, observation_end: dt.date | dt.datetime | None = None) -> CohortTable:
        """The cohort retention table (see ``crmkit.value.cohort_retention``), one customer at a time."""
        check_unit(unit, PERIOD_UNITS)
        end_day, until = (None, None) if observation_end is None else boundary(observation_end, "observation_end")
        counter = CohortCounter(unit, None if end_day is None else period_index(end_day, unit))
        for _, group in itertools.groupby(self._purchases(None, until), key=lambda t: t.customer_id):
            counter.add({period_index(day_of(t.occurred_at), unit) for t in group})
        return counter.table(end_day)

    def profitability(
        self,
        *,
        unit: PeriodUnit,
        margin: Decimal | None = None,
        line_cost: Callable[[LineItem], Decimal] | None = None,
        cost_to_serve: CostToServe = 0,
        acquisition_cost: AcquisitionCost = 0,
        currency: str | None = None,
        observation_end: dt.date | dt.datetime | None = None,
    ) -> Profitability:
        """Profit, payback and cohorts (see ``crmkit.value.profitability``) from the stored records.

        Transactions and interactions are streamed in customer order and merged, so only one
        customer's records are held at a time. The observation ends now unless given.
        """
        end_at = self._crm.now() if observation_end is None else observation_end
        book = ProfitBook(
            unit=unit,
            margin=margin,
            line_cost=line_cost,
            cost_to_serve=cost_to_serve,
            acquisition_cost=acquisition_cost,
            currency=currency,
            observation_end=end_at,
            rates=None if currency is None else self._rates(currency, boundary(end_at, "observation_end")[1]),
        )
        end = book.end()
        crm = self._crm
        where = None if book.until is None else Compare("occurred_at", "<=", book.until)
        sales = crm.transactions.stream(where, order_by=_BY_CUSTOMER)
        contacts = crm.interactions.stream(where, order_by=_BY_CUSTOMER)
        row_t = row_i = 0
        for customer_id, records in _merge_by_customer(sales, contacts):
            ledger = Ledger()
            booked = False
            for record in records:
                if isinstance(record, Transaction):
                    booked = book.add_transaction(ledger, record, row_t) or booked
                    row_t += 1
                else:
                    booked = book.add_interaction(ledger, record, row_i) or booked
                    row_i += 1
            if booked:
                book.close(customer_id, ledger, end)
        return book.result()

    # ------------------------------------------------------------------ next purchase
    def baskets(
        self, *, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> Iterator[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]]:
        """``(customer_id, occurred_at, products)`` of every purchase with line items in the window.

        Read by the backend's ``crmkit_baskets`` hook (only these fields leave the
        database), else streamed from the transactions. Grouped by customer id; what
        ``crmkit.value.recommend.NextPurchase.fit`` takes.
        """
        since = None if since is None else utc(since, "since")
        until = None if until is None else utc(until, "until")
        crm = self._crm
        found = crm._host.pm.hook.crmkit_baskets(store=crm.store, tenant=crm.tenant, since=since, until=until)
        if found is None:
            return self._streamed_baskets(since, until)
        return iter(found)

    def next_purchase(
        self,
        k: int = 10,
        *,
        customer_ids: Sequence[uuid.UUID] | None = None,
        new_only: bool = False,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        model: NextPurchase | None = None,
    ) -> dict[uuid.UUID, list[tuple[str, float]]]:
        """``{customer_id: [(product, score), ...]}``: the ``k`` products each customer will most likely buy next.

        Fits ``model`` (default ``NextPurchase()``, needs the ``models`` extra) on
        ``baskets(since=..., until=...)`` and ranks for ``customer_ids`` (default: every
        customer with a basket; one without gets the most popular products). ``new_only``
        ranks only products the customer has not bought. See docs/value.md.
        """
        from crmkit.value.recommend import NextPurchase

        ids = _ids(customer_ids)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValidationError("k", "must be a whole number >= 1", k)
        if not isinstance(new_only, bool):
            raise ValidationError("new_only", "must be True or False", new_only)
        if model is None:
            model = NextPurchase()
        elif not isinstance(model, NextPurchase):
            raise ValidationError("model", "must be a crmkit.value.recommend.NextPurchase", model)
        stream = self.baskets(since=since, until=until)
        first = next(stream, None)
        if first is None:  # nothing bought with line items: nothing to rank
            return {} if ids is None else {cid: [] for cid in ids}
        model.fit(itertools.chain((first,), stream))
        return model.recommend_many(ids, k, new_only=new_only)  # type: ignore[return-value]

    def _streamed_baskets(
        self, since: dt.datetime | None, until: dt.datetime | None
    ) -> Iterator[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]]:
        parts: list[Expr] = [Compare("kind", "==", "purchase")]
        if since is not None:
            parts.append(Compare("occurred_at", ">=", since))
        if until is not None:
            parts.append(Compare("occurred_at", "<=", until))
        for t in self._crm.transactions.stream(And(tuple(parts)), order_by=_BY_CUSTOMER):
            if t.line_items:
                yield t.customer_id, t.occurred_at, tuple(line.product for line in t.line_items)

    # ------------------------------------------------------------------ helpers
    def _rates(self, currency: str, at: dt.datetime | None) -> Mapping[str, Decimal]:
        """Rates into ``currency`` from the ``crmkit_exchange_rate`` hook, asked once per currency met."""
        if not isinstance(currency, str):
            raise ValidationError("currency", "must be an ISO 4217 code or None", currency)
        return _HookRates(self._crm, currency, self._crm.now() if at is None else utc(at, "until"))

    def _exact_days(
        self, purchases: Sequence[Any], since: dt.datetime | None, until: dt.datetime | None
    ) -> dict[uuid.UUID, int]:
        """Distinct purchase days (any currency) of the customers with summaries in several currencies."""
        counts: dict[uuid.UUID, int] = {}
        for p in purchases:
            counts[p.customer_id] = counts.get(p.customer_id, 0) + 1
        mixed = [cid for cid, n in counts.items() if n > 1]
        if not mixed:
            return {}
        days: dict[uuid.UUID, set[dt.date]] = {cid: set() for cid in mixed}
        for start in range(0, len(mixed), 1000):
            parts: list[Expr] = [
                Compare("kind", "==", "purchase"),
                In("customer_id", tuple(mixed[start : start + 1000])),
            ]
            if since is not None:
                parts.append(Compare("occurred_at", ">=", since))
            if until is not None:
                parts.append(Compare("occurred_at", "<=", until))
            for t in self._crm.transactions.stream(And(tuple(parts)), order_by=_BY_CUSTOMER):
                days[t.customer_id].add(day_of(t.occurred_at))
        return {cid: len(d) for cid, d in days.items() if d}

    def _purchases(self, ids: list[uuid.UUID] | None, until: dt.datetime | None) -> Iterator[Transaction]:
        """Purchases up to ``until``, in customer order, page by page."""
        parts: list[Expr] = [Compare("kind", "==", "purchase")]
        if until is not None:
            parts.append(Compare("occurred_at", "<=", until))
        if ids is not None:
            parts.append(In("customer_id", tuple(ids)))
        return self._crm.transactions.stream(And(tuple(parts)), order_by=_BY_CUSTOMER)


class _HookRates(Mapping[str, Decimal]):
    """Exchange rates into one currency, asked of the ``crmkit_exchange_rate`` hook on first use."""

    def __init__(self, crm: CRM, target: str, at: dt.datetime) -> None:
        self._crm = crm
        self._target = target
        self._at = at
        self._known: dict[str, Decimal | None] = {}

    def _lookup(self, source: str) -> Decimal | None:
        if source not in self._known:
            hook = self._crm._host.pm.hook.crmkit_exchange_rate
            value = hook(from_currency=source, to_currency=self._target, at=self._at)
            self._known[source] = (
                None if value is None else valid_rate(value, source, self._target, "crmkit_exchange_rate")
            )
        return self._known[source]

    def __getitem__(self, source: str) -> Decimal:
        value = self._lookup(source)
        if value is None:
            raise KeyError(source)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._known.items() if v is not None])

    def __len__(self) -> int:
        return sum(v is not None for v in self._known.values())


def _ids(customer_ids: Sequence[uuid.UUID] | None) -> list[uuid.UUID] | None:
    if customer_ids is None:
        return None
    if isinstance(customer_ids, (str, bytes)) or not isinstance(customer_ids, Sequence):
        raise ValidationError("customer_ids", "must be a sequence of customer ids or None", customer_ids)
    for row, cid in enumerate(customer_ids):
        if not isinstance(cid, uuid.UUID):
            raise ValidationError("customer_ids", "must hold uuid.UUID values", cid).at_row(row)
    return list(customer_ids)


def _merge_by_customer(
    sales: Iterator[Transaction], contacts: Iterator[Interaction]
) -> Iterator[tuple[uuid.UUID, list[Any]]]:
    """Pair up two streams sorted by customer id: each customer's transactions, then its interactions."""
    left = itertools.groupby(_ascending(sales), key=lambda t: t.customer_id)
    right = itertools.groupby(_ascending(contacts), key=lambda i: i.customer_id)
    a = next(left, None)
    b = next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            yield a[0], list(a[1])
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            yield b[0], list(b[1])
            b = next(right, None)
        else:
            yield a[0], [*a[1], *b[1]]
            a, b = next(left, None), next(right, None)


def _ascending(records: Iterator[Any]) -> Iterator[Any]:
    """Pass records through, failing loudly if the store did not return them in customer-id order."""
    last: uuid.UUID | None = None
    for record in records:
        if last is not None and record.customer_id < last:
            raise BackendError(f"the store returned customer {record.customer_id} after {last}, out of id order")
        last = record.customer_id
        yield record

"""``crm.value``: the value calculations over a CRM's store, aggregating where the data is.

Summaries for day and week units, RFM and historic value come from the backend's
``crmkit_purchase_summaries`` hook (one aggregate query in SQL and MongoDB). Month
summaries, cohorts and profitability need per-period detail that purchase summaries do
not carry; they stream the records ordered by customer, a page at a time, and keep only
one customer's records (plus the per-cohort counters) in memory.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from crmkit._errors import BackendError, ValidationError
from crmkit._validation import utc
from crmkit.interactions import Interaction
from crmkit.query import And, Compare, Expr, In
from crmkit.transactions import LineItem, Transaction
from crmkit.value.cohorts import CohortCounter, CohortTable
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
from crmkit.value.rfm import RFMTable, rfm_scores
from crmkit.value.rules import AliveModel, probability_alive
from crmkit.value.summary import Summary, customer_summary, summary_from_purchases

if TYPE_CHECKING:
    from crmkit.crm import CRM

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
        summaries do not count distinct months.
        """
        check_unit(unit, SUMMARY_UNITS)
        _, until = boundary(observation_end, "observation_end")
        cal_until = None if calibration_end is None else boundary(calibration_end, "calibration_end")[1]
        ids = _ids(customer_ids)
        if ids is not None and not ids:
            end_day = boundary(observation_end, "observation_end")[0]
            cal_day = None if calibration_end is None else boundary(calibration_end, "calibration_end")[0]
            return Summary((), unit, end_day, cal_day, currency)
        if unit == "month":
            return customer_summary(
                self._purchases(ids, until),
                unit=unit,
                observation_end=observation_end,
                calibration_end=calibration_end,
                currency=currency,
            )
        crm = self._crm
        calibration = crm.purchase_summaries(ids, until=until if cal_until is None else cal_until)
        holdout = []
        if cal_until is not None:
            holdout = crm.purchase_summaries(ids, since=cal_until + _ONE_MICROSECOND, until=until)
        return summary_from_purchases(
            calibration,
            unit=unit,
            observation_end=observation_end,
            calibration_end=calibration_end,
            holdout=holdout,
            currency=currency,
        )

    def rfm(self, *, as_of: dt.datetime | None = None, bins: int = 5, currency: str | None = None) -> RFMTable:
        """RFM scores and segments of every customer with a purchase up to ``as_of`` (default: now)."""
        moment = self._crm.now() if as_of is None else utc(as_of, "as_of")
        return rfm_scores(self._crm.purchase_summaries(until=moment), as_of=moment, bins=bins, currency=currency)

    def historic(
        self,
        *,
        margin: Decimal = Decimal(1),
        currency: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[HistoricValue]:
        """Each customer's historic value (revenue, AOV, historic CLV) in the time window."""
        purchases = self._crm.purchase_summaries(since=since, until=until)
        return list(historic_values(purchases, margin=margin, currency=currency))

    def metrics(
        self,
        *,
        margin: Decimal = Decimal(1),
        currency: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> ValueMetrics:
        """Average order value, purchase frequency and mean historic CLV in the time window."""
        return value_metrics(self._crm.purchase_summaries(since=since, until=until), margin=margin, currency=currency)

    def probability_alive(
        self, model: AliveModel, *, unit: SummaryUnit, as_of: dt.date | dt.datetime | None = None
    ) -> dict[uuid.UUID, float]:
        """P(alive) of every customer with a purchase up to ``as_of`` (default: now), from a fitted model."""
        summary = self.summary(unit=unit, observation_end=self._crm.now() if as_of is None else as_of)
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
        book = ProfitBook(
            unit=unit,
            margin=margin,
            line_cost=line_cost,
            cost_to_serve=cost_to_serve,
            acquisition_cost=acquisition_cost,
            currency=currency,
            observation_end=self._crm.now() if observation_end is None else observation_end,
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

    # ------------------------------------------------------------------ helpers
    def _purchases(self, ids: list[uuid.UUID] | None, until: dt.datetime | None) -> Iterator[Transaction]:
        """Purchases up to ``until``, in customer order, page by page."""
        parts: list[Expr] = [Compare("kind", "==", "purchase")]
        if until is not None:
            parts.append(Compare("occurred_at", "<=", until))
        if ids is not None:
            parts.append(In("customer_id", tuple(ids)))
        return self._crm.transactions.stream(And(tuple(parts)), order_by=_BY_CUSTOMER)


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

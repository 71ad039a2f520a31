"""Per-customer purchase summaries as one aggregate query (the ``crmkit_purchase_summaries`` push-down).

The same answer as ``crmkit.summaries.summarize``, computed by the database in a single
statement: a window function finds each (customer, currency)'s first purchase day, then
one GROUP BY counts, sums and takes minima and maxima, with ``COUNT(DISTINCT day)`` for
purchase days. Only the summaries travel back to Python.

Money sums stay exact: PostgreSQL sums ``numeric``; SQLite, whose sums are integers or
floats, sums the integer and the micro part of the stored money key separately, and
crmkit combines them into a Decimal with the scale a Decimal sum would have.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crmkit.entities import TRANSACTIONS
from crmkit.query import In
from crmkit.summaries import PurchaseSummary
from crmkit_sqlalchemy._encoding import money_of
from crmkit_sqlalchemy._types import datetime_of

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlStore

__all__ = ["purchase_summaries", "summary_statement"]

_MICROS_PER_DAY = 86_400_000_000
_YEAR_ONE = 62_135_596_800_000_000  # microseconds from 0001-01-01 to 1970-01-01: day numbers never negative


def _day(store: SqlStore, occurred_at: ColumnElement[Any]) -> ColumnElement[Any]:
    """The UTC calendar day of a stored instant (a date on PostgreSQL, a day number on SQLite)."""
    if store.dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", occurred_at), sa.Date())
    micros = sa.type_coerce(occurred_at, sa.BigInteger())
    return (micros + _YEAR_ONE).self_group().op("/")(sa.literal(_MICROS_PER_DAY, sa.BigInteger()))


class _MoneySum:
    """Aggregate columns for an exact sum of money, and how to read the result back."""

    def __init__(self, store: SqlStore, amount: ColumnElement[Any]) -> None:
        self.pg = store.dialect == "postgresql"
        self.amount = amount

    def columns(self, condition: ColumnElement[bool]) -> list[ColumnElement[Any]]:
        if self.pg:
            return [sa.func.sum(sa.case((condition, self.amount)))]
        text = sa.type_coerce(self.amount, sa.Text())

        def part(start: int, length: int) -> ColumnElement[Any]:
            return sa.case((condition, sa.func.substr(text, start, length)))

        # money text: sign letter, 15 integer digits, point, 6 decimals, "s", places (amounts are >= 0)
        return [
            sa.func.sum(sa.cast(part(2, 15), sa.BigInteger())),
            sa.func.sum(sa.cast(part(18, 6), sa.BigInteger())),
            sa.func.max(part(25, 1)),  # a Decimal sum has as many places as its longest term
        ]

    @property
    def width(self) -> int:
        return 1 if self.pg else 3

    def read(self, values: Sequence[Any]) -> Decimal:
        if self.pg:
            return _ZERO if values[0] is None else values[0]
        units, micros, places = values
        if units is None:
            return _ZERO
        return money_of(units * 1_000_000 + micros, int(places))


_ZERO = Decimal(0)


def _uuid_of_hex(text: str) -> uuid.UUID:
    return uuid.UUID(int=int(text, 16))  # the stored form is bare hex: skip UUID's text clean-up


def _same(value: Any) -> Any:
    return value


def summary_statement(
    store: SqlStore,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> tuple[sa.Select[Any], Callable[[Any], PurchaseSummary]]:
    """The aggregate query and the function turning each of its rows into a PurchaseSummary."""
    repo = store.repository(TRANSACTIONS)
    t = repo.table
    conditions: list[ColumnElement[bool]] = [t.c.tenant == tenant]
    if customer_ids is not None:
        conditions.append(repo.compiler.expr(In("customer_id", tuple(customer_ids))))
    if since is not None:
        conditions.append(t.c.occurred_at >= since)
    if until is not None:
        conditions.append(t.c.occurred_at <= until)
    day = _day(store, t.c.occurred_at)
    bought = t.c.kind == "purchase"
    rows = (
        sa.select(
            t.c.customer_id,
            t.c.currency,
            t.c.kind,
            t.c.occurred_at,
            t.c.amount,
            day.label("day"),
            sa.func.min(sa.case((bought, day)))
            .over(partition_by=(t.c.customer_id, t.c.currency))
            .label("first_day"),
        )
        .where(*conditions)
        .subquery("rows")
    )
    purchase = rows.c.kind == "purchase"
    refund = rows.c.kind == "refund"
    total = _MoneySum(store, rows.c.amount)
    first_day_total = _MoneySum(store, rows.c.amount)
    refunds = _MoneySum(store, rows.c.amount)
    purchases = sa.func.count(sa.case((purchase, 1)))
    first_at: ColumnElement[Any] = sa.func.min(sa.case((purchase, rows.c.occurred_at)))
    last_at: ColumnElement[Any] = sa.func.max(sa.case((purchase, rows.c.occurred_at)))
    customer: ColumnElement[Any] = rows.c.customer_id
    if store.dialect == "sqlite":
        # 100,000s of summaries: convert hex ids and microseconds here rather than per value in SQLAlchemy
        customer = sa.type_coerce(customer, sa.Text())
        first_at, last_at = sa.type_coerce(first_at, sa.BigInteger()), sa.type_coerce(last_at, sa.BigInteger())
        as_id: Callable[[Any], Any] = _uuid_of_hex
        as_time: Callable[[Any], Any] = datetime_of
    else:
        as_id = as_time = _same
    statement = (
        sa.select(
            customer,
            rows.c.currency,
            purchases,
            first_at,
            last_at,
            sa.func.count(sa.distinct(sa.case((purchase, rows.c.day)))),
            *total.columns(purchase),
            *first_day_total.columns(sa.and_(purchase, rows.c.day == rows.c.first_day)),
            *refunds.columns(refund),
        )
        .group_by(rows.c.customer_id, rows.c.currency)
        .having(purchases > 0)
        .order_by(rows.c.customer_id, rows.c.currency)
    )
    w = total.width
    read_total, read_first, read_refunds = total.read, first_day_total.read, refunds.read

    def summary(row: Sequence[Any]) -> PurchaseSummary:
        return PurchaseSummary(
            customer_id=as_id(row[0]),
            currency=row[1],
            purchases=row[2],
            first_purchase_at=as_time(row[3]),
            last_purchase_at=as_time(row[4]),
            purchase_days=row[5],
            total=read_total(row[6 : 6 + w]),
            first_day_total=read_first(row[6 + w : 6 + 2 * w]),
            refunds=read_refunds(row[6 + 2 * w : 6 + 3 * w]),
        )

    return statement, summary


def purchase_summaries(
    store: SqlStore,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> list[PurchaseSummary]:
    """Summaries for some customers (all when None) and a time window, from one query."""
    if customer_ids is not None and not customer_ids:
        return []
    statement, summary = summary_statement(store, tenant, customer_ids, since, until)
    with store.connection() as conn:
        return [summary(row) for row in conn.execute(statement)]

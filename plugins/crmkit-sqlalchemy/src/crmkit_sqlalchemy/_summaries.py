"""Per-customer purchase summaries as one aggregate query (the ``crmkit_purchase_summaries`` push-down).

The same answer as ``crmkit.summaries.summarize``, computed by the database in a single
statement: a window function finds each (customer, currency)'s first purchase day, then
one GROUP BY counts, sums and takes minima and maxima, with ``COUNT(DISTINCT day)`` for
purchase days. Only the summaries travel back to Python.

Money sums stay exact: PostgreSQL sums ``numeric``; SQLite, whose sums are integers or
floats, sums the integer and the micro part of the stored money key separately and
crmkit adds them up as Decimals (and restores the scale a Decimal sum would have).
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

    def __init__(self, store: SqlStore, amount: ColumnElement[Any], name: str) -> None:
        self.pg = store.dialect == "postgresql"
        self.name = name
        self.amount = amount

    def columns(self, condition: ColumnElement[bool]) -> list[ColumnElement[Any]]:
        if self.pg:
            return [sa.func.sum(sa.case((condition, self.amount))).label(self.name)]
        text = sa.type_coerce(self.amount, sa.Text())

        def part(start: int, length: int | None = None) -> ColumnElement[Any]:
            piece = sa.func.substr(text, start) if length is None else sa.func.substr(text, start, length)
            return sa.case((condition, sa.cast(piece, sa.BigInteger())))

        # money text: sign letter, 15 integer digits, point, 6 decimals, "e", exponent (amounts are >= 0)
        return [
            sa.func.sum(part(2, 15)).label(f"{self.name}_units"),
            sa.func.sum(part(18, 6)).label(f"{self.name}_micros"),
            sa.func.min(part(25)).label(f"{self.name}_exp"),
        ]

    def read(self, row: Any) -> Decimal:
        if self.pg:
            value = row[self.name]
            return Decimal(0) if value is None else Decimal(value)
        units = row[f"{self.name}_units"]
        if units is None:
            return Decimal(0)
        total = Decimal(units) + Decimal(row[f"{self.name}_micros"]).scaleb(-6)
        # a Decimal sum starting from Decimal(0) has the smallest exponent of its terms (and of 0)
        return total.quantize(Decimal(1).scaleb(min(0, int(row[f"{self.name}_exp"]))))


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
    total = _MoneySum(store, rows.c.amount, "total")
    first_day_total = _MoneySum(store, rows.c.amount, "first_day_total")
    refunds = _MoneySum(store, rows.c.amount, "refunds")
    purchases = sa.func.count(sa.case((purchase, 1)))
    statement = (
        sa.select(
            rows.c.customer_id,
            rows.c.currency,
            purchases.label("purchases"),
            sa.func.min(sa.case((purchase, rows.c.occurred_at))).label("first_at"),
            sa.func.max(sa.case((purchase, rows.c.occurred_at))).label("last_at"),
            sa.func.count(sa.distinct(sa.case((purchase, rows.c.day)))).label("days"),
            *total.columns(purchase),
            *first_day_total.columns(sa.and_(purchase, rows.c.day == rows.c.first_day)),
            *refunds.columns(refund),
        )
        .group_by(rows.c.customer_id, rows.c.currency)
        .having(purchases > 0)
        .order_by(rows.c.customer_id, rows.c.currency)
    )

    def summary(row: Any) -> PurchaseSummary:
        return PurchaseSummary(
            customer_id=row["customer_id"],
            currency=row["currency"],
            purchases=int(row["purchases"]),
            first_purchase_at=row["first_at"],
            last_purchase_at=row["last_at"],
            purchase_days=int(row["days"]),
            total=total.read(row),
            first_day_total=first_day_total.read(row),
            refunds=refunds.read(row),
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
        return [summary(row) for row in conn.execute(statement).mappings()]

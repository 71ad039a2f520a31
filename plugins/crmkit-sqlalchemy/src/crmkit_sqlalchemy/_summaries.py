"""Per-customer purchase summaries as one aggregate query (the ``crmkit_purchase_summaries`` push-down).

The same answer as ``crmkit.summaries.summarize``, computed by the database in a single
statement; only the summaries travel back to Python. One ``GROUP BY`` (customer,
currency) does the counts, sums, first and last times and ``COUNT(DISTINCT day)``; the
total of the first purchase day needs that day first, and each database gets the form
it runs fastest:

* PostgreSQL: a window function (``min(day) OVER (PARTITION BY customer, currency)``)
  marks each row's first day, then the one GROUP BY sums that day's purchases too.
* SQLite: the GROUP BY finds each group's first day, and a correlated subquery sums
  that day's purchases through the (tenant, customer_id, occurred_at) index, one short
  index range per group; SQLite's window functions would sort every row once more.

Money sums stay exact: PostgreSQL sums ``numeric``; SQLite, whose sums are integers or
floats, sums the integer and the micro part of the stored money key separately, and
crmkit combines them into a Decimal with the scale a Decimal sum would have.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from crmkit.entities import TRANSACTIONS
from crmkit.summaries import PurchaseSummary
from crmkit_sqlalchemy._encoding import money_of
from crmkit_sqlalchemy._types import datetime_of

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlStore

__all__ = ["purchase_summaries", "summary_statement"]

_MICROS_PER_DAY = 86_400_000_000
_YEAR_ONE = 62_135_596_800_000_000  # microseconds from 0001-01-01 to 1970-01-01: day numbers never negative
_ZERO = Decimal(0)

Converter = Callable[[Sequence[Any]], PurchaseSummary]


_cache: dict[tuple[str, bool, bool, bool], tuple[sa.Select[Any], Converter]] = {}


def summary_statement(
    store: SqlStore, *, some_customers: bool, since: bool, until: bool
) -> tuple[sa.Select[Any], Converter]:
    """The aggregate query (parameters ``p_tenant``, ``p_ids``, ``p_since``, ``p_until``) and the
    function turning each of its rows into a PurchaseSummary; built once per shape and dialect."""
    key = (store.dialect, some_customers, since, until)
    found = _cache.get(key)
    if found is not None:
        return found
    t = store.repository(TRANSACTIONS).table
    conditions: list[ColumnElement[bool]] = [t.c.tenant == sa.bindparam("p_tenant")]
    if some_customers:
        if store.dialect == "postgresql":
            conditions.append(t.c.customer_id == sa.any_(sa.bindparam("p_ids", type_=postgresql.ARRAY(sa.Uuid()))))
        else:  # one JSON array of hex ids, whatever their number
            each = sa.func.json_each(sa.bindparam("p_ids", type_=sa.Text())).table_valued("value")
            conditions.append(sa.type_coerce(t.c.customer_id, sa.Text()).in_(sa.select(each.c.value)))
    if since:
        conditions.append(t.c.occurred_at >= sa.bindparam("p_since"))
    if until:
        conditions.append(t.c.occurred_at <= sa.bindparam("p_until"))
    found = _postgresql(t, conditions) if store.dialect == "postgresql" else _sqlite(t, conditions, since, until)
    _cache[key] = found
    return found


# --------------------------------------------------------------------------- PostgreSQL


def _postgresql(t: sa.Table, conditions: list[ColumnElement[bool]]) -> tuple[sa.Select[Any], Converter]:
    day = sa.cast(sa.func.timezone("UTC", t.c.occurred_at), sa.Date())
    rows = (
        sa.select(
            t.c.customer_id,
            t.c.currency,
            t.c.kind,
            t.c.occurred_at,
            t.c.amount,
            day.label("day"),
            sa.func.min(sa.case((t.c.kind == "purchase", day)))
            .over(partition_by=(t.c.customer_id, t.c.currency))
            .label("first_day"),
        )
        .where(*conditions)
        .subquery("rows")
    )
    purchase = rows.c.kind == "purchase"
    purchases = sa.func.count(sa.case((purchase, 1)))
    statement = (
        sa.select(
            rows.c.customer_id,
            rows.c.currency,
            purchases,
            sa.func.min(sa.case((purchase, rows.c.occurred_at))),
            sa.func.max(sa.case((purchase, rows.c.occurred_at))),
            sa.func.count(sa.distinct(sa.case((purchase, rows.c.day)))),
            sa.func.sum(sa.case((purchase, rows.c.amount))),
            sa.func.sum(sa.case((sa.and_(purchase, rows.c.day == rows.c.first_day), rows.c.amount))),
            sa.func.sum(sa.case((rows.c.kind == "refund", rows.c.amount))),
        )
        .group_by(rows.c.customer_id, rows.c.currency)
        .having(purchases > 0)
        .order_by(rows.c.customer_id, rows.c.currency)
    )

    def summary(row: Sequence[Any]) -> PurchaseSummary:
        return PurchaseSummary(
            customer_id=row[0],
            currency=row[1],
            purchases=row[2],
            first_purchase_at=row[3],
            last_purchase_at=row[4],
            purchase_days=row[5],
            total=row[6],
            first_day_total=row[7],
            refunds=_ZERO if row[8] is None else row[8],
        )

    return statement, summary


# --------------------------------------------------------------------------- SQLite


def _sqlite(
    t: sa.Table, conditions: list[ColumnElement[bool]], since: bool, until: bool
) -> tuple[sa.Select[Any], Converter]:
    micros = sa.type_coerce(t.c.occurred_at, sa.BigInteger())
    day = (micros + _YEAR_ONE).self_group().op("/")(sa.literal(_MICROS_PER_DAY, sa.BigInteger()))
    amount = sa.type_coerce(t.c.amount, sa.Text())
    purchase = t.c.kind == "purchase"
    refund = t.c.kind == "refund"
    purchases = sa.func.count(sa.case((purchase, 1)))

    def money_parts(condition: ColumnElement[bool] | None, text: ColumnElement[Any]) -> list[ColumnElement[Any]]:
        # money text: sign letter, 15 integer digits, point, 6 decimals, "s", places (amounts are >= 0)
        def when(value: ColumnElement[Any]) -> ColumnElement[Any]:
            return value if condition is None else sa.case((condition, value))

        return [
            sa.func.sum(when(sa.cast(sa.func.substr(text, 2, 15), sa.BigInteger()))),
            sa.func.sum(when(sa.cast(sa.func.substr(text, 18, 6), sa.BigInteger()))),
            sa.func.max(when(sa.func.substr(text, 25, 1))),  # a sum has the places of its longest term
        ]

    groups = (
        sa.select(
            t.c.customer_id.label("customer_id"),
            t.c.currency.label("currency"),
            purchases.label("purchases"),
            sa.func.min(sa.case((purchase, micros))).label("first_at"),
            sa.func.max(sa.case((purchase, micros))).label("last_at"),
            sa.func.count(sa.distinct(sa.case((purchase, day)))).label("days"),
            sa.func.min(sa.case((purchase, day))).label("first_day"),
            *(c.label(f"total_{i}") for i, c in enumerate(money_parts(purchase, amount))),
            *(c.label(f"refunds_{i}") for i, c in enumerate(money_parts(refund, amount))),
        )
        .where(*conditions)
        .group_by(t.c.customer_id, t.c.currency)
        .having(purchases > 0)
        .subquery("groups")
    )
    # the purchases of each group's first day: one index range of that customer
    f = t.alias("first_day_rows")
    f_micros = sa.type_coerce(f.c.occurred_at, sa.BigInteger())
    start = groups.c.first_day * _MICROS_PER_DAY - _YEAR_ONE
    on_day = [
        f.c.tenant == sa.bindparam("p_tenant"),
        f.c.customer_id == groups.c.customer_id,
        f.c.currency == groups.c.currency,
        f.c.kind == "purchase",
        f_micros >= start,
        f_micros < start + _MICROS_PER_DAY,
    ]
    if since:
        on_day.append(f.c.occurred_at >= sa.bindparam("p_since"))
    if until:
        on_day.append(f.c.occurred_at <= sa.bindparam("p_until"))
    units, micro_part, places = money_parts(None, sa.type_coerce(f.c.amount, sa.Text()))
    first_day_total = (
        sa.select(sa.cast(units, sa.Text()) + ":" + sa.cast(micro_part, sa.Text()) + ":" + places)
        .where(*on_day)
        .scalar_subquery()
    )
    statement = sa.select(
        sa.type_coerce(groups.c.customer_id, sa.Text()),  # hex; converted below, faster than per value
        groups.c.currency,
        groups.c.purchases,
        groups.c.first_at,
        groups.c.last_at,
        groups.c.days,
        groups.c.total_0,
        groups.c.total_1,
        groups.c.total_2,
        first_day_total,
        groups.c.refunds_0,
        groups.c.refunds_1,
        groups.c.refunds_2,
    ).order_by(groups.c.customer_id, groups.c.currency)

    def money(units: int | None, micros: int, places: str) -> Decimal:
        return _ZERO if units is None else money_of(units * 1_000_000 + micros, int(places))

    def summary(row: Sequence[Any]) -> PurchaseSummary:
        u, m, p = row[9].split(":")
        return PurchaseSummary(
            customer_id=uuid.UUID(int=int(row[0], 16)),
            currency=row[1],
            purchases=row[2],
            first_purchase_at=datetime_of(row[3]),
            last_purchase_at=datetime_of(row[4]),
            purchase_days=row[5],
            total=money(row[6], row[7], row[8]),
            first_day_total=money_of(int(u) * 1_000_000 + int(m), int(p)),
            refunds=money(row[10], row[11], row[12]),
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
    statement, summary = summary_statement(
        store, some_customers=customer_ids is not None, since=since is not None, until=until is not None
    )
    params: dict[str, Any] = {"p_tenant": tenant, "p_since": since, "p_until": until}
    if customer_ids is not None:
        unique = list(dict.fromkeys(customer_ids))
        params["p_ids"] = unique if store.dialect == "postgresql" else json.dumps([c.hex for c in unique])
    with store.connection() as conn:
        return [summary(row) for row in conn.execute(statement, params)]

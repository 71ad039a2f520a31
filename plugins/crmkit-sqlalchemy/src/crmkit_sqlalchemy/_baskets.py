"""Purchase baskets for next-purchase models (the ``crmkit_baskets`` push-down).

Only the customer id, the time and the products of the line items leave the database:
the products are picked out of the ``line_items`` JSON by the database itself
(``jsonb_path_query_array`` on PostgreSQL, ``json_each`` on SQLite), refunds and
purchases without line items are filtered there too. Rows come in pages of
``PAGE`` ordered by (customer, time, id) and continued by keyset on the
``(tenant, customer_id, occurred_at, id)`` index, so memory stays bounded and no
cursor is held open between pages.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit.entities import TRANSACTIONS

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlStore

__all__ = ["PAGE", "baskets"]

PAGE = 10_000

Basket = tuple[uuid.UUID, dt.datetime, tuple[str, ...]]

_cache: dict[tuple[str, bool, bool, bool], sa.Select[Any]] = {}


def basket_statement(store: SqlStore, *, since: bool, until: bool, after: bool) -> sa.Select[Any]:
    """One page of baskets (parameters ``p_tenant``, ``p_since``, ``p_until``, ``p_limit`` and,
    after the first page, ``p_customer``, ``p_time``, ``p_id``); built once per shape and dialect."""
    key = (store.dialect, since, until, after)
    found = _cache.get(key)
    if found is not None:
        return found
    t = store.repository(TRANSACTIONS).table
    if store.dialect == "postgresql":
        products: sa.ColumnElement[Any] = sa.func.jsonb_path_query_array(
            t.c.line_items, sa.literal_column("'$[*].product'::jsonpath")
        )
        has_lines = sa.func.jsonb_array_length(t.c.line_items) > 0
    else:
        line = sa.func.json_each(t.c.line_items).table_valued("value").alias("line")
        products = (
            sa.select(sa.func.json_group_array(sa.func.json_extract(line.c.value, "$.product")))
            .select_from(line)
            .scalar_subquery()
        )
        has_lines = sa.func.json_array_length(t.c.line_items) > 0
    conditions: list[sa.ColumnElement[bool]] = [t.c.tenant == sa.bindparam("p_tenant"), t.c.kind == "purchase"]
    if since:
        conditions.append(t.c.occurred_at >= sa.bindparam("p_since", type_=t.c.occurred_at.type))
    if until:
        conditions.append(t.c.occurred_at <= sa.bindparam("p_until", type_=t.c.occurred_at.type))
    if after:
        conditions.append(
            sa.tuple_(t.c.customer_id, t.c.occurred_at, t.c.id)
            > sa.tuple_(
                sa.bindparam("p_customer", type_=t.c.customer_id.type),
                sa.bindparam("p_time", type_=t.c.occurred_at.type),
                sa.bindparam("p_id", type_=t.c.id.type),
            )
        )
    conditions.append(has_lines)
    statement = (
        sa.select(t.c.customer_id, t.c.occurred_at, t.c.id, products.label("products"))
        .where(*conditions)
        .order_by(t.c.customer_id, t.c.occurred_at, t.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer()))
    )
    _cache[key] = statement
    return statement


def baskets(store: SqlStore, tenant: str, since: dt.datetime | None, until: dt.datetime | None) -> Iterator[Basket]:
    """Every purchase with line items in the window, page by page, in (customer, time) order."""
    params: dict[str, Any] = {"p_tenant": tenant, "p_since": since, "p_until": until, "p_limit": PAGE}
    after = False
    while True:
        statement = basket_statement(store, since=since is not None, until=until is not None, after=after)
        with store.connection(entity=TRANSACTIONS.label) as conn:
            rows = conn.execute(statement, params).all()
        for customer_id, occurred_at, _, products in rows:
            yield customer_id, occurred_at, tuple(_products(products))
        if len(rows) < PAGE:
            return
        last = rows[-1]
        params.update(p_customer=last[0], p_time=last[1], p_id=last[2])
        after = True


def _products(value: Any) -> list[str]:
    """The JSON array of products: parsed already (jsonb) or text (SQLite)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else list(value)

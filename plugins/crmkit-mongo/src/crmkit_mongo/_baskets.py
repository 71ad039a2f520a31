"""Purchase baskets for next-purchase models (the ``crmkit_baskets`` push-down).

One ``find`` with a projection: only the customer id, the time and the ``product`` of
each line item leave the server; refunds and purchases without line items (whose
documents have no ``line_items`` field) are filtered there. The cursor walks the
``tenant_customer_time`` index, so the baskets arrive grouped by customer (newest first
within one) in batches, without a blocking sort.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

from crmkit_mongo._documents import from_micros
from crmkit_mongo._summaries import occurred_within

__all__ = ["BATCH", "basket_query", "baskets"]

BATCH = 10_000
_INDEX = "tenant_customer_time"  # (tenant, customer_id, occurred_at desc, id)

Basket = tuple[uuid.UUID, dt.datetime, tuple[str, ...]]


def basket_query(tenant: str, since: dt.datetime | None, until: dt.datetime | None) -> dict[str, Any]:
    """The filter: the tenant's purchases with line items in the time window."""
    return {"tenant": tenant, "kind": "purchase", "line_items": {"$exists": True}, **occurred_within(since, until)}


def baskets(
    collection: Any, session: Any, tenant: str, since: dt.datetime | None, until: dt.datetime | None
) -> Iterator[Basket]:
    """Stream the baskets, grouped by customer id (ascending)."""
    cursor = collection.find(
        basket_query(tenant, since, until),
        {"_id": 0, "customer_id": 1, "occurred_at": 1, "line_items.product": 1},
        sort=[("customer_id", 1), ("occurred_at", -1), ("id", 1)],
        hint=_INDEX,
        batch_size=BATCH,
        session=session,
    )
    with cursor:
        for doc in cursor:
            yield doc["customer_id"], from_micros(doc["occurred_at"]), tuple(li["product"] for li in doc["line_items"])

"""The crmkit hooks of the MongoDB backend (entry point ``mongo`` in the ``crmkit`` group)."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmkit.entities import TRANSACTIONS
from crmkit.hookspecs import hookimpl
from crmkit.schema import Schema
from crmkit.store import Store
from crmkit.summaries import PurchaseSummary
from crmkit_mongo._url import SCHEMES, parse_url

if TYPE_CHECKING:
    from crmkit_mongo._store import MongoStore

__all__ = ["crmkit_baskets", "crmkit_open_store", "crmkit_purchase_summaries", "crmkit_url_schemes"]


@hookimpl
def crmkit_open_store(url: str, options: Mapping[str, Any], schema: Schema) -> Store | None:
    """Open ``mongodb://`` and ``mongodb+srv://`` URLs (the database is the URL path, ``crmkit`` by default).

    Every aggregate of ``schema`` gets its collection's indexes (declared ones: derived from the spec).
    """
    parsed = parse_url(url)
    if parsed is None:
        return None
    from crmkit_mongo._store import open_store  # pymongo is loaded only for MongoDB URLs

    return open_store(parsed, options, schema)


@hookimpl
def crmkit_url_schemes() -> Iterable[str]:
    return SCHEMES


@hookimpl
def crmkit_purchase_summaries(
    store: Store,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterable[PurchaseSummary] | None:
    """One aggregation pipeline over the transactions collection (streamed, in order)."""
    # Without the store module loaded, no MongoStore exists (and pymongo stays unloaded).
    module = sys.modules.get("crmkit_mongo._store")
    if module is None or not isinstance(store, module.MongoStore):
        return None
    if customer_ids is not None and not customer_ids:
        return []
    return _streamed(store, tenant, customer_ids, since, until)


def _streamed(
    store: MongoStore,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterator[PurchaseSummary]:
    from crmkit_mongo._summaries import summaries

    collection = store.repository(TRANSACTIONS).collection
    with store.errors(TRANSACTIONS.label):
        yield from summaries(collection, store.session(), tenant, customer_ids, since, until)


@hookimpl
def crmkit_baskets(
    store: Store, tenant: str, since: dt.datetime | None, until: dt.datetime | None
) -> Iterable[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]] | None:
    """Customer, time and products of each purchase, one projected ``find`` (streamed, grouped by customer)."""
    module = sys.modules.get("crmkit_mongo._store")
    if module is None or not isinstance(store, module.MongoStore):
        return None
    return _baskets(store, tenant, since, until)


def _baskets(
    store: MongoStore, tenant: str, since: dt.datetime | None, until: dt.datetime | None
) -> Iterator[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]]:
    from crmkit_mongo._baskets import baskets

    collection = store.repository(TRANSACTIONS).collection
    with store.errors(TRANSACTIONS.label):
        yield from baskets(collection, store.session(), tenant, since, until)

"""The crmkit plugin: opens ``sqlite://`` and ``postgresql+psycopg://`` URLs, pushes summaries down.

Registered through the ``crmkit`` entry-point group; crmkit's core never imports it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from crmkit._errors import PluginError
from crmkit.hookspecs import hookimpl
from crmkit.schema import Schema
from crmkit.store import Store
from crmkit.summaries import PurchaseSummary
from crmkit_sqlalchemy._url import SCHEMES, SUPPORTED, parse_options, parse_url, sql_dialect_family

__all__ = [
    "crmkit_baskets",
    "crmkit_open_store",
    "crmkit_purchase_summaries",
    "crmkit_url_schemes",
    "refuse_other_sql_urls",
]


@hookimpl
def crmkit_open_store(url: str, options: Mapping[str, Any], schema: Schema) -> Store | None:
    """Open a SQLite or PostgreSQL store (creating or upgrading its schema unless ``upgrade=False``).

    The tables of ``schema``'s declared aggregates are derived from their declarations and
    created with the rest when missing.
    """
    parsed = parse_url(url)
    if parsed is None:
        return None
    from crmkit_sqlalchemy._store import open_store

    return open_store(parsed, parse_options(options), schema)


@hookimpl(trylast=True, specname="crmkit_open_store")
def refuse_other_sql_urls(url: str, options: Mapping[str, Any]) -> Store | None:
    """Runs after every other backend: a SQL URL nobody opened gets told what is supported here."""
    family = sql_dialect_family(url)
    if family is None or family in ("sqlite", "postgresql"):
        return None
    raise PluginError(f"no installed crmkit plugin opens {family} URLs; crmkit-sqlalchemy supports {SUPPORTED}")


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
) -> list[PurchaseSummary] | None:
    """One aggregate query in the database, for stores of this plugin."""
    from crmkit_sqlalchemy._store import SqlStore

    if not isinstance(store, SqlStore):
        return None
    from crmkit_sqlalchemy._summaries import purchase_summaries

    return purchase_summaries(store, tenant, customer_ids, since, until)


@hookimpl
def crmkit_baskets(
    store: Store, tenant: str, since: dt.datetime | None, until: dt.datetime | None
) -> Iterator[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]] | None:
    """Customer, time and products of each purchase, picked out by the database, for stores of this plugin."""
    from crmkit_sqlalchemy._store import SqlStore

    if not isinstance(store, SqlStore):
        return None
    from crmkit_sqlalchemy._baskets import baskets

    return baskets(store, tenant, since, until)

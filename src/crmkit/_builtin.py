"""crmkit's own vocabulary (channels, relationship types) and the slow-path purchase summaries."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from crmkit.channels import BUILTIN_CHANNELS, ChannelType
from crmkit.entities import TRANSACTIONS
from crmkit.hookspecs import hookimpl
from crmkit.query import ALL, And, Compare, Expr, In, parse_order
from crmkit.relationships import BUILTIN_RELATIONSHIP_TYPES, RelationshipType
from crmkit.store import Store, scan
from crmkit.summaries import PurchaseSummary, summarize


@hookimpl
def crmkit_aggregates() -> Iterable[type]:
    from crmkit.service import AGGREGATES

    return AGGREGATES


@hookimpl
def crmkit_services() -> Mapping[str, Callable[[Any], object]]:
    from crmkit.service.service import Service

    return {"service": Service}


@hookimpl
def crmkit_channels() -> Iterable[ChannelType]:
    return BUILTIN_CHANNELS


@hookimpl
def crmkit_relationship_types() -> Iterable[RelationshipType]:
    return BUILTIN_RELATIONSHIP_TYPES


@hookimpl(trylast=True)
def crmkit_purchase_summaries(
    store: Store,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterator[PurchaseSummary]:
    """For stores whose plugin has no native summaries: stream rows ordered by customer, one customer at a time."""
    parts: list[Expr] = []
    if customer_ids is not None:
        parts.append(In("customer_id", tuple(customer_ids)))
    if since is not None:
        parts.append(Compare("occurred_at", ">=", since))
    if until is not None:
        parts.append(Compare("occurred_at", "<=", until))
    where: Expr = And(tuple(parts)) if parts else ALL
    rows = scan(
        store.repository(TRANSACTIONS), tenant, where, parse_order(("customer_id", "occurred_at"), TRANSACTIONS)
    )
    for _, group in itertools.groupby(rows, key=lambda t: t.customer_id):
        yield from summarize(group)

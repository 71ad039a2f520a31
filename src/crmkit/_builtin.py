"""crmkit's own vocabulary (channels, relationship types), declared aggregates and the slow-path purchase summaries."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crmkit.channels import BUILTIN_CHANNELS, ChannelType
from crmkit.entities import TRANSACTIONS
from crmkit.hookspecs import hookimpl
from crmkit.query import ALL, And, Compare, Expr, In, parse_order
from crmkit.relationships import BUILTIN_RELATIONSHIP_TYPES, RelationshipType
from crmkit.state_changes import StateChange
from crmkit.store import Store, scan
from crmkit.summaries import PurchaseSummary, summarize

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event


@hookimpl
def crmkit_channels() -> Iterable[ChannelType]:
    return BUILTIN_CHANNELS


@hookimpl
def crmkit_relationship_types() -> Iterable[RelationshipType]:
    return BUILTIN_RELATIONSHIP_TYPES


#: The aggregates whose events ``crmkit_before_commit`` below reads (the host builds no others for it).
WATCHED: frozenset[str] = frozenset(
    {"opportunities", "pipelines", "leads", "orders", "quotes", "cases", "campaign_members"}
)


@hookimpl
def crmkit_before_commit(crm: CRM, events: Sequence[Event]) -> None:
    """The sales rules every write obeys, the deals' history (``crmkit.sales._hooks``), new cases' SLA clocks,
    and marketing's consent check on every campaign member marked sent."""
    from crmkit.marketing._hooks import before_commit as marketing_before_commit
    from crmkit.sales._hooks import before_commit
    from crmkit.service._hooks import before_commit as service_before_commit

    before_commit(crm, events)
    service_before_commit(crm, events)
    marketing_before_commit(crm, events)


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


@hookimpl
def crmkit_aggregates() -> Iterable[type]:
    """crmkit's own declared aggregates: the changes of stage of every record, the identity
    layer's contact-point keys and merges, sales', privacy's, the service desk's, documents', and the audit
    trail and event feed (last: the journal is written from the others' changes)."""
    from crmkit.audit import AuditEntry, FeedHead, OutboxChunk
    from crmkit.documents import AGGREGATES as DOCUMENTS
    from crmkit.identity._records import DuplicateAlert, IdentityKey, Merge
    from crmkit.marketing import AGGREGATES as MARKETING
    from crmkit.privacy import AGGREGATES as PRIVACY
    from crmkit.sales import AGGREGATES as SALES
    from crmkit.search_terms import SearchableAttribute, SearchTerm
    from crmkit.service import AGGREGATES as SERVICE

    return [
        *(StateChange, IdentityKey, Merge, DuplicateAlert, SearchTerm, SearchableAttribute),
        *(*SALES, *PRIVACY, *SERVICE, *MARKETING, *DOCUMENTS, AuditEntry, OutboxChunk, FeedHead),
    ]


@hookimpl
def crmkit_services() -> Mapping[str, Callable[[Any], object]]:
    """``crm.identity`` (duplicates, merge and un-merge), ``crm.sales``, ``crm.privacy``, ``crm.service``,
    ``crm.marketing``, ``crm.audit`` and ``crm.events``."""
    from crmkit.audit import Audit, EventFeed
    from crmkit.identity._service import Identity
    from crmkit.marketing import Marketing
    from crmkit.privacy import Privacy
    from crmkit.sales import Sales
    from crmkit.search_terms import Search
    from crmkit.service.service import Service

    return {
        "identity": Identity,
        "sales": Sales,
        "privacy": Privacy,
        "service": Service,
        "marketing": Marketing,
        "audit": Audit,
        "events": EventFeed,
        "search": Search,
    }

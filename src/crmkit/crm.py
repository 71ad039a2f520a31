"""``crmkit.connect`` and the CRM object it returns: repositories, transactions, timeline, life cycle."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from crmkit._errors import PluginError, ValidationError
from crmkit._host import PluginHost
from crmkit._validation import utc
from crmkit.channels import ChannelType
from crmkit.lifecycle import Lifecycle, LifecyclePolicy
from crmkit.relationships import RelationshipType
from crmkit.schema import Schema
from crmkit.services.activity import Interactions, Transactions
from crmkit.services.customers import Customers, StageChanges
from crmkit.services.graph import Relationships
from crmkit.services.records import BulkResult, Page, Records, _ReadRecords, _Record, _uuids
from crmkit.services.references import ReferencePolicies, policed
from crmkit.services.timeline import TimelineEntry, timeline
from crmkit.services.unit_of_work import UnitOfWork, _actor
from crmkit.state_changes import StateChanges
from crmkit.store import Store
from crmkit.summaries import PurchaseSummary

if TYPE_CHECKING:
    from crmkit.audit import Audit, AuditSetting, EventFeed, Journal
    from crmkit.documents import Documents
    from crmkit.identity import DuplicateAlert, Identity
    from crmkit.marketing import Campaign, CampaignMember, Consents, Marketing, SegmentMember, Segments, Suppression
    from crmkit.privacy import Privacy
    from crmkit.sales import Lead, Note, Opportunity, Order, Pipeline, Product, Quote, Sales, Tasks
    from crmkit.search_terms import Search
    from crmkit.service import BusinessCalendar, Case, CaseStatus, SLAPolicy, Team
    from crmkit.service.service import Service
    from crmkit.session import ScoringSession
    from crmkit.value._store import CRMValue

__all__ = ["CRM", "BulkResult", "Page", "Records", "TimelineEntry", "connect"]

R = TypeVar("R", bound=_Record)
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")


class CRM(UnitOfWork, ReferencePolicies):
    """A tenant's view of a store, with the plugins that ``connect`` loaded."""

    def __init__(
        self,
        store: Store,
        host: PluginHost,
        tenant: str,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        policy: LifecyclePolicy | None = None,
        schema: Schema | None = None,
        actor: str | None = None,
        audit: AuditSetting = True,
        event_feed: bool = True,
        search_emails: bool = True,
    ) -> None:
        if not isinstance(search_emails, bool):
            raise ValidationError("search_emails", "must be True or False", search_emails)
        #: Whether customers' e-mail addresses are kept as search terms (``crmkit.search_terms``).
        self.search_emails = search_emails
        self.store = store
        if host.has_access_policy:  # record-level access: every read filtered, every write checked
            from crmkit.access import GuardedStore

            self.store = GuardedStore(store, self)
        self.tenant = tenant
        self.policy = policy or LifecyclePolicy()
        #: Every aggregate of this connection, with fields, references, unique keys and indexes.
        self.schema: Schema = schema if schema is not None else host.schema()
        self._actor = _actor("actor", actor)
        self._host = host
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._local = threading.local()
        self._journal = _journal(self.schema, audit, event_feed)
        self._events_wanted = host.wants_events() or self._journal is not None
        self._watched = host.watched_entities()
        self._before_commit_wanted = host.has_before_commit
        self.channels: dict[str, ChannelType] = host.channels()
        self.relationship_types: dict[str, RelationshipType] = host.relationship_types()
        self.customers = Customers(self)
        self.relationships = Relationships(self)
        self.interactions = Interactions(self)
        self.transactions = Transactions(self)
        #: Every change of stage of every record (the customer life cycle's, pipelines'...).
        self.state_changes = StateChanges(self)
        self.stage_changes = StageChanges(self)
        self.lifecycle = Lifecycle(self)
        self._services: dict[str, _ReadRecords[Any]] = {
            s.spec.name: s
            for s in (self.customers, self.relationships, self.interactions, self.transactions, self.state_changes)
        }
        self._referrers = {
            name: any(policed(self.schema, r) for r in self.schema.references_to(name)) for name in self.schema
        }
        services = host.services()
        for name in services:
            if name in self.__dict__ or hasattr(type(self), name) or name in self.schema:
                raise PluginError(f"a plugin adds a service named {name!r}, which the connection already has")
        self._plugin_services = services

    if not TYPE_CHECKING:  # type checkers see only the attributes declared below (typed code: crm.records(Cls))

        def __getattr__(self, name: str) -> Any:
            """``crm.sales``: a service a plugin adds; ``crm.subscriptions``: the records of any aggregate by name."""
            return self._dynamic(name)

    def _dynamic(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        factory = self.__dict__.get("_plugin_services", {}).get(name)
        if factory is not None:
            service = factory(self)
            self.__dict__[name] = service  # built once: later reads find the attribute itself
            return service
        schema = self.__dict__.get("schema")
        if schema is not None and name in schema:
            return self.records(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    if TYPE_CHECKING:
        # The services and aggregates crmkit's own features add at run time (crmkit_services,
        # crmkit_aggregates), declared for type checkers: ``leads: Records[Lead]``, ``sales: Sales``.
        identity: Identity
        identity_alerts: Records[DuplicateAlert]
        calendars: Records[BusinessCalendar]
        sla_policies: Records[SLAPolicy]
        cases: Records[Case]
        teams: Records[Team]
        case_statuses: Records[CaseStatus]
        service: Service
        sales: Sales
        leads: Records[Lead]
        pipelines: Records[Pipeline]
        opportunities: Records[Opportunity]
        products: Records[Product]
        quotes: Records[Quote]
        orders: Records[Order]
        tasks: Tasks
        notes: Records[Note]
        audit: Audit
        events: EventFeed
        segments: Segments
        segment_members: Records[SegmentMember]
        consents: Consents
        suppressions: Records[Suppression]
        campaigns: Records[Campaign]
        campaign_members: Records[CampaignMember]
        marketing: Marketing
        privacy: Privacy
        documents: Documents
        search: Search

    def records(self, aggregate: type[R] | str) -> Records[R]:
        """The service of an aggregate, by class or name: ``crm.records(Subscription)``."""
        spec = self.schema.spec(aggregate)
        service = self._services.get(spec.name)
        if service is None:
            # A feature may serve its aggregate with a Records subclass of its own (crm.tasks.due).
            made = getattr(spec.cls, "__crmkit_records__", Records)
            service = self._services.setdefault(spec.name, made(self, spec))
        return service  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<CRM tenant={self.tenant!r} store={self.store.url}>"

    @property
    def value(self) -> CRMValue:
        """Customer-value calculations over this CRM's data, pushed down into the store."""
        from crmkit.value._store import CRMValue

        return CRMValue(self)

    def now(self) -> dt.datetime:
        """The current time from the CRM's clock (timezone-aware UTC)."""
        return utc(self._clock(), "clock")

    def purchase_summaries(
        self,
        customer_ids: Sequence[uuid.UUID] | None = None,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[PurchaseSummary]:
        """Per-customer purchase summaries, computed inside the store by the backend's hook."""
        since = None if since is None else utc(since, "since")
        until = None if until is None else utc(until, "until")
        ids = None if customer_ids is None else _uuids("customer_ids", customer_ids)
        return list(self._host.purchase_summaries(self.store, self.tenant, ids, since, until))

    def timeline(
        self,
        customer_id: uuid.UUID,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[TimelineEntry]:
        """A customer's interactions, transactions, stage changes, tasks and notes in one time-ordered list."""
        return timeline(self, customer_id, since=since, until=until, limit=limit, newest_first=newest_first)

    def migrate(self) -> str:
        """Bring the store to every aggregate of this connection (crmkit's and the plugins' migrations).

        On SQL databases this runs crmkit's Alembic revisions and every installed plugin's
        branch, and creates missing tables of declared aggregates; on MongoDB it creates
        missing indexes. Returns what the store says it is at now.
        """
        return self.store.migrate(self.schema)

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> CRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    url: str = "memory://",
    *,
    tenant: str = "default",
    plugins: Iterable[object] = (),
    block: Iterable[str] = (),
    clock: Callable[[], dt.datetime] | None = None,
    policy: LifecyclePolicy | None = None,
    actor: str | None = None,
    audit: AuditSetting = True,
    event_feed: bool = True,
    search_emails: bool = True,
    **options: Any,
) -> CRM:
    """Open the store at ``url`` for ``tenant``, loading built-in and installed plugins.

    ``plugins`` are extra plugin objects or modules to register (rules, channels...);
    ``block`` names plugins not to load (e.g. ``"crmkit.rules.defaults"``); ``clock``
    supplies the current time; ``actor`` names who the changes are made by (events
    carry it; ``crm.acting_as`` overrides it for a block); ``audit`` keeps the audit
    trail (True), not (False), or names the audited fields per aggregate
    (``{"customers": ("name", "emails"), "interactions": False}``); ``event_feed`` keeps
    every transaction's events for ``crm.events.read`` (docs/audit.md); ``search_emails``
    keeps customers' e-mail addresses as search terms (True) so that ``F("emails")`` can be
    searched, or not (False: imports are cheaper, e-mail searches are refused; see
    docs/queries.md); remaining keyword options go to the backend.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValidationError("url", "must be a URL such as memory://, sqlite:///crm.db or mongodb://host/db", url)
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ValidationError(
            "tenant", "must be 1-100 letters, digits or _.:@- (starting with a letter or digit)", tenant
        )
    checked_actor = _actor("actor", actor)
    host = PluginHost(plugins=plugins, block=block)
    schema = host.schema()
    store = host.open_store(url, options, schema)
    try:
        return CRM(
            store,
            host,
            tenant,
            clock=clock,
            policy=policy,
            schema=schema,
            actor=checked_actor,
            audit=audit,
            event_feed=event_feed,
            search_emails=search_emails,
        )
    except BaseException:
        store.close()
        raise


def _journal(schema: Schema, audit: AuditSetting, event_feed: object) -> Journal | None:
    """What the connection keeps of each transaction (None: no audit trail and no event feed)."""
    from crmkit.audit import Journal, audited_fields

    if not isinstance(event_feed, bool):
        raise ValidationError("event_feed", "must be True or False", event_feed)
    if not all(name in schema.derived for name in ("audit_entries", "event_outbox", "event_feed_heads")):
        return None  # crmkit's own aggregates are blocked
    audited = audited_fields(schema, audit)
    if not audited and not event_feed:
        return None
    return Journal(audited, event_feed)


if TYPE_CHECKING:

    def _a_connection_is_what_hooks_are_handed(crm: CRM) -> ScoringSession:
        return crm  # checked by the type checker: CRM satisfies the hooks' protocols

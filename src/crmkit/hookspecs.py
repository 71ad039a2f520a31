# mypy: disable-error-code="empty-body"
"""Every hook crmkit calls, with when it is called and what it may return.

Plugins implement hooks with ``@crmkit.hookimpl`` on functions named like these specs, in
a module or object registered through the ``crmkit`` entry-point group (or passed to
``crmkit.connect(plugins=[...])``). Specs only ever grow by new optional arguments, and
an implementation may take any subset of a spec's arguments.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from crmkit.channels import ChannelType
    from crmkit.customers import Customer
    from crmkit.documents import BlobStore
    from crmkit.entities import EntitySpec
    from crmkit.events import Event
    from crmkit.lifecycle import CustomerFacts, StageProposal
    from crmkit.lifecycle_model import Stage, StageDef
    from crmkit.query import Where
    from crmkit.relationships import RelationshipType
    from crmkit.schema import Schema
    from crmkit.session import ScoringSession, Session
    from crmkit.store import Store
    from crmkit.summaries import PurchaseSummary

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("crmkit")
hookimpl = pluggy.HookimplMarker("crmkit")


# --- storage -----------------------------------------------------------------------------


@hookspec(firstresult=True)
def crmkit_open_store(url: str, options: Mapping[str, Any], schema: Schema) -> Store | None:
    """Open the store at ``url`` if this plugin serves its scheme, else return None.

    Called by ``crmkit.connect``. ``options`` holds the keyword arguments given to
    ``connect`` that crmkit itself does not use (pool sizes, timeouts...). ``schema``
    lists every aggregate of the connection (plugins' included): a store creates the
    tables, collections and indexes of those it does not hold yet (or, where schema
    changes are migrations, says which are missing). The first non-None result wins.
    Raise ``crmkit.BackendError`` when the store cannot be reached.
    """


@hookspec
def crmkit_aggregates() -> Iterable[type]:
    """Aggregate classes this plugin adds, each declared with ``@crmkit.schema.aggregate``.

    All results are collected at ``connect``; two aggregates with one name is a
    ``PluginError``. Every backend then stores them with no code of the plugin's own.
    """


@hookspec
def crmkit_services() -> Mapping[str, Callable[[Any], object]]:
    """Services a plugin adds to every connection, by attribute name.

    ``{"sales": Sales}`` makes ``crm.sales`` a ``Sales(crm)``, built on first use and kept
    for the connection. A name already used by the connection (``customers``, ``value``...),
    by an aggregate, or by another plugin's service is a ``PluginError`` at connect.
    """


@hookspec
def crmkit_assignment_strategies() -> Mapping[str, Callable[[Any, Any, Any], str]]:
    """Ways to pick who gets a case routed through a queue, by name (``crm.service.route``).

    ``{"by_region": pick}``: ``pick(crm, queue, case)`` returns the member who gets the case
    (a queue whose ``strategy`` is ``"by_region"`` uses it). Built in: ``round_robin``,
    ``least_busy`` and ``skills``; a plugin's strategy of the same name replaces one.
    """


@hookspec(firstresult=True)
def crmkit_blob_store() -> BlobStore | None:
    """A store for documents' bytes outside the database (``crmkit.documents.BlobStore``), or None.

    Called when ``crm.documents`` keeps or reads a content. With no plugin answering,
    contents are kept in the store itself, as chunk records (rows in SQL, GridFS-style
    chunk documents in MongoDB). ``crmkit.documents.FileBlobStore(root)`` is such a plugin:
    ``connect(url, plugins=[FileBlobStore("file:///var/lib/crm/blobs")])``. The first
    non-None result wins. A content is read back from the blob store that kept it (by its
    ``name``), so keep that plugin registered while any blob names it.
    """


@hookspec
def crmkit_url_schemes() -> Iterable[str]:
    """The URL schemes this plugin opens (``"sqlite"``, ``"mongodb+srv"``...), for ``crmkit.plugins()``.

    All results are collected.
    """


@hookspec(firstresult=True)
def crmkit_purchase_summaries(
    store: Store,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterable[PurchaseSummary] | None:
    """Compute per-customer purchase summaries inside ``store``, or None if it is not this plugin's.

    One ``PurchaseSummary`` per (customer, currency) with at least one purchase, for the
    given customers (all when None) and transactions with ``since <= occurred_at <= until``,
    ordered by customer id then currency. Backends answer with one aggregate query
    (GROUP BY, an aggregation pipeline) instead of reading rows into Python. crmkit's own
    fallback (which streams rows) runs last. First non-None result wins.
    """


@hookspec(firstresult=True)
def crmkit_baskets(
    store: Store,
    tenant: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterable[tuple[uuid.UUID, dt.datetime, tuple[str, ...]]] | None:
    """Read the purchase baskets inside ``store`` for next-purchase models, or None if it is not this plugin's.

    One ``(customer_id, occurred_at, products)`` per purchase (refunds left out) that has
    line items, with ``since <= occurred_at <= until``: ``products`` holds the product of
    each line item (a product may repeat). Grouped by customer in ascending id order; one
    customer's baskets may come in any order. Backends read only these three fields (a
    projection, JSON functions in the query), never whole records, and may stream them.
    When no plugin answers, ``crm.value`` streams the transactions instead. First
    non-None result wins.
    """


# --- customer value ------------------------------------------------------------------------


@hookspec(firstresult=True)
def crmkit_exchange_rate(from_currency: str, to_currency: str, at: dt.datetime) -> Decimal | None:
    """The rate that converts an amount in ``from_currency`` into ``to_currency`` at ``at``, or None.

    Called by ``crm.value`` when money is stated in one currency (``currency=``) and a
    customer bought in another: ``amount * rate`` is the amount in ``to_currency``. ``at``
    is the end of the measured period (observation end, ``as_of``), so every amount of one
    calculation is converted at one rate. Return a positive ``Decimal``, or None when you
    have no rate: those amounts are then left out of the money figures (they still count as
    purchases for timing). The first non-None result wins; crmkit itself supplies no rates.
    """


# --- vocabularies --------------------------------------------------------------------------


@hookspec
def crmkit_channels() -> Iterable[ChannelType]:
    """Interaction channels this plugin adds (``ChannelType("whatsapp")``). All results are collected."""


@hookspec
def crmkit_relationship_types() -> Iterable[RelationshipType]:
    """Relationship types this plugin adds (name, inverse, symmetric). All results are collected."""


# --- life cycle --------------------------------------------------------------------------------


@hookspec
def crmkit_customer_stages() -> Iterable[StageDef]:
    """Customer life-cycle stages this plugin adds (``StageDef("vip_club")``), after the built-in ones.

    All results are collected when plugins are loaded; the stages then are valid ``Stage``
    values, rules may propose them, and ``crm.lifecycle.stages`` lists them. Two plugins
    may name the same stage only with the same definition.
    """


@hookspec(firstresult=True)
def crmkit_propose_stage(facts: CustomerFacts) -> StageProposal | None:
    """Propose the stage a customer should be in, from its facts, or None to let other rules decide.

    Called by ``crm.lifecycle.evaluate`` and ``evaluate_all``. The first non-None
    proposal wins; crmkit's default rules run last (``trylast``), so any installed rule
    plugin overrides them. Proposing the current stage means "no change".
    """


@hookspec
def crmkit_customer_scores(
    crm: ScoringSession, customers: Sequence[Customer], now: dt.datetime
) -> Mapping[uuid.UUID, Mapping[str, float]] | None:
    """Score a batch of customers (e.g. probability alive from a fitted model) for the rules.

    Called once per batch by ``crm.lifecycle.evaluate`` and ``evaluate_all`` before the
    rules run. Return ``{customer_id: {"score_name": value}}`` (or None); all results are
    merged into ``CustomerFacts.scores``, later plugins overriding earlier ones per name.
    """


@hookspec
def crmkit_guard_transition(
    customer: Customer, from_stage: Stage, to_stage: Stage, facts: CustomerFacts, rule: str
) -> str | None:
    """Veto a stage change by returning the reason, or return None to allow it.

    Called before every stage change (rule-driven or a manual update). All guards run and
    every reason is reported together; any reason blocks the change.
    """


# --- record-level access ------------------------------------------------------------------


@hookspec
def crmkit_access_filter(actor: str | None, aggregate: EntitySpec, schema: Schema) -> Where:
    """The records of ``aggregate`` that ``actor`` may see, as a condition (None: no restriction).

    Asked once per actor and aggregate by a connection (so the answer must depend on
    nothing else); every result is ANDed into every read of that aggregate the connection
    makes: ``get``, ``find``, ``count``, ``scan``, ``aggregate`` reports, and every service
    built on them (timelines, traversal, summaries, segments, marketing, privacy export,
    identity). The condition runs in the store's query, so it may use every part of
    ``crmkit.query``, semi-joins (``F("customer_id").among(...)``) included;
    ``crmkit.access.customer_scope`` builds "hangs off these customers" for any aggregate.
    A write of a record the actor would not see afterwards is refused with
    ``crmkit.access.AccessDenied``.
    """


@hookspec
def crmkit_access_write(actor: str | None, aggregate: EntitySpec, old: Any, new: Any) -> str | None:
    """Veto a write by returning the reason, or return None to allow it.

    Called before every record is stored: ``old`` is None for a new record, ``new`` is
    None for a deletion. All implementations run; any reason raises
    ``crmkit.access.AccessDenied`` naming the actor, the aggregate and the reasons, and
    nothing of the unit of work is written.
    """


# --- events --------------------------------------------------------------------------------------


@hookspec
def crmkit_before_commit(crm: Session, events: Sequence[Event]) -> None:
    """See the events of a transaction just before it commits, inside it.

    An implementation may write more records through ``crm`` (audit rows, counters):
    they join the same transaction, and their own events are handed to this hook in a
    further call before the commit. Raising aborts the whole transaction (and the
    implementations not called yet are skipped: nothing is committed for them to see).
    """


@hookspec
def crmkit_after_commit(crm: Session, events: Sequence[Event]) -> None:
    """Receive the events of a transaction after it committed, in the order they happened.

    Never called for rolled-back work. Every implementation is called, even after another
    raised; then the first exception propagates to the caller (the data stays committed),
    with every one in its ``crmkit_errors`` attribute. ``add_many`` delivers every batch
    before raising.
    """

"""The storage contract every backend implements: a Store holding one Repository per aggregate.

Stores are tenant-agnostic: every call names the tenant, and a backend must never return
or touch another tenant's records. Domain objects go in and out; rows and documents stay
inside the backend. Driver errors are translated into crmkit errors before they escape.
"""

from __future__ import annotations

import abc
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import attrs

from crmkit._ids import new_id
from crmkit.aggregation import AggregateQuery, compute
from crmkit.entities import RELATIONSHIPS, EntitySpec
from crmkit.query import ALL, And, Compare, Const, Copy, Expr, In, Or, Order, Test, keyset_after, parse_order
from crmkit.relationships import Reached, Relationship

if TYPE_CHECKING:
    from crmkit.schema import Schema

__all__ = ["Activity", "Capabilities", "Repository", "Store", "iter_batches", "scan"]

T = TypeVar("T")


@attrs.frozen
class Capabilities:
    """What a backend can do; conformance tests that need a missing capability are skipped."""

    #: ``transaction()`` is atomic: all writes in it commit or none do.
    transactions: bool = True
    #: Several threads (and processes, for servers) may write at once without losing updates.
    concurrent_writers: bool = True
    #: Data outlives the process (files, servers).
    persistent: bool = False
    #: The database works in processes of its own (a server): ``add_many`` has one batch
    #: written on a helper thread while the caller's thread prepares the next. Each thread
    #: must get its own transaction (as ``transaction()`` binds it to the calling thread).
    server: bool = False


@attrs.frozen
class Activity:
    """How many records a customer has in a repository, and the first and last business time."""

    count: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None


class Repository(abc.ABC, Generic[T]):
    """Storage for one aggregate kind (customers, interactions, ...) of every tenant."""

    spec: EntitySpec

    @abc.abstractmethod
    def insert(self, tenant: str, records: Sequence[T]) -> None:
        """Store new records; ConflictError (and nothing written) if an id or external_id exists."""

    @abc.abstractmethod
    def insert_new(self, tenant: str, records: Sequence[T]) -> list[T]:
        """Store the records whose external_id is not stored yet (ids must be new); return those stored.

        Other processes may import the same records at the same moment: the call must then
        still store each once. If a concurrent transaction made the database give this one
        up, raise ``ConflictError(..., transient=True)`` with nothing written, and
        ``add_many`` runs the batch again.
        """

    def prepare_insert_new(self, tenant: str, records: Sequence[T]) -> Callable[[], list[T]]:
        """``insert_new`` in two steps: its Python work now, and a function that does the rest.

        ``add_many`` on a store with ``Capabilities.server`` prepares a batch on the caller's
        thread and runs the returned function on a helper thread, inside a transaction of
        that thread, while the caller prepares the next batch. Only one thread runs Python
        at a time, so a backend that wants the overlap formats its rows here (the database
        then works while the next batch is built); by default everything happens later.
        """
        return lambda: self.insert_new(tenant, records)

    @abc.abstractmethod
    def get(self, tenant: str, id: uuid.UUID) -> T | None:
        """The record with that id, or None."""

    @abc.abstractmethod
    def get_by_external_id(self, tenant: str, external_id: str) -> T | None:
        """The record with that external id, or None."""

    @abc.abstractmethod
    def replace(self, tenant: str, record: T, expected_version: int) -> bool:
        """Write ``record`` over the stored one iff its version is ``expected_version``, in one step."""

    def replace_many(self, tenant: str, records: Sequence[T], expected_versions: Sequence[int]) -> set[uuid.UUID]:
        """``replace`` of many records at once: each written iff its stored version is its expected one.

        Returns the ids of the records that were not written because their stored version
        moved (a concurrent writer changed or deleted them): a concurrent change is never
        overwritten. When any is returned the caller treats the whole call as failed and
        rolls its transaction back (a backend may have written the other records).
        Backends override this with one bulk statement (``executemany`` of the versioned
        ``UPDATE``, a ``bulk_write`` of versioned replaces); this default replaces one by one.
        """
        if len(records) != len(expected_versions):
            raise ValueError("replace_many takes one expected version per record")
        return {
            cast(Any, record).id
            for record, version in zip(records, expected_versions, strict=True)
            if not self.replace(tenant, record, version)
        }

    def compare_stored(self, tenant: str, records: Sequence[T]) -> dict[str, tuple[uuid.UUID, int, bool]]:
        """The stored counterparts of records, matched by external id, and whether each holds the same values.

        For each record whose ``external_id`` the tenant has stored: that stored record's id,
        its version, and whether its values equal the record's (every field but ``id``,
        ``created_at``, ``updated_at`` and ``version``). ``upsert_many`` asks this once per
        batch and then reads and writes only the changed records. Backends compare in the
        store (SQL: the batch staged in a temporary table and joined to the stored rows,
        column by column; MongoDB: stored documents against the encoded ones, undecoded)
        instead of decoding every stored record; this default reads and compares records.
        """
        keys = tuple({k for k in (getattr(r, "external_id", None) for r in records) if k is not None})
        if not keys:
            return {}
        found: list[Any] = self.find(tenant, In("external_id", keys), parse_order(None, self.spec), None)
        stored = {s.external_id: s for s in found}
        out: dict[str, tuple[uuid.UUID, int, bool]] = {}
        for record in records:
            current = stored.get(getattr(record, "external_id", None))
            if current is not None:
                out[current.external_id] = (current.id, current.version, same_values(record, current))
        return out

    @abc.abstractmethod
    def delete(self, tenant: str, id: uuid.UUID, expected_version: int | None = None) -> bool:
        """Delete one record (iff at that version when given); False when nothing matched."""

    @abc.abstractmethod
    def delete_where(self, tenant: str, where: Expr) -> int:
        """Delete every matching record; return how many."""

    @abc.abstractmethod
    def count(self, tenant: str, where: Expr) -> int:
        """How many records match, counted in the store."""

    @abc.abstractmethod
    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[T]:
        """Matching records in ``order``, at most ``limit`` of them."""

    def aggregate(self, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
        """Group the matching records and measure each group (``crmkit.aggregation``), in the store.

        One tuple per group: the group values in ``query.group_by`` order, then the values of
        ``query.measures``. Backends push this down (``GROUP BY``, ``$group``); this default,
        for stores that cannot, reads the matching records a page at a time (bounded memory)
        and computes the report with the reference, ``crmkit.aggregation.compute``.
        """
        return compute(self.spec, query, scan(self, tenant, where, parse_order(None, self.spec)))

    def first_values(self, tenant: str, select: Any) -> list[Any]:
        """The distinct present values of a bound sub-query with ``first_by`` (``crmkit.query.Select``): a
        value is kept when the first record of its group (the records matching ``select.where`` with that
        value) in the order ``select.first_by`` matches ``select.first_where``.

        Backends work it out in place (a window function, a sort and a first per group); this
        default reads the matching records in that order a page at a time, then asks which of
        the groups' first records match ``first_where`` (its sub-queries run by the store).
        """
        firsts: dict[Any, uuid.UUID] = {}
        for record in scan(self, tenant, select.where, select.first_by):
            value = self.spec.record_value(record, select.field)
            if value is not None and value not in firsts:
                firsts[value] = cast(Any, record).id
        if select.first_where is None or select.first_where == ALL:
            return list(firsts)
        kept: set[uuid.UUID] = set()
        order = parse_order(None, self.spec)
        for ids in iter_batches(iter(firsts.values()), 1000):
            where = And((In("id", tuple(ids)), select.first_where))
            kept.update(cast(Any, r).id for r in self.find(tenant, where, order, None))
        return [value for value, rid in firsts.items() if rid in kept]

    def insert_from(
        self,
        tenant: str,
        source: Repository[Any],
        where: Expr,
        values: Mapping[str, Copy | Const | Test],
        stamp: dt.datetime,
    ) -> list[T]:
        """Store one new record of this aggregate per record of ``source`` that matches ``where``; return them.

        ``where`` is bound on ``source.spec`` (sub-queries included, relative instants already
        resolved). ``values`` names every stored field of this aggregate except the five every
        record has, and was checked by the caller (``Records.add_from``): a ``Const`` is the
        field's stored form, a ``Copy`` names a field of the source whose every value the
        target field takes as it is (``crmkit.store.copied`` is the reference: through a list
        field, ``first=True`` takes the first element's, None when empty), a ``Test`` fills a
        boolean field with whether the source record matches its bound condition. Stores
        run no Python check on the records they build. Each new record gets a new
        time-ordered id, version 1, ``created_at`` and ``updated_at`` equal to ``stamp`` and no
        external_id, and is kept like an inserted one (search words, indexes). The records
        are returned as ``get`` reads them, in the order of their source records' ids, with
        ids increasing in that order; none when nothing matches. A unique key already taken
        raises ConflictError with nothing written. ``AddFromContract`` of the conformance
        suite holds a store to all of this.

        Backends build and insert the records in the store (``INSERT ... SELECT``, a pipeline)
        and read back only the new ones; this default, for stores that cannot, reads the
        source records a page at a time and builds each in Python.
        """
        cls, made = self.spec.cls, []
        order = parse_order("id", source.spec)  # the records are made (and returned) in source-id order
        for page in iter_batches(scan(source, tenant, where, order), 1000):
            ids = tuple(r.id for r in page)
            tests = {
                name: {r.id for r in source.find(tenant, And((In("id", ids), v.where)), order, None)}
                for name, v in values.items()
                if isinstance(v, Test)
            }
            for record in page:
                fields = {
                    name: (
                        v.value
                        if isinstance(v, Const)
                        else record.id in tests[name]
                        if isinstance(v, Test)
                        else copied(source.spec, record, v)
                    )
                    for name, v in values.items()
                }
                made.append(cls(id=new_id(), created_at=stamp, updated_at=stamp, version=1, **fields))
        if made:
            self.insert(tenant, made)
        return made

    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these ids are stored (backends may override with one cheap query)."""
        if not ids:
            return set()
        found = self.find(tenant, In("id", tuple(ids)), parse_order(None, self.spec), None)
        return {cast(Any, r).id for r in found}

    def activity(self, tenant: str, customer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Activity]:
        """Count and first/last time per customer (backends should override with one grouped query)."""
        field, time_field = self.spec.customer_field, self.spec.time_field
        if field is None or time_field is None:
            raise TypeError(f"{self.spec.name} are not kept per customer")
        out: dict[uuid.UUID, Activity] = {}
        order_asc = parse_order(time_field, self.spec)
        order_desc = parse_order("-" + time_field, self.spec)
        for cid in customer_ids:
            where = Compare(field, "==", cid)
            n = self.count(tenant, where)
            if n:
                first = getattr(self.find(tenant, where, order_asc, 1)[0], time_field)
                last = getattr(self.find(tenant, where, order_desc, 1)[0], time_field)
                out[cid] = Activity(n, first, last)
        return out


class Store(abc.ABC):
    """An open connection to one storage location, shared by every tenant."""

    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def repository(self, spec: EntitySpec) -> Repository[Any]:
        """The repository for an entity spec (one of ``crmkit.entities.ENTITIES``)."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A unit of work for the calling thread: commit on normal exit, roll back on an exception."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""

    @property
    def url(self) -> str:
        """Where the store is, with any password hidden."""
        return type(self).__name__

    def migrate(self, schema: Schema) -> str:
        """Bring the store's tables, collections and indexes to what ``schema`` declares; say what it is at.

        Called by ``crm.migrate()`` and ``crmkit migrate URL``. Idempotent; a store that
        keeps no schema (``memory://``) has nothing to do.
        """
        return "nothing to migrate"

    def traverse(
        self,
        tenant: str,
        start: uuid.UUID,
        kinds: frozenset[str],
        direction: str,
        depth: int,
        as_of: dt.date | None,
    ) -> list[Reached]:
        """Breadth-first walk over relationships of ``kinds`` (``out``, ``in`` or ``both``) up to ``depth``.

        The default asks the relationship repository one query per level; backends with
        recursive queries override it. Each customer is reported once, at its smallest depth.
        """
        repo: Repository[Relationship] = self.repository(RELATIONSHIPS)
        seen = {start}
        frontier = [start]
        reached: list[Reached] = []
        order = parse_order(None, RELATIONSHIPS)
        for level in range(1, depth + 1):
            if not frontier:
                break
            edges = repo.find(tenant, _edges_from(frontier, kinds, direction, as_of), order, None)
            next_frontier: list[uuid.UUID] = []
            current = set(frontier)
            for edge in sorted(edges, key=lambda e: e.id):
                for here, there in ((edge.source_id, edge.target_id), (edge.target_id, edge.source_id)):
                    forward = here == edge.source_id
                    if here not in current or (direction == "out" and not forward) or (direction == "in" and forward):
                        continue
                    if there not in seen:
                        seen.add(there)
                        next_frontier.append(there)
                        reached.append(Reached(there, level, edge))
            frontier = next_frontier
        return reached


def _edges_from(nodes: Sequence[uuid.UUID], kinds: frozenset[str], direction: str, as_of: dt.date | None) -> Expr:
    ids = tuple(nodes)
    ends: list[Expr] = []
    if direction in ("out", "both"):
        ends.append(In("source_id", ids))
    if direction in ("in", "both"):
        ends.append(In("target_id", ids))
    parts: list[Expr] = [Or(tuple(ends)) if len(ends) > 1 else ends[0], In("kind", tuple(sorted(kinds)))]
    if as_of is not None:
        parts.append(Or((Compare("since", "==", None), Compare("since", "<=", as_of))))
        parts.append(Or((Compare("until", "==", None), Compare("until", ">=", as_of))))
    return And(tuple(parts)) if parts else ALL


_STORED_FIELDS = frozenset({"id", "created_at", "updated_at", "version"})


def same_values(record: Any, stored: Any) -> bool:
    """Whether two records of one kind hold the same values: every field but id, times and version."""
    if record.__class__ is not stored.__class__:
        return False
    return all(
        getattr(record, a.name) == getattr(stored, a.name)
        for a in attrs.fields(record.__class__)
        if a.name not in _STORED_FIELDS
    )


def copied(spec: EntitySpec, record: Any, value: Copy) -> Any:
    """The value a ``Copy`` takes from a domain record (the reference for stores that build records in place)."""
    head, _, rest = value.path.partition(".")
    if not rest or head == "attributes" or not isinstance(getattr(record, head, None), tuple):
        return spec.record_value(record, value.path)
    items = getattr(record, head)
    if not value.first:
        raise TypeError(f"{value.path} goes through the list {head}: copy the first element's (first=True)")
    return getattr(items[0], rest) if items else None


def iter_batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items from an iterator (streams, never loads all)."""
    while True:
        batch = []
        for item in items:
            batch.append(item)
            if len(batch) >= size:
                break
        if not batch:
            return
        yield batch


def scan(repo: Repository[T], tenant: str, where: Expr, order: Order, batch_size: int = 1000) -> Iterator[T]:
    """Every matching record in ``order``, fetched a page at a time by keyset (bounded memory)."""
    condition = where
    while True:
        page = repo.find(tenant, condition, order, batch_size)
        yield from page
        if len(page) < batch_size:
            return
        last = order.sort_key_values(repo.spec, page[-1])
        after = keyset_after(order, last)
        condition = after if isinstance(where, type(ALL)) else And((where, after))

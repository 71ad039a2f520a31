"""``crmkit.connect`` and the CRM object it returns: repositories, transactions, timeline, life cycle."""

from __future__ import annotations

import copy
import datetime as dt
import heapq
import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from crmkit._budget import check_size
from crmkit._errors import ConflictError, CRMError, NotFound, ValidationError
from crmkit._host import PluginHost, together
from crmkit._retry import retrying
from crmkit._validation import count_of, text_of, utc
from crmkit.channels import ChannelType
from crmkit.customers import Customer
from crmkit.entities import (
    CUSTOMERS,
    INTERACTIONS,
    RELATIONSHIPS,
    STAGE_CHANGES,
    TRANSACTIONS,
    EntitySpec,
)
from crmkit.events import Event, StageChanged, event_for
from crmkit.interactions import Interaction
from crmkit.lifecycle import Lifecycle, LifecyclePolicy
from crmkit.lifecycle_model import Stage, StageChange
from crmkit.query import (
    ALL,
    And,
    Compare,
    Cursor,
    Expr,
    Or,
    Where,
    bind,
    check_cursor,
    keyset_after,
    parse_order,
)
from crmkit.relationships import DIRECTIONS, Direction, Reached, Relationship, RelationshipType
from crmkit.schema import Reference, Schema
from crmkit.store import Repository, Store, iter_batches, scan
from crmkit.summaries import PurchaseSummary
from crmkit.transactions import Transaction

if TYPE_CHECKING:
    from crmkit.value._store import CRMValue

__all__ = ["CRM", "BulkResult", "Page", "Records", "TimelineEntry", "connect"]

T = TypeVar("T")


class _Record(Protocol):
    """What the CRM needs of every stored aggregate."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...

    @property
    def created_at(self) -> dt.datetime | None: ...


R = TypeVar("R", bound=_Record)
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")


@attrs.frozen
class Page(Generic[T]):
    """One page of ``find`` results; pass ``next`` as ``after`` to get the following page (None: no more)."""

    items: tuple[T, ...]
    next: Cursor | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


@attrs.frozen
class BulkResult:
    """What ``add_many`` did: records added, and records skipped because their external_id was stored."""

    added: int
    skipped: int


@attrs.frozen
class TimelineEntry:
    """One item of a customer's timeline: an interaction, a transaction or a stage change."""

    at: dt.datetime
    kind: str
    record: Interaction | Transaction | StageChange


class _RollbackOnly(Exception):
    pass


#: How many times ``crmkit_before_commit`` may be called for what its own writes added.
_BEFORE_COMMIT_ROUNDS = 10


def _pointer(ref: Reference, value: Any) -> tuple[str, uuid.UUID] | None:
    """(aggregate, id) that a reference field's value points at, None when it is empty."""
    if value is None:
        return None
    if ref.target is None:
        return value.aggregate, value.id
    return ref.target, value


def _actor(field: str, value: object) -> str | None:
    """None or a non-blank actor name such as ``user:42``."""
    if value is None:
        return None
    text = text_of(field, value)
    if len(text) > 200:
        raise ValidationError(field, "must be at most 200 characters", value)
    return text


def _uuids(field: str, values: object) -> list[uuid.UUID]:
    """A list of UUIDs from any iterable (duplicates dropped, order kept); ValidationError otherwise."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValidationError(field, "must be a collection of uuid.UUID", values)
    items = list(values)
    for value in items:
        if not isinstance(value, uuid.UUID):
            raise ValidationError(field, "must contain only uuid.UUID values", value)
    return list(dict.fromkeys(items))


_stampers: dict[type, Callable[[Any, dt.datetime], Any]] = {}


def _stamped(record: R, now: dt.datetime) -> R:
    """The stored form of an already validated new record: version 1, created (unless given) and updated now.

    A copy with three fields set, without running the validators again: ``attrs.evolve``
    would re-validate every field, which dominated bulk imports, and the set fields come
    from the CRM clock. The copy is made by a function generated once per class.
    """
    stamp = _stampers.get(record.__class__)
    if stamp is None:
        stamp = _stampers[record.__class__] = _stamper(record.__class__)
    return stamp(record, now)  # type: ignore[no-any-return]


def _stamper(cls: type) -> Callable[[Any, dt.datetime], Any]:
    names = [a.name for a in attrs.fields(cls)]
    slots = {s for c in cls.__mro__ for s in getattr(c, "__slots__", ())} - {"__weakref__"}
    if cls.__dictoffset__ or slots != set(names):
        # Not a plain slotted attrs class (a subclass with state of its own): copy it generically.
        def generic(record: Any, now: dt.datetime) -> Any:
            new = copy.copy(record)
            object.__setattr__(new, "created_at", record.created_at or now)
            object.__setattr__(new, "updated_at", now)
            object.__setattr__(new, "version", 1)
            return new

        return generic
    stamped = {"created_at": "r.created_at or now", "updated_at": "now", "version": "1"}
    lines = [f"    _set(new, {n!r}, {stamped.get(n, f'r.{n}')})" for n in names]
    source = "def stamp(r, now):\n    new = _new(cls)\n" + "\n".join(lines) + "\n    return new\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "cls": cls}
    exec(compile(source, f"<crmkit stamp {cls.__qualname__}>", "exec"), namespace)
    return namespace["stamp"]  # type: ignore[no-any-return]


class _ReadRecords(Generic[R]):
    """Reads shared by every repository of a CRM: get, find, count, stream."""

    spec: EntitySpec

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._repo: Repository[R] = crm.store.repository(self.spec)

    def get(self, id: uuid.UUID) -> R:
        """The record with that id; NotFound if this tenant has none."""
        if not isinstance(id, uuid.UUID):
            raise ValidationError("id", "must be a uuid.UUID", id)
        record = self._repo.get(self._crm.tenant, id)
        if record is None:
            raise NotFound(self.spec.label, id)
        return record

    def count(self, where: Where = None) -> int:
        """How many records match, counted in the store."""
        return self._repo.count(self._crm.tenant, bind(where, self.spec))

    def find(
        self,
        where: Where = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        after: Cursor | str | None = None,
    ) -> Page[R]:
        """Matching records in order (``"-field"`` for descending), at most ``limit``, after a cursor."""
        condition = bind(where, self.spec)
        order = parse_order(order_by, self.spec)
        if limit is not None:
            count_of("limit", limit)
        if after is not None:
            if not isinstance(after, (Cursor, str)):
                raise ValidationError("after", "must be the cursor (or its string) returned by find()", after)
            keyset = keyset_after(order, check_cursor(Cursor.parse(after), order, self.spec))
            condition = keyset if isinstance(condition, type(ALL)) else And((condition, keyset))
        fetch = None if limit is None else limit + 1
        items = self._repo.find(self._crm.tenant, condition, order, fetch)
        if limit is not None and len(items) > limit:
            items = items[:limit]
            return Page(tuple(items), Cursor(order.text(), order.sort_key_values(self.spec, items[-1])))
        return Page(tuple(items), None)

    def stream(
        self, where: Where = None, *, order_by: str | Sequence[str] | None = None, batch_size: int = 1000
    ) -> Iterator[R]:
        """Every matching record, fetched page by page (bounded memory, any number of records)."""
        count_of("batch_size", batch_size)
        return scan(self._repo, self._crm.tenant, bind(where, self.spec), parse_order(order_by, self.spec), batch_size)


class _Records(_ReadRecords[R]):
    """Reads and writes: add, add_many, update, delete, with events and optimistic concurrency."""

    def _check(self, item: object, row: int | None = None) -> R:
        cls = self.spec.cls
        if item.__class__ is not cls:
            if isinstance(item, cls):
                message = (
                    f"must be a {cls.__name__}: {type(item).__name__} is a subclass, and the store keeps "
                    f"only the fields of {cls.__name__} (declare an aggregate of its own instead)"
                )
            else:
                message = f"must be a {cls.__name__}"
            err = ValidationError(self.spec.label, message, item)
            raise err if row is None else err.at_row(row)
        check_size(item, self.spec.label, row)  # the same budget on every backend (crmkit._budget)
        return item  # type: ignore[return-value]

    def _check_references(self, records: Sequence[R], first_row: int | None) -> None:
        """Raise ValidationError naming the field and row of a reference the store does not hold."""
        self._crm._require_references(self.spec, records, first_row)

    def _require_customers(self, records: Sequence[R], fields: Sequence[str], first_row: int | None) -> None:
        wanted = {getattr(r, f) for r in records for f in fields}
        found = self._crm.store.repository(CUSTOMERS).existing_ids(self._crm.tenant, list(wanted))
        for i, record in enumerate(records):
            for field in fields:
                if getattr(record, field) not in found:
                    err = ValidationError(field, "no customer with this id in this tenant", getattr(record, field))
                    raise err if first_row is None else err.at_row(first_row + i)

    def add(self, item: R) -> R:
        """Store a new record; returns the stored copy (version 1, timestamps set)."""
        record = self._check(item)
        if record.version != 0:
            raise ValidationError(
                "version", "a new record has version 0 (update() changes stored ones)", record.version
            )
        now = self._crm.now()
        stored = _stamped(record, now)
        with self._crm.transaction():
            self._check_references([stored], None)
            self._repo.insert(self._crm.tenant, [stored])
            self._crm._emit(event_for(self.spec.name, "created", self.spec.label), None, stored)
        return stored

    def add_many(self, items: Iterable[R], *, batch_size: int = 10_000) -> BulkResult:
        """Store records from any iterable, a batch at a time, skipping external_ids already stored.

        Each batch is written atomically, in one database transaction (inside
        ``crm.transaction()``, everything is), and batches commit in order. A bad record
        raises ValidationError naming its row (0-based position in ``items``); the batches
        before it stay committed, and because imports are idempotent by ``external_id`` the
        corrected import can simply be run again. Larger batches mean fewer commits, which
        is what bulk imports mostly pay for on a database; smaller ones hold a SQLite file's
        write lock for less time at once. At most ``batch_size`` records are held in memory,
        twice that on a database server: there (``store.capabilities.server``), outside
        ``crm.transaction()``, one batch is written by a helper thread while the next is
        read from ``items``, prepared and checked for references (just before its own
        transaction rather than inside it), so that the server works while Python does.
        Events are delivered on the calling thread either way, after each commit, in order.
        If ``crmkit_after_commit`` implementations raise, the import goes on and every batch
        is still delivered to all of them; their first error is raised at the end, with the
        others attached (``crmkit._host.together``). A batch that collides with a concurrent
        transaction (another process importing the same rows) is run again, after a short
        random pause, up to 20 times (``crmkit._retry``) before its ConflictError is raised.
        """
        count_of("batch_size", batch_size)
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise ValidationError("items", "must be an iterable of records", items)
        hook_errors: list[Exception] = []  # what crmkit_after_commit implementations raised, batch by batch
        try:
            result = self._add_batches(iter_batches(iter(items), batch_size), hook_errors)
        except Exception as exc:
            together([exc, *hook_errors])  # the import's own error first, the hooks' attached
            raise
        if hook_errors:
            raise together(hook_errors)
        return result

    def _add_batches(self, batches: Iterator[list[Any]], hook_errors: list[Exception]) -> BulkResult:
        if self._crm.store.capabilities.server and not self._crm._in_transaction():
            first = next(batches, None)
            if first is None:
                return BulkResult(0, 0)
            second = next(batches, None)
            if second is not None:  # a thread is worth starting only for two batches or more
                return self._add_overlapped(itertools.chain([first, second], batches), hook_errors)
            batches = iter([first])
        # no server to keep busy, or the caller's transaction to join, or one batch: write here
        added = skipped = row = 0
        for batch in batches:
            events: list[Event] = []
            inserted = self._write_batch(self._prepared(batch, row), row, None, events)
            added += len(inserted)
            skipped += len(batch) - len(inserted)
            row += len(batch)
            if events:
                hook_errors += self._crm._host.deliver(self._crm, events)
        return BulkResult(added, skipped)

    def _add_overlapped(self, batches: Iterator[list[Any]], hook_errors: list[Exception]) -> BulkResult:
        """add_many writing batch k on a helper thread while this thread prepares batch k+1."""
        added = skipped = row = 0
        pending: tuple[Future[list[R]], list[Event], int] | None = None

        def settle() -> None:
            nonlocal added, skipped, pending
            assert pending is not None
            future, events, size = pending
            pending = None
            inserted = future.result()  # raises the batch's own error if its write failed
            added += len(inserted)
            skipped += size - len(inserted)
            if events:
                hook_errors.extend(self._crm._host.deliver(self._crm, events))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crmkit-add-many") as writer:
            try:
                for batch in batches:
                    prepared = self._prepared(batch, row)
                    self._check_references(prepared, row)
                    write = self._repo.prepare_insert_new(self._crm.tenant, prepared)
                    if pending is not None:
                        settle()
                    events: list[Event] = []
                    task = writer.submit(self._write_batch, prepared, row, write, events, checked=True)
                    pending = (task, events, len(batch))
                    row += len(batch)
                if pending is not None:
                    settle()
            finally:
                # Reading or preparing the input failed: the batch in flight still commits (or
                # fails, and then its error, about earlier rows, is the one raised).
                if pending is not None:
                    settle()
        return BulkResult(added, skipped)

    def _prepared(self, batch: Sequence[Any], row: int) -> list[R]:
        """The stored form of a batch (version 1, timestamps), minus repeats of an external_id in it."""
        now = self._crm.now()
        prepared: list[R] = []
        seen_external: set[str] = set()
        for i, item in enumerate(batch):
            record = self._check(item, row + i)
            if record.version != 0:
                raise ValidationError("version", "a new record has version 0", record.version).at_row(row + i)
            external = getattr(record, "external_id", None)
            if external is not None:
                if external in seen_external:
                    continue
                seen_external.add(external)
            prepared.append(_stamped(record, now))
        return prepared

    def _write_batch(
        self,
        prepared: list[R],
        row: int,
        write: Callable[[], list[R]] | None = None,
        committed_events: list[Event] | None = None,
        *,
        checked: bool = False,
    ) -> list[R]:
        """Check references and insert the new records of one batch, atomically; return those stored.

        ``write`` is the batch's prepared insert (``Repository.prepare_insert_new``), if any. A
        batch that lost a race with a concurrent transaction (a transient ConflictError) is run
        again, unless it is part of the caller's transaction, which the lost race undid whole.
        """
        if self._crm._in_transaction():
            return self._write_batch_once(prepared, row, write, committed_events, checked)
        return retrying(lambda: self._write_batch_once(prepared, row, write, committed_events, checked))

    def _write_batch_once(
        self,
        prepared: list[R],
        row: int,
        write: Callable[[], list[R]] | None,
        committed_events: list[Event] | None,
        checked: bool,
    ) -> list[R]:
        with self._crm._transaction(committed_events):
            if not checked:
                self._check_references(prepared, row)
            inserted = write() if write is not None else self._repo.insert_new(self._crm.tenant, prepared)
            if self._crm._events_wanted:
                created = event_for(self.spec.name, "created", self.spec.label)
                for record in inserted:
                    self._crm._emit(created, None, record)
        return inserted

    def get_by_external_id(self, external_id: str) -> R:
        """The record imported under that external id; NotFound if none."""
        if not self.spec.has_external_id:
            raise ValidationError("external_id", f"{self.spec.name} have no external id", external_id)
        text_of("external_id", external_id)  # no NUL or lone surrogates: no store could hold them
        record = self._repo.get_by_external_id(self._crm.tenant, external_id)
        if record is None:
            raise NotFound(self.spec.label, f"with external_id {external_id!r}")
        return record

    def update(self, item: R) -> R:
        """Replace a stored record; ConflictError unless ``item.version`` is the stored version.

        Returns the stored copy with the version bumped and ``updated_at`` set.
        """
        record = self._check(item)
        with self._crm.transaction():
            current = self._current(record)
            new = self._bumped(current, record)
            self._check_references([new], None)
            self._before_replace(current, new)
            self._replace(current, new)
            self._after_replace(current, new, rule="manual", reason=None)
        return new

    def _current(self, record: R) -> R:
        current = self.get(record.id)
        if current.version != record.version:
            raise ConflictError(
                f"{self.spec.label} {record.id} is at version {current.version}; "
                f"this update was based on version {record.version} (reload and retry)",
                entity=self.spec.label,
                key=record.id,
            )
        return current

    def _bumped(self, current: R, record: R) -> R:
        return attrs.evolve(  # type: ignore[misc]
            record,
            created_at=current.created_at,
            updated_at=self._crm.now(),
            version=current.version + 1,
        )

    def _replace(self, current: R, new: R) -> None:
        if not self._repo.replace(self._crm.tenant, new, current.version):
            raise ConflictError(
                f"{self.spec.label} {new.id} was changed or deleted concurrently (reload and retry)",
                entity=self.spec.label,
                key=new.id,
            )
        self._crm._emit(event_for(self.spec.name, "updated", self.spec.label), current, new)

    def _before_replace(self, current: R, new: R) -> None:
        """Checks that need the stored record (subclasses)."""

    def _after_replace(self, current: R, new: R, *, rule: str, reason: str | None) -> StageChange | None:
        """Follow-up writes in the same transaction (subclasses)."""
        return None

    def delete(self, id: uuid.UUID, *, expected_version: int | None = None) -> None:
        """Delete a record (and, for customers, everything that belongs to it); NotFound if absent."""
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ValidationError("expected_version", "must be an integer or None", expected_version)
        with self._crm.transaction():
            current = self.get(id)
            if expected_version is not None and current.version != expected_version:
                raise ConflictError(
                    f"{self.spec.label} {id} is at version {current.version}, not {expected_version}",
                    entity=self.spec.label,
                    key=id,
                )
            self._delete_current(current)

    def _delete_current(self, current: R) -> None:
        """Apply the references' delete policies, then delete the record (inside a transaction)."""
        self._cascade(current)
        if not self._repo.delete(self._crm.tenant, current.id, current.version):
            raise ConflictError(
                f"{self.spec.label} {current.id} was changed concurrently", entity=self.spec.label, key=current.id
            )
        self._crm._emit(event_for(self.spec.name, "deleted", self.spec.label), current, None)

    def _cascade(self, current: R) -> None:
        """What deleting the record does to records that refer to it (``on_delete`` of each reference)."""
        self._crm._on_delete(self.spec, current.id)


class Customers(_Records[Customer]):
    """``crm.customers``: people and organisations."""

    spec = CUSTOMERS

    def _check_references(self, records: Sequence[Customer], first_row: int | None) -> None:
        stages = self._crm.lifecycle.stages
        for i, record in enumerate(records):
            if record.stage not in stages:
                err = ValidationError(
                    "stage", f"is not a stage of this connection's life cycle ({', '.join(stages.names)})", record.stage
                )
                raise err if first_row is None else err.at_row(first_row + i)

    def _before_replace(self, current: Customer, new: Customer) -> None:
        if new.stage != current.stage:
            self._crm.lifecycle.guard(current, new.stage, "manual")

    def _after_replace(self, current: Customer, new: Customer, *, rule: str, reason: str | None) -> StageChange | None:
        if new.stage == current.stage:
            return None
        now = self._crm.now()  # read once: the change happened at one moment
        change = StageChange(
            customer_id=new.id,
            from_stage=current.stage,
            to_stage=new.stage,
            occurred_at=now,
            rule=rule,
            reason=reason,
            created_at=now,
            updated_at=now,
            version=1,
        )
        self._crm.store.repository(STAGE_CHANGES).insert(self._crm.tenant, [change])
        self._crm._emit(StageChanged, None, change)
        return change

    def _move(self, customer: Customer, stage: Stage, *, rule: str, reason: str | None) -> StageChange | None:
        """Change the stage of a stored customer (guards already passed) and record why."""
        with self._crm.transaction():
            current = self._current(customer)
            new = self._bumped(current, attrs.evolve(current, stage=stage))
            self._replace(current, new)
            return self._after_replace(current, new, rule=rule, reason=reason)

    def may_contact(self, customer: Customer | uuid.UUID, channel: str) -> bool:
        """Whether outbound contact with the customer on ``channel`` is allowed now.

        A channel whose type does not need consent (``ChannelType.needs_consent`` false: the
        web, meetings, face to face) is always allowed; on any other channel some contact
        point must record granted consent for it and none may deny it. ValidationError for a
        channel no plugin registered.
        """
        ctype = self._crm.channels.get(str(channel)) if isinstance(channel, str) else None
        if ctype is None:
            known = ", ".join(sorted(self._crm.channels))
            raise ValidationError("channel", f"is not a registered channel (known: {known})", channel)
        record = customer if isinstance(customer, Customer) else self.get(customer)
        return not ctype.needs_consent or record.may_contact(ctype.name)

    def _cascade(self, current: Customer) -> None:
        super()._cascade(current)  # the declared aggregates' references to customers
        tenant, crm = self._crm.tenant, self._crm
        mine = Compare("customer_id", "==", current.id)
        edges = Or((Compare("source_id", "==", current.id), Compare("target_id", "==", current.id)))
        for spec, where in (
            (RELATIONSHIPS, edges),
            (INTERACTIONS, mine),
            (TRANSACTIONS, mine),
            (STAGE_CHANGES, mine),
        ):
            if crm._referred_to(spec):  # some declared aggregate may point at these records: one by one
                repo = crm.store.repository(spec)
                for record in list(scan(repo, tenant, where, parse_order(None, spec))):
                    crm._delete_dependent(spec, record)
            else:
                crm.store.repository(spec).delete_where(tenant, where)


class Interactions(_Records[Interaction]):
    """``crm.interactions``: contacts with customers on any channel."""

    spec = INTERACTIONS

    def _check_references(self, records: Sequence[Interaction], first_row: int | None) -> None:
        known = self._crm.channels
        for i, record in enumerate(records):
            if record.channel not in known:
                err = ValidationError(
                    "channel", f"is not a registered channel (known: {', '.join(sorted(known))})", str(record.channel)
                )
                raise err if first_row is None else err.at_row(first_row + i)
        self._require_customers(records, ("customer_id",), first_row)


class Transactions(_Records[Transaction]):
    """``crm.transactions``: purchases and refunds."""

    spec = TRANSACTIONS

    def _check_references(self, records: Sequence[Transaction], first_row: int | None) -> None:
        self._require_customers(records, ("customer_id",), first_row)


class Relationships(_Records[Relationship]):
    """``crm.relationships``: typed edges between customers, with neighbour and traversal queries."""

    spec = RELATIONSHIPS

    def _check_references(self, records: Sequence[Relationship], first_row: int | None) -> None:
        types = self._crm.relationship_types
        for i, record in enumerate(records):
            rtype = types.get(record.kind)
            problem = None
            if rtype is None:
                problem = f"is not a registered relationship type (known: {', '.join(sorted(types))})"
            elif rtype.name != record.kind:
                problem = f"is the inverse of '{rtype.name}': store it as {rtype.name} with source and target swapped"
            if problem is not None:
                err = ValidationError("kind", problem, record.kind)
                raise err if first_row is None else err.at_row(first_row + i)
        self._require_customers(records, ("source_id", "target_id"), first_row)

    def _resolve(self, kind: str | Iterable[str] | None, direction: Direction) -> tuple[frozenset[str], Direction]:
        """Primary type names and the direction to walk stored edges in.

        Without ``kind`` every type is walked in ``direction`` as stored (pass "both" to
        follow symmetric edges either way). A named symmetric type is walked both ways; an
        inverse name (``employs``) walks its primary type's edges the other way.
        """
        if direction not in DIRECTIONS:
            raise ValidationError("direction", "must be out, in or both", direction)
        types = self._crm.relationship_types
        if kind is None:
            return frozenset(t.name for t in types.values()), direction
        if isinstance(kind, str):
            names = [kind]
        elif isinstance(kind, Iterable) and not isinstance(kind, (bytes, Mapping)):
            names = list(kind)
        else:
            raise ValidationError("kind", "takes a relationship type name or a collection of them", kind)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValidationError("kind", "names no relationship type", kind)
        resolved: set[str] = set()
        directions: set[str] = set()
        for name in names:
            rtype = types.get(name)
            if rtype is None:
                raise ValidationError(
                    "kind", f"is not a registered relationship type (known: {', '.join(sorted(types))})", name
                )
            resolved.add(rtype.name)
            if rtype.symmetric:
                directions.add("both")
            elif rtype.name == name:
                directions.add(direction)
            else:  # asked by the inverse name: walk the stored edges the other way
                directions.add({"out": "in", "in": "out", "both": "both"}[direction])
        if len(directions) > 1:
            raise ValidationError("kind", "mixes relationship types that must be walked in different directions", kind)
        return frozenset(resolved), directions.pop()  # type: ignore[return-value]

    def neighbours(
        self,
        customer_id: uuid.UUID,
        *,
        kind: str | Iterable[str] | None = None,
        direction: Direction = "both",
        as_of: dt.date | None = None,
    ) -> list[Reached]:
        """Customers one step away, with the edge to each (``kind`` may be an inverse name such as employs)."""
        return self.traverse(customer_id, kind=kind, direction=direction, depth=1, as_of=as_of)

    def traverse(
        self,
        customer_id: uuid.UUID,
        *,
        kind: str | Iterable[str] | None = None,
        direction: Direction = "out",
        depth: int = 1,
        as_of: dt.date | None = None,
    ) -> list[Reached]:
        """Customers reachable within ``depth`` steps (account hierarchies, referral chains), nearest first."""
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 100:
            raise ValidationError("depth", "must be an integer from 1 to 100", depth)
        if as_of is not None and (not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime)):
            raise ValidationError("as_of", "must be a date", as_of)
        self._crm.customers.get(customer_id)
        kinds, walk = self._resolve(kind, direction)
        reached = self._crm.store.traverse(self._crm.tenant, customer_id, kinds, walk, depth, as_of)
        return sorted(reached, key=lambda r: (r.depth, r.customer_id))


class StageChanges(_ReadRecords[StageChange]):
    """``crm.stage_changes``: the record of every stage change (written by the life cycle only)."""

    spec = STAGE_CHANGES


class Records(_Records[R]):
    """``crm.records(Subscription)``: the service of any aggregate, derived from its declaration.

    add, add_many (streamed, batched, idempotent by external_id), get, get_by_external_id,
    find with keyset pages, count, stream, update with optimistic concurrency and delete
    applying every reference's ``on_delete`` policy; references are checked on write.
    """

    def __init__(self, crm: CRM, spec: EntitySpec) -> None:
        self.spec = spec
        super().__init__(crm)

    def __repr__(self) -> str:
        return f"<records of {self.spec.name}>"


class CRM:
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
    ) -> None:
        self.store = store
        self.tenant = tenant
        self.policy = policy or LifecyclePolicy()
        #: Every aggregate of this connection, with fields, references, unique keys and indexes.
        self.schema: Schema = schema if schema is not None else host.schema()
        self._actor = _actor("actor", actor)
        self._host = host
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._local = threading.local()
        self._events_wanted = host.wants_events()
        self._before_commit_wanted = host.has_before_commit
        self.channels: dict[str, ChannelType] = host.channels()
        self.relationship_types: dict[str, RelationshipType] = host.relationship_types()
        self.customers = Customers(self)
        self.relationships = Relationships(self)
        self.interactions = Interactions(self)
        self.transactions = Transactions(self)
        self.stage_changes = StageChanges(self)
        self.lifecycle = Lifecycle(self)
        self._services: dict[str, _ReadRecords[Any]] = {
            s.spec.name: s
            for s in (self.customers, self.relationships, self.interactions, self.transactions, self.stage_changes)
        }
        self._referrers = {
            name: any(r.source in self.schema.declared for r in self.schema.references_to(name)) for name in self.schema
        }

    def records(self, aggregate: type[R] | str) -> Records[R]:
        """The service of an aggregate, by class or name: ``crm.records(Subscription)``."""
        spec = self.schema.spec(aggregate)
        service = self._services.get(spec.name)
        if service is None:
            service = self._services.setdefault(spec.name, Records(self, spec))
        return service  # type: ignore[return-value]

    @property
    def actor(self) -> str | None:
        """Who the changes made now are attributed to (events carry it); None when unset."""
        stack = getattr(self._local, "actors", None)
        return stack[-1] if stack else self._actor

    @contextmanager
    def acting_as(self, actor: str | None) -> Iterator[None]:
        """Attribute the changes made in the block (on this thread) to ``actor``."""
        checked = _actor("actor", actor)
        stack = self._local.__dict__.setdefault("actors", [])
        stack.append(checked)
        try:
            yield
        finally:
            stack.pop()

    # ------------------------------------------------------------------ references
    def _referred_to(self, spec: EntitySpec) -> bool:
        """Whether a declared aggregate has a reference that may point at records of ``spec``."""
        return self._referrers.get(spec.name, False)

    def _require_references(self, spec: EntitySpec, records: Sequence[Any], first_row: int | None) -> None:
        """ValidationError (field and row) for a reference to a record this tenant does not hold."""
        for ref in self.schema.references_from(spec.name):
            if spec.name not in self.schema.declared:
                continue  # crmkit's own aggregates check theirs in their services
            wanted: dict[str, set[uuid.UUID]] = {}
            for record in records:
                pointer = _pointer(ref, getattr(record, ref.field))
                if pointer is not None:
                    wanted.setdefault(pointer[0], set()).add(pointer[1])
            found: dict[str, set[uuid.UUID]] = {}
            for target, ids in wanted.items():
                if target in self.schema:
                    found[target] = self.store.repository(self.schema[target]).existing_ids(self.tenant, list(ids))
            for i, record in enumerate(records):
                value = getattr(record, ref.field)
                pointer = _pointer(ref, value)
                if pointer is None or pointer[1] in found.get(pointer[0], ()):
                    continue
                if pointer[0] not in self.schema:
                    err = ValidationError(ref.field, f"refers to {pointer[0]!r}, not a registered aggregate", value)
                else:
                    err = ValidationError(
                        ref.field, f"no {self.schema[pointer[0]].label} with this id in this tenant", value
                    )
                raise err if first_row is None else err.at_row(first_row + i)

    def _on_delete(self, spec: EntitySpec, id: uuid.UUID) -> None:
        """Apply every declared reference's ``on_delete`` to the records that point at one being deleted."""
        if not self._referred_to(spec):
            return
        deleting: set[tuple[str, uuid.UUID]] = self._local.__dict__.setdefault("deleting", set())
        if (spec.name, id) in deleting:
            return  # a reference cycle led back here: the record is already on its way out
        deleting.add((spec.name, id))
        try:
            referring = []
            for ref in self.schema.references_to(spec.name):
                if ref.source not in self.schema.declared:
                    continue
                source = self.schema[ref.source]
                if ref.any:
                    where: Expr = And(
                        (Compare(f"{ref.field}.aggregate", "==", spec.name), Compare(f"{ref.field}.id", "==", id))
                    )
                else:
                    where = Compare(ref.field, "==", id)
                if ref.on_delete == "restrict":
                    blocking = self.store.repository(source).find(self.tenant, where, parse_order(None, source), 5)
                    if blocking:
                        names = ", ".join(str(r.id) for r in blocking)
                        raise ConflictError(
                            f"{spec.label} {id} is referred to by {source.name}.{ref.field} "
                            f"({names}{' and more' if len(blocking) == 5 else ''}): "
                            "delete or change those first",
                            entity=spec.label,
                            key=id,
                        )
                else:
                    referring.append((ref, source, where))
            for ref, source, where in referring:
                service: Records[Any] = self.records(source.name)
                for record in list(scan(service._repo, self.tenant, where, parse_order(None, source))):
                    current = service._repo.get(self.tenant, record.id)
                    if current is None:
                        continue  # deleted by an earlier cascade of this same delete
                    if ref.on_delete == "cascade":
                        service._delete_current(current)
                    else:
                        service._replace(current, service._bumped(current, attrs.evolve(current, **{ref.field: None})))
        finally:
            deleting.discard((spec.name, id))

    def _delete_dependent(self, spec: EntitySpec, record: Any) -> None:
        """Delete one record of crmkit's own aggregates as part of a cascade, with its policies and event."""
        service: _ReadRecords[Any] = self.records(spec.name)
        if isinstance(service, _Records):
            service._delete_current(record)
            return
        self._on_delete(spec, record.id)
        self.store.repository(spec).delete(self.tenant, record.id, record.version)
        self._emit(event_for(spec.name, "deleted", spec.label), record, None)

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

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; events are delivered after the commit.

        Blocks nest: an inner block joins the outer transaction. If an exception leaves an
        inner block, the whole transaction is rolled back even if the outer code catches it.
        """
        with self._transaction(None):
            yield

    @contextmanager
    def _transaction(self, committed_events: list[Event] | None) -> Iterator[None]:
        """``transaction()``; given a list, the events of the commit go into it instead of to the hooks.

        (Bulk imports may write on a helper thread, and deliver the events on the caller's.)
        """
        local = self._local
        if getattr(local, "depth", 0) > 0:
            local.depth += 1
            try:
                yield
            except BaseException:
                local.doomed = True
                raise
            finally:
                local.depth -= 1
            return
        local.depth, local.events, local.doomed = 1, [], False
        committed = False
        try:
            with self.store.transaction():
                yield
                if local.doomed:
                    raise _RollbackOnly
                self._before_commit(local)
            committed = True
        except _RollbackOnly:
            raise CRMError("rolled back: an inner transaction() block failed and its error was caught") from None
        finally:
            local.depth = 0
            events, local.events = local.events, []
        if committed and events:
            if committed_events is None:
                self._host.after_commit(self, events)
            else:
                committed_events.extend(events)

    def _before_commit(self, local: threading.local) -> None:
        """Hand the transaction's events to ``crmkit_before_commit``, again for what its writes add."""
        if not self._before_commit_wanted:
            return
        seen = 0  # writes the hook makes join this transaction: its depth is still 1
        for _ in range(_BEFORE_COMMIT_ROUNDS):
            if seen == len(local.events):
                return
            fresh, seen = local.events[seen:], len(local.events)
            self._host.before_commit(self, tuple(fresh))
            if local.doomed:
                raise _RollbackOnly
        raise CRMError(
            f"crmkit_before_commit kept writing for {_BEFORE_COMMIT_ROUNDS} rounds: "
            "a hook reacts to its own records (rolled back)"
        )

    def _in_transaction(self) -> bool:
        """Whether the calling thread is inside ``transaction()``."""
        return getattr(self._local, "depth", 0) > 0

    def _emit(self, kind: type[Event], before: Any, after: Any) -> None:
        if self._events_wanted:
            self._local.events.append(kind(self.tenant, self.now(), before, after, self.actor))

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
        """A customer's interactions, transactions and stage changes in one time-ordered list."""
        self.customers.get(customer_id)
        where: Expr = Compare("customer_id", "==", customer_id)
        if since is not None:
            where = And((where, Compare("occurred_at", ">=", since)))
        if until is not None:
            where = And((where, Compare("occurred_at", "<=", until)))
        order = "-occurred_at" if newest_first else "occurred_at"
        streams = [
            (label, service.find(where, order_by=order, limit=limit).items)
            for label, service in (
                ("interaction", self.interactions),
                ("transaction", self.transactions),
                ("stage_change", self.stage_changes),
            )
        ]
        entries = [[TimelineEntry(r.occurred_at, label, r) for r in records] for label, records in streams]
        merged = heapq.merge(*entries, key=lambda e: (e.at, e.record.id), reverse=newest_first)
        out = list(merged)
        return out if limit is None else out[:limit]

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
    **options: Any,
) -> CRM:
    """Open the store at ``url`` for ``tenant``, loading built-in and installed plugins.

    ``plugins`` are extra plugin objects or modules to register (rules, channels...);
    ``block`` names plugins not to load (e.g. ``"crmkit.rules.defaults"``); ``clock``
    supplies the current time; ``actor`` names who the changes are made by (events
    carry it; ``crm.acting_as`` overrides it for a block); remaining keyword options go
    to the backend.
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
    return CRM(store, host, tenant, clock=clock, policy=policy, schema=schema, actor=checked_actor)

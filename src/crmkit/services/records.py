"""The record services every aggregate shares: reads, writes, bulk imports, optimistic concurrency.

``Records`` serves any declared aggregate (``crm.records(Cls)``); crmkit's own services
subclass ``_Records`` with their extra checks.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from crmkit._budget import check_size
from crmkit._errors import ConflictError, NotFound, ValidationError
from crmkit._host import together
from crmkit._retry import retrying
from crmkit._validation import count_of, text_of
from crmkit.aggregation import Aggregation, finish, parse_aggregate
from crmkit.entities import (
    CUSTOMERS,
    EntitySpec,
)
from crmkit.events import Event, event_for
from crmkit.lifecycle_model import StageChange
from crmkit.query import (
    ALL,
    And,
    Cursor,
    Expr,
    In,
    Where,
    bind,
    check_cursor,
    has_select,
    keyset_after,
    parse_order,
    relative_to,
)
from crmkit.store import Repository, iter_batches, scan

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["PAGE_SIZE", "BulkResult", "Page", "Records", "UpsertResult"]

T = TypeVar("T")

#: How many records ``find`` returns when no ``limit`` is given: a first page, with a ``next``
#: cursor when there are more (``scan`` reads every match, a page at a time).
PAGE_SIZE = 1000


class _Record(Protocol):
    """What the CRM needs of every stored aggregate."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...

    @property
    def created_at(self) -> dt.datetime | None: ...


R = TypeVar("R", bound=_Record)


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
class UpsertResult:
    """What ``upsert_many`` did: rows added, updated, found unchanged, and the rows that failed.

    ``failed`` lists ``(index, field, message)``: the row's 0-based position in the input,
    the field at fault and why.
    """

    added: int
    updated: int
    unchanged: int
    failed: tuple[tuple[int, str, str], ...] = ()


def _external_id(record: object) -> Any:
    """The external id of a record (None when it has none)."""
    return getattr(record, "external_id", None)


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


#: The fields the store sets on a record: an upserted row's are taken from the stored record.
_STORED_FIELDS = ("id", "created_at", "updated_at", "version")
_restampers: dict[type, Callable[..., Any]] = {}


def _restamped(record: R, stored: Any, updated_at: dt.datetime | None, version: int) -> R:
    """An upserted row as the stored record it updates: the stored id and created_at, the given time and version.

    Like ``_stamped``, a copy made by a function generated once per class, without running
    the validators again (the row was checked when it was built, the set fields come from
    the store and the CRM clock).
    """
    restamp = _restampers.get(record.__class__)
    if restamp is None:
        restamp = _restampers[record.__class__] = _generated(record.__class__, "restamp")
    return restamp(record, stored, updated_at, version)  # type: ignore[no-any-return]


def _generated(cls: type, what: str) -> Callable[..., Any]:
    names = [a.name for a in attrs.fields(cls)]
    slots = {s for c in cls.__mro__ for s in getattr(c, "__slots__", ())} - {"__weakref__"}
    plain = not cls.__dictoffset__ and slots == set(names)
    if plain:
        stamped = {"id": "s.id", "created_at": "s.created_at", "updated_at": "at", "version": "version"}
        lines = [f"    _set(new, {n!r}, {stamped.get(n, f'r.{n}')})" for n in names]
        source = "def restamp(r, s, at, version):\n    new = _new(cls)\n" + "\n".join(lines) + "\n    return new\n"
    else:  # not a plain slotted attrs class: copy it generically

        def restamp(record: Any, stored: Any, at: dt.datetime | None, version: int) -> Any:
            new = copy.copy(record)
            for name, value in zip(_STORED_FIELDS, (stored.id, stored.created_at, at, version), strict=True):
                object.__setattr__(new, name, value)
            return new

        return restamp
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "cls": cls}
    exec(compile(source, f"<crmkit {what} {cls.__qualname__}>", "exec"), namespace)
    return namespace[what]  # type: ignore[no-any-return]


@contextlib.contextmanager
def _located(rows: Mapping[Any, int]) -> Iterator[None]:
    """Give a ConflictError about one of the records (its ``key``: the record's id) the input row of that record."""
    try:
        yield
    except ConflictError as exc:
        if getattr(exc, "row", None) is None and exc.key in rows:
            exc.row = rows[exc.key]  # type: ignore[attr-defined]
        raise


def bound_on(crm: CRM, spec: EntitySpec, where: Where, now: dt.datetime | None = None) -> Expr:
    """A condition bound to the aggregate ``spec``; relative instants (``ago(days=90)``) count back from
    ``now`` (the connection's clock when not given); stores run its sub-queries (grouped ones too) inside
    the query that uses them, and searches through them are checked to be possible on this connection."""
    condition = bind(relative_to(where, crm.now() if now is None else now), spec, crm.schema)
    if has_select(condition):
        from crmkit.search_terms import check_searched

        check_searched(crm, condition)
    return condition


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

    def _bound(self, where: Where) -> Expr:
        """A condition bound to this aggregate (``bound_on``)."""
        return bound_on(self._crm, self.spec, where)

    def count(self, where: Where = None) -> int:
        """How many records match, counted in the store."""
        return self._repo.count(self._crm.tenant, self._bound(where))

    def find(
        self,
        where: Where = None,
        *,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        after: Cursor | str | None = None,
    ) -> Page[R]:
        """Matching records in order (``"-field"`` for descending), at most ``limit``, after a cursor.

        Without ``limit``, a first page of ``PAGE_SIZE`` (1,000) records: never every row at
        once. ``page.next`` is the cursor of the following page (None: no more); pass it as
        ``after``. ``scan`` reads every match.
        """
        condition = self._bound(where)
        order = parse_order(order_by, self.spec)
        if limit is None:
            limit = PAGE_SIZE
        else:
            count_of("limit", limit)
        if after is not None:
            if not isinstance(after, (Cursor, str)):
                raise ValidationError("after", "must be the cursor (or its string) returned by find()", after)
            keyset = keyset_after(order, check_cursor(Cursor.parse(after), order, self.spec))
            condition = keyset if isinstance(condition, type(ALL)) else And((condition, keyset))
        items = self._repo.find(self._crm.tenant, condition, order, limit + 1)
        if len(items) > limit:
            items = items[:limit]
            return Page(tuple(items), Cursor(order.text(), order.sort_key_values(self.spec, items[-1])))
        return Page(tuple(items), None)

    def aggregate(
        self,
        where: Where = None,
        *,
        group_by: str | Sequence[str] | None = None,
        count: bool = False,
        sum: str | Sequence[str] | None = None,
        min: str | Sequence[str] | None = None,
        max: str | Sequence[str] | None = None,
        mean: str | Sequence[str] | None = None,
        count_distinct: str | Sequence[str] | None = None,
    ) -> Aggregation:
        """A group-by report computed in the store (``crmkit.aggregation`` says what each part means).

        ``group_by`` takes fields, ``attributes.<name>`` and time buckets
        (``"month(occurred_at)"``: day, week, month, quarter, year, in UTC); the measures
        are ``count=True`` and fields for ``sum``, ``min``, ``max``, ``mean`` and
        ``count_distinct``. Rows come sorted by group: ``row["currency"]``, ``row["sum(amount)"]``.
        """
        query = parse_aggregate(
            self.spec,
            group_by=group_by,
            count=count,
            sum=sum,
            min=min,
            max=max,
            mean=mean,
            count_distinct=count_distinct,
        )
        condition = self._bound(where)
        return finish(query, self._repo.aggregate(self._crm.tenant, condition, query))

    def scan(self, where: Where = None, *, order_by: str | Sequence[str] | None = None) -> Iterator[R]:
        """Every matching record, read a page of 1,000 at a time by keyset: bounded memory, any number of records."""
        return self.stream(where, order_by=order_by)

    def stream(
        self, where: Where = None, *, order_by: str | Sequence[str] | None = None, batch_size: int = 1000
    ) -> Iterator[R]:
        """Every matching record, fetched page by page (bounded memory, any number of records)."""
        count_of("batch_size", batch_size)
        return scan(self._repo, self._crm.tenant, self._bound(where), parse_order(order_by, self.spec), batch_size)


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
        return self._add(record, self._crm.now())

    def _add(self, record: R, now: dt.datetime) -> R:
        """``add`` of a checked new record, stamped with ``now`` (a clock reading the caller took)."""
        stored = _stamped(record, now)
        with self._crm.transaction():
            self._check_references([stored], None)
            self._repo.insert(self._crm.tenant, [stored])
            self._after_insert([stored])
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
            with self._crm._unless_caused("import"):
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
        crm, actor, cause = self._crm, self._crm.actor, self._crm.cause

        def write_batch(prepared: list[R], row: int, write: Callable[[], list[R]], events: list[Event]) -> list[R]:
            with crm.acting_as(actor), crm.caused_by(cause):  # the helper thread acts for the caller's
                return self._write_batch(prepared, row, write, events, checked=True)

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
                    task = writer.submit(write_batch, prepared, row, write, events)
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

    def _unstored(self, prepared: list[R]) -> list[R]:
        """Inside the batch's transaction: the records to insert (all; a natural key narrows them)."""
        return prepared

    def add_from(self, source: type | str, where: Where = None, *, values: Mapping[str, Any]) -> BulkResult:
        """Add one record per ``source`` record that matches ``where``, built in the store (``INSERT ... SELECT``).

        ``source`` is an aggregate (class or name); ``values`` gives fields of the new records:
        ``F("id")`` copies the source record's field, ``F("emails.address").first()`` the first
        element's value through a list, a condition (``F("id").in_(ids)``) gives a boolean field
        whether the source record matches it, anything else is the same value for every record.
        Fields left out take their defaults. One transaction: all records or none; a unique key
        already taken raises ConflictError with nothing written. Events, the audit trail and
        the feed see the new records as they see ``add_many``'s.

        Everything is checked before the store builds a record, each error a ValidationError
        naming the field (or ``source``/``values``): a constant as record construction checks
        it (a reference must name a stored record); a copied field must be one whose every
        value the target field takes (same kind, a reference to the same aggregate or that
        aggregate's ``id``, nothing nullable into a required field, and never into a field with
        a ``check=`` function unless the copied field has the very same one: stores cannot run
        Python); a condition fills only a boolean field; an aggregate with
        ``__attrs_post_init__`` takes only constants. A service's own ``_check_references``
        runs on the built records inside their transaction. Conditions (``where``, the tests) may
        hold relative instants (``ago``) and sub-queries. Under an access policy the source is
        read as the actor reads it and every new record is checked as ``add`` checks it.
        """
        from crmkit.services._add_from import bound_values, source_spec

        spec = source_spec(self._crm, source)
        source_repo = self._crm.store.repository(spec)
        condition = bound_on(self._crm, spec, where)
        built = bound_values(self._crm, self.spec, spec, values)

        def once() -> list[R]:
            with self._crm.transaction():
                made = self._repo.insert_from(self._crm.tenant, source_repo, condition, built, self._crm.now())
                if made and type(self)._check_references is not _Records._check_references:
                    self._check_references(made, None)  # a service's own rules (a registered channel...)
                self._after_insert(made)
                if made and self._crm._wants_events(self.spec.name):
                    self._crm._emit_created(event_for(self.spec.name, "created", self.spec.label), made)
            return made

        made = once() if self._crm._in_transaction() else retrying(once)
        return BulkResult(len(made), 0)

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
            unstored = self._unstored(prepared)
            if len(unstored) != len(prepared):  # the prepared write holds records now skipped
                prepared, write = unstored, None
            inserted = write() if write is not None else self._repo.insert_new(self._crm.tenant, prepared)
            self._after_insert(inserted)
            if self._crm._wants_events(self.spec.name):
                self._crm._emit_created(event_for(self.spec.name, "created", self.spec.label), inserted)
        return inserted

    def upsert_many(
        self,
        items: Iterable[Any],
        *,
        key: str = "external_id",
        batch_size: int = 1000,
        on_error: str = "raise",
    ) -> UpsertResult:
        """Add new records and update changed ones, found by their ``external_id`` (a sync from another system).

        ``items`` are records or mappings of field values (built and checked row by row),
        streamed a batch at a time; each batch is one transaction. A row whose stored
        record has the same values is counted unchanged and not written; a changed one is
        updated (version + 1, an event). A record with a version other than 0 must be at the
        stored version (optimistic concurrency). With ``on_error="raise"`` the first bad row
        raises ValidationError (or ConflictError) naming its row, the earlier batches staying
        committed; with ``on_error="report"`` bad rows are skipped and listed in ``failed``.
        """
        if key != "external_id" or not self.spec.has_external_id:
            raise ValidationError("key", "records are upserted by their external_id", key)
        if on_error not in ("raise", "report"):
            raise ValidationError("on_error", "must be 'raise' or 'report'", on_error)
        count_of("batch_size", batch_size)
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise ValidationError("items", "must be an iterable of records or mappings", items)
        totals = [0, 0, 0]
        failed: list[tuple[int, str, str]] = []
        row = 0
        with self._crm._unless_caused("import"):
            for batch in iter_batches(iter(items), batch_size):
                self._upsert_batch(batch, row, totals, failed, on_error == "report")
                row += len(batch)
        return UpsertResult(totals[0], totals[1], totals[2], tuple(failed))

    def _built(self, item: Any, row: int) -> R:
        if isinstance(item, Mapping):
            try:
                item = self.spec.cls(**item)
            except TypeError as exc:
                raise ValidationError(self.spec.label, f"is not a {self.spec.cls.__name__}: {exc}", None).at_row(
                    row
                ) from None
            except ValidationError as exc:
                raise exc.at_row(row) from None
        record = self._check(item, row)
        if _external_id(record) is None:
            raise ValidationError("external_id", "is needed to upsert a record", None).at_row(row)
        return record

    def _upsert_batch(
        self, batch: list[Any], row: int, totals: list[int], failed: list[tuple[int, str, str]], report: bool
    ) -> None:
        records: dict[int, R] = {}
        seen: dict[str, int] = {}
        for i, item in enumerate(batch):
            try:
                record = self._built(item, row + i)
                external = _external_id(record)
                if external in seen:
                    raise ValidationError(
                        "external_id", f"repeats row {seen[external]} of this import", external
                    ).at_row(row + i)
                seen[external] = row + i
                records[row + i] = record
            except ValidationError as exc:
                if not report:
                    raise
                failed.append((row + i, exc.field, exc.message))
        while True:
            try:
                with self._crm.transaction():
                    counts = self._upsert_rows(records)
                break
            except (ValidationError, ConflictError) as exc:
                index = getattr(exc, "row", None)
                if not report or index is None or index not in records:
                    raise
                field = exc.field if isinstance(exc, ValidationError) else getattr(exc, "field", "version")
                failed.append((index, field, exc.message if isinstance(exc, ValidationError) else str(exc)))
                del records[index]
        failed.sort()
        for k in range(3):
            totals[k] += counts[k]

    def _upsert_rows(self, records: Mapping[int, R]) -> tuple[int, int, int]:
        if not records:
            return 0, 0, 0
        tenant = self._crm.tenant
        # Which rows are stored, at which version, and which of those hold other values: compared
        # in the store (``Repository.compare_stored``); only the changed rows' records are read.
        stored = self._repo.compare_stored(tenant, list(records.values()))
        now = self._crm.now()
        new_rows: list[int] = []
        new: list[R] = []
        differing: list[tuple[int, R, uuid.UUID]] = []
        unchanged = 0
        for index, record in records.items():
            found = stored.get(_external_id(record))
            if found is None:
                if record.version != 0:
                    err = ConflictError(f"{self.spec.label} {_external_id(record)!r} is not stored")
                    err.row = index  # type: ignore[attr-defined]
                    raise err
                new_rows.append(index)
                new.append(_stamped(record, now))
                continue
            id, version, same = found
            if record.version not in (0, version):
                err = ConflictError(
                    f"{self.spec.label} {id} is at version {version}; this row was based on version {record.version}",
                    entity=self.spec.label,
                    key=id,
                )
                err.row = index  # type: ignore[attr-defined]
                raise err
            if same:
                unchanged += 1
            else:
                differing.append((index, record, id))
        changed: list[tuple[int, R, R]] = []
        if differing:
            ids = tuple(id for _, _, id in differing)
            currents = {r.id: r for r in self._repo.find(tenant, In("id", ids), parse_order(None, self.spec), None)}
            for index, record, id in differing:
                current = currents.get(id)
                if current is None or record.version not in (0, current.version):  # deleted or changed meanwhile
                    err = ConflictError(
                        f"{self.spec.label} {id} was changed or deleted concurrently (reload and retry)",
                        entity=self.spec.label,
                        key=id,
                    )
                    err.row = index  # type: ignore[attr-defined]
                    raise err
                changed.append((index, current, record))
        if new:
            self._check_indexed_references(new, new_rows)
            inserted = self._repo.insert_new(tenant, new)
            with _located({r.id: i for i, r in zip(new_rows, new, strict=True)}):
                self._after_insert(inserted)  # a policy refusing a record (a duplicate rule) names its row
            self._crm._emit_created(event_for(self.spec.name, "created", self.spec.label), inserted)
        if changed:
            self._update_rows(changed)
        return len(new), len(changed), unchanged

    def _update_rows(self, changed: list[tuple[int, R, R]]) -> None:
        """Write the changed rows of an upsert batch in one bulk replace, each at its stored version.

        A row whose stored version moved since it was read (a concurrent writer) is not
        overwritten: ConflictError naming its row, and the caller's transaction undoes the rest.
        """
        now = self._crm.now()
        rows = [i for i, _, _ in changed]
        currents = [c for _, c, _ in changed]
        bumped = [_restamped(record, current, now, current.version + 1) for _, current, record in changed]
        self._check_indexed_references(bumped, rows)  # the references of all changed rows in one look-up
        for index, current, new in zip(rows, currents, bumped, strict=True):
            try:
                self._before_replace(current, new)
            except ValidationError as exc:
                raise exc.at_row(index) from None
        stale = self._repo.replace_many(self._crm.tenant, bumped, [c.version for c in currents])
        if stale:
            index, current = next((i, c) for i, c in zip(rows, currents, strict=True) if c.id in stale)
            err = ConflictError(
                f"{self.spec.label} {current.id} was changed or deleted concurrently (reload and retry)",
                entity=self.spec.label,
                key=current.id,
            )
            err.row = index  # type: ignore[attr-defined]
            raise err
        self._crm._emit_changed(
            event_for(self.spec.name, "updated", self.spec.label), list(zip(currents, bumped, strict=True))
        )
        with _located({c.id: i for i, c in zip(rows, currents, strict=True)}):
            self._after_replace_many(list(zip(currents, bumped, strict=True)), rule="manual")

    def _after_replace_many(self, pairs: Sequence[tuple[R, R]], *, rule: str) -> None:
        """``_after_replace`` of many records at once (subclasses may do it in fewer writes)."""
        for current, new in pairs:
            self._after_replace(current, new, rule=rule, reason=None)

    def _check_indexed_references(self, records: list[R], rows: list[int]) -> None:
        """``_check_references`` with the error located at the input row of the record at fault."""
        try:
            self._check_references(records, 0)
        except ValidationError as exc:
            position = exc.row if exc.row is not None else 0
            raise exc.at_row(rows[position]) from None

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

    def _after_insert(self, records: Sequence[R]) -> None:
        """Follow-up writes for newly stored records, in their transaction (subclasses add theirs)."""
        from crmkit.search_terms import write_terms

        write_terms(self._crm, self.spec.name, records)

    def _before_replace(self, current: R, new: R) -> None:
        """Checks that need the stored record (subclasses)."""

    def _after_replace(self, current: R, new: R, *, rule: str, reason: str | None) -> StageChange | None:
        """Follow-up writes in the same transaction (subclasses add theirs)."""
        from crmkit.search_terms import rewrite_terms

        rewrite_terms(self._crm, self.spec.name, [(current, new)])
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
        with getattr(self._crm.store, "unrestricted", nullcontext)():  # dependents go, seen by the actor or not
            self._cascade(current)
        if not self._repo.delete(self._crm.tenant, current.id, current.version):
            raise ConflictError(
                f"{self.spec.label} {current.id} was changed concurrently", entity=self.spec.label, key=current.id
            )
        self._crm._emit(event_for(self.spec.name, "deleted", self.spec.label), current, None)

    def _cascade(self, current: R) -> None:
        """What deleting the record does to records that refer to it (``on_delete`` of each reference)."""
        self._crm._on_delete(self.spec, current.id)


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

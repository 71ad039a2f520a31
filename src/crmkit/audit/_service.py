"""``crm.audit`` (history and as-of reads of any record) and ``crm.events`` (the durable event feed)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import attrs

from crmkit._errors import ConflictError, ValidationError
from crmkit._retry import retrying
from crmkit._validation import count_of, utc
from crmkit.audit._journal import BATCH
from crmkit.audit._model import AuditEntry, FeedHead, JsonPart, OutboxChunk, event_before, joined
from crmkit.events import Event, event_for
from crmkit.identity._codec import decode
from crmkit.query import And, Compare, Expr, F, parse_order
from crmkit.schema import Ref
from crmkit.services.records import Records, _Record
from crmkit.store import scan

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["Audit", "AuditChange", "EventFeed", "FeedEvent", "FeedPage", "JournalRecords"]

T = TypeVar("T", bound="_Record")

#: The name of the feed's head row (one per tenant).
FEED = "events"
#: How many new chunks one numbering pass takes (a backlog is numbered over several reads).
_NUMBERED_AT_ONCE = 1000
#: How many records one look-up of created records asks for.
_LOOKED_UP_AT_ONCE = 500


@attrs.frozen
class AuditChange:
    """One change of one field of a record, as ``crm.audit.history`` yields it.

    ``action`` is ``created`` (one change per audited field, ``old`` None), ``updated``
    or ``deleted`` (``field``, ``old`` and ``new`` None); ``version`` is the record's
    version after the change.
    """

    aggregate: str
    record_id: uuid.UUID
    action: str
    field: str | None
    old: Any
    new: Any
    actor: str | None
    at: dt.datetime
    cause: str
    version: int


def _loads(fragments: tuple[JsonPart, ...]) -> Any:
    text = joined(fragments)
    return None if text is None else decode(json.loads(text))


def _target(crm: CRM, of: Any) -> tuple[str, uuid.UUID]:
    """(aggregate, id) of a stored record, a ``schema.Ref`` or an ``(aggregate, id)`` pair."""
    if isinstance(of, Ref):
        name, id = of.aggregate, of.id
    elif isinstance(of, tuple) and len(of) == 2:
        name, id = of
    elif attrs.has(type(of)) and isinstance(getattr(of, "id", None), uuid.UUID):
        name, id = crm.schema.spec(type(of)).name, of.id
    else:
        raise ValidationError("record", "must be a stored record, a schema.Ref or an (aggregate, id) pair", of)
    if not isinstance(name, str) or name not in crm.schema:
        raise ValidationError("aggregate", "is not a registered aggregate", name)
    if not isinstance(id, uuid.UUID):
        raise ValidationError("id", "must be a uuid.UUID", id)
    return name, id


class Audit:
    """``crm.audit``: who changed what of any record, when and why, and the record as it was at any moment."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._entries: Records[AuditEntry] = crm.records(AuditEntry)

    @property
    def audited(self) -> dict[str, tuple[str, ...]]:
        """Per aggregate, the fields whose changes this connection audits (empty: the trail is off)."""
        journal = self._crm._journal
        return dict(journal.audited) if journal is not None else {}

    def entries(self, of: Any) -> Iterator[AuditEntry]:
        """The entries about record ``of``, in the order the changes were made.

        A creation made in a batch (``add_many``) is kept in an entry shared with the other
        records of the batch (``record_id`` ``crmkit.audit.BATCH``, their ids in ``new``); it
        is yielded here as the record's own creation entry (its ``record_id``, no ``new``).
        It is found by the time the record was created: the stored record's, or the one its
        deletion's entry keeps.
        """
        name, id = _target(self._crm, of)
        where: Expr = And((Compare("aggregate", "==", name), Compare("record_id", "==", id)))
        own = list(self._entries.stream(where, order_by=("at", "id")))  # ids grow in the order written
        born: set[dt.datetime] = set()
        current = self._current(name, id)
        if current is not None and isinstance(getattr(current, "created_at", None), dt.datetime):
            born.add(current.created_at)
        for entry in own:
            if entry.action == "deleted" and entry.new:
                created = _loads(entry.new)
                if isinstance(created, dt.datetime):
                    born.add(created)
        born -= {entry.at for entry in own if entry.action == "created"}
        shared = []
        # a batch's entry lists other records too, so an access policy shows it to no one; the record
        # (or its deletion's entry) was read through the policy, so its own creation is shown
        with getattr(self._crm.store, "unrestricted", nullcontext)():
            for at in sorted(born):
                batch: Expr = And(
                    (Compare("aggregate", "==", name), Compare("record_id", "==", BATCH), Compare("at", "==", at))
                )
                for entry in self._entries.stream(batch, order_by=("at", "id")):
                    if id.hex in json.loads(joined(entry.new) or "[]"):
                        shared.append(attrs.evolve(entry, record_id=id, new=()))
        if shared:
            own = sorted([*own, *shared], key=lambda e: (e.at, e.id))
        return iter(own)

    def history(self, of: Any) -> Iterator[AuditChange]:
        """Every change of record ``of`` (a record, a ``schema.Ref`` or ``(aggregate, id)``), oldest first.

        A creation shows as one change per audited field given a value (``old`` None), a deletion as one
        change without a field. Values come back as the fields hold them (Decimal,
        datetime, value objects...).
        """
        name, id = _target(self._crm, of)
        entries = list(self.entries((name, id)))
        if not entries:
            return
        current = self._current(name, id)
        fields = self.audited.get(name) or _all_fields(self._crm, name)
        for life in _lives(entries):
            created = _created_values(life, current)
            for entry in life:
                common: dict[str, Any] = {
                    "aggregate": entry.aggregate,
                    "record_id": entry.record_id,
                    "action": entry.action,
                    "actor": entry.actor,
                    "at": entry.at,
                    "cause": entry.cause,
                    "version": entry.record_version,
                }
                if entry.action == "created":
                    if created is None:  # deleted since without a trace: the values are unknown
                        yield AuditChange(field=None, old=None, new=None, **common)
                        continue
                    for field in sorted(fields):
                        new = created.get(field)
                        if new is not None and new != () and new != frozenset() and new != {}:  # not empty
                            yield AuditChange(field=field, old=None, new=new, **common)
                elif entry.action == "deleted":
                    yield AuditChange(field=None, old=None, new=None, **common)
                else:
                    yield AuditChange(field=entry.field, old=_loads(entry.old), new=_loads(entry.new), **common)

    def _current(self, name: str, id: uuid.UUID) -> Any:
        return self._crm.store.repository(self._crm.schema[name]).get(self._crm.tenant, id)

    def as_of(self, of: Any, *, at: dt.datetime) -> Any:
        """Record ``of`` as it was at ``at``, replayed from its audit entries; None if it did not exist then.

        The replay starts from where the values are kept (the record as it is now, or the
        snapshot its deletion kept) and undoes, newest first, every audited change made
        after ``at``. Audited fields have their values of that moment, ``version`` and
        ``updated_at`` those of its last audited change by then; fields the trail does not
        follow keep the values the record has now (a deleted record needs defaults for them).
        """
        moment = utc(at, "at")
        name, id = _target(self._crm, of)
        entries = list(self.entries((name, id)))
        life: list[AuditEntry] | None = None
        lives = _lives(entries)
        for candidate in lives:
            if candidate[0].at <= moment:
                life = candidate
        if life is None:
            return None
        passed = [entry for entry in life if entry.at <= moment]
        if passed[-1].action == "deleted":
            return None
        current = self._current(name, id)
        state = _end_of(life, current)
        if state is None:
            raise ValidationError("record", f"{name} {id} was deleted without a trace and its values are unknown", id)
        for entry in reversed(life[len(passed) :]):
            if entry.action == "updated" and entry.field is not None:
                state[entry.field] = _loads(entry.old)
        last = passed[-1]
        if current is not None:
            if life is not lives[-1]:  # an earlier life of the record: not the current one's creation time
                state.setdefault("created_at", _born(life))
            return attrs.evolve(current, **state, version=last.record_version, updated_at=last.at)
        spec = self._crm.schema[name]
        try:
            return spec.cls(**state, id=id, created_at=_born(life), updated_at=last.at, version=last.record_version)
        except TypeError as exc:
            raise ValidationError(
                "record", f"{name} {id} was deleted and its unaudited fields are unknown: {exc}", id
            ) from None


def _all_fields(crm: CRM, name: str) -> tuple[str, ...]:
    spec = crm.schema.declared.get(name)
    return () if spec is None else (*spec.declared, "external_id")


def _lives(entries: list[AuditEntry]) -> list[list[AuditEntry]]:
    """The entries of a record split at each creation (a record deleted and created again lives twice).

    Changes audited before any creation (the record was created with the trail off) form a
    life of their own, without a creation.
    """
    lives: list[list[AuditEntry]] = []
    for entry in entries:
        if entry.action == "created" or not lives:
            lives.append([entry])
        else:
            lives[-1].append(entry)
    return lives


def _born(life: list[AuditEntry]) -> dt.datetime:
    """When a life's record was created: as its deletion's entry kept it, else its first entry's time."""
    end = life[-1]
    kept = _loads(end.new) if end.action == "deleted" and end.new else None
    return kept if isinstance(kept, dt.datetime) else life[0].at


def _end_of(life: list[AuditEntry], current: Any) -> dict[str, Any] | None:
    """The audited values at the end of a life: its deletion's snapshot, or the record as it is now.

    Only the values a deletion kept are known for a deleted life; a live one starts from the
    stored record (an empty dict: every field is as it is now). None: unknown (deleted untraced).
    """
    end = life[-1]
    if end.action == "deleted":
        text = joined(end.old)
        return {k: decode(v) for k, v in json.loads(text).items()} if text is not None else None
    return {} if current is not None else None


def _created_values(life: list[AuditEntry], current: Any) -> dict[str, Any] | None:
    """The values a life's record was created with: its end state with every update undone."""
    if life[0].action != "created":
        return None
    state = _end_of(life, current)
    if state is None:
        return None
    if life[-1].action != "deleted":
        state = {a.name: getattr(current, a.name) for a in attrs.fields(type(current))}
    for entry in reversed(life):
        if entry.action == "updated" and entry.field is not None:
            state[entry.field] = _loads(entry.old)
    return state


@attrs.frozen
class FeedEvent:
    """One committed change in a tenant's event feed; ``position`` is its number in the feed (from 1)."""

    position: int
    aggregate: str
    action: str
    record_id: uuid.UUID
    occurred_at: dt.datetime
    committed_at: dt.datetime
    actor: str | None
    cause: str | None
    before: Any
    after: Any

    @property
    def record(self) -> Any:
        """The record as it is after the change (as it was, for a deletion)."""
        return self.after if self.after is not None else self.before

    def event(self, tenant: str) -> Event:
        """The typed event ``crmkit_after_commit`` was handed for this change (``CustomerUpdated``...)."""
        kind = event_for(self.aggregate, self.action)
        return kind(tenant, self.occurred_at, self.before, self.after, self.actor, self.cause)


@attrs.frozen
class FeedPage:
    """Events of ``crm.events.read`` and the cursor to pass as ``after`` next time."""

    events: tuple[FeedEvent, ...]
    cursor: int

    def __iter__(self) -> Iterator[FeedEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


class EventFeed:
    """``crm.events``: every committed change of the tenant, numbered in commit order, read from any point.

    Each transaction stores its events in the same transaction, so a crash after a commit
    loses none. A consumer keeps the ``cursor`` of the last page it handled and reads on
    from it after a restart (at least once: store the cursor with what you did).
    """

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._chunks = crm.store.repository(crm.schema.spec(OutboxChunk))
        self._heads = crm.store.repository(crm.schema.spec(FeedHead))

    def head(self) -> int:
        """The number of the last committed event (0: none yet)."""
        self._number()
        found = self._head()
        return int(found.position) if found is not None else 0

    def _head(self) -> Any:
        found = self._heads.find(self._crm.tenant, Compare("name", "==", FEED), parse_order(None, self._heads.spec), 1)
        return found[0] if found else None

    def _number(self) -> None:
        """Number the chunks committed since the last pass, after every number given so far.

        Writers store their chunks unnumbered, so they never wait for each other; numbers are
        given here, after the commits, in the order the chunks were written (a transaction
        that read another's change wrote after that one committed, so it comes after it).
        The head is compared and set by version in the same transaction as the numbers: two
        readers numbering at once cannot both succeed, and the one that lost runs again.
        Inside a caller's transaction nothing is numbered (its reads see what was numbered).
        """
        crm = self._crm
        if crm._in_transaction() or crm._journal is None or not crm._journal.feed:
            return
        unnumbered = Compare("first", "==", None)
        if not self._chunks.count(crm.tenant, unnumbered):
            return
        retrying(self._number_once)

    def _number_once(self) -> None:
        crm, tenant = self._crm, self._crm.tenant
        with crm.store.transaction():
            head = self._head()
            order = parse_order("id", self._chunks.spec)  # UUIDv7: the wall-clock order they were written in
            chunks = self._chunks.find(tenant, Compare("first", "==", None), order, _NUMBERED_AT_ONCE)
            if not chunks:
                return
            now = crm.now()
            position = 0 if head is None else int(head.position)
            if head is None:
                fresh = FeedHead(name=FEED, position=position, id=_head_id(tenant))
                try:
                    self._heads.insert(tenant, [attrs.evolve(fresh, created_at=now, updated_at=now, version=1)])
                except ConflictError as exc:  # another reader made it first: start again from it
                    raise ConflictError(str(exc), entity=self._heads.spec.label, transient=True) from exc
                head = self._head()
            for chunk in chunks:
                numbered = attrs.evolve(
                    chunk, first=position + 1, last=position + chunk.size, version=chunk.version + 1, updated_at=now
                )
                position += chunk.size
                if not self._chunks.replace(tenant, numbered, chunk.version):
                    raise ConflictError("outbox chunk numbered concurrently", entity="outbox chunk", transient=True)
            moved = attrs.evolve(head, position=position, version=head.version + 1, updated_at=now)
            if not self._heads.replace(tenant, moved, head.version):
                raise ConflictError("the event feed was numbered concurrently", entity="event feed", transient=True)

    def read(self, *, after: int | None = None, limit: int = 1000) -> FeedPage:
        """At most ``limit`` events numbered after ``after`` (None or 0: from the first), in commit order."""
        start = 0 if after is None else after
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValidationError("after", "must be a cursor: 0 or the cursor of an earlier page", after)
        count_of("limit", limit)
        self._number()
        rows: list[_Row] = []
        chunks = scan(
            self._chunks,
            self._crm.tenant,
            Compare("last", ">", start),
            parse_order("first", self._chunks.spec),
            batch_size=min(limit, 50),
        )
        for chunk in chunks:
            for offset, item, record in _items(chunk):
                if chunk.first + offset <= start:
                    continue
                rows.append(_Row(chunk.first + offset, chunk, offset, item, record))
                if len(rows) == limit:
                    return self._page(rows, start)
        return self._page(rows, start)

    def _page(self, rows: list[_Row], start: int) -> FeedPage:
        """The page of ``rows``, each creation given its record (``_created``)."""
        created = self._created([row for row in rows if "ids" in row.item])
        out = []
        for row in rows:
            item = row.item
            if "ids" in item:
                before, after = None, created.get((row.chunk.id, row.offset))
            else:
                before, after = event_before(item), item["after"]
                before = None if before is None else decode(before)
                after = None if after is None else decode(after)
            out.append(
                FeedEvent(
                    position=row.position,
                    aggregate=item["aggregate"],
                    action=item["action"],
                    record_id=uuid.UUID(hex=row.record),
                    occurred_at=dt.datetime.fromisoformat(item["at"]),
                    committed_at=row.chunk.committed_at,
                    actor=item["actor"],
                    cause=item["cause"],
                    before=before,
                    after=after,
                )
            )
        return FeedPage(tuple(out), out[-1].position if out else start)

    def _created(self, rows: list[_Row]) -> dict[tuple[uuid.UUID, int], Any]:
        """The records of creations kept by reference, as their transactions created them.

        A creation's item names the record, the version it created and the time it was
        stamped with. The record as stored is that version while its version and stamp are
        still the same (almost always: an import's records, read back in one query per
        aggregate). Otherwise it changed since, or was deleted and created again under the
        same id (a later life, stamped later, which must not stand for the first): the first
        later event about it in the feed kept it as it was before that change or deletion.
        If none did (changed with the feed off, or by an erasure, which writes no event),
        the audit trail replays it as it was when created (``crm.audit.as_of``: fields the
        trail does not follow as they are now); without a trail of it, the record as it is
        now stands for it, and None if it is gone.
        """
        crm, tenant = self._crm, self._crm.tenant
        if not rows:
            return {}
        wanted: dict[str, set[uuid.UUID]] = {}
        for row in rows:
            wanted.setdefault(row.item["aggregate"], set()).add(uuid.UUID(hex=row.record))
        stored: dict[uuid.UUID, Any] = {}
        for name, ids in wanted.items():
            if name not in crm.schema:
                continue
            repo = crm.store.repository(crm.schema[name])
            order = parse_order("id", repo.spec)
            listed = sorted(ids)
            for i in range(0, len(listed), _LOOKED_UP_AT_ONCE):
                part = listed[i : i + _LOOKED_UP_AT_ONCE]
                stored.update((r.id, r) for r in repo.find(tenant, F("id").in_(part), order, None))
        out: dict[tuple[uuid.UUID, int], Any] = {}
        later: list[_Row] = []
        for row in rows:
            record = stored.get(uuid.UUID(hex=row.record))
            if record is not None and record.version == row.item["version"] and _same_life(record, row.item):
                out[(row.chunk.id, row.offset)] = record
            else:
                later.append(row)
        if later:
            found = self._before_later(later)
            for row in later:
                key = (row.chunk.id, row.offset)
                if key in found:
                    out[key] = found[key]
                else:
                    replayed = self._replayed(row)
                    out[key] = replayed if replayed is not None else stored.get(uuid.UUID(hex=row.record))
        return out

    def _replayed(self, row: _Row) -> Any:
        """A created record changed or deleted with nothing in the feed since, as the audit trail replays it
        at its creation (None: the trail does not follow the aggregate, or knows nothing of the record)."""
        crm, item = self._crm, row.item
        stamped = item.get("stamped")
        if stamped is None or not crm.audit.audited.get(item["aggregate"]):
            return None
        try:
            at = dt.datetime.fromisoformat(stamped)
            return crm.audit.as_of((item["aggregate"], uuid.UUID(hex=row.record)), at=at)
        except ValidationError:  # deleted without a trace: its values are unknown
            return None

    def _before_later(self, rows: list[_Row]) -> dict[tuple[uuid.UUID, int], Any]:
        """For creations whose record changed since: the record before the first later event about it."""
        pending: dict[str, list[_Row]] = {}
        for row in rows:
            pending.setdefault(row.record, []).append(row)
        since = min(row.chunk.id for row in rows)
        out: dict[tuple[uuid.UUID, int], Any] = {}
        names = sorted(str(uuid.UUID(hex=h)) for h in pending)
        for i in range(0, len(names), _LOOKED_UP_AT_ONCE):
            where = And((Compare("id", ">=", since), F("records").contains_any(names[i : i + _LOOKED_UP_AT_ONCE])))
            for chunk in scan(self._chunks, self._crm.tenant, where, parse_order("id", self._chunks.spec), 50):
                for offset, item, record in _items(chunk):
                    waiting = pending.get(record)
                    if not waiting or "ids" in item:
                        continue
                    for row in waiting:
                        key = (row.chunk.id, row.offset)
                        if key not in out and key < (chunk.id, offset):
                            before = event_before(item)
                            out[key] = None if before is None else decode(before)
        return out

    def stream(self, *, after: int | None = None, batch_size: int = 1000) -> Iterator[FeedEvent]:
        """Every event after ``after``, read a page at a time (bounded memory)."""
        cursor = 0 if after is None else after
        while True:
            page = self.read(after=cursor, limit=batch_size)
            yield from page.events
            if len(page) < batch_size:
                return
            cursor = page.cursor


def _same_life(record: Any, item: dict[str, Any]) -> bool:
    """Whether a stored record is the life a creation's item was written for (items from before stamps were kept: yes).

    The stamps must be equal; a store that keeps milliseconds (MongoDB) cuts the stored
    one's microseconds off, so it is compared with the kept one cut likewise.
    """
    stamped = item.get("stamped")
    updated = getattr(record, "updated_at", None)
    if stamped is None or not isinstance(updated, dt.datetime):
        return True
    kept = dt.datetime.fromisoformat(stamped)
    if updated == kept:
        return True
    return updated.microsecond % 1000 == 0 and updated == kept.replace(microsecond=kept.microsecond // 1000 * 1000)


@attrs.frozen
class _Row:
    """One event of a page being read: its number, its chunk, its place in it, its item and record id (hex)."""

    position: int
    chunk: OutboxChunk
    offset: int
    item: dict[str, Any]
    record: str


def _items(chunk: OutboxChunk) -> Iterator[tuple[int, dict[str, Any], str]]:
    """A chunk's events in order: (offset in the chunk, item, record id in hex); a run of creations is one item."""
    offset = 0
    for item in json.loads(joined(chunk.events) or "[]"):
        for record in item["ids"] if "ids" in item else (item["id"],):
            yield offset, item, record
            offset += 1


class JournalRecords(Records[T]):
    """The record service of the journal's aggregates: reads only; the journal alone writes them."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConflictError(
            f"{self.spec.name} are append-only and written by crmkit itself with each commit; "
            "they cannot be added, changed or deleted through the API",
            entity=self.spec.label,
        )

    add = add_many = upsert_many = update = delete = _refuse


for _cls in (AuditEntry, OutboxChunk, FeedHead):
    setattr(_cls, "__crmkit_records__", JournalRecords)  # noqa: B010 - crm.records serves them read-only
    setattr(_cls, "__crmkit_append_only__", True)  # noqa: B010 - the generic write contract skips them


def _head_id(tenant: str) -> uuid.UUID:
    """The id of a tenant's head: the same in every process, so two first numberings clash on it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"crmkit:event-feed:{tenant}")

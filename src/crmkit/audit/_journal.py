"""The journal: audit entries and feed events of a transaction, written inside it just before it commits.

The unit of work hands the journal every event of the transaction (those crmkit's
``crmkit_before_commit`` implementations added included) as the last step before the
commit. The journal derives, from each event's ``before`` and ``after`` records alone:

- audit entries (``AuditEntry``): one per creation and deletion, one per audited field
  whose value changed; nothing for a write that changed no audited field;
- the feed's outbox (``OutboxChunk``): the events as JSON (``feed_items``: a creation
  refers to the record instead of copying it), numbered after the commit by the feed's
  reader (``crm.events``), so writers never wait for each other.

The records are written through the aggregates' repositories: they raise no events of
their own, and nothing half-written survives a rollback.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import CRMError, ValidationError
from crmkit._ids import new_id
from crmkit.audit._model import AuditEntry, JsonPart, OutboxChunk, split
from crmkit.identity._codec import encode

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event
    from crmkit.schema import Schema

__all__ = [
    "BATCH",
    "BATCHED",
    "CHUNK",
    "JOURNAL_AGGREGATES",
    "AuditSetting",
    "Journal",
    "audited_fields",
    "dumps",
    "feed_items",
]

#: The journal's own aggregates: never audited, never in the feed.
JOURNAL_AGGREGATES = frozenset({"audit_entries", "event_outbox", "event_feed_heads"})
#: Events per outbox chunk (a large import's batch spreads over several), and records per batched creation entry.
CHUNK = 500
#: How many creations made together share audit entries (fewer get one entry each).
BATCHED = 100
#: The ``record_id`` of an audit entry for the creation of several records (the ids are in its ``new``).
BATCH = uuid.UUID(int=0)

#: ``connect(audit=...)``: on (True), off (False), or per aggregate: on, off, or the fields to audit.
AuditSetting = bool | Mapping[str, bool | Iterable[str]]


def dumps(value: Any) -> str:
    """The JSON text of a value in crmkit's record codec (exact both ways: ``crmkit.identity._codec``)."""
    return json.dumps(encode(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _fields_of(schema: Schema, name: str) -> tuple[str, ...]:
    spec = schema.declared.get(name)
    if spec is None:
        return ()
    return (*spec.declared, "external_id")


def _chosen(name: str, universe: Sequence[str], setting: object, where: str) -> tuple[str, ...]:
    if setting is True:
        return tuple(universe)
    if setting is False or setting is None:
        return ()
    if isinstance(setting, (str, bytes)) or not isinstance(setting, Iterable):
        raise ValidationError(where, f"{name}: must be True, False or a collection of field names", setting)
    fields = tuple(dict.fromkeys(setting))
    for field in fields:
        if field not in universe:
            raise ValidationError(where, f"{name}: {field!r} is not an audited kind of field of {name}", field)
    return fields


def audited_fields(schema: Schema, setting: AuditSetting = True) -> dict[str, tuple[str, ...]]:
    """Per aggregate, the fields whose changes are audited (aggregates absent: not audited).

    The declaration says what is audited by default (``__crmkit_audit__ = False``, or a
    tuple of field names; every declared field and the external id when absent); the
    ``connect(audit=...)`` setting overrides it per aggregate, or turns the trail off.
    """
    if setting is False:
        return {}
    if setting is not True and not isinstance(setting, Mapping):
        raise ValidationError("audit", "must be True, False or a mapping of aggregate to fields", setting)
    overrides: Mapping[str, Any] = setting if isinstance(setting, Mapping) else {}
    for name in overrides:
        if name not in schema.declared or name in JOURNAL_AGGREGATES:
            raise ValidationError("audit", f"{name!r} is not an aggregate the audit trail can follow", name)
    out: dict[str, tuple[str, ...]] = {}
    for name, spec in schema.declared.items():
        if name in JOURNAL_AGGREGATES:
            continue
        universe = _fields_of(schema, name)
        declared = getattr(spec.cls, "__crmkit_audit__", True)
        fields = _chosen(name, universe, declared, f"{spec.cls.__name__}.__crmkit_audit__")
        if name in overrides:
            fields = _chosen(name, universe, overrides[name], "audit")
        if fields:
            out[name] = fields
    return out


def _maker(cls: type) -> Callable[..., Any]:
    """A constructor of trusted records that skips the converters (the journal's values are its own).

    Generated once per class: keyword arguments with the fields' defaults, each set on a bare
    instance (a journal record is made per change, so the generic loop showed in profiles).
    """
    namespace: dict[str, Any] = {"_new_": object.__new__, "_set_": object.__setattr__, "_cls_": cls}
    params, body = [], ["    _r_ = _new_(_cls_)"]
    for i, a in enumerate(attrs.fields(cls)):
        default = a.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = None  # the journal passes every field that has a factory (the id)
        namespace[f"_d{i}_"] = default
        params.append(f"{a.name}=_d{i}_")
        body.append(f"    _set_(_r_, {a.name!r}, {a.name})")
    source = f"def make(*, {', '.join(params)}):\n" + "\n".join(body) + "\n    return _r_\n"
    exec(compile(source, f"<crmkit journal maker of {cls.__name__}>", "exec"), namespace)
    return namespace["make"]  # type: ignore[no-any-return]


_entry = _maker(AuditEntry)
_chunk = _maker(OutboxChunk)


#: ``dumps`` of the commonest field values by exact type, as text: none of these forms holds a character
#: JSON escapes (digits, signs, dots, letters, colons and dashes), and each is a one-key object.
_TEXTS: dict[type, Callable[[Any], str]] = {
    Decimal: lambda v: f'{{"$decimal":"{v}"}}',
    uuid.UUID: lambda v: f'{{"$uuid":"{v}"}}',
    dt.datetime: lambda v: f'{{"$datetime":"{v.isoformat()}"}}',
    dt.date: lambda v: f'{{"$date":"{v.isoformat()}"}}',
}


def _json(value: Any) -> tuple[JsonPart, ...]:
    """A field's value as the fragments of its ``dumps`` text (an audit entry's old or new value)."""
    if value is None:
        return ()
    cls = value.__class__
    if cls is str or cls is int or cls is bool:
        return split(json.dumps(value, ensure_ascii=False))
    text = _TEXTS.get(cls)
    return split(dumps(value) if text is None else text(value))


_PLAIN = frozenset({str, int, bool})
#: The codec's forms of the commonest values, by exact type (anything else goes through the codec itself).
_FAST: dict[type, Callable[[Any], Any]] = {
    uuid.UUID: lambda v: {"$uuid": str(v)},
    dt.datetime: lambda v: {"$datetime": v.isoformat()},
    dt.date: lambda v: {"$date": v.isoformat()},
    Decimal: lambda v: {"$decimal": str(v)},
    tuple: lambda v: {"$tuple": [encode(x) for x in v]} if v else {"$tuple": []},
    frozenset: lambda v: {"$set": sorted((encode(x) for x in v), key=json.dumps)} if v else {"$set": []},
    dict: lambda v: {"$map": {str(k): encode(x) for k, x in v.items()}},
    types.MappingProxyType: lambda v: {"$map": {str(k): encode(x) for k, x in v.items()}},
}
_encoders: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _any(value: Any) -> Any:
    fast = _FAST.get(value.__class__)
    return encode(value) if fast is None else fast(value)


def _record_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    """A function from a record of ``cls`` to its codec form, generated once: one expression per field."""
    namespace: dict[str, Any] = {"_plain_": _PLAIN, "_str_": str, "_isinstance_": isinstance, "_any_": _any}
    lines, items = [], []
    for i, a in enumerate(attrs.fields(cls)):
        if not a.init:
            continue
        lines.append(f"    v{i} = r.{a.name}")
        lines.append(
            f"    if not (v{i} is None or v{i}.__class__ in _plain_ or _isinstance_(v{i}, _str_)):\n"
            f"        v{i} = _any_(v{i})"  # the codec keeps any str as it is
        )
        items.append(f"{a.name!r}: v{i}")
    name = f"{cls.__module__}:{cls.__qualname__}"
    body = "\n".join(lines)
    source = f"def encode(r):\n{body}\n    return {{'$attrs': {name!r}, 'f': {{{', '.join(items)}}}}}\n"
    exec(compile(source, f"<crmkit journal encoder of {cls.__qualname__}>", "exec"), namespace)
    return namespace["encode"]  # type: ignore[no-any-return]


def encode_record(record: Any) -> dict[str, Any]:
    """``crmkit.identity._codec.encode`` of a record, with its plain texts and numbers taken as they are.

    The same JSON (``decode`` reads it back); imports encode every record they add, so each
    class gets a generated encoder that skips the codec's type dispatch for common values.
    """
    cls = record.__class__
    encoder = _encoders.get(cls)
    if encoder is None:
        encoder = _encoders.setdefault(cls, _record_encoder(cls))
    return encoder(record)


def _plain(value: Any) -> Any:
    """A field's value in the codec's form (texts, numbers, booleans and None as they are)."""
    if value is None or value.__class__ in _PLAIN or isinstance(value, str):
        return value
    return _any(value)


_init_fields: dict[type, tuple[str, ...]] = {}


def _changed(before: Any, after: Any) -> dict[str, Any]:
    """The old values (codec form) of the fields an update changed: the event's ``before`` is ``after`` with them."""
    cls = before.__class__
    names = _init_fields.get(cls)
    if names is None:
        names = _init_fields.setdefault(cls, tuple(a.name for a in attrs.fields(cls) if a.init))
    out = {}
    for name in names:
        old = getattr(before, name)
        if old != getattr(after, name):
            out[name] = _plain(old)
    return out


def feed_items(events: Sequence[Event], encoded: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """A chunk's events in the feed's compact form, and the ids of the records whose values it holds.

    - a run of creations (same aggregate, time, actor, cause, version and stamp) is one item
      listing the records' ids (``ids``), their ``version`` and the time they were stamped
      with (``stamped``: their ``updated_at``, the same for a whole ``add_many`` batch): no
      copy of the values, which the feed's reader takes from the record itself
      (``crm.events``) while it is still that version of that life;
    - an update holds the record after it (``after``) and the old values of the fields it
      changed (``changed``);
    - a deletion holds the record as it was (``before``, ``after`` None).

    Only updates and deletions hold values, so only their records are listed (the erasure
    finds chunks by them; the reader looks there for a created record's first version).
    """
    items: list[dict[str, Any]] = []
    mentioned: list[str] = []
    run: list[str] = []
    key: tuple[Any, ...] | None = None
    when, at = None, ""  # the last event time and its text (a bulk write's events share one)
    for event in events:
        before, after = event.before, event.after
        if event.occurred_at is not when:
            when = event.occurred_at
            at = when.isoformat()
        if before is None and after is not None:
            stamped = getattr(after, "updated_at", None)
            this = (event.entity, event.occurred_at, event.actor, event.cause, after.version, stamped)
            if this != key:
                key, run = this, []
                item: dict[str, Any] = {
                    "aggregate": event.entity,
                    "action": event.action,
                    "at": at,
                    "actor": event.actor,
                    "cause": event.cause,
                    "version": after.version,
                    "ids": run,
                }
                if isinstance(stamped, dt.datetime):  # tells this life of the record from a later one
                    item["stamped"] = stamped.isoformat()
                items.append(item)
            run.append(after.id.hex)
            continue
        key = None
        item = {
            "aggregate": event.entity,
            "action": event.action,
            "id": event.record.id.hex,
            "at": at,
            "actor": event.actor,
            "cause": event.cause,
        }
        if after is None:
            item["before"], item["after"] = _encoded(before, encoded), None
        else:
            item["after"], item["changed"] = _encoded(after, encoded), _changed(before, after)
        items.append(item)
        mentioned.append(str(event.record.id))
    return items, mentioned


def _encoded(record: Any, cache: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A record's JSON form, made once per transaction for the audit trail and the feed alike."""
    found = cache.get(id(record))
    if found is None:
        found = cache[id(record)] = encode_record(record)
    return found


def _store(crm: CRM, name: str, records: list[Any]) -> None:
    """Write new journal records through the stores' bulk path (COPY on PostgreSQL, one executemany on SQLite).

    They have new ids and no external id, so ``insert_new`` stores every one of them.
    """
    stored = crm.store.repository(crm.schema[name]).insert_new(crm.tenant, records)
    if len(stored) != len(records):  # pragma: no cover - new ids, no external ids: nothing to skip
        raise CRMError(f"the journal stored {len(stored)} of {len(records)} {name}")


class Journal:
    """What a connection keeps of each transaction: the audit trail, the event feed, or both."""

    def __init__(self, audited: Mapping[str, Collection[str]], feed: bool) -> None:
        #: Per aggregate, the audited fields (in the order their entries are written).
        self.audited = {name: tuple(fields) for name, fields in audited.items()}
        self.feed = feed

    def write(self, crm: CRM, events: Sequence[Event]) -> None:
        """Write the audit entries and the feed chunk(s) of a transaction's events, inside it."""
        # stored aggregates only (a StageChanged event repeats its state_changes record's creation)
        kept = [e for e in events if e.entity not in JOURNAL_AGGREGATES and e.entity in crm.schema]
        if not kept:
            return
        now = crm.now()
        encoded: dict[int, dict[str, Any]] = {}  # the events hold their records: ids stay unique meanwhile
        if self.audited:
            entries = self._audit_entries(kept, now, encoded)
            if entries:
                _store(crm, "audit_entries", entries)
        if self.feed:
            self._append(crm, kept, now, encoded)

    def _audit_entries(self, events: Sequence[Event], now: Any, encoded: dict[int, dict[str, Any]]) -> list[Any]:
        """The audit entries of a transaction's events, in the order of the events.

        A creation (the bulk of an import) keeps no values: the record itself, or its deletion's
        snapshot, keeps them, and update entries lead back. Creations made together (the same
        aggregate, time, actor and cause, each stamped created at that time: an ``add_many``
        batch), ``BATCHED`` or more of them, share entries listing their ids (``BATCH``), at
        most ``CHUNK`` each, instead of one each.
        """
        audited = self.audited
        groups: dict[tuple[Any, ...], int] = {}
        keys: list[tuple[Any, ...] | None] = []  # per event: its creation's group (None: not a creation)
        # A bulk write's creations come in runs of one group: a run shares one key object and
        # touches ``groups`` once (hashing a key hashes its aware datetime, which costs).
        last: tuple[Any, ...] | None = None
        run = 0
        for event in events:
            after = event.after
            if event.before is None and audited.get(event.entity):
                at = getattr(after, "updated_at", None) or event.occurred_at
                # batched only when the record says when it was created (where its entry is found)
                born = getattr(after, "created_at", None) == at
                group: tuple[Any, ...] = (event.entity, at, event.actor, event.cause or "api", after.version, born)
                if group != last:
                    if last is not None:
                        groups[last] = groups.get(last, 0) + run
                    last, run = group, 0
                run += 1
                keys.append(last)
            else:
                keys.append(None)
        if last is not None:
            groups[last] = groups.get(last, 0) + run
        batched: dict[tuple[Any, ...], list[str]] = {}  # each large group's open batch entry's ids
        entries: list[Any] = []
        seen: tuple[Any, ...] | None = None  # the last key looked up, whether its group is batched, its open ids
        large = False
        ids: list[str] | None = None
        for event, key in zip(events, keys, strict=True):
            if key is None:
                fields = audited.get(event.entity)
                if fields:
                    entries.extend(self._entries(event, fields, now, encoded))
                continue
            after = event.after
            at, cause = key[1], key[3]
            if key is not seen:
                seen, large = key, key[5] and groups[key] >= BATCHED
                ids = batched.get(key)
            if large:
                if ids is None or len(ids) == CHUNK:  # the entry made here keeps its place in the order
                    ids = batched[key] = []
                    entries.append(
                        _entry(
                            id=new_id(),
                            created_at=now,
                            updated_at=now,
                            version=1,
                            aggregate=event.entity,
                            record_id=BATCH,
                            record_version=after.version,
                            action="created",
                            new=ids,  # a list for now: its JSON once every id is in
                            actor=event.actor,
                            at=at,
                            cause=cause,
                        )
                    )
                ids.append(after.id.hex)
                continue
            entries.append(
                _entry(
                    id=new_id(),
                    created_at=now,
                    updated_at=now,
                    version=1,
                    aggregate=event.entity,
                    record_id=after.id,
                    record_version=after.version,
                    action="created",
                    actor=event.actor,
                    at=at,
                    cause=cause,
                )
            )
        if batched:
            for entry in entries:
                if isinstance(entry.new, list):
                    object.__setattr__(entry, "new", split(json.dumps(entry.new, separators=(",", ":"))))
        return entries

    def _entries(
        self, event: Event, fields: tuple[str, ...], now: Any, encoded: dict[int, dict[str, Any]]
    ) -> Iterable[Any]:
        """The entries of an update (one per audited field that changed) or a deletion (a snapshot)."""
        before, after = event.before, event.after
        if after is not None:
            return self._update_entries(event, fields, now)
        values = _encoded(before, encoded)["f"]
        snapshot = {name: values[name] for name in fields}  # None too: as_of replays it
        return (
            _entry(
                id=new_id(),
                created_at=now,
                updated_at=now,
                version=1,
                aggregate=event.entity,
                record_id=before.id,
                record_version=before.version + 1,
                action=event.action,
                old=split(json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"))),
                # when the record was created: where its life's creation entry is found, if batched
                new=_json(getattr(before, "created_at", None)),
                actor=event.actor,
                at=event.occurred_at,
                cause=event.cause or "api",
            ),
        )

    @staticmethod
    def _update_entries(event: Event, fields: tuple[str, ...], now: Any) -> list[Any]:
        """One entry per audited field an update changed (a bulk sync makes many: kept to one loop)."""
        before, after = event.before, event.after
        changed = [
            (name, old, new) for name in fields if (old := getattr(before, name)) != (new := getattr(after, name))
        ]
        if not changed:
            return []
        entity, record_id, version, action, actor = event.entity, after.id, after.version, event.action, event.actor
        # the record's own time of the change (its updated_at), so as_of(record.updated_at) is the record
        at = getattr(after, "updated_at", None) or event.occurred_at
        cause = event.cause or "api"
        return [
            _entry(
                id=new_id(),
                created_at=now,
                updated_at=now,
                version=1,
                aggregate=entity,
                record_id=record_id,
                record_version=version,
                action=action,
                field=name,
                old=_json(old),
                new=_json(new),
                actor=actor,
                at=at,
                cause=cause,
            )
            for name, old, new in changed
        ]

    def _append(self, crm: CRM, events: Sequence[Event], now: Any, encoded: dict[int, dict[str, Any]]) -> None:
        """Store the events in chunks of at most ``CHUNK``, unnumbered (the feed's reader numbers them)."""
        chunks = []
        for start in range(0, len(events), CHUNK):
            part = events[start : start + CHUNK]
            items, mentioned = feed_items(part, encoded)
            payload = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
            chunks.append(
                _chunk(
                    id=new_id(),
                    created_at=now,
                    updated_at=now,
                    version=1,
                    external_id=None,
                    first=None,
                    last=None,
                    committed_at=now,
                    size=len(part),
                    records=frozenset(mentioned),
                    events=split(payload),
                )
            )
        _store(crm, "event_outbox", chunks)

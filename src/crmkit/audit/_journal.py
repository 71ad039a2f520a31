"""The journal: audit entries and feed events of a transaction, written inside it just before it commits.

The unit of work hands the journal every event of the transaction (those crmkit's
``crmkit_before_commit`` implementations added included) as the last step before the
commit. The journal derives, from each event's ``before`` and ``after`` records alone:

- audit entries (``AuditEntry``): one per creation and deletion, one per audited field
  whose value changed; nothing for a write that changed no audited field;
- the feed's outbox (``OutboxChunk``): the events as JSON, numbered after the commit by
  the feed's reader (``crm.events``), so writers never wait for each other.

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

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit.audit._model import AuditEntry, JsonPart, OutboxChunk, split
from crmkit.identity._codec import encode

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event
    from crmkit.schema import Schema

__all__ = ["CHUNK", "JOURNAL_AGGREGATES", "AuditSetting", "Journal", "audited_fields", "dumps"]

#: The journal's own aggregates: never audited, never in the feed.
JOURNAL_AGGREGATES = frozenset({"audit_entries", "event_outbox", "event_feed_heads"})
#: Events per outbox chunk (a large import's batch spreads over several).
CHUNK = 500

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
    """A constructor of trusted records that skips the converters (the journal's values are its own)."""
    defaults = [(a.name, a.default) for a in attrs.fields(cls)]

    def make(**values: Any) -> Any:
        record: Any = object.__new__(cls)
        for name, default in defaults:
            object.__setattr__(record, name, values.get(name, default))
        return record

    return make


_entry = _maker(AuditEntry)
_chunk = _maker(OutboxChunk)


def _json(value: Any) -> tuple[JsonPart, ...]:
    return () if value is None else split(dumps(value))


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
_plans: dict[type, tuple[str, tuple[str, ...]]] = {}


def encode_record(record: Any) -> dict[str, Any]:
    """``crmkit.identity._codec.encode`` of a record, with its plain texts and numbers taken as they are.

    The same JSON (``decode`` reads it back); imports encode every record they add, so the
    common values skip the codec's type dispatch.
    """
    cls = record.__class__
    plan = _plans.get(cls)
    if plan is None:
        names = tuple(a.name for a in attrs.fields(cls) if a.init)
        plan = _plans.setdefault(cls, (f"{cls.__module__}:{cls.__qualname__}", names))
    fields: dict[str, Any] = {}
    for name in plan[1]:
        value = getattr(record, name)
        kind = value.__class__
        if value is None or kind in _PLAIN or isinstance(value, str):  # the codec keeps any str as it is
            fields[name] = value
        else:
            fast = _FAST.get(kind)
            fields[name] = encode(value) if fast is None else fast(value)
    return {"$attrs": plan[0], "f": fields}


def _event_json(event: Event, encoded: dict[int, dict[str, Any]]) -> dict[str, Any]:
    before, after = event.before, event.after
    return {
        "aggregate": event.entity,
        "action": event.action,
        "id": event.record.id.hex,
        "at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "cause": event.cause,
        "before": None if before is None else _encoded(before, encoded),
        "after": None if after is None else _encoded(after, encoded),
    }


def _encoded(record: Any, cache: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A record's JSON form, made once per transaction for the audit trail and the feed alike."""
    found = cache.get(id(record))
    if found is None:
        found = cache[id(record)] = encode_record(record)
    return found


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
            entries = [entry for event in kept for entry in self._entries(event, now, encoded)]
            if entries:
                crm.store.repository(crm.schema["audit_entries"]).insert(crm.tenant, entries)
        if self.feed:
            self._append(crm, kept, now, encoded)

    def _entries(self, event: Event, now: Any, encoded: dict[int, dict[str, Any]]) -> Iterable[Any]:
        fields = self.audited.get(event.entity)
        if not fields:
            return
        before, after = event.before, event.after
        common = {
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "aggregate": event.entity,
            "record_id": event.record.id,
            "action": event.action,
            "actor": event.actor,
            # the record's own time of the change (its updated_at), so as_of(record.updated_at) is the record
            "at": event.occurred_at if after is None else (getattr(after, "updated_at", None) or event.occurred_at),
            "cause": event.cause or "api",
        }
        if before is None:
            # a creation keeps no values: the record itself (or its deletion's snapshot) is
            # where they are, and the update entries' old values lead back to them
            yield _entry(id=new_id(), record_version=after.version, **common)
        elif after is None:
            values = _encoded(before, encoded)["f"]
            snapshot = {name: values[name] for name in fields}  # None too: as_of replays it
            yield _entry(
                id=new_id(),
                record_version=before.version + 1,
                old=split(json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"))),
                **common,
            )
        else:
            for name in fields:
                old, new = getattr(before, name), getattr(after, name)
                if old != new:
                    yield _entry(
                        id=new_id(),
                        record_version=after.version,
                        field=name,
                        old=_json(old),
                        new=_json(new),
                        **common,
                    )

    def _append(self, crm: CRM, events: Sequence[Event], now: Any, encoded: dict[int, dict[str, Any]]) -> None:
        """Store the events in chunks of at most ``CHUNK``, unnumbered (the feed's reader numbers them)."""
        chunks = []
        for start in range(0, len(events), CHUNK):
            part = events[start : start + CHUNK]
            payload = json.dumps([_event_json(e, encoded) for e in part], ensure_ascii=False, separators=(",", ":"))
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
                    records=frozenset(str(e.record.id) for e in part),
                    events=split(payload),
                )
            )
        crm.store.repository(crm.schema["event_outbox"]).insert(crm.tenant, chunks)

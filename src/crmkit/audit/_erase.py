"""How the privacy layer's erasure anonymises the journal: audit values and feed events of the erased records.

``crm.privacy.erase`` finds audit entries by ``(aggregate, record_id)`` and outbox chunks
by the record ids they list (``__crmkit_mentions__``), and hands each to these functions
(``__crmkit_anonymise__``): an audit value is replaced as the record's own field was (the
same token), so ``as_of`` still replays; the who, what and when stay.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.audit._model import event_before, joined, split
from crmkit.identity._codec import decode, encode
from crmkit.query import F
from crmkit.schema import AggregateSpec

if TYPE_CHECKING:
    from crmkit.audit._model import AuditEntry, OutboxChunk
    from crmkit.crm import CRM
    from crmkit.services.records import Records

__all__ = ["anonymised_chunk", "anonymised_entry", "exported_chunk", "shared_entries"]

#: How many creation times one look-up of batched creation entries asks for.
_AT_ONCE = 500


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _replaced(spec: AggregateSpec, entry: AuditEntry, field: str, encoded: Any) -> Any:
    """The encoded value of ``field`` as the erasure replaces it in the record itself (unchanged if not personal)."""
    from crmkit.privacy._service import _empty, _replacement

    declared = spec.declared.get(field)
    if declared is None or not declared.is_personal:
        return encoded
    value = decode(encoded)
    if _empty(value):
        return encoded
    return encode(_replacement(spec.cls, declared, value, entry.record_id, field))


def anonymised_entry(entry: AuditEntry, crm: CRM, erased: Collection[uuid.UUID] = ()) -> AuditEntry:
    """The entry with the values of personal fields replaced (a deletion's snapshot, field by field)."""
    spec = crm.schema.aggregates.get(entry.aggregate)
    if not isinstance(spec, AggregateSpec):
        return entry
    changes: dict[str, Any] = {}
    if entry.field is None:  # a deletion's snapshot of every audited field (a creation keeps none)
        for side in ("old", "new"):
            text = joined(getattr(entry, side))
            if text is not None:
                snapshot = json.loads(text)
                fresh = {name: _replaced(spec, entry, name, value) for name, value in snapshot.items()}
                if fresh != snapshot:
                    changes[side] = split(_dumps(fresh))
        return attrs.evolve(entry, **changes) if changes else entry
    for side in ("old", "new"):
        text = joined(getattr(entry, side))
        if text is not None:
            value = json.loads(text)
            fresh = _replaced(spec, entry, entry.field, value)
            if fresh != value:
                changes[side] = split(_dumps(fresh))
    return attrs.evolve(entry, **changes) if changes else entry


def anonymised_chunk(chunk: OutboxChunk, crm: CRM, erased: Collection[uuid.UUID]) -> OutboxChunk:
    """The chunk with the personal fields of the erased records' events anonymised.

    A chunk holds one transaction's events, which may be about several people (an import):
    only the events about records being erased (``erased``: their ids) change; the others'
    stay as they were written. Creations hold no values (the feed's reader takes them from
    the record, erased by then); an erased update keeps the whole record before it.
    """
    hexes = {i.hex for i in erased}
    from crmkit.privacy._service import _anonymised_values

    text = joined(chunk.events)
    if text is None:
        return chunk
    events = json.loads(text)
    for event in events:
        if event.get("id") not in hexes:  # a run of creations (``ids``) holds no values
            continue
        if "changed" in event:  # an update's old values: anonymised as the whole record before it
            event["before"] = event_before(event)
            del event["changed"]
        for side in ("before", "after"):
            if event[side] is not None:
                event[side] = encode(_anonymised_values(decode(event[side])))
    fresh = _dumps(events)
    return chunk if fresh == text else attrs.evolve(chunk, events=split(fresh))


def _born(record: Any) -> Any:
    created = getattr(record, "created_at", None)
    return created if isinstance(created, dt.datetime) else None


def shared_entries(crm: CRM, found: Mapping[str, Mapping[uuid.UUID, Any]]) -> list[AuditEntry]:
    """The batched creation entries (``BATCH``) of the records found, each presented as that record's own entry.

    An ``add_many`` of ``BATCHED`` or more records keeps their creations in entries shared by
    up to ``CHUNK`` records (their ids in ``new``), which a look-up by record id misses. They
    are found, as ``crm.audit.entries`` finds them, by the aggregate and the time each life of
    a record was created (the record's ``created_at``, or the one its deletion's entry kept):
    one query per aggregate and ``_AT_ONCE`` such times. Each comes back as the record's own
    creation entry (its ``record_id``, no ``new``: a creation keeps no values, nor other
    records' ids). They hold no personal value, so an erasure leaves them as they are.
    """
    from crmkit.audit._journal import JOURNAL_AGGREGATES
    from crmkit.audit._service import _loads

    lives: dict[str, dict[dt.datetime, set[str]]] = {}  # aggregate -> creation time -> ids (hex)
    for name, records in found.items():
        if name in JOURNAL_AGGREGATES:
            continue
        for id, record in records.items():
            born = _born(record)
            if born is not None:
                lives.setdefault(name, {}).setdefault(born, set()).add(id.hex)
    for entry in found.get("audit_entries", {}).values():
        if entry.action == "deleted" and entry.new and entry.aggregate in crm.schema:
            created = _loads(entry.new)
            if isinstance(created, dt.datetime):
                lives.setdefault(entry.aggregate, {}).setdefault(created, set()).add(entry.record_id.hex)
    entries: Records[AuditEntry] = crm.records("audit_entries")
    out: list[AuditEntry] = []
    # a batch's entry lists other records too, so an access policy shows it to no one; the records
    # found were read through the policy, so their own creations are shown
    with getattr(crm.store, "unrestricted", nullcontext)():
        for name, by_time in lives.items():
            _shared_of(entries, name, by_time, out)
    return sorted(out, key=lambda e: (e.aggregate, str(e.record_id), e.at, e.id))


def _shared_of(
    entries: Records[AuditEntry], name: str, by_time: dict[dt.datetime, set[str]], out: list[AuditEntry]
) -> None:
    """Add to ``out`` the batched creation entries of ``name`` made at the times of ``by_time`` that list its ids."""
    from crmkit.audit._journal import BATCH

    times = sorted(by_time)
    for start in range(0, len(times), _AT_ONCE):
        part = times[start : start + _AT_ONCE]
        where = (F("aggregate") == name) & (F("record_id") == BATCH) & F("at").in_(part)
        for entry in entries.stream(where, order_by=("at", "id")):
            listed = set(json.loads(joined(entry.new) or "[]"))
            for hex_id in sorted(listed & by_time.get(entry.at, set())):
                out.append(attrs.evolve(entry, record_id=uuid.UUID(hex=hex_id), new=()))


def exported_chunk(chunk: OutboxChunk, crm: CRM, about: Collection[uuid.UUID]) -> OutboxChunk:
    """The chunk as an export shows it: only the events about the records exported (``about``: their ids).

    A chunk is one transaction's events, which may be about several people: the others'
    events (and creations, which hold no values) are left out, and ``size`` counts what is left.
    """
    hexes = {i.hex for i in about}
    text = joined(chunk.events)
    if text is None:
        return chunk
    mine = [event for event in json.loads(text) if event.get("id") in hexes]
    records = frozenset(str(uuid.UUID(hex=event["id"])) for event in mine)
    return attrs.evolve(chunk, events=split(_dumps(mine)), size=len(mine), records=records)

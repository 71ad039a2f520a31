"""How the privacy layer's erasure anonymises the journal: audit values and feed events of the erased records.

``crm.privacy.erase`` finds audit entries by ``(aggregate, record_id)`` and outbox chunks
by the record ids they list (``__crmkit_mentions__``), and hands each to these functions
(``__crmkit_anonymise__``): an audit value is replaced as the record's own field was (the
same token), so ``as_of`` still replays; the who, what and when stay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.audit._model import event_before, joined, split
from crmkit.identity._codec import decode, encode
from crmkit.schema import AggregateSpec

if TYPE_CHECKING:
    from crmkit.audit._model import AuditEntry, OutboxChunk
    from crmkit.crm import CRM

__all__ = ["anonymised_chunk", "anonymised_entry"]


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

"""The aggregates of the audit trail and the event feed, each declared once.

Stores derive their tables and documents from these declarations like any plugin's; the
journal (``crmkit.audit._journal``) writes them inside the transaction whose changes they
record. Old and new values, and the events of the feed, are JSON texts (crmkit's record
codec, exact both ways) in fields marked personal, so an anonymiser that rewrites personal
text reaches them like any other field. Each is kept as a list of ``JsonPart`` fragments
of at most ``FRAGMENT`` characters (one, but for huge values), as no store is asked to hold
a text longer than crmkit's limit for one text.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from crmkit import schema

__all__ = [
    "ACTIONS",
    "FRAGMENT",
    "AuditEntry",
    "FeedHead",
    "JsonPart",
    "OutboxChunk",
    "event_before",
    "joined",
    "split",
]

#: What happened to the record an audit entry is about.
ACTIONS = ("created", "updated", "deleted")

#: The longest fragment of a JSON text kept in a text list (crmkit's texts hold at most 100,000 characters).
FRAGMENT = 50_000


@schema.value_object(kw_only=False)
class JsonPart:
    """One fragment of a JSON text (``split`` cuts a text into them, ``joined`` puts it back)."""

    text: str = schema.text(personal="free_text")


_new_part = object.__new__


def split(text: str | None) -> tuple[JsonPart, ...]:
    """A JSON text as fragments of at most ``FRAGMENT`` characters (None: no fragment)."""
    if text is None:
        return ()
    parts = []
    for i in range(0, len(text), FRAGMENT):
        part = _new_part(JsonPart)  # the journal's own text: no check needed
        object.__setattr__(part, "text", text[i : i + FRAGMENT])
        parts.append(part)
    return tuple(parts)


def joined(fragments: tuple[JsonPart, ...]) -> str | None:
    """The JSON text of ``split`` (None for no fragment)."""
    return "".join(p.text for p in fragments) if fragments else None


def event_before(item: Mapping[str, Any]) -> Any:
    """The record before an outbox item's change, in the codec's form (None: a creation).

    A deletion keeps it whole (``before``); an update keeps the record after the change and
    the old values of the fields it changed (``changed``). Items written before updates were
    kept that way hold ``before`` whole too.
    """
    if "before" in item:
        return item["before"]
    changed = item.get("changed")
    after = item.get("after")
    if changed is None or after is None:
        return None
    return {"$attrs": after["$attrs"], "f": {**after["f"], **changed}}


@schema.aggregate(
    "audit_entries",
    label="audit entry",
    time_field="at",
    indexes=[("aggregate", "record_id", "at")],
    default_order=("at", "id"),
)
class AuditEntry(schema.Record):
    """One change of one field of one record (or the record's creation or deletion).

    A creation is one entry without values (``field`` is None): the values it gave are
    the record's own, as it is now with every later update undone (each update entry keeps
    the old value), so a bulk import writes no copy of them; ``crm.audit.history`` shows
    them field by field. An update writes one entry per audited field whose value changed;
    a deletion one entry whose ``old`` keeps every audited field (the record is gone).
    """

    #: The privacy layer's erasure finds the entries about a record by its aggregate and id,
    #: for every record it finds (a journal: ``__crmkit_journal__``).
    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"record_id": "@aggregate"}
    __crmkit_journal__: ClassVar[bool] = True

    @staticmethod
    def __crmkit_anonymise__(entry: AuditEntry, crm: Any, erased: Any) -> AuditEntry:
        from crmkit.audit._erase import anonymised_entry

        return anonymised_entry(entry, crm, erased)

    @staticmethod
    def __crmkit_export_shared__(crm: Any, found: Mapping[str, Mapping[uuid.UUID, Any]]) -> list[AuditEntry]:
        """Entries shared with other records (a batch's creations) that are about records ``found``:
        ``crm.privacy.export`` lists each as that record's own (``crmkit.audit._erase.shared_entries``)."""
        from crmkit.audit._erase import shared_entries

        return shared_entries(crm, found)

    #: The aggregate of the record (``customers``, ``subscriptions``...).
    aggregate: str = schema.text(sortable=True, personal=False)
    record_id: uuid.UUID = schema.uuid(sortable=True, personal=False)
    #: The record's version after the change (1 for its creation).
    record_version: int = schema.integer(sortable=True, personal=False)
    action: str = schema.text(choices=ACTIONS, sortable=True, personal=False)
    #: The field that changed; None for a creation or a deletion.
    field: str | None = schema.text(default=None, sortable=True, personal=False)
    #: The value before the change, as JSON fragments (none: the field had no value, or a
    #: creation; a deletion: every audited field, as a JSON object).
    old: tuple[JsonPart, ...] = schema.many(JsonPart, default=(), personal="free_text")
    #: The value after the change, as JSON fragments (none: no value, a creation or a deletion).
    new: tuple[JsonPart, ...] = schema.many(JsonPart, default=(), personal="free_text")
    #: Who made the change (``connect(actor=...)``, ``crm.acting_as``); None when unset.
    actor: str | None = schema.text(default=None, sortable=True, personal=False)
    #: When the change was made (the connection's clock).
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    #: What made it: ``api``, ``import``, ``merge``, ``rule:<name>``... (``crm.caused_by``).
    cause: str = schema.text(default="api", sortable=True, personal=False)


@schema.aggregate(
    "event_outbox",
    label="outbox chunk",
    indexes=[("first",), ("last",)],
    default_order=("first", "id"),
)
class OutboxChunk(schema.Record):
    """Events of one committed transaction, numbered ``first`` to ``last`` in the tenant's feed.

    Written in the transaction whose events it holds, so a commit and its events are
    stored together or not at all; a large transaction spreads its events over several
    chunks. Numbers are given after the commit, by the feed's reader (``crm.events``), to
    the chunks committed since it last looked: in the order they were written, after every
    number given before, so no reader ever sees a number appear behind its cursor.
    """

    #: The privacy layer's erasure finds the chunks holding a record's events by its id.
    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"records": "*"}
    __crmkit_journal__: ClassVar[bool] = True

    @staticmethod
    def __crmkit_anonymise__(chunk: OutboxChunk, crm: Any, erased: Any) -> OutboxChunk:
        from crmkit.audit._erase import anonymised_chunk

        return anonymised_chunk(chunk, crm, erased)

    @staticmethod
    def __crmkit_exported__(chunk: OutboxChunk, crm: Any, about: Collection[uuid.UUID]) -> OutboxChunk:
        """The chunk as ``crm.privacy.export`` shows it: the events about the exported records only."""
        from crmkit.audit._erase import exported_chunk

        return exported_chunk(chunk, crm, about)

    #: The number of its first event in the tenant's feed; None until the feed numbers it.
    first: int | None = schema.integer(default=None, sortable=True, personal=False)
    last: int | None = schema.integer(default=None, sortable=True, personal=False)
    #: When its transaction wrote it, just before committing (the connection's clock; the
    #: chunk's id, a UUIDv7, is the wall-clock order its numbering follows).
    committed_at: dt.datetime = schema.instant(sortable=True, personal=False)
    #: How many events it holds.
    size: int = schema.integer(personal=False)
    #: The ids of the records whose values its events hold (updates and deletions: the erasure
    #: finds it by them; a creation refers to its record and holds none of its values).
    records: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    #: The events as a JSON list, in fragments (``crmkit.audit._journal.feed_items`` says how
    #: each kind is kept; ``crm.events`` reads them back).
    events: tuple[JsonPart, ...] = schema.many(JsonPart, personal="free_text")


@schema.aggregate("event_feed_heads", label="event feed head", unique=[("name",)])
class FeedHead(schema.Record):
    """The last number a tenant's feed handed out: one row per tenant, moved when new chunks are numbered.

    Writers never touch it (so concurrent writers never wait for each other or clash on
    it); the reader that numbers new chunks moves it in the same transaction, compared
    and set by version, so two readers never hand out the same numbers.
    """

    name: str = schema.text(sortable=True, personal=False)
    position: int = schema.integer(personal=False)

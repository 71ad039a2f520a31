"""Typed events handed to ``crmkit_after_commit`` once the transaction that caused them commits."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import attrs

__all__ = [
    "CustomerCreated",
    "CustomerDeleted",
    "CustomerUpdated",
    "Event",
    "InteractionDeleted",
    "InteractionRecorded",
    "InteractionUpdated",
    "RelationshipAdded",
    "RelationshipDeleted",
    "RelationshipUpdated",
    "StageChanged",
    "TransactionAdded",
    "TransactionDeleted",
    "TransactionUpdated",
    "event_for",
]


@attrs.frozen
class Event:
    """Something that happened to a record: ``before`` is None on creation, ``after`` on deletion."""

    entity: ClassVar[str] = ""
    action: ClassVar[str] = ""

    tenant: str
    occurred_at: dt.datetime
    before: Any
    after: Any

    @property
    def record(self) -> Any:
        """The record as it is now (or was, for deletions)."""
        return self.after if self.after is not None else self.before


@attrs.frozen
class CustomerCreated(Event):
    """A customer was added."""

    entity: ClassVar[str] = "customers"
    action: ClassVar[str] = "created"


@attrs.frozen
class CustomerUpdated(Event):
    """A customer was changed."""

    entity: ClassVar[str] = "customers"
    action: ClassVar[str] = "updated"


@attrs.frozen
class CustomerDeleted(Event):
    """A customer and its whole history were deleted."""

    entity: ClassVar[str] = "customers"
    action: ClassVar[str] = "deleted"


@attrs.frozen
class RelationshipAdded(Event):
    """A relationship was added."""

    entity: ClassVar[str] = "relationships"
    action: ClassVar[str] = "created"


@attrs.frozen
class RelationshipUpdated(Event):
    """A relationship was changed."""

    entity: ClassVar[str] = "relationships"
    action: ClassVar[str] = "updated"


@attrs.frozen
class RelationshipDeleted(Event):
    """A relationship was removed."""

    entity: ClassVar[str] = "relationships"
    action: ClassVar[str] = "deleted"


@attrs.frozen
class InteractionRecorded(Event):
    """An interaction was recorded."""

    entity: ClassVar[str] = "interactions"
    action: ClassVar[str] = "created"


@attrs.frozen
class InteractionUpdated(Event):
    """An interaction was changed."""

    entity: ClassVar[str] = "interactions"
    action: ClassVar[str] = "updated"


@attrs.frozen
class InteractionDeleted(Event):
    """An interaction was removed."""

    entity: ClassVar[str] = "interactions"
    action: ClassVar[str] = "deleted"


@attrs.frozen
class TransactionAdded(Event):
    """A purchase or refund was added."""

    entity: ClassVar[str] = "transactions"
    action: ClassVar[str] = "created"


@attrs.frozen
class TransactionUpdated(Event):
    """A transaction was changed."""

    entity: ClassVar[str] = "transactions"
    action: ClassVar[str] = "updated"


@attrs.frozen
class TransactionDeleted(Event):
    """A transaction was removed."""

    entity: ClassVar[str] = "transactions"
    action: ClassVar[str] = "deleted"


@attrs.frozen
class StageChanged(Event):
    """A customer moved between life-cycle stages; ``after`` is the StageChange."""

    entity: ClassVar[str] = "stage_changes"
    action: ClassVar[str] = "created"


_BY_KEY: dict[tuple[str, str], type[Event]] = {
    (cls.entity, cls.action): cls
    for cls in (
        CustomerCreated,
        CustomerUpdated,
        CustomerDeleted,
        RelationshipAdded,
        RelationshipUpdated,
        RelationshipDeleted,
        InteractionRecorded,
        InteractionUpdated,
        InteractionDeleted,
        TransactionAdded,
        TransactionUpdated,
        TransactionDeleted,
        StageChanged,
    )
}


def event_for(entity: str, action: str) -> type[Event]:
    """The event class for an entity name and an action (created, updated, deleted)."""
    return _BY_KEY[(entity, action)]

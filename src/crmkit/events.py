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
    #: Who made the change (``connect(actor=...)``, ``crm.acting_as(...)``); None when unset.
    actor: str | None = None
    #: What made it: ``api``, ``import``, ``merge``, ``rule:<name>``... (``crm.caused_by(...)``).
    cause: str | None = None

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


ACTIONS = ("created", "updated", "deleted")


def event_for(entity: str, action: str, label: str | None = None) -> type[Event]:
    """The event class for an aggregate name and an action (created, updated, deleted).

    crmkit's own aggregates have the classes above; every other aggregate gets one class
    per action, made on first use (``subscriptions``: ``SubscriptionCreated``...), so
    that plugins can tell events apart by class as well as by ``entity`` and ``action``.
    """
    found = _BY_KEY.get((entity, action))
    if found is None:
        if action not in ACTIONS:
            raise ValueError(f"unknown event action {action!r}")
        words = (label or entity).replace("_", " ").split()
        name = "".join(w[:1].upper() + w[1:] for w in words) + action.capitalize()
        doc = f"A {label or entity} was {action}."
        made = type(name, (Event,), {"entity": entity, "action": action, "__doc__": doc})
        made.__module__ = __name__
        found = _BY_KEY.setdefault((entity, action), attrs.frozen(made))
    return found

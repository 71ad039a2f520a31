"""The aggregates of the identity layer: contact-point keys of customers, and merges (to undo them)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar

from crmkit import schema

__all__ = ["DuplicateAlert", "IdentityKey", "Merge", "Moved"]


@schema.aggregate("identity_keys", indexes=[("kind", "key")])
class IdentityKey(schema.Record):
    """A customer's contact point in its comparable form (``email``: ``ana@example.ro``, ``phone``: E.164).

    Written by ``crm.customers`` whenever a customer is stored; ``find_by_email`` and
    ``find_by_phone`` are look-ups on the ``(kind, key)`` index. The customer keeps the
    address as it was typed.
    """

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    kind: str = schema.text(sortable=True, personal=False)
    key: str = schema.text(sortable=True, personal="contact")


@schema.value_object
class Moved:
    """A reference re-pointed by a merge: which record, which field, and the customer it named before."""

    aggregate: str = schema.text(personal=False)
    record_id: uuid.UUID = schema.uuid(personal=False)
    field: str = schema.text(personal=False)
    from_id: uuid.UUID = schema.uuid(personal=False)


@schema.aggregate("identity_merges", time_field="merged_at", indexes=[("survivor_id",)])
class Merge(schema.Record):
    """One merge: the survivor, the customers merged into it, and what un-merging needs.

    ``before`` and ``after`` hold the customers as they were before the merge and as the
    merge left them; ``removed`` the records the merge deleted (relationships that would
    have become self-loops or duplicates), all in crmkit's record codec (JSON).
    """

    #: Fields holding customer ids without being references (``crmkit.privacy`` follows them).
    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"survivor_id": "customers", "merged_ids": "customers"}

    survivor_id: uuid.UUID = schema.uuid(sortable=True, personal=False)
    merged_ids: frozenset[str] = schema.text_set(personal=False)
    merged_at: dt.datetime = schema.instant(sortable=True, personal=False)
    moved: tuple[Moved, ...] = schema.many(Moved, default=(), personal=False)
    before: str = schema.text(personal="identity")
    after: str = schema.text(personal="identity")
    removed: str = schema.text(default="[]", personal="identity")
    undone_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)

    @staticmethod
    def __crmkit_same_person__(merge: Merge) -> tuple[uuid.UUID, ...]:
        """The customers a merge found to be one person (none once it is undone): ``crmkit.privacy``
        exports and erases them together."""
        if merge.undone_at is not None:
            return ()
        return (merge.survivor_id, *(uuid.UUID(i) for i in sorted(merge.merged_ids)))


@schema.aggregate("identity_alerts", label="duplicate alert", time_field="raised_at", indexes=[("raised_at",)])
class DuplicateAlert(schema.Record):
    """A customer stored although a duplicate rule (``action="alert"``) found it likely to be another one.

    ``customer_id`` is the customer added or changed; ``duplicate_of`` the ids of the
    customers it likely duplicates, ``probability`` the highest match probability and
    ``rule`` the name of the rule that raised it. The app lists them
    (``crm.identity_alerts.find()``), merges or dismisses (deletes) them.
    """

    #: Fields holding customer ids without being references (``crmkit.privacy`` follows them).
    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"duplicate_of": "customers"}

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    duplicate_of: frozenset[str] = schema.text_set(personal=False)
    probability: Decimal = schema.money(personal=False)
    rule: str = schema.text(personal=False)
    raised_at: dt.datetime = schema.instant(sortable=True, personal=False)

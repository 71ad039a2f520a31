"""What each aggregate looks like to a store: its fields, their kinds, and which may be sorted on.

Backends read these specs to lay out tables or documents; the query language checks
every field name and value against them, so an unknown field never reaches a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from crmkit.customers import Customer
from crmkit.interactions import Interaction
from crmkit.lifecycle_model import StageChange
from crmkit.relationships import Relationship
from crmkit.transactions import Transaction

__all__ = [
    "CUSTOMERS",
    "ENTITIES",
    "INTERACTIONS",
    "RELATIONSHIPS",
    "STAGE_CHANGES",
    "TRANSACTIONS",
    "EntitySpec",
    "FieldKind",
    "FieldSpec",
]

#: uuid, text, integer, Decimal, timezone-aware datetime, date, a set of texts (tags), or a boolean.
FieldKind = Literal["uuid", "text", "int", "decimal", "datetime", "date", "text_set", "bool"]


@attrs.frozen
class FieldSpec:
    """A queryable field: its kind, whether it may be missing, whether ``order_by`` may use it."""

    name: str
    kind: FieldKind
    nullable: bool = False
    sortable: bool = False


def _fields(*specs: FieldSpec) -> Mapping[str, FieldSpec]:
    return {s.name: s for s in specs}


_COMMON = (
    FieldSpec("id", "uuid", sortable=True),
    FieldSpec("created_at", "datetime", sortable=True),
    FieldSpec("updated_at", "datetime", sortable=True),
    FieldSpec("version", "int", sortable=True),
)


@attrs.frozen
class EntitySpec:
    """One aggregate kind as stored: ``customers``, ``interactions``, ..."""

    name: str
    label: str
    cls: type
    fields: Mapping[str, FieldSpec]
    #: The field that points at the owning customer (None for customers themselves).
    customer_field: str | None = None
    #: The business time of the record, used by timelines and time-range indexes.
    time_field: str | None = None
    has_attributes: bool = True
    has_external_id: bool = True
    default_order: tuple[str, ...] = ("id",)
    #: Fields whose values identify a record apart from its id: unique per tenant, a missing
    #: (None) part being a value of its own (two records missing it clash), and bulk imports
    #: skip records whose natural key is stored. Empty: none.
    natural_key: tuple[str, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        """The spec of a model field, or None for unknown names (attributes are handled apart)."""
        return self.fields.get(name)

    def record_value(self, record: Any, name: str) -> Any:
        """The value of a field (``attributes.x`` included) on a domain record, None when missing."""
        if name.startswith("attributes."):
            return record.attributes.get(name[len("attributes.") :])
        return getattr(record, name)


CUSTOMERS = EntitySpec(
    name="customers",
    label="customer",
    cls=Customer,
    fields=_fields(
        *_COMMON,
        FieldSpec("kind", "text", sortable=True),
        FieldSpec("name", "text", sortable=True),
        FieldSpec("owner", "text", nullable=True),
        FieldSpec("stage", "text", sortable=True),
        FieldSpec("external_id", "text", nullable=True),
        FieldSpec("tags", "text_set"),
    ),
)

RELATIONSHIPS = EntitySpec(
    name="relationships",
    label="relationship",
    cls=Relationship,
    fields=_fields(
        *_COMMON,
        FieldSpec("source_id", "uuid", sortable=True),
        FieldSpec("target_id", "uuid", sortable=True),
        FieldSpec("kind", "text", sortable=True),
        FieldSpec("role", "text", nullable=True),
        FieldSpec("since", "date", nullable=True),
        FieldSpec("until", "date", nullable=True),
        FieldSpec("external_id", "text", nullable=True),
    ),
    natural_key=("source_id", "target_id", "kind", "since"),
)

INTERACTIONS = EntitySpec(
    name="interactions",
    label="interaction",
    cls=Interaction,
    fields=_fields(
        *_COMMON,
        FieldSpec("customer_id", "uuid", sortable=True),
        FieldSpec("channel", "text", sortable=True),
        FieldSpec("direction", "text", sortable=True),
        FieldSpec("occurred_at", "datetime", sortable=True),
        FieldSpec("subject", "text", nullable=True),
        FieldSpec("summary", "text", nullable=True),
        FieldSpec("outcome", "text", nullable=True),
        FieldSpec("participants", "text_set"),
        FieldSpec("external_id", "text", nullable=True),
    ),
    customer_field="customer_id",
    time_field="occurred_at",
    default_order=("occurred_at", "id"),
)

TRANSACTIONS = EntitySpec(
    name="transactions",
    label="transaction",
    cls=Transaction,
    fields=_fields(
        *_COMMON,
        FieldSpec("customer_id", "uuid", sortable=True),
        FieldSpec("occurred_at", "datetime", sortable=True),
        FieldSpec("amount", "decimal", sortable=True),
        FieldSpec("currency", "text", sortable=True),
        FieldSpec("kind", "text", sortable=True),
        FieldSpec("external_id", "text", nullable=True),
    ),
    customer_field="customer_id",
    time_field="occurred_at",
    default_order=("occurred_at", "id"),
)

STAGE_CHANGES = EntitySpec(
    name="stage_changes",
    label="stage change",
    cls=StageChange,
    fields=_fields(
        *_COMMON,
        FieldSpec("customer_id", "uuid", sortable=True),
        FieldSpec("from_stage", "text", nullable=True),
        FieldSpec("to_stage", "text", sortable=True),
        FieldSpec("occurred_at", "datetime", sortable=True),
        FieldSpec("rule", "text", sortable=True),
        FieldSpec("reason", "text", nullable=True),
    ),
    customer_field="customer_id",
    time_field="occurred_at",
    has_attributes=False,
    has_external_id=False,
    default_order=("occurred_at", "id"),
)

ENTITIES: Mapping[str, EntitySpec] = {
    e.name: e for e in (CUSTOMERS, RELATIONSHIPS, INTERACTIONS, TRANSACTIONS, STAGE_CHANGES)
}

"""The specs of crmkit's own aggregates, which stores keep in hand-tuned layouts.

Customers, relationships, interactions and transactions are declared with
``@schema.aggregate`` in their domain modules; their specs are taken from there. Backends
read specs to lay out tables or documents; the query language checks every field name
and value against them, so an unknown field never reaches a store.
"""

from __future__ import annotations

from collections.abc import Mapping

from crmkit.customers import Customer
from crmkit.interactions import Interaction
from crmkit.lifecycle_model import StageChange
from crmkit.relationships import Relationship
from crmkit.schema._declare import spec_of
from crmkit.schema._registry import AggregateSpec
from crmkit.schema._specs import COMMON_FIELDS, EntitySpec, FieldKind, FieldSpec
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


def _fields(*specs: FieldSpec) -> Mapping[str, FieldSpec]:
    return {s.name: s for s in specs}


_COMMON = COMMON_FIELDS

#: crmkit's own aggregates, each declared once in its domain module with ``@schema.aggregate``.
CUSTOMERS: AggregateSpec = spec_of(Customer)
RELATIONSHIPS: AggregateSpec = spec_of(Relationship)
INTERACTIONS: AggregateSpec = spec_of(Interaction)
TRANSACTIONS: AggregateSpec = spec_of(Transaction)

#: The query fields of ``crm.stage_changes``: a view of the customers' life-cycle changes, which
#: are stored as ``state_changes`` (``crmkit.state_changes``); not a stored aggregate of its own.
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

ENTITIES: Mapping[str, EntitySpec] = {e.name: e for e in (CUSTOMERS, RELATIONSHIPS, INTERACTIONS, TRANSACTIONS)}

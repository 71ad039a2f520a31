"""Declaring aggregates once: field helpers, ``@aggregate``, ``@value_object`` and the schema registry.

::

    from crmkit import schema

    @schema.aggregate("subscriptions", time_field="started_at", unique=[("customer_id", "plan")])
    class Subscription(schema.Record):
        customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade")
        plan: str = schema.text(sortable=True)
        started_at: dt.datetime = schema.instant(sortable=True)

Stores, services, events, strategies and docs derive from the declaration; a plugin makes
the aggregate known to a connection through the ``crmkit_aggregates`` hook.
"""

from crmkit.schema._condition import parse_condition
from crmkit.schema._declare import Record, aggregate, declared_fields, spec_of, value_object
from crmkit.schema._docs import field_table
from crmkit.schema._fields import (
    KINDS,
    MISSING,
    PERSONAL,
    TEXT_KINDS,
    FieldDef,
    Ref,
    attributes,
    binary,
    boolean,
    condition,
    currency,
    date,
    enum,
    field_def,
    instant,
    integer,
    many,
    money,
    ref,
    ref_any,
    text,
    text_list,
    text_set,
    uuid,
)
from crmkit.schema._registry import AggregateSpec, Reference, Schema
from crmkit.schema._specs import EntitySpec, FieldSpec

__all__ = [
    "KINDS",
    "MISSING",
    "PERSONAL",
    "TEXT_KINDS",
    "AggregateSpec",
    "EntitySpec",
    "FieldDef",
    "FieldSpec",
    "Record",
    "Ref",
    "Reference",
    "Schema",
    "aggregate",
    "attributes",
    "binary",
    "boolean",
    "condition",
    "currency",
    "date",
    "declared_fields",
    "enum",
    "field_def",
    "field_table",
    "instant",
    "integer",
    "many",
    "money",
    "parse_condition",
    "ref",
    "ref_any",
    "spec_of",
    "text",
    "text_list",
    "text_set",
    "uuid",
    "value_object",
]

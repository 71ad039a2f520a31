"""What an aggregate looks like to a store: its queryable fields, their kinds, and which may be sorted on.

Backends read these specs to lay out tables or documents; the query language checks
every field name and value against them, so an unknown field never reaches a store.
``AggregateSpec`` (``crmkit.schema``) extends ``EntitySpec`` with the declaration itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["COMMON_FIELDS", "EntitySpec", "FieldKind", "FieldSpec"]

#: uuid, text, integer, Decimal, timezone-aware datetime, date, a set of texts (tags), or a boolean.
FieldKind = Literal["uuid", "text", "int", "decimal", "datetime", "date", "text_set", "bool"]


@attrs.frozen
class FieldSpec:
    """A queryable field: its kind, whether it may be missing, whether ``order_by`` may use it."""

    name: str
    kind: FieldKind
    nullable: bool = False
    sortable: bool = False
    #: Text kept with its folded form beside it (``schema.text(search=True)``): ``matches`` and
    #: ``startswith(fold=True)`` apply, served by an index.
    search: bool = False


#: The queryable fields every stored record has.
COMMON_FIELDS = (
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
    #: Whether stores keep it in the layout they derive from its declaration
    #: (``AggregateSpec``); False for a hand-tuned layout.
    derived: bool = False

    def field(self, name: str) -> FieldSpec | None:
        """The spec of a model field, or None for unknown names (attributes are handled apart)."""
        return self.fields.get(name)

    def record_value(self, record: Any, name: str) -> Any:
        """The value of a field (``attributes.x`` included) on a domain record, None when missing."""
        if name.startswith("attributes."):
            return record.attributes.get(name[len("attributes.") :])
        return getattr(record, name)

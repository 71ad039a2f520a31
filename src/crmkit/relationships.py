"""Typed, directed relationships between customers, and the registry of relationship types."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Literal

import attrs

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit._validation import AttributeValue, check_identifier, of_type
from crmkit.schema._registry import hand_tuned

__all__ = [
    "BUILTIN_RELATIONSHIP_TYPES",
    "Direction",
    "Reached",
    "Relationship",
    "RelationshipType",
]

Direction = Literal["out", "in", "both"]
DIRECTIONS = ("out", "in", "both")


def _identifier(value: object) -> str:
    return check_identifier("kind", value)


@attrs.frozen
class RelationshipType:
    """A kind of edge: its name read from source to target, the inverse name, and symmetry."""

    name: str = attrs.field(converter=_identifier)
    inverse: str = attrs.field(converter=_identifier)
    symmetric: bool = attrs.field(default=False, validator=of_type(bool))
    description: str = attrs.field(default="", validator=of_type(str, "string"))

    @symmetric.validator
    def _check_symmetric(self, attribute: attrs.Attribute[bool], value: bool) -> None:
        if value and self.inverse != self.name:
            raise ValidationError("inverse", "a symmetric type is its own inverse", self.inverse)


BUILTIN_RELATIONSHIP_TYPES: tuple[RelationshipType, ...] = (
    RelationshipType("works_for", "employs", description="a person works for an organisation"),
    RelationshipType("subsidiary_of", "parent_of", description="an organisation is owned by another"),
    RelationshipType("referred_by", "referred", description="a customer was referred by another"),
    RelationshipType("household_member", "household_member", symmetric=True, description="share a household"),
    RelationshipType("partner_of", "partner_of", symmetric=True, description="business or life partners"),
    RelationshipType("reports_to", "manages", description="a person reports to another"),
)


@schema.aggregate("relationships", kw_only=False)
class Relationship(schema.Record):
    """``source`` --kind--> ``target`` (Ada works_for Acme), valid from ``since`` to ``until`` inclusive.

    A tenant stores one relationship per natural key (source_id, target_id, kind, since),
    an undated one (``since`` None) included: it is the same edge however often it is
    imported. ``since`` is therefore never 0001-01-01, the date the SQL stores key undated
    edges under. ``external_id`` (optional, unique per tenant) is the id in the system the
    relationship was imported from.
    """

    source_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    target_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    kind: str = schema.text(check=_identifier, sortable=True, personal=False)
    role: str | None = schema.text(default=None, blank=True, personal="identity")
    since: dt.date | None = schema.date(default=None, personal=False)
    until: dt.date | None = schema.date(default=None, personal=False)
    attributes: Mapping[str, AttributeValue] = schema.attributes(personal="free_text")

    def __attrs_post_init__(self) -> None:
        if self.since == dt.date.min:
            raise ValidationError("since", "0001-01-01 stands for undated: leave since None", self.since)
        if self.source_id == self.target_id:
            raise ValidationError("target_id", "a customer cannot be related to itself", self.target_id)
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValidationError("until", f"is before since ({self.since})", self.until)

    def active_on(self, day: dt.date) -> bool:
        """Whether the relationship holds on that day."""
        return (self.since is None or self.since <= day) and (self.until is None or day <= self.until)


hand_tuned(Relationship, customer_field=None, natural_key=("source_id", "target_id", "kind", "since"))


@attrs.frozen
class Reached:
    """A customer reached by a traversal, how far away, and the edge that led there."""

    customer_id: uuid.UUID
    depth: int
    via: Relationship

"""Typed, directed relationships between customers, and the registry of relationship types."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Literal

import attrs

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit._validation import (
    AttributeValue,
    check_identifier,
    frozen_attributes,
    of_type,
    optional_aware,
    optional_date,
    optional_text,
    positive_int,
    uuid_field,
    valid_external_id,
)

__all__ = [
    "BUILTIN_RELATIONSHIP_TYPES",
    "Direction",
    "Reached",
    "Relationship",
    "RelationshipType",
]

Direction = Literal["out", "in", "both"]
DIRECTIONS = ("out", "in", "both")


def _kind(value: object) -> str:
    return check_identifier("kind", value)


@attrs.frozen
class RelationshipType:
    """A kind of edge: its name read from source to target, the inverse name, and symmetry."""

    name: str = attrs.field(converter=_kind)
    inverse: str = attrs.field(converter=_kind)
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


@attrs.frozen
class Relationship:
    """``source`` --kind--> ``target`` (Ada works_for Acme), valid from ``since`` to ``until`` inclusive.

    A tenant stores one relationship per natural key (source_id, target_id, kind, since),
    an undated one (``since`` None) included: it is the same edge however often it is
    imported. ``since`` is therefore never 0001-01-01, the date the SQL stores key undated
    edges under. ``external_id`` (optional, unique per tenant) is the id in the system the
    relationship was imported from.
    """

    source_id: uuid.UUID = attrs.field(validator=uuid_field)
    target_id: uuid.UUID = attrs.field(validator=uuid_field)
    kind: str = attrs.field(converter=_kind)
    role: str | None = attrs.field(default=None, validator=optional_text)
    since: dt.date | None = attrs.field(default=None, validator=optional_date)
    until: dt.date | None = attrs.field(default=None, validator=optional_date)
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=frozen_attributes, hash=False)
    external_id: str | None = attrs.field(default=None, validator=valid_external_id)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)

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


@attrs.frozen
class Reached:
    """A customer reached by a traversal, how far away, and the edge that led there."""

    customer_id: uuid.UUID
    depth: int
    via: Relationship

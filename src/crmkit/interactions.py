"""Interactions: every contact with a customer, on any channel, in either direction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from crmkit._ids import new_id
from crmkit._validation import (
    AttributeValue,
    aware,
    frozen_attributes,
    one_of,
    optional_aware,
    optional_text,
    positive_int,
    text_set,
    uuid_field,
    valid_external_id,
)
from crmkit.channels import Channel

__all__ = ["Interaction", "InteractionDirection"]

InteractionDirection = Literal["inbound", "outbound"]


def _channel(value: object) -> Channel:
    if isinstance(value, Channel):
        return value
    return Channel(value)  # type: ignore[arg-type]


def _to_participants(value: Any) -> Any:
    return text_set("participants")(value)


@attrs.frozen
class Interaction:
    """A call, e-mail, meeting, chat... with one customer; ``participants`` are staff ids."""

    customer_id: uuid.UUID = attrs.field(validator=uuid_field)
    channel: Channel = attrs.field(converter=_channel)
    direction: InteractionDirection = attrs.field(validator=one_of("direction", ("inbound", "outbound")))
    occurred_at: dt.datetime = attrs.field(validator=aware)
    subject: str | None = attrs.field(default=None, validator=optional_text)
    summary: str | None = attrs.field(default=None, validator=optional_text)
    outcome: str | None = attrs.field(default=None, validator=optional_text)
    participants: frozenset[str] = attrs.field(default=frozenset(), converter=_to_participants)
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=frozen_attributes, hash=False)
    external_id: str | None = attrs.field(default=None, validator=valid_external_id)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)

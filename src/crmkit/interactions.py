"""Interactions: every contact with a customer, on any channel, in either direction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Literal

from crmkit import schema
from crmkit._validation import AttributeValue
from crmkit.channels import Channel
from crmkit.schema._registry import hand_tuned

__all__ = ["Interaction", "InteractionDirection"]

InteractionDirection = Literal["inbound", "outbound"]


@schema.aggregate("interactions", time_field="occurred_at", kw_only=False)
class Interaction(schema.Record):
    """A call, e-mail, meeting, chat... with one customer; ``participants`` are staff ids."""

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade")
    channel: str = schema.text(check=Channel, sortable=True)
    direction: InteractionDirection = schema.text(choices=("inbound", "outbound"), sortable=True)
    occurred_at: dt.datetime = schema.instant(sortable=True)
    subject: str | None = schema.text(default=None, blank=True, personal=True)
    summary: str | None = schema.text(default=None, blank=True, personal=True)
    outcome: str | None = schema.text(default=None, blank=True)
    participants: frozenset[str] = schema.text_set(default=frozenset())
    attributes: Mapping[str, AttributeValue] = schema.attributes()


hand_tuned(Interaction)

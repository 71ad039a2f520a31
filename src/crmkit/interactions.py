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

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    channel: str = schema.text(check=Channel, sortable=True, personal=False)
    direction: InteractionDirection = schema.text(choices=("inbound", "outbound"), sortable=True, personal=False)
    occurred_at: dt.datetime = schema.instant(sortable=True, personal=False)
    subject: str | None = schema.text(default=None, blank=True, personal="free_text")
    summary: str | None = schema.text(default=None, blank=True, personal="free_text")
    outcome: str | None = schema.text(default=None, blank=True, personal=False)
    participants: frozenset[str] = schema.text_set(default=frozenset(), personal="contact")
    attributes: Mapping[str, AttributeValue] = schema.attributes(personal="free_text")


hand_tuned(Interaction)

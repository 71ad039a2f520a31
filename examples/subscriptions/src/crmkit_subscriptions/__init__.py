"""An installable crmkit plugin that adds one aggregate, ``subscriptions``, and no backend code.

Installed, every ``crmkit.connect`` knows the aggregate: ``crm.records(Subscription)``
stores it on memory://, SQLite, PostgreSQL and MongoDB alike, and the conformance suite
proves it there.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal

import crmkit
from crmkit import schema

__all__ = ["Seat", "Status", "Subscription", "crmkit_aggregates"]


class Status(enum.Enum):
    """Where a subscription stands."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


@schema.value_object
class Seat:
    """A named user of a subscription."""

    email: str = schema.text(personal="contact")
    since: dt.date = schema.date(personal=False)


@schema.aggregate(
    "subscriptions", time_field="started_at", unique=[("customer_id", "plan")], indexes=[("customer_id", "started_at")]
)
class Subscription(schema.Record):
    """A customer's subscription to a plan."""

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    plan: str = schema.text(sortable=True, personal=False)
    price: Decimal = schema.money(personal=False)
    currency: str = schema.currency(personal=False)
    started_at: dt.datetime = schema.instant(sortable=True, personal=False)
    renews_on: dt.date | None = schema.date(default=None, personal=False)
    status: Status = schema.enum(Status, default=Status.ACTIVE, personal=False)
    quantity: int = schema.integer(default=1, sortable=True, personal=False)
    auto_renew: bool = schema.boolean(default=True, personal=False)
    features: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    seats: tuple[Seat, ...] = schema.many(Seat, default=(), personal="contact")
    referred_by: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    attributes: Mapping[str, object] = schema.attributes(personal="free_text")


@crmkit.hookimpl
def crmkit_aggregates() -> Iterable[type]:
    return [Subscription]

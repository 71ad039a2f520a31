"""A customer's timeline: interactions, transactions and stage changes merged in time order."""

from __future__ import annotations

import datetime as dt
import heapq
import uuid
from typing import TYPE_CHECKING

import attrs

from crmkit.interactions import Interaction
from crmkit.lifecycle_model import StageChange
from crmkit.query import (
    And,
    Compare,
    Expr,
)
from crmkit.transactions import Transaction

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["TimelineEntry", "timeline"]


@attrs.frozen
class TimelineEntry:
    """One item of a customer's timeline: an interaction, a transaction or a stage change."""

    at: dt.datetime
    kind: str
    record: Interaction | Transaction | StageChange


def timeline(
    crm: CRM,
    customer_id: uuid.UUID,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[TimelineEntry]:
    """A customer's interactions, transactions and stage changes in one time-ordered list."""
    crm.customers.get(customer_id)
    where: Expr = Compare("customer_id", "==", customer_id)
    if since is not None:
        where = And((where, Compare("occurred_at", ">=", since)))
    if until is not None:
        where = And((where, Compare("occurred_at", "<=", until)))
    order = "-occurred_at" if newest_first else "occurred_at"
    streams = [
        (label, service.find(where, order_by=order, limit=limit).items)
        for label, service in (
            ("interaction", crm.interactions),
            ("transaction", crm.transactions),
            ("stage_change", crm.stage_changes),
        )
    ]
    entries = [[TimelineEntry(r.occurred_at, label, r) for r in records] for label, records in streams]
    merged = heapq.merge(*entries, key=lambda e: (e.at, e.record.id), reverse=newest_first)
    out = list(merged)
    return out if limit is None else out[:limit]

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
    from crmkit.crm import CRM, Page
    from crmkit.documents import Document
    from crmkit.sales import Note, Task

__all__ = ["TimelineEntry", "timeline"]


@attrs.frozen
class TimelineEntry:
    """One item of a customer's timeline: an interaction, a transaction, a stage change, a task, note or document."""

    at: dt.datetime
    kind: str
    record: Interaction | Transaction | StageChange | Task | Note | Document


def timeline(
    crm: CRM,
    customer_id: uuid.UUID,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[TimelineEntry]:
    """A customer's interactions, transactions, stage changes, tasks and notes in one time-ordered list."""
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
    entries += _about(crm, customer_id, since, until, limit, newest_first)
    merged = heapq.merge(*entries, key=lambda e: (e.at, e.record.id), reverse=newest_first)
    out = list(merged)
    return out if limit is None else out[:limit]


def _about(
    crm: CRM,
    customer_id: uuid.UUID,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int | None,
    newest_first: bool,
) -> list[list[TimelineEntry]]:
    """The tasks (at their creation), notes (when written) and documents (when attached, or last given a
    new version) about the customer, filtered in the store."""
    out = []
    about = (("task", "tasks", "created_at"), ("note", "notes", "written_at"), ("document", "documents", "attached_at"))
    for label, aggregate, field in about:
        if aggregate not in crm.schema.declared:
            continue  # crmkit's own features blocked
        where: Expr = And((Compare("about.aggregate", "==", "customers"), Compare("about.id", "==", customer_id)))
        if since is not None:
            where = And((where, Compare(field, ">=", since)))
        if until is not None:
            where = And((where, Compare(field, "<=", until)))
        order = f"-{field}" if newest_first else field
        found: Page[Task | Note | Document] = crm.records(aggregate).find(
            where, order_by=(order, "-id" if newest_first else "id"), limit=limit
        )
        out.append([TimelineEntry(getattr(r, field), label, r) for r in found.items])
    return out

"""The sales rules every write obeys, whichever API made it: checked and derived in ``crmkit_before_commit``.

- a change of an opportunity's stage, amount, probability, close date or forecast category
  writes an ``opportunity_history`` row with the previous values, the actor and the time;
- an opportunity naming a stored pipeline must name one of its stages;
- a pipeline keeps the stages (and its key) that deals still sit in: removing them is a
  ``ConflictError`` naming the deals;
- a converted lead is read-only; an activated order keeps its lines; a deal has at most
  one synced quote.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crmkit._errors import ConflictError
from crmkit.query import Expr, F
from crmkit.sales._model import (
    TRACKED,
    LeadConversion,
    LeadStatus,
    Opportunity,
    OpportunityHistory,
    Order,
    OrderStatus,
    Pipeline,
    Quote,
)

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event

__all__ = ["before_commit", "note_reason"]

_WATCHED = frozenset({"opportunities", "pipelines", "leads", "orders", "quotes"})
_NAMED = 10  # deals named in a refusal


def _reasons(crm: CRM) -> dict[uuid.UUID, str | None]:
    local: threading.local = crm._local
    found: dict[uuid.UUID, str | None] = local.__dict__.setdefault("sales_reasons", {})
    return found


def note_reason(crm: CRM, opportunity_id: uuid.UUID, reason: str | None) -> None:
    """Give the next history row of this deal (written at the commit) the reason of a move."""
    _reasons(crm)[opportunity_id] = reason


def before_commit(crm: CRM, events: Sequence[Event]) -> None:
    """Derive history rows and check the cross-record rules of the transaction's sales events."""
    if "opportunities" not in crm.schema.declared:
        return  # a connection that blocks crmkit's own features
    pipelines: dict[str, Pipeline | None] = {}
    for event in events:
        entity = event.entity
        if entity not in _WATCHED:
            continue
        if entity == "opportunities" and event.after is not None:
            _check_stage(crm, event.after, pipelines)
            if event.before is not None:
                _history(crm, event)
        elif entity == "pipelines":
            _check_pipeline(crm, event.before, event.after)
        elif entity == "leads" and event.before is not None and event.after is not None:
            _check_lead(crm, event.before)
        elif entity == "orders" and event.before is not None and event.after is not None:
            _check_order(event.before, event.after)
        elif entity == "quotes" and event.after is not None and event.after.synced:
            _check_synced(crm, event.after)


def _pipeline(crm: CRM, key: str, cache: dict[str, Pipeline | None]) -> Pipeline | None:
    if key not in cache:
        found = crm.records(Pipeline).find(F("key") == key, limit=1).items
        cache[key] = found[0] if found else None
    return cache[key]


def _check_stage(crm: CRM, opportunity: Opportunity, cache: dict[str, Pipeline | None]) -> None:
    # Deals may arrive before their pipeline (imports); once it is stored, its stages rule.
    pipeline = _pipeline(crm, opportunity.pipeline, cache)
    if pipeline is not None:
        pipeline.stage(opportunity.stage)


def _history(crm: CRM, event: Event) -> None:
    before: Opportunity = event.before
    after: Opportunity = event.after
    if all(getattr(before, name) == getattr(after, name) for name in TRACKED):
        return
    label = None
    pipeline = _pipeline(crm, after.pipeline, {})
    if pipeline is not None:
        label = pipeline.stage(after.stage).name
    crm.records(OpportunityHistory).add(
        OpportunityHistory(
            opportunity_id=after.id,
            at=event.occurred_at,
            actor=event.actor,
            pipeline=after.pipeline,
            stage=after.stage,
            stage_label=label,
            amount=after.amount,
            currency=after.currency,
            probability=after.probability,
            close_date=after.close_date,
            forecast=after.forecast,
            prev_pipeline=before.pipeline,
            prev_stage=before.stage,
            prev_amount=before.amount,
            prev_probability=before.probability,
            prev_close_date=before.close_date,
            prev_forecast=before.forecast,
            reason=_reasons(crm).pop(after.id, None),
        )
    )


def _deals_in(crm: CRM, pipeline: str, stages: Sequence[str] | None) -> list[Opportunity]:
    where: Expr = F("pipeline") == pipeline
    if stages is not None:
        where = where & F("stage").in_(list(stages))
    return list(crm.records(Opportunity).find(where, order_by="id", limit=_NAMED + 1))


def _refuse(pipeline: str, what: str, deals: list[Opportunity]) -> None:
    names = ", ".join(f"{d.name!r} ({d.id}, {d.stage})" for d in deals[:_NAMED])
    more = " and more" if len(deals) > _NAMED else ""
    raise ConflictError(
        f"pipeline {pipeline!r}: {what} while deals sit in it: {names}{more} (move them first)",
        entity="pipelines",
        key=pipeline,
    )


def _check_pipeline(crm: CRM, before: Pipeline | None, after: Pipeline | None) -> None:
    if before is None:
        return
    if after is None or after.key != before.key:
        deals = _deals_in(crm, before.key, None)
        if deals:
            _refuse(before.key, "cannot be deleted or change its key", deals)
        return
    removed = sorted({s.key for s in before.stages} - {s.key for s in after.stages})
    if removed:
        deals = _deals_in(crm, before.key, removed)
        if deals:
            _refuse(before.key, f"cannot lose stage(s) {', '.join(removed)}", deals)


def _check_lead(crm: CRM, before: Any) -> None:
    if before.status is not LeadStatus.CONVERTED:
        return
    if crm.records(LeadConversion).count(F("lead_id") == before.id):
        raise ConflictError(
            f"lead {before.id} was converted on {before.converted_at} and is read-only", entity="leads", key=before.id
        )


def _check_order(before: Order, after: Order) -> None:
    if before.status is OrderStatus.ACTIVATED and (before.lines != after.lines or before.currency != after.currency):
        raise ConflictError(
            f"order {before.id} is activated: its lines and currency cannot change", entity="orders", key=before.id
        )


def _check_synced(crm: CRM, quote: Quote) -> None:
    if quote.opportunity_id is None:
        return
    synced = crm.records(Quote).find(
        (F("opportunity_id") == quote.opportunity_id) & (F("synced") == True),  # noqa: E712 - a query
        limit=2,
    )
    others = [q.id for q in synced if q.id != quote.id]
    if others:
        raise ConflictError(
            f"opportunity {quote.opportunity_id} already has a synced quote ({others[0]})",
            entity="quotes",
            key=quote.id,
        )

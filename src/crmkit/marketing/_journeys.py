"""Journeys read from the store: interactions, campaign contacts and purchases merged by customer id."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from crmkit._errors import ValidationError
from crmkit.marketing._model import Campaign, CampaignMember
from crmkit.marketing.attribution import Journey, Tally
from crmkit.query import F

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["attribute_store", "journeys"]

# Kinds of rows in the merged streams: a touch, a purchase.
_TOUCH, _BUY = 0, 1


def journeys(
    crm: CRM,
    *,
    since: dt.datetime,
    until: dt.datetime,
    by: str = "channel",
    lookback: dt.timedelta | None = None,
) -> Iterator[Journey]:
    """One journey per customer with a touch or a purchase in the period, in customer-id order.

    A customer's conversion is its first purchase in ``[since, until)``; its touches are its
    interactions (by channel; ``by="channel"`` only) and campaign contacts (the campaign's
    channel, or name with ``by="campaign"``) from ``since - lookback`` (``since``) on.
    Three streams ordered by customer id are merged: memory holds one customer at a time.
    """
    if by not in ("channel", "campaign"):
        raise ValidationError("by", "must be channel or campaign", by)
    start = since - (lookback or dt.timedelta(0))
    campaigns = {c.id: c for c in crm.records(Campaign).stream()}
    streams: list[Iterator[tuple[uuid.UUID, int, dt.datetime, str]]] = []
    if by == "channel":
        talks = crm.interactions.stream(
            (F("occurred_at") >= start) & (F("occurred_at") < until), order_by=("customer_id", "occurred_at")
        )
        streams.append((i.customer_id, _TOUCH, i.occurred_at, str(i.channel)) for i in talks)
    members = crm.records(CampaignMember).stream(
        (F("contacted_at") >= start) & (F("contacted_at") < until) & (F("control") == False),  # noqa: E712
        order_by=("customer_id", "contacted_at"),
    )

    def contact(m: CampaignMember) -> tuple[uuid.UUID, int, dt.datetime, str]:
        campaign = campaigns[m.campaign_id]
        key = str(campaign.channel) if by == "channel" else campaign.name
        assert m.contacted_at is not None
        return (m.customer_id, _TOUCH, m.contacted_at, key)

    streams.append(contact(m) for m in members)
    buys = crm.transactions.stream(
        (F("kind") == "purchase") & (F("occurred_at") >= since) & (F("occurred_at") < until),
        order_by=("customer_id", "occurred_at"),
    )
    streams.append((t.customer_id, _BUY, t.occurred_at, "") for t in buys)
    merged = heapq.merge(*streams, key=lambda row: row[0])
    for _, rows in itertools.groupby(merged, key=lambda row: row[0]):
        items = list(rows)
        bought = min((r[2] for r in items if r[1] == _BUY), default=None)
        touches = sorted((r[3], r[2]) for r in items if r[1] == _TOUCH)
        touches.sort(key=lambda t: t[1])
        if bought is not None:
            touches = [t for t in touches if t[1] <= bought]
        yield Journey(tuple(touches), bought)


def attribute_store(
    crm: CRM,
    model: str,
    *,
    since: dt.datetime,
    until: dt.datetime,
    by: str,
    lookback: dt.timedelta | None,
    half_life: dt.timedelta,
    samples: int,
    seed: int,
) -> dict[str, float]:
    """``crm.marketing.attribution``: the journeys fed to a Tally; untouched non-buyers counted in the store."""
    if until <= since:
        raise ValidationError("until", "must come after since", until)
    tally = Tally(model, half_life=half_life)
    seen = 0
    for journey in journeys(crm, since=since, until=until, by=by, lookback=lookback):
        tally.add(journey)
        seen += 1
    existing: Any = crm.customers.count(F("created_at") < until)
    tally.add_empty(max(int(existing) - seen, 0))
    return tally.shares(samples=samples, seed=seed)

"""Purchase summaries as one aggregation pipeline, equal to ``crmkit.summaries.summarize``.

Two ``$group`` stages: first per (customer, currency, UTC day of a purchase), so days are
counted and the first day's total is known; then per (customer, currency). Refunds are
grouped apart (day null) and only summed. Times are Int64 microseconds, so the UTC day
is plain integer arithmetic (a floored modulo, correct before 1970 too), and sums of
Decimal128 stay exact.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from bson import Decimal128, Int64

from crmkit.summaries import PurchaseSummary
from crmkit_mongo._documents import decimal, from_micros, micros

__all__ = ["occurred_within", "summary_pipeline", "summaries"]

_DAY = Int64(86_400_000_000)
_ZERO = Decimal128("0")
_IDS_PER_QUERY = 20_000  # keeps each $in list far below the 16 MB command limit

_IS_PURCHASE = {"$ne": ["$kind", "refund"]}
# occurred_at - floor_mod(occurred_at, day): the start of its UTC day, in microseconds.
_DAY_START = {
    "$subtract": ["$occurred_at", {"$mod": [{"$add": [{"$mod": ["$occurred_at", _DAY]}, _DAY]}, _DAY]}]
}


def occurred_within(since: dt.datetime | None, until: dt.datetime | None) -> dict[str, Any]:
    """The filter of transactions that occurred from ``since`` to ``until`` (both kept; None: no bound)."""
    window: dict[str, Any] = {}
    if since is not None:
        window["$gte"] = micros(since)
    if until is not None:
        window["$lte"] = micros(until)
    return {"occurred_at": window} if window else {}


def summary_pipeline(
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> list[dict[str, Any]]:
    """The pipeline for one slice of customers (all when None)."""
    match: dict[str, Any] = {"tenant": tenant}
    if customer_ids is not None:
        match["customer_id"] = {"$in": list(customer_ids)}
    match.update(occurred_within(since, until))
    return [
        {"$match": match},
        {
            "$group": {
                "_id": {
                    "c": "$customer_id",
                    "cur": "$currency",
                    "day": {"$cond": [_IS_PURCHASE, _DAY_START, None]},
                },
                "n": {"$sum": {"$cond": [_IS_PURCHASE, 1, 0]}},
                "total": {"$sum": {"$cond": [_IS_PURCHASE, "$amount", _ZERO]}},
                "refunds": {"$sum": {"$cond": [_IS_PURCHASE, _ZERO, "$amount"]}},
                "first": {"$min": {"$cond": [_IS_PURCHASE, "$occurred_at", None]}},
                "last": {"$max": {"$cond": [_IS_PURCHASE, "$occurred_at", None]}},
            }
        },
        {
            "$group": {
                "_id": {"c": "$_id.c", "cur": "$_id.cur"},
                "purchases": {"$sum": "$n"},
                "days": {"$sum": {"$cond": [{"$gt": ["$n", 0]}, 1, 0]}},
                "total": {"$sum": "$total"},
                "refunds": {"$sum": "$refunds"},
                "first": {"$min": "$first"},
                "last": {"$max": "$last"},
                # Documents compare field by field, so the smallest {d, t} is the first day's.
                "first_day": {"$min": {"$cond": [{"$gt": ["$n", 0]}, {"d": "$_id.day", "t": "$total"}, None]}},
            }
        },
        {"$match": {"purchases": {"$gt": 0}}},
        {"$sort": {"_id.c": 1, "_id.cur": 1}},
    ]


def _summary(row: dict[str, Any]) -> PurchaseSummary:
    return PurchaseSummary(
        customer_id=row["_id"]["c"],
        currency=row["_id"]["cur"],
        purchases=int(row["purchases"]),
        first_purchase_at=from_micros(row["first"]),
        last_purchase_at=from_micros(row["last"]),
        purchase_days=int(row["days"]),
        total=decimal(row["total"]),
        first_day_total=decimal(row["first_day"]["t"]),
        refunds=decimal(row["refunds"]),
    )


def summaries(
    collection: Any,
    session: Any,
    tenant: str,
    customer_ids: Sequence[uuid.UUID] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Iterator[PurchaseSummary]:
    """Stream the summaries, ordered by customer id then currency."""
    if customer_ids is None:
        slices: list[Sequence[uuid.UUID] | None] = [None]
    else:
        ids = sorted(set(customer_ids))
        # Sorted slices of ids give results that are already in order when concatenated.
        slices = [ids[i : i + _IDS_PER_QUERY] for i in range(0, len(ids), _IDS_PER_QUERY)]
    for part in slices:
        pipeline = summary_pipeline(tenant, part, since, until)
        for row in collection.aggregate(pipeline, allowDiskUse=True, session=session):
            yield _summary(row)

"""Relationship traversal as one ``$graphLookup``, with the answers of ``crmkit.store.Store.traverse``.

``$graphLookup`` returns every relationship reachable from the start customer, each once,
with ``depth`` = the number of hops before it (0 for edges at the start). An edge is first
met when the end it is walked from is first reached, so for a customer ``c``:

* its distance is ``1 + min(depth)`` over the edges that lead to it (for ``both``: that
  touch it), because neighbouring distances differ by at most one;
* the edge the reference reports is the one with the smallest id among those at depth
  ``distance - 1``: exactly the edges from the previous level of the breadth-first walk.

So picking, per customer, the edge with the smallest (depth, id) reproduces the default.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crmkit.entities import RELATIONSHIPS
from crmkit.relationships import Reached, Relationship
from crmkit_mongo._documents import bson_date

__all__ = ["graph_pipeline", "reached_from"]

# (connectToField, connectFromField): the field that must hold the current customer, the next one.
_WALKS = {"out": ("source_id", "target_id"), "in": ("target_id", "source_id"), "both": ("ends", "ends")}
_DEPTH = "_depth"


def graph_pipeline(
    tenant: str, start: uuid.UUID, kinds: frozenset[str], direction: str, depth: int, as_of: dt.date | None
) -> list[dict[str, Any]]:
    """Run on the customers collection: the start customer, then every edge reachable from it."""
    connect_to, connect_from = _WALKS[direction]
    restrict: dict[str, Any] = {"tenant": tenant, "kind": {"$in": sorted(kinds)}}
    if as_of is not None:
        day = bson_date(as_of)
        restrict["$and"] = [
            {"$or": [{"since": None}, {"since": {"$lte": day}}]},
            {"$or": [{"until": None}, {"until": {"$gte": day}}]},
        ]
    return [
        {"$match": {"tenant": tenant, "id": start}},
        {"$limit": 1},
        {
            "$graphLookup": {
                "from": RELATIONSHIPS.name,
                "startWith": "$id",
                "connectFromField": connect_from,
                "connectToField": connect_to,
                "as": "edges",
                "maxDepth": depth - 1,
                "depthField": _DEPTH,
                "restrictSearchWithMatch": restrict,
            }
        },
        {"$unwind": "$edges"},
        {"$replaceRoot": {"newRoot": "$edges"}},
        {"$project": {"_id": 0, "ends": 0}},
    ]


def reached_from(
    edges: Iterable[Mapping[str, Any]],
    start: uuid.UUID,
    direction: str,
    decode: Callable[[Mapping[str, Any]], Relationship],
) -> list[Reached]:
    """Each customer once, at its smallest depth, with the smallest-id edge of the level before."""
    best: dict[uuid.UUID, tuple[int, uuid.UUID, Mapping[str, Any]]] = {}
    for edge in edges:
        level = int(edge[_DEPTH]) + 1
        ends: tuple[uuid.UUID, ...]
        if direction == "out":
            ends = (edge["target_id"],)
        elif direction == "in":
            ends = (edge["source_id"],)
        else:
            ends = (edge["source_id"], edge["target_id"])
        for customer in ends:
            if customer == start:
                continue
            current = best.get(customer)
            if current is None or (level, edge["id"]) < current[:2]:
                best[customer] = (level, edge["id"], edge)
    reached = [Reached(customer, level, decode(edge)) for customer, (level, _, edge) in best.items()]
    return sorted(reached, key=lambda r: (r.depth, r.customer_id))

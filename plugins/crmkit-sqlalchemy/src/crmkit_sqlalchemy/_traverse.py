"""Relationship traversal as one recursive query (``WITH RECURSIVE``).

The answer equals the breadth-first walk of ``crmkit.store.Store.traverse``:

1. ``walk`` collects every (customer, steps) pair reachable in at most ``depth`` steps
   (UNION removes repeats, so it stays within customers x depth rows);
2. ``best`` keeps each customer's smallest number of steps, its BFS level;
3. a customer at level L was reached from the level L-1 frontier, and the BFS records
   the edge with the smallest id among those leading there from that frontier: ``ranked``
   picks it;
4. the final SELECT returns the customer, its level and that edge's row.

Every step reads the ``relationships`` table through its (tenant, endpoint, kind) indexes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crmkit.entities import RELATIONSHIPS
from crmkit.relationships import Reached

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlStore

__all__ = ["traverse"]


def _step(
    edges: sa.FromClause, node: ColumnElement[Any], direction: str
) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """Join condition "this edge leaves ``node``" and the customer at its other end."""
    if direction == "out":
        return edges.c.source_id == node, edges.c.target_id
    if direction == "in":
        return edges.c.target_id == node, edges.c.source_id
    leaves = sa.or_(edges.c.source_id == node, edges.c.target_id == node)
    return leaves, sa.case((edges.c.source_id == node, edges.c.target_id), else_=edges.c.source_id)


_REVERSED = {"out": "in", "in": "out", "both": "both"}


def traverse(
    store: SqlStore,
    tenant: str,
    start: uuid.UUID,
    kinds: frozenset[str],
    direction: str,
    depth: int,
    as_of: dt.date | None,
) -> list[Reached]:
    repo = store.repository(RELATIONSHIPS)
    table = repo.table

    def usable(edges: sa.FromClause) -> list[ColumnElement[bool]]:
        conditions = [edges.c.tenant == tenant, edges.c.kind.in_(sorted(kinds))]
        if as_of is not None:
            conditions.append(sa.or_(edges.c.since.is_(None), edges.c.since <= as_of))
            conditions.append(sa.or_(edges.c["until"].is_(None), edges.c["until"] >= as_of))
        return conditions

    walk = sa.select(
        sa.cast(sa.literal(start, sa.Uuid()), sa.Uuid()).label("node"),
        sa.cast(sa.literal(0, sa.Integer()), sa.Integer()).label("steps"),
    ).cte("walk", recursive=True)
    step_edges = table.alias("step_edges")
    leaves, other_end = _step(step_edges, walk.c.node, direction)
    walk = walk.union(
        sa.select(other_end, walk.c.steps + 1)
        .select_from(walk.join(step_edges, sa.and_(leaves, *usable(step_edges))))
        .where(walk.c.steps < depth)
    )
    best = sa.select(walk.c.node, sa.func.min(walk.c.steps).label("level")).group_by(walk.c.node).cte("best")
    parent = best.alias("parent")
    via_edges = table.alias("via_edges")
    # edges arriving at a customer, read backwards from it; the far end must be one level up
    arrives, came_from = _step(via_edges, best.c.node, _REVERSED[direction])
    ranked = (
        sa.select(
            best.c.node,
            best.c.level,
            via_edges.c.id.label("edge_id"),
            sa.func.row_number().over(partition_by=best.c.node, order_by=via_edges.c.id).label("rank"),
        )
        .select_from(
            best.join(via_edges, sa.and_(arrives, *usable(via_edges))).join(
                parent, sa.and_(parent.c.node == came_from, parent.c.level == best.c.level - 1)
            )
        )
        .where(best.c.level > 0)
        .cte("ranked")
    )
    columns = [c for c in table.c if c.name != "tenant"]
    statement = (
        sa.select(ranked.c.node, ranked.c.level, *columns)
        .select_from(ranked.join(table, sa.and_(table.c.tenant == tenant, table.c.id == ranked.c.edge_id)))
        .where(ranked.c.rank == 1)
    )
    from_row = repo.convert.from_row
    with store.connection() as conn:
        rows = conn.execute(statement).mappings()
        return [Reached(row["node"], int(row["level"]), from_row(row)) for row in rows]

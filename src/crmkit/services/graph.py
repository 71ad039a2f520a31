"""``crm.relationships``: typed edges between customers, neighbours and traversals."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from crmkit._errors import ValidationError
from crmkit.entities import (
    RELATIONSHIPS,
)
from crmkit.query import In, parse_order
from crmkit.relationships import DIRECTIONS, Direction, Reached, Relationship

if TYPE_CHECKING:
    pass

from crmkit.services.records import _Records

__all__ = ["Relationships"]


class Relationships(_Records[Relationship]):
    """``crm.relationships``: typed edges between customers, with neighbour and traversal queries."""

    spec = RELATIONSHIPS

    # -- idempotent imports: one edge per natural key (source_id, target_id, kind, since)
    @staticmethod
    def _natural(record: Relationship) -> tuple[uuid.UUID, uuid.UUID, str, dt.date | None]:
        return (record.source_id, record.target_id, record.kind, record.since)

    def _prepared(self, batch: Sequence[object], row: int) -> list[Relationship]:
        """As for every aggregate, and minus repeats of a natural key in the batch."""
        seen: set[tuple[uuid.UUID, uuid.UUID, str, dt.date | None]] = set()
        out = []
        for record in super()._prepared(batch, row):
            key = self._natural(record)
            if key not in seen:
                seen.add(key)
                out.append(record)
        return out

    def _unstored(self, prepared: list[Relationship]) -> list[Relationship]:
        """The records whose natural key is not stored yet: ``add_many`` skips (counts) the others.

        Read inside the batch's transaction, so a batch run again after losing a race with a
        concurrent import of the same edges skips what that import stored.
        """
        if not prepared:
            return prepared
        sources = tuple({r.source_id for r in prepared})
        stored = self._repo.find(self._crm.tenant, In("source_id", sources), parse_order(None, self.spec), None)
        taken = {self._natural(r) for r in stored}
        return [r for r in prepared if self._natural(r) not in taken] if taken else prepared

    def _check_references(self, records: Sequence[Relationship], first_row: int | None) -> None:
        types = self._crm.relationship_types
        for i, record in enumerate(records):
            rtype = types.get(record.kind)
            problem = None
            if rtype is None:
                problem = f"is not a registered relationship type (known: {', '.join(sorted(types))})"
            elif rtype.name != record.kind:
                problem = f"is the inverse of '{rtype.name}': store it as {rtype.name} with source and target swapped"
            if problem is not None:
                err = ValidationError("kind", problem, record.kind)
                raise err if first_row is None else err.at_row(first_row + i)
        self._require_customers(records, ("source_id", "target_id"), first_row)

    def _resolve(self, kind: str | Iterable[str] | None, direction: Direction) -> tuple[frozenset[str], Direction]:
        """Primary type names and the direction to walk stored edges in.

        Without ``kind`` every type is walked in ``direction`` as stored (pass "both" to
        follow symmetric edges either way). A named symmetric type is walked both ways; an
        inverse name (``employs``) walks its primary type's edges the other way.
        """
        if direction not in DIRECTIONS:
            raise ValidationError("direction", "must be out, in or both", direction)
        types = self._crm.relationship_types
        if kind is None:
            return frozenset(t.name for t in types.values()), direction
        if isinstance(kind, str):
            names = [kind]
        elif isinstance(kind, Iterable) and not isinstance(kind, (bytes, Mapping)):
            names = list(kind)
        else:
            raise ValidationError("kind", "takes a relationship type name or a collection of them", kind)
        if not names or not all(isinstance(n, str) for n in names):
            raise ValidationError("kind", "names no relationship type", kind)
        resolved: set[str] = set()
        directions: set[str] = set()
        for name in names:
            rtype = types.get(name)
            if rtype is None:
                raise ValidationError(
                    "kind", f"is not a registered relationship type (known: {', '.join(sorted(types))})", name
                )
            resolved.add(rtype.name)
            if rtype.symmetric:
                directions.add("both")
            elif rtype.name == name:
                directions.add(direction)
            else:  # asked by the inverse name: walk the stored edges the other way
                directions.add({"out": "in", "in": "out", "both": "both"}[direction])
        if len(directions) > 1:
            raise ValidationError("kind", "mixes relationship types that must be walked in different directions", kind)
        return frozenset(resolved), directions.pop()  # type: ignore[return-value]

    def neighbours(
        self,
        customer_id: uuid.UUID,
        *,
        kind: str | Iterable[str] | None = None,
        direction: Direction = "both",
        as_of: dt.date | None = None,
    ) -> list[Reached]:
        """Customers one step away, with the edge to each (``kind`` may be an inverse name such as employs)."""
        return self.traverse(customer_id, kind=kind, direction=direction, depth=1, as_of=as_of)

    def traverse(
        self,
        customer_id: uuid.UUID,
        *,
        kind: str | Iterable[str] | None = None,
        direction: Direction = "out",
        depth: int = 1,
        as_of: dt.date | None = None,
    ) -> list[Reached]:
        """Customers reachable within ``depth`` steps (account hierarchies, referral chains), nearest first."""
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 100:
            raise ValidationError("depth", "must be an integer from 1 to 100", depth)
        if as_of is not None and (not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime)):
            raise ValidationError("as_of", "must be a date", as_of)
        self._crm.customers.get(customer_id)
        kinds, walk = self._resolve(kind, direction)
        reached = self._crm.store.traverse(self._crm.tenant, customer_id, kinds, walk, depth, as_of)
        return sorted(reached, key=lambda r: (r.depth, r.customer_id))

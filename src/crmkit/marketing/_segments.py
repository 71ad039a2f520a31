"""``crm.segments``: the records of segments, and their members counted and listed inside the store."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from crmkit._errors import ValidationError
from crmkit._validation import text_of, utc
from crmkit.customers import Customer
from crmkit.marketing._model import Segment, SegmentMember
from crmkit.query import And, Expr, F, Not, Or, Select, Where, bind, relative_to
from crmkit.schema._condition import condition_text
from crmkit.services.records import Records, _uuids
from crmkit.store import iter_batches

__all__ = ["Segments"]

_BATCH = 1000


class Segments(Records[Segment]):
    """``crm.segments``: every method of ``crm.records(Segment)``, plus membership.

    A dynamic segment's members are the customers its saved query matches now: counted with
    one ``count`` in the store and listed by a keyset scan of the matching customers (ids
    only leave the store page by page). Static and snapshot segments keep their members as
    ``segment_members`` records, counted and listed the same way.

    A query may hold relative instants (``facts.bought(since=dt.timedelta(days=90))``,
    ``F("created_at") >= ago(days=30)``): the saved query keeps them relative, and each
    ``count``, ``members``, ``customers`` or ``where`` resolves them against its ``at=``
    (the connection's clock when not given).
    """

    def _check_references(self, records: Sequence[Segment], first_row: int | None) -> None:
        """Every write (add, update, add_many, upsert_many) checks a dynamic segment's query against the
        customers' fields, the error naming the input row in bulk writes."""
        for i, segment in enumerate(records):
            try:
                self._condition(segment)
            except ValidationError as exc:
                raise exc if first_row is None else exc.at_row(first_row + i) from None
        super()._check_references(records, first_row)

    def _condition(self, segment: Segment, at: dt.datetime | None = None) -> Expr | None:
        where = segment.condition
        if where is None:
            return None
        try:
            return bind(relative_to(where, self._moment(at)), self._crm.customers.spec, self._crm.schema)
        except ValidationError as exc:
            raise ValidationError("where", f"does not apply to customers: {exc}", segment.where) from None

    def _moment(self, at: dt.datetime | None) -> dt.datetime:
        return self._crm.now() if at is None else utc(at, "at")

    def where(self, segment_id: uuid.UUID | Segment, *, at: dt.datetime | None = None) -> Expr:
        """The segment as a condition on customers, for any query: a dynamic one's saved query (its relative
        instants resolved against ``at``, else the connection's clock), a static or snapshot one's members as
        a sub-query (``F("id").in_(Select("segment_members", ...))``)."""
        segment = self._segment(segment_id)
        condition = segment.condition if segment.kind == "dynamic" else None
        if condition is not None:
            resolved = relative_to(condition, self._moment(at))
            assert isinstance(resolved, Expr)
            return resolved
        return F("id").in_(Select("segment_members", "customer_id", F("segment_id") == segment.id))

    def _segment(self, segment_id: uuid.UUID | Segment) -> Segment:
        if isinstance(segment_id, Segment):
            segment_id = segment_id.id
        return self.get(segment_id)

    def count(self, where: Where | uuid.UUID = None, *, at: dt.datetime | None = None) -> int:
        """``count(segment_id)``: the members of a segment (at ``at``), counted in the store; ``count(where)``:
        segments."""
        if isinstance(where, (uuid.UUID, Segment)):
            segment = self._segment(where)
            condition = self._condition(segment, at) if segment.kind == "dynamic" else None
            if condition is not None:
                return self._crm.customers.count(condition)
            return self._crm.records(SegmentMember).count(F("segment_id") == segment.id)
        return super().count(where)

    def members(
        self, segment_id: uuid.UUID, *, at: dt.datetime | None = None, batch_size: int = _BATCH
    ) -> Iterator[uuid.UUID]:
        """The ids of the segment's customers (at ``at``), in id order, read page by page (bounded memory)."""
        segment = self._segment(segment_id)
        condition = self._condition(segment, at) if segment.kind == "dynamic" else None
        if condition is not None:
            return (c.id for c in self._crm.customers.stream(condition, order_by="id", batch_size=batch_size))
        rows = self._crm.records(SegmentMember).stream(
            F("segment_id") == segment.id, order_by=("customer_id",), batch_size=batch_size
        )
        return (m.customer_id for m in rows)

    def customers(
        self, segment_id: uuid.UUID, *, at: dt.datetime | None = None, batch_size: int = _BATCH
    ) -> Iterator[Customer]:
        """The segment's customers themselves (at ``at``), in id order, page by page."""
        segment = self._segment(segment_id)
        condition = self._condition(segment, at) if segment.kind == "dynamic" else None
        if condition is not None:
            yield from self._crm.customers.stream(condition, order_by="id", batch_size=batch_size)
            return
        for ids in iter_batches(self.members(segment.id, batch_size=batch_size), batch_size):
            yield from self._crm.customers.stream(F("id").in_(ids), order_by="id", batch_size=batch_size)

    def add_members(self, segment_id: uuid.UUID, customer_ids: Iterable[uuid.UUID]) -> int:
        """Add customers to a static or snapshot segment (present ones are skipped); returns how many were added."""
        segment = self._explicit(segment_id)
        ids = list(dict.fromkeys(_uuids("customer_ids", customer_ids)))
        members = self._crm.records(SegmentMember)
        added = 0
        now = self._crm.now()
        with self._crm.transaction():
            for batch in iter_batches(iter(ids), _BATCH):
                present = {
                    m.customer_id for m in members.stream((F("segment_id") == segment.id) & F("customer_id").in_(batch))
                }
                new = [
                    SegmentMember(segment_id=segment.id, customer_id=c, added_at=now) for c in batch if c not in present
                ]
                if new:
                    added += members.add_many(new).added
        return added

    def remove_members(self, segment_id: uuid.UUID, customer_ids: Iterable[uuid.UUID]) -> int:
        """Remove customers from a static or snapshot segment; returns how many were members."""
        segment = self._explicit(segment_id)
        ids = list(dict.fromkeys(_uuids("customer_ids", customer_ids)))
        members = self._crm.records(SegmentMember)
        removed = 0
        with self._crm.transaction():
            for batch in iter_batches(iter(ids), _BATCH):
                for member in list(members.stream((F("segment_id") == segment.id) & F("customer_id").in_(batch))):
                    members.delete(member.id)
                    removed += 1
        return removed

    def _explicit(self, segment_id: uuid.UUID) -> Segment:
        segment = self._segment(segment_id)
        if segment.kind == "dynamic":
            raise ValidationError(
                "segment_id",
                "a dynamic segment's members follow its query: snapshot it or use a static one",
                segment.id,
            )
        return segment

    def snapshot(self, segment_id: uuid.UUID, *, name: str, description: str | None = None) -> Segment:
        """Freeze a segment's members now into a new ``snapshot`` segment (one transaction)."""
        source = self._segment(segment_id)
        now = self._crm.now()
        members = self._crm.records(SegmentMember)
        with self._crm.transaction():
            frozen = self.add(
                Segment(
                    name=text_of("name", name),
                    kind="snapshot",
                    where=source.where,
                    description=description,
                    source_id=source.id,
                    frozen_at=now,
                )
            )
            rows = (SegmentMember(segment_id=frozen.id, customer_id=c, added_at=now) for c in self.members(source.id))
            members.add_many(rows, batch_size=_BATCH)
        return frozen

    def combine(
        self,
        how: Literal["union", "intersection", "difference"],
        segment_ids: Iterable[uuid.UUID],
        *,
        name: str,
    ) -> Segment:
        """A new dynamic segment whose query is the union (``|``), intersection (``&``) or difference (first
        ``& ~`` the others) of segments of any kind: still one query, counted and listed in the store. A static
        or snapshot segment takes part through its members (a sub-query on ``segment_members``), so the
        combination follows later changes of every part."""
        segments = [self._segment(i) for i in segment_ids]
        if not segments:
            raise ValidationError("segment_ids", "name at least one segment", segments)
        # a dynamic part's saved query as it is kept (its relative instants stay relative)
        conditions = [
            s.condition if s.kind == "dynamic" and s.condition is not None else self.where(s) for s in segments
        ]
        where: Expr
        if how == "union":
            where = Or(tuple(conditions)) if len(conditions) > 1 else conditions[0]
        elif how == "intersection":
            where = And(tuple(conditions)) if len(conditions) > 1 else conditions[0]
        elif how == "difference":
            rest = tuple(Not(c) for c in conditions[1:])
            where = And((conditions[0], *rest)) if rest else conditions[0]
        else:
            raise ValidationError("how", "must be union, intersection or difference", how)
        return self.add(Segment(name=name, where=condition_text(where)))

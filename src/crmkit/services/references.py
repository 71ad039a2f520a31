"""What references mean to a connection: checks on write, and every ``on_delete`` policy on delete."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, ValidationError
from crmkit.entities import (
    EntitySpec,
)
from crmkit.events import Event, event_for
from crmkit.query import (
    And,
    Compare,
    Expr,
    parse_order,
)
from crmkit.schema import Reference
from crmkit.store import Store, scan

if TYPE_CHECKING:
    pass

from crmkit.schema import Schema
from crmkit.services.records import Records, _ReadRecords, _Records

__all__ = ["ReferencePolicies", "policed"]


def policed(schema: Schema, ref: Reference) -> bool:
    """Whether the generic checks and ``on_delete`` policies apply to a reference.

    They apply to every declared aggregate's references, and to those of crmkit's
    hand-tuned aggregates that point elsewhere than at customers (a transaction's
    ``order_id``): their references to customers are kept by their own services
    (a customer's deletion takes its interactions and transactions along in bulk).
    """
    return ref.source in schema.derived or (ref.target is not None and ref.target != "customers")


def _pointer(ref: Reference, value: Any) -> tuple[str, uuid.UUID] | None:
    """(aggregate, id) that a reference field's value points at, None when it is empty."""
    if value is None:
        return None
    if ref.target is None:
        return value.aggregate, value.id
    return ref.target, value


class ReferencePolicies:
    """Reference checks and delete policies over the connection's schema (CRM's part)."""

    tenant: str
    store: Store
    schema: Schema
    _local: threading.local
    _referrers: dict[str, bool]

    def records(self, aggregate: Any) -> Records[Any]:  # pragma: no cover - the CRM's
        raise NotImplementedError

    def _emit(self, kind: type[Event], before: Any, after: Any) -> None:  # pragma: no cover - the CRM's
        raise NotImplementedError

    def _referred_to(self, spec: EntitySpec) -> bool:
        """Whether records of a declared aggregate may point at records of ``spec``.

        A ``ref`` to ``spec`` always may; a ``ref_any`` (tasks and notes about anything) only
        when one of its records is about a ``spec`` record now: one count in the store, so
        that deleting a customer keeps the bulk path while nothing is about its transactions.
        """
        if not self._referrers.get(spec.name, False):
            return False
        for ref in self.schema.references_to(spec.name):
            if not policed(self.schema, ref):
                continue
            if not ref.any:
                return True
            if self.records(ref.source).count(Compare(f"{ref.field}.aggregate", "==", spec.name)):
                return True
        return False

    def _require_references(self, spec: EntitySpec, records: Sequence[Any], first_row: int | None) -> None:
        """ValidationError (field and row) for a reference to a record this tenant does not hold."""
        for ref in self.schema.references_from(spec.name):
            if not policed(self.schema, ref):
                continue  # crmkit's own aggregates check their customers in their services
            wanted: dict[str, set[uuid.UUID]] = {}
            for record in records:
                pointer = _pointer(ref, getattr(record, ref.field))
                if pointer is not None:
                    wanted.setdefault(pointer[0], set()).add(pointer[1])
            found: dict[str, set[uuid.UUID]] = {}
            for target, ids in wanted.items():
                if target in self.schema:
                    found[target] = self.store.repository(self.schema[target]).existing_ids(self.tenant, list(ids))
            for i, record in enumerate(records):
                value = getattr(record, ref.field)
                pointer = _pointer(ref, value)
                if pointer is None or pointer[1] in found.get(pointer[0], ()):
                    continue
                if pointer[0] not in self.schema:
                    err = ValidationError(ref.field, f"refers to {pointer[0]!r}, not a registered aggregate", value)
                else:
                    err = ValidationError(
                        ref.field, f"no {self.schema[pointer[0]].label} with this id in this tenant", value
                    )
                raise err if first_row is None else err.at_row(first_row + i)

    def _on_delete(self, spec: EntitySpec, id: uuid.UUID) -> None:
        """Apply every declared reference's ``on_delete`` to the records that point at one being deleted."""
        if not self._referred_to(spec):
            return
        deleting: set[tuple[str, uuid.UUID]] = self._local.__dict__.setdefault("deleting", set())
        if (spec.name, id) in deleting:
            return  # a reference cycle led back here: the record is already on its way out
        deleting.add((spec.name, id))
        try:
            referring = []
            for ref in self.schema.references_to(spec.name):
                if not policed(self.schema, ref):
                    continue
                source = self.schema[ref.source]
                if ref.any:
                    where: Expr = And(
                        (Compare(f"{ref.field}.aggregate", "==", spec.name), Compare(f"{ref.field}.id", "==", id))
                    )
                else:
                    where = Compare(ref.field, "==", id)
                if ref.on_delete == "restrict":
                    blocking = self.store.repository(source).find(self.tenant, where, parse_order(None, source), 5)
                    if blocking:
                        names = ", ".join(str(r.id) for r in blocking)
                        raise ConflictError(
                            f"{spec.label} {id} is referred to by {source.name}.{ref.field} "
                            f"({names}{' and more' if len(blocking) == 5 else ''}): "
                            "delete or change those first",
                            entity=spec.label,
                            key=id,
                        )
                else:
                    referring.append((ref, source, where))
            for ref, source, where in referring:
                service: Records[Any] = self.records(source.name)
                for record in list(scan(service._repo, self.tenant, where, parse_order(None, source))):
                    current = service._repo.get(self.tenant, record.id)
                    if current is None:
                        continue  # deleted by an earlier cascade of this same delete
                    if ref.on_delete == "cascade":
                        service._delete_current(current)
                    else:
                        service._replace(current, service._bumped(current, attrs.evolve(current, **{ref.field: None})))
        finally:
            deleting.discard((spec.name, id))

    def _delete_dependent(self, spec: EntitySpec, record: Any) -> None:
        """Delete one record of crmkit's own aggregates as part of a cascade, with its policies and event."""
        service: _ReadRecords[Any] = self.records(spec.name)
        if isinstance(service, _Records):
            service._delete_current(record)
            return
        self._on_delete(spec, record.id)
        self.store.repository(spec).delete(self.tenant, record.id, record.version)
        self._emit(event_for(spec.name, "deleted", spec.label), record, None)

"""A Hypothesis state machine per declared aggregate, against a plain dict model of what the store must hold.

Random adds, imports, updates (every field at once or a few), stale updates, deletes,
deletes of the customers the records refer to (each reference's ``on_delete`` applied to
the model), paged finds with random conditions and orders, and rolled-back transactions.
Unique keys and external ids are drawn from small pools so that they collide often; the
model predicts every ConflictError, ValidationError and NotFound.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy

from crmkit import BulkResult, ConflictError, NotFound, ValidationError
from crmkit.query import Expr, bind, evaluate, parse_order
from crmkit.schema import AggregateSpec, Ref
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.aggregates import declared_examples, example_value, unique_keys_of
from crmkit.testing.conformance._aggregate_kit import AggregateContractBase, AggregateKit, assert_exact
from crmkit.testing.conformance._aggregate_queries import conditions, orders, reference_order
from crmkit.testing.conformance._harness import Clock, at, conformance_settings

__all__ = ["AggregateStateMachineContract", "aggregate_state_machine"]

_EXTERNAL_IDS = ("e-1", "e-2", "ș-3")


class _Rollback(Exception):
    pass


def _keys(spec: AggregateSpec, records: Sequence[Any]) -> dict[tuple[str, tuple[Any, ...]], uuid.UUID]:
    return {key: r.id for r in records for key in unique_keys_of(spec, r)}


def aggregate_state_machine(backend: Backend, aggregate: str) -> type[RuleBasedStateMachine]:
    """A state machine class for one declared aggregate of ``backend``; each run uses a fresh tenant."""

    class AggregateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = Clock(at(2024, 1, 1))
            self.crm = backend.crm(clock=self.clock)
            self.spec: AggregateSpec = self.crm.schema.derived[aggregate]
            self.kit = AggregateKit(self.crm, self.spec, count=3)
            self.service = self.kit.service
            self.model: dict[uuid.UUID, Any] = {}
            self.stale: list[Any] = []
            self.deleted: list[Any] = []
            self.dead: set[uuid.UUID] = set()
            self.records = cs.records(self.spec, targets=self.kit.targets, **self._pools())

        def _pools(self) -> dict[str, SearchStrategy[Any]]:
            """Small pools for the parts of unique keys, so that keys collide."""
            pools: dict[str, SearchStrategy[Any]] = {"external_id": st.none() | st.sampled_from(_EXTERNAL_IDS)}
            for key in self.spec.unique:
                for name in key:
                    fd = self.spec.declared.get(name)
                    if fd is not None and fd.kind != "ref":
                        declared = declared_examples(self.spec.cls).get(name)  # when random values are refused
                        values = (
                            list(declared[:3])
                            if declared
                            else [example_value(fd, n, targets=self.kit.targets) for n in range(3)]
                        )
                        pools[name] = st.sampled_from(values)
            return pools

        # -- helpers
        def now(self) -> dt.datetime:
            return self.clock.advance(milliseconds=1)

        def _dead_reference(self, record: Any) -> bool:
            for ref in self.spec.references:
                value = getattr(record, ref.field)
                if ref.target == "customers" and value in self.dead:
                    return True
                if isinstance(value, Ref) and value.aggregate == "customers" and value.id in self.dead:
                    return True
            return False

        def _clashes(self, record: Any, others: Sequence[Any]) -> bool:
            held = _keys(self.spec, [r for r in others if r.id != record.id])
            return any(key in held for key in unique_keys_of(self.spec, record))

        def _pick(self, data: st.DataObject) -> Any:
            return self.model[data.draw(st.sampled_from(sorted(self.model)), label="id")]

        # -- writes
        @initialize(data=st.data())
        def some_records(self, data: st.DataObject) -> None:
            """Start with a few records, so that every run has references and keys to collide with."""
            now = self.now()
            records: list[Any] = []
            for record in data.draw(st.lists(self.records, min_size=3, max_size=6), label="first records"):
                # a repeated id would be one record stored twice (or skipped by its external id)
                if record.id not in {r.id for r in records} and not self._clashes(record, records):
                    records.append(record)
            self.service.add_many(records)
            self.model = {r.id: attrs.evolve(r, created_at=now, updated_at=now, version=1) for r in records}

        @rule(data=st.data())
        def add(self, data: st.DataObject) -> None:
            record = data.draw(self.records, label="record")
            now = self.now()
            if self._dead_reference(record):
                with pytest.raises(ValidationError):
                    self.service.add(record)
            elif self._clashes(record, list(self.model.values())) or record.id in self.model:
                with pytest.raises(ConflictError):
                    self.service.add(record)
            else:
                stored = self.service.add(record)
                expected = attrs.evolve(record, created_at=now, updated_at=now, version=1)
                assert_exact(expected, stored, "add")
                self.model[record.id] = expected

        @rule(data=st.data(), batch_size=st.integers(1, 3))
        def add_many(self, data: st.DataObject, batch_size: int) -> None:
            records = data.draw(st.lists(self.records, max_size=5), label="records")
            records = [r for r in records if not self._dead_reference(r)]
            now = self.now()
            model = dict(self.model)
            added = skipped = 0
            conflict = False
            for start in range(0, len(records), batch_size):
                batch, seen = [], set()
                for record in records[start : start + batch_size]:
                    if record.external_id is not None:
                        if record.external_id in seen:
                            continue
                        seen.add(record.external_id)
                    batch.append(record)
                held = {r.external_id for r in model.values() if r.external_id is not None}
                fresh = [r for r in batch if r.external_id is None or r.external_id not in held]
                writing = list(model.values())
                for record in fresh:
                    if record.id in model or self._clashes(record, writing):
                        conflict = True
                        break
                    writing.append(record)
                if conflict:
                    break
                for record in fresh:
                    model[record.id] = attrs.evolve(record, created_at=now, updated_at=now, version=1)
                added += len(fresh)
                skipped += len(records[start : start + batch_size]) - len(fresh)
            if conflict:
                if not backend.capabilities.transactions:
                    return  # the batch in error may be partly written: nothing to compare with
                with pytest.raises(ConflictError):
                    self.service.add_many(iter(records), batch_size=batch_size)
            else:
                assert self.service.add_many(iter(records), batch_size=batch_size) == BulkResult(added, skipped)
            self.model = model

        @precondition(lambda self: self.model)
        @rule(data=st.data(), everything=st.booleans())
        def update(self, data: st.DataObject, everything: bool) -> None:
            current = self._pick(data)
            fresh = data.draw(self.records, label="values")
            names = [*sorted(self.spec.declared), "external_id"]
            if not everything:
                names = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True), label="fields")
            edited = attrs.evolve(current, **{n: getattr(fresh, n) for n in names})
            now = self.now()
            if self._dead_reference(edited):
                with pytest.raises(ValidationError):
                    self.service.update(edited)
                return
            if self._clashes(edited, list(self.model.values())):
                with pytest.raises(ConflictError):
                    self.service.update(edited)
                return
            stored = self.service.update(edited)
            expected = attrs.evolve(edited, updated_at=now, version=current.version + 1)
            assert_exact(expected, stored, "update")
            self.stale.append(current)
            self.model[current.id] = expected

        @precondition(lambda self: self.stale)
        @rule(data=st.data())
        def stale_update(self, data: st.DataObject) -> None:
            old = data.draw(st.sampled_from(self.stale), label="stale copy")
            current = self.model.get(old.id)
            if current is not None and current.version == old.version:
                return
            self.now()
            with pytest.raises(ConflictError if current is not None else NotFound):
                self.service.update(old)

        @precondition(lambda self: self.model)
        @rule(data=st.data(), check_version=st.sampled_from((None, "right", "wrong")))
        def delete(self, data: st.DataObject, check_version: str | None) -> None:
            current = self._pick(data)
            self.now()
            if check_version == "wrong":
                with pytest.raises(ConflictError):
                    self.service.delete(current.id, expected_version=current.version + 1)
                return
            self.service.delete(current.id, expected_version=current.version if check_version else None)
            del self.model[current.id]
            self.deleted.append(current)

        @precondition(lambda self: self.deleted)
        @rule(data=st.data())
        def touch_deleted(self, data: st.DataObject) -> None:
            gone = data.draw(st.sampled_from(self.deleted), label="deleted")
            if gone.id in self.model:
                return
            with pytest.raises(NotFound):
                self.service.update(gone)
            with pytest.raises(NotFound):
                self.service.delete(gone.id)

        @precondition(lambda self: len(self.dead) < len(self.kit.targets.of("customers")))
        @rule(data=st.data())
        def delete_customer(self, data: st.DataObject) -> None:
            alive = [c for c in self.kit.targets.of("customers") if c not in self.dead]
            victim = data.draw(st.sampled_from(alive), label="customer")
            now = self.now()
            if self._restricted(victim, self.model.values()):
                with pytest.raises(ConflictError):
                    self.crm.customers.delete(victim)
                return
            self.crm.customers.delete(victim)
            self.dead.add(victim)
            for record in list(self.model.values()):
                hits = [ref for ref in self.spec.references if self._points_at(record, ref.field, victim)]
                if any(ref.on_delete == "cascade" for ref in hits):
                    del self.model[record.id]
                    self.deleted.append(record)
                elif hits:  # set_null, one update per reference
                    nulled = attrs.evolve(record, **{ref.field: None for ref in hits})
                    self.model[record.id] = attrs.evolve(nulled, updated_at=now, version=record.version + len(hits))
                    self.stale.append(record)

        def _restricted(self, customer: uuid.UUID, records: Iterable[Any]) -> bool:
            """Whether a record refers to the customer through a ``restrict`` reference."""
            return any(
                ref.on_delete == "restrict" and self._points_at(r, ref.field, customer)
                for r in records
                for ref in self.spec.references
            )

        @staticmethod
        def _points_at(record: Any, field: str, customer: uuid.UUID) -> bool:
            value = getattr(record, field)
            return value == customer or (isinstance(value, Ref) and value == Ref("customers", customer))

        # -- reads
        @rule(data=st.data(), limit=st.sampled_from((None, 1, 2, 5)))
        def find(self, data: st.DataObject, limit: int | None) -> None:
            records = list(self.model.values())
            where: Expr = data.draw(conditions(self.spec, records), label="where")
            order_by = data.draw(orders(self.spec), label="order_by")
            bound = bind(where, self.spec)
            expected = reference_order(
                self.spec, [r for r in records if evaluate(bound, self.spec, r)], parse_order(order_by, self.spec)
            )
            got: list[Any] = []
            after = None
            while True:
                page = self.service.find(where, order_by=order_by, limit=limit, after=after)
                got.extend(page)
                if page.next is None:
                    break
                after = page.next
            assert [r.id for r in got] == [r.id for r in expected], f"find({where!r}, order_by={order_by})"
            assert self.service.count(where) == len(expected)

        @rule(external_id=st.sampled_from(_EXTERNAL_IDS))
        def get_by_external_id(self, external_id: str) -> None:
            owner = next((r for r in self.model.values() if r.external_id == external_id), None)
            if owner is None:
                with pytest.raises(NotFound):
                    self.service.get_by_external_id(external_id)
            else:
                assert_exact(owner, self.service.get_by_external_id(external_id), "get_by_external_id")

        @precondition(lambda self: backend.capabilities.transactions)
        @rule(data=st.data())
        def rolled_back_transaction(self, data: st.DataObject) -> None:
            # Only writes that succeed: after a failed write a transaction is doomed, and what
            # a store does with further statements in it (MongoDB has aborted it) is not defined.
            self.now()
            record = data.draw(self.records, label="record")
            inside = dict(self.model)
            with pytest.raises(_Rollback), self.crm.transaction():
                if self.model:
                    victim = self._pick(data)
                    self.service.delete(self.service.update(victim).id)
                    del inside[victim.id]
                fits = not self._dead_reference(record) and not self._clashes(record, list(inside.values()))
                if record.id not in inside and fits:
                    self.service.add(record)
                    inside[record.id] = record
                alive = [c for c in self.kit.targets.of("customers") if c not in self.dead]
                delete_customer: bool = data.draw(st.booleans(), label="delete a customer too")
                if alive and delete_customer and not self._restricted(alive[0], inside.values()):
                    self.crm.customers.delete(alive[0])
                raise _Rollback

        # -- after every step
        @invariant()
        def store_equals_model(self) -> None:
            found = sorted(self.service.find(), key=lambda r: r.id)
            assert [r.id for r in found] == sorted(self.model)
            for record in found:
                assert_exact(self.model[record.id], record, "the store against the model")
            assert self.service.count() == len(self.model)

    AggregateMachine.__name__ = AggregateMachine.__qualname__ = f"StateMachine[{aggregate}]"
    return AggregateMachine


class AggregateStateMachineContract(AggregateContractBase):
    """Random writes, imports, deletes, cascades, finds and rollbacks of every declared aggregate agree with a model."""

    def test_random_operations_agree_with_a_model(self, crmkit_backend: Backend, aggregate: str) -> None:
        machine = aggregate_state_machine(crmkit_backend, aggregate)
        run_state_machine_as_test(machine, settings=conformance_settings(max_examples=15, stateful_step_count=20))

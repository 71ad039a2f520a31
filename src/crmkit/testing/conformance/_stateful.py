"""A Hypothesis state machine: random operations on the store and on a plain dict model, compared after each step."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from crmkit import BulkResult, ConflictError, Customer, NotFound, Stage, Transaction, ValidationError
from crmkit.entities import CUSTOMERS, TRANSACTIONS
from crmkit.query import Expr, F, parse_order
from crmkit.testing._backends import Backend
from crmkit.testing.conformance import _queries as q
from crmkit.testing.conformance._harness import Clock, ContractBase, at, conformance_settings
from crmkit.testing.conformance._model import matches, sort_records

__all__ = ["StatefulContract", "crm_state_machine"]


class _Rollback(Exception):
    pass


_attribute = st.sampled_from(q.ATTRIBUTE_VALUES)
_attributes = st.fixed_dictionaries({}, optional={"a": _attribute, "b": _attribute})
_external = st.none() | st.sampled_from(q.EXTERNAL_IDS)
_customer_fields = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(("person", "organization")),
        "name": st.sampled_from(q.NAMES),
        "owner": st.sampled_from(q.OWNERS),
        "tags": st.sets(st.sampled_from(q.TAGS), max_size=3),
        "stage": st.sampled_from(tuple(Stage)),
        "external_id": _external,
        "attributes": _attributes,
    }
)
_limits = st.sampled_from((None, 1, 2, 3, 5))
_PICKS = st.none() | st.integers(0, 100)
_CUSTOMER_WHERES = q.customer_wheres()
_TRANSACTION_WHERES = q.transaction_wheres()


def crm_state_machine(backend: Backend) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``backend``; each run uses a fresh tenant."""

    class CRMStateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = Clock(at(2024, 1, 1))
            self.crm = backend.crm(clock=self.clock)
            self.customers: dict[uuid.UUID, Customer] = {}
            self.transactions: dict[uuid.UUID, Transaction] = {}
            self.stage_changes: dict[uuid.UUID, int] = {}
            self.stale: list[Customer] = []
            self.deleted: list[Customer] = []

        # -- helpers
        def now(self) -> dt.datetime:
            return self.clock.advance(milliseconds=1)

        def _external_owner(self, records: dict[uuid.UUID, Any], external_id: str | None) -> uuid.UUID | None:
            if external_id is None:
                return None
            return next((r.id for r in records.values() if r.external_id == external_id), None)

        def _pick(self, data: st.DataObject, records: dict[uuid.UUID, Any]) -> Any:
            return records[data.draw(st.sampled_from(sorted(records)), label="id")]

        # -- customers
        @rule(fields=_customer_fields, new_id=st.uuids())
        def add_customer(self, fields: dict[str, Any], new_id: uuid.UUID) -> None:
            customer = Customer(id=new_id, **fields)
            now = self.now()
            if new_id in self.customers or self._external_owner(self.customers, customer.external_id):
                with pytest.raises(ConflictError):
                    self.crm.customers.add(customer)
                return
            stored = self.crm.customers.add(customer)
            expected = attrs.evolve(customer, created_at=now, updated_at=now, version=1)
            assert stored == expected
            self.customers[new_id] = expected

        @precondition(lambda self: self.customers)
        @rule(data=st.data(), changes=_customer_fields)
        def update_customer(self, data: st.DataObject, changes: dict[str, Any]) -> None:
            current = self._pick(data, self.customers)
            keys = data.draw(st.sets(st.sampled_from(sorted(changes)), min_size=1), label="fields")
            edited = attrs.evolve(current, **{k: changes[k] for k in keys})
            now = self.now()
            owner = self._external_owner(self.customers, edited.external_id)
            if owner is not None and owner != current.id:
                with pytest.raises(ConflictError):
                    self.crm.customers.update(edited)
                return
            stored = self.crm.customers.update(edited)
            expected = attrs.evolve(edited, updated_at=now, version=current.version + 1)
            assert stored == expected
            if edited.stage != current.stage:
                self.stage_changes[current.id] = self.stage_changes.get(current.id, 0) + 1
            self.stale.append(current)
            self.customers[current.id] = expected

        @precondition(lambda self: self.stale)
        @rule(data=st.data(), name=st.sampled_from(q.NAMES))
        def stale_update(self, data: st.DataObject, name: str) -> None:
            old = data.draw(st.sampled_from(self.stale), label="stale copy")
            current = self.customers.get(old.id)
            if current is not None and current.version == old.version:
                return  # the id was deleted and added again: this copy is not stale
            self.now()
            with pytest.raises(ConflictError if current is not None else NotFound):
                self.crm.customers.update(attrs.evolve(old, name=name))

        @precondition(lambda self: self.deleted)
        @rule(data=st.data())
        def update_deleted(self, data: st.DataObject) -> None:
            gone = data.draw(st.sampled_from(self.deleted), label="deleted")
            if gone.id in self.customers:
                return  # added again since
            with pytest.raises(NotFound):
                self.crm.customers.update(attrs.evolve(gone, name="ghost"))
            with pytest.raises(NotFound):
                self.crm.customers.delete(gone.id)

        @precondition(lambda self: self.customers)
        @rule(data=st.data(), check_version=st.sampled_from((None, "right", "wrong")))
        def delete_customer(self, data: st.DataObject, check_version: str | None) -> None:
            current = self._pick(data, self.customers)
            self.now()
            if check_version == "wrong":
                with pytest.raises(ConflictError):
                    self.crm.customers.delete(current.id, expected_version=current.version + 1)
                return
            expected = current.version if check_version == "right" else None
            self.crm.customers.delete(current.id, expected_version=expected)
            del self.customers[current.id]
            self.stage_changes.pop(current.id, None)
            for tid in [t.id for t in self.transactions.values() if t.customer_id == current.id]:
                del self.transactions[tid]
            self.deleted.append(current)

        @rule(rows=st.lists(_customer_fields, max_size=6), batch_size=st.integers(1, 3), data=st.data())
        def import_customers(self, rows: list[dict[str, Any]], batch_size: int, data: st.DataObject) -> None:
            ids = data.draw(st.lists(st.uuids(), min_size=len(rows), max_size=len(rows), unique=True), label="ids")
            ids = [i if i not in self.customers else uuid.uuid4() for i in ids]
            records = [Customer(id=i, **fields) for i, fields in zip(ids, rows, strict=True)]
            now = self.now()
            known = {c.external_id for c in self.customers.values() if c.external_id is not None}
            added = []
            for record in records:
                if record.external_id is not None and record.external_id in known:
                    continue
                if record.external_id is not None:
                    known.add(record.external_id)
                added.append(attrs.evolve(record, created_at=now, updated_at=now, version=1))
            result = self.crm.customers.add_many(iter(records), batch_size=batch_size)
            assert result == BulkResult(added=len(added), skipped=len(records) - len(added))
            self.customers.update((r.id, r) for r in added)

        @rule(external_id=st.sampled_from(q.EXTERNAL_IDS))
        def get_by_external_id(self, external_id: str) -> None:
            owner = self._external_owner(self.customers, external_id)
            if owner is None:
                with pytest.raises(NotFound):
                    self.crm.customers.get_by_external_id(external_id)
            else:
                assert self.crm.customers.get_by_external_id(external_id) == self.customers[owner]

        # -- transactions
        @precondition(lambda self: self.customers or self.deleted)
        @rule(
            data=st.data(),
            amount=st.sampled_from(q.AMOUNTS),
            currency=st.sampled_from(q.CURRENCIES),
            when=st.sampled_from(q.MOMENTS),
            kind=st.sampled_from(("purchase", "refund")),
            external_id=_external,
            attributes=st.fixed_dictionaries({}, optional={"a": _attribute}),
        )
        def add_transaction(
            self,
            data: st.DataObject,
            amount: Decimal,
            currency: str,
            when: dt.datetime,
            kind: Any,
            external_id: str | None,
            attributes: dict[str, Any],
        ) -> None:
            owners = sorted(self.customers) + [c.id for c in self.deleted]
            customer_id = data.draw(st.sampled_from(owners), label="customer")
            sale = Transaction(
                customer_id=customer_id,
                occurred_at=when,
                amount=amount,
                currency=currency,
                kind=kind,
                external_id=external_id,
                attributes=attributes,
            )
            now = self.now()
            if customer_id not in self.customers:
                with pytest.raises(ValidationError):
                    self.crm.transactions.add(sale)
            elif self._external_owner(self.transactions, external_id):
                with pytest.raises(ConflictError):
                    self.crm.transactions.add(sale)
            else:
                stored = self.crm.transactions.add(sale)
                assert stored == attrs.evolve(sale, created_at=now, updated_at=now, version=1)
                self.transactions[sale.id] = stored

        @precondition(lambda self: self.transactions)
        @rule(data=st.data(), amount=st.sampled_from(q.AMOUNTS), when=st.sampled_from(q.MOMENTS))
        def update_transaction(self, data: st.DataObject, amount: Decimal, when: dt.datetime) -> None:
            current = self._pick(data, self.transactions)
            now = self.now()
            stored = self.crm.transactions.update(attrs.evolve(current, amount=amount, occurred_at=when))
            expected = attrs.evolve(
                current, amount=amount, occurred_at=when, updated_at=now, version=current.version + 1
            )
            assert stored == expected
            self.transactions[current.id] = expected
            with pytest.raises(ConflictError):
                self.crm.transactions.update(current)

        @precondition(lambda self: self.transactions)
        @rule(data=st.data())
        def delete_transaction(self, data: st.DataObject) -> None:
            current = self._pick(data, self.transactions)
            self.crm.transactions.delete(current.id)
            del self.transactions[current.id]

        # -- reads
        @rule(where=_CUSTOMER_WHERES, pick=_PICKS, order=q.customer_orders(), limit=_limits)
        def find_customers(self, where: Expr, pick: int | None, order: tuple[str, ...], limit: int | None) -> None:
            if pick is not None and self.customers:
                where = where | (F("id") == sorted(self.customers)[pick % len(self.customers)])
            expected = sort_records(
                [c for c in self.customers.values() if matches(where, c)], parse_order(order, CUSTOMERS).keys
            )
            assert self._pages(self.crm.customers, where, order, limit) == expected
            assert self.crm.customers.count(where) == len(expected)

        @rule(where=_TRANSACTION_WHERES, pick=_PICKS, order=q.transaction_orders(), limit=_limits)
        def find_transactions(self, where: Expr, pick: int | None, order: tuple[str, ...], limit: int | None) -> None:
            if pick is not None and self.customers:
                where = where & (F("customer_id") == sorted(self.customers)[pick % len(self.customers)])
            expected = sort_records(
                [t for t in self.transactions.values() if matches(where, t)], parse_order(order, TRANSACTIONS).keys
            )
            assert self._pages(self.crm.transactions, where, order, limit) == expected

        @staticmethod
        def _pages(service: Any, where: Expr, order: tuple[str, ...], limit: int | None) -> list[Any]:
            out: list[Any] = []
            after = None
            while True:
                page = service.find(where, order_by=order, limit=limit, after=after)
                out.extend(page)
                if page.next is None:
                    return out
                assert limit is not None and len(page) == limit
                after = page.next

        # -- a unit of work that fails
        @precondition(lambda self: backend.capabilities.transactions)
        @rule(data=st.data(), fields=_customer_fields, new_id=st.uuids())
        def rolled_back_transaction(self, data: st.DataObject, fields: dict[str, Any], new_id: uuid.UUID) -> None:
            self.now()
            fields = {**fields, "external_id": None}
            with pytest.raises(_Rollback), self.crm.transaction():
                if self.transactions:
                    self.crm.transactions.delete(self._pick(data, self.transactions).id)
                if new_id not in self.customers:
                    self.crm.customers.add(Customer(id=new_id, **fields))
                if self.customers:
                    victim = self._pick(data, self.customers)
                    self.crm.customers.update(attrs.evolve(victim, name="rolled back", stage=Stage.CHURNED))
                    if data.draw(st.booleans(), label="delete too"):
                        self.crm.customers.delete(victim.id)
                raise _Rollback

        # -- after every step
        @invariant()
        def store_equals_model(self) -> None:
            assert {c.id: c for c in self.crm.customers.find()} == self.customers
            assert {t.id: t for t in self.crm.transactions.find()} == self.transactions
            assert self.crm.customers.count() == len(self.customers)
            assert self.crm.stage_changes.count() == sum(self.stage_changes.values())

    return CRMStateMachine


class StatefulContract(ContractBase):
    """Random sequences of writes, stale writes, deletes, imports, finds and rollbacks agree with a dict model."""

    def test_random_operations_agree_with_a_model(self, crmkit_backend: Backend) -> None:
        machine = crm_state_machine(crmkit_backend)
        run_state_machine_as_test(machine, settings=conformance_settings(max_examples=30, stateful_step_count=25))

    def test_a_model_query_sanity_check(self) -> None:
        # The model itself must know two-valued logic, or the machine proves nothing.
        ghost = Customer(kind="person", name="x")
        assert matches(F("owner") != "ana", ghost) and not matches(F("owner") == "ana", ghost)
        assert not matches(F("attributes.a") > 1, ghost) and matches(~(F("attributes.a") > 1), ghost)

"""``crm.transaction()``: all or nothing, nested blocks, and events delivered only after the commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import ConflictError, CRMError, NotFound, Stage
from crmkit.crm import CRM
from crmkit.events import Event
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import ContractBase, at, contact, edge, organization, person, purchase

__all__ = ["EventRecorder", "UnitOfWorkContract"]


class EventRecorder:
    """A plugin that keeps every batch of events ``crmkit_after_commit`` delivers, and what it could read then."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.visible: list[bool] = []

    @crmkit.hookimpl
    def crmkit_after_commit(self, crm: CRM, events: Sequence[Event]) -> None:
        self.batches.append(list(events))
        final: dict[Any, Event] = {}
        for event in events:
            if event.entity == "customers":
                final[event.record.id] = event
        for event in final.values():  # what the batch left behind must already be readable
            if event.after is None:
                continue
            try:
                self.visible.append(crm.customers.get(event.after.id).version >= event.after.version)
            except NotFound:
                self.visible.append(False)

    def kinds(self) -> list[list[str]]:
        return [[type(e).__name__ for e in batch] for batch in self.batches]


class _Boom(Exception):
    pass


class _BrokenHook:
    """A plugin whose ``crmkit_after_commit`` always raises, as a webhook with its server down would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    @crmkit.hookimpl
    def crmkit_after_commit(self, events: Sequence[Event]) -> None:
        self.calls += 1
        raise _Boom(f"{self.name}: call {self.calls} failed")


def _snapshot(crm: CRM) -> dict[str, list[Any]]:
    return {
        name: list(getattr(crm, name).find())
        for name in ("customers", "relationships", "interactions", "transactions", "stage_changes")
    }


class UnitOfWorkContract(ContractBase):
    """Writes inside ``crm.transaction()`` commit together or not at all."""

    @pytest.fixture
    def recorded(self, crmkit_backend: Backend) -> Iterator[tuple[CRM, EventRecorder]]:
        recorder = EventRecorder()
        crm = crmkit_backend.connect(plugins=[recorder])
        try:
            yield crm, recorder
        finally:
            crm.close()

    def _history(self, crm: CRM) -> tuple[Any, ...]:
        ada = crm.customers.add(person("Ada", external_id="ada"))
        acme = crm.customers.add(organization("Acme"))
        link = crm.relationships.add(edge(ada, "works_for", acme))
        note = crm.interactions.add(contact(ada, at(2024, 1, 1)))
        sale = crm.transactions.add(purchase(ada, "12.34", at(2024, 1, 2)))
        return ada, acme, link, note, sale

    @pytest.mark.requires("transactions")
    def test_an_exception_rolls_back_every_write(self, crm: CRM) -> None:
        ada, acme, link, _note, sale = self._history(crm)
        before = _snapshot(crm)
        error = _Boom("stop")
        with pytest.raises(_Boom) as raised, crm.transaction():
            crm.customers.add(person("Lost"))
            crm.customers.update(attrs.evolve(ada, name="Ada, renamed"))
            crm.transactions.delete(sale.id)
            crm.relationships.update(attrs.evolve(link, role="boss"))
            crm.interactions.add(contact(acme, at(2024, 2, 1)))
            crm.lifecycle.move(acme.id, Stage.PROSPECT)
            crm.customers.add_many([person(f"bulk {i}", external_id=f"b{i}") for i in range(25)], batch_size=10)
            assert crm.customers.count() == 28  # the block reads its own writes
            raise error
        assert raised.value is error
        assert _snapshot(crm) == before

    @pytest.mark.requires("transactions")
    def test_a_crm_error_inside_rolls_back_too(self, crm: CRM) -> None:
        crm.customers.add(person("Ada", external_id="ada"))
        before = _snapshot(crm)
        with pytest.raises(ConflictError), crm.transaction():
            crm.customers.add(person("Bob"))
            crm.customers.add(person("Ada again", external_id="ada"))
        assert _snapshot(crm) == before

    @pytest.mark.requires("transactions")
    def test_a_cascading_delete_rolls_back_whole(self, crm: CRM) -> None:
        ada, *_ = self._history(crm)
        crm.lifecycle.move(ada.id, Stage.PROSPECT)
        before = _snapshot(crm)
        with pytest.raises(_Boom), crm.transaction():
            crm.customers.delete(ada.id)
            assert crm.interactions.count() == 0
            raise _Boom
        assert _snapshot(crm) == before

    @pytest.mark.requires("transactions")
    def test_nested_blocks_commit_together(self, crm: CRM) -> None:
        with crm.transaction():
            ada = crm.customers.add(person("Ada"))
            with crm.transaction():
                bob = crm.customers.add(person("Bob"))
                crm.relationships.add(edge(bob, "referred_by", ada))
            assert crm.customers.get(bob.id) == bob
        assert {c.id for c in crm.customers.find()} == {ada.id, bob.id}
        assert crm.relationships.count() == 1

    @pytest.mark.requires("transactions")
    def test_a_failed_inner_block_rolls_back_the_outer_one(self, crm: CRM) -> None:
        keep = crm.customers.add(person("Before"))
        with pytest.raises(CRMError), crm.transaction():
            crm.customers.add(person("Outer"))
            try:
                with crm.transaction():
                    crm.customers.add(person("Inner"))
                    raise _Boom
            except _Boom:
                pass  # caught, but the transaction is doomed
        assert [c.id for c in crm.customers.find()] == [keep.id]

    def test_the_data_is_usable_after_a_rollback(self, crm: CRM) -> None:
        with pytest.raises(_Boom), crm.transaction():
            raise _Boom
        ada = crm.customers.add(person())
        with crm.transaction():
            crm.customers.update(attrs.evolve(ada, name="Ada King"))
        assert crm.customers.get(ada.id).version == 2

    def test_events_arrive_after_the_commit_in_order(self, recorded: tuple[CRM, EventRecorder]) -> None:
        crm, recorder = recorded
        with crm.transaction():
            ada = crm.customers.add(person("Ada"))
            acme = crm.customers.add(organization("Acme"))
            crm.relationships.add(edge(ada, "works_for", acme))
            renamed = crm.customers.update(attrs.evolve(ada, name="Ada King"))
            crm.lifecycle.move(ada.id, Stage.PROSPECT)
            crm.customers.delete(acme.id)
            assert recorder.batches == []
        assert recorder.kinds() == [
            [
                "CustomerCreated",
                "CustomerCreated",
                "RelationshipAdded",
                "CustomerUpdated",
                "CustomerUpdated",
                "StateChangeCreated",
                "StageChanged",
                "CustomerDeleted",
            ]
        ]
        batch = recorder.batches[0]
        assert batch[0].after == ada and batch[0].before is None
        assert batch[3].before == ada and batch[3].after == renamed
        assert batch[-1].before.id == acme.id and batch[-1].after is None
        assert all(e.tenant == crm.tenant for e in batch)
        assert all(recorder.visible), "crmkit_after_commit ran before the data was readable"

    def test_each_write_outside_a_block_is_its_own_batch(self, recorded: tuple[CRM, EventRecorder]) -> None:
        crm, recorder = recorded
        ada = crm.customers.add(person())
        crm.interactions.add(contact(ada, at(2024, 1, 1)))
        crm.transactions.add_many([purchase(ada, i, at(2024, 1, 1)) for i in range(3)], batch_size=2)
        assert recorder.kinds() == [
            ["CustomerCreated"],
            ["InteractionRecorded"],
            ["TransactionAdded", "TransactionAdded"],
            ["TransactionAdded"],
        ]
        assert all(recorder.visible)

    @pytest.mark.parametrize("broken", ["registered first", "registered last"])
    def test_a_raising_after_commit_hook_silences_no_other(self, crmkit_backend: Backend, broken: str) -> None:
        """Every implementation sees every committed batch; the error comes after, and an import goes on."""
        audit, webhook = EventRecorder(), _BrokenHook("webhook")
        crm = crmkit_backend.connect(plugins=[webhook, audit] if broken == "registered first" else [audit, webhook])
        try:
            with pytest.raises(_Boom, match="webhook: call 1 failed"):
                crm.customers.add(person("Ada"))
            assert audit.kinds() == [["CustomerCreated"]]
            ada = audit.batches[0][0].after
            assert crm.customers.get(ada.id) == ada  # committed: the hook only heard of it too late
            rows = [person(f"p{i}", external_id=f"p{i}") for i in range(25)]
            with pytest.raises(_Boom, match="webhook: call 2 failed") as raised:
                crm.customers.add_many(rows, batch_size=10)
            # every batch was written and delivered to both plugins; the first error is raised
            # at the end, with the others attached
            assert crm.customers.count() == 26
            assert audit.kinds()[1:] == [["CustomerCreated"] * 10, ["CustomerCreated"] * 10, ["CustomerCreated"] * 5]
            assert webhook.calls == 4
            reported = [str(e) for e in getattr(raised.value, "crmkit_errors", ())]
            assert reported == [f"webhook: call {n} failed" for n in (2, 3, 4)]
            assert crm.customers.add_many(rows, batch_size=10) == crmkit.BulkResult(0, 25)  # nothing new: no events
            assert webhook.calls == 4
        finally:
            crm.close()

    def test_every_raising_after_commit_hook_is_reported(self, crmkit_backend: Backend) -> None:
        first, second, audit = _BrokenHook("first"), _BrokenHook("second"), EventRecorder()
        crm = crmkit_backend.connect(plugins=[first, audit, second])
        try:
            with pytest.raises(_Boom) as raised:
                crm.customers.add(person("Ada"))
            assert audit.kinds() == [["CustomerCreated"]]
            assert (first.calls, second.calls) == (1, 1)
            reported = sorted(str(e) for e in getattr(raised.value, "crmkit_errors", ()))
            assert reported == ["first: call 1 failed", "second: call 1 failed"]
        finally:
            crm.close()

    @pytest.mark.requires("transactions")
    def test_rolled_back_work_sends_no_events(self, recorded: tuple[CRM, EventRecorder]) -> None:
        crm, recorder = recorded
        with pytest.raises(_Boom), crm.transaction():
            crm.customers.add(person())
            raise _Boom
        with pytest.raises(CRMError), crm.transaction():
            crm.customers.add(person())
            try:
                with crm.transaction():
                    crm.customers.add(person())
                    raise _Boom
            except _Boom:
                pass
        assert recorder.batches == []
        assert crm.customers.count() == 0

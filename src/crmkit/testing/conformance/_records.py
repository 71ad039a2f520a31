"""Add, get, update, delete and count on every repository; external ids, references, cascades, stage changes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import attrs
import pytest

from crmkit import ConflictError, NotFound, Stage, StageChange, ValidationError
from crmkit.crm import CRM
from crmkit.query import Cursor, F
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import (
    Clock,
    ClockedContractBase,
    ContractBase,
    at,
    contact,
    edge,
    organization,
    person,
    purchase,
)
from crmkit.testing.conformance._kits import KITS, RepositoryKit

__all__ = [
    "DeleteCascadeContract",
    "ExternalIdContract",
    "ReferenceContract",
    "RepositoryContract",
    "StageChangeContract",
]


class RepositoryContract(ClockedContractBase):
    """add/get/update/delete/count behave the same on customers, relationships, interactions, transactions."""

    @pytest.fixture(params=sorted(KITS))
    def kit(self, request: pytest.FixtureRequest) -> RepositoryKit:
        return KITS[request.param]

    def test_add_returns_the_stored_copy_at_version_1(self, timed: CRM, kit: RepositoryKit, clock: Clock) -> None:
        record = kit.new(timed)
        before = kit.service(timed).count()
        stored = kit.service(timed).add(record)
        assert stored.version == 1
        assert stored.created_at == clock() and stored.updated_at == clock()
        assert stored.id == record.id
        assert attrs.evolve(stored, created_at=None, updated_at=None, version=0) == record
        assert kit.service(timed).get(record.id) == stored
        assert list(kit.service(timed).find(F("id") == record.id)) == [stored]
        assert kit.service(timed).count() == before + 1

    def test_add_keeps_a_given_created_at(self, timed: CRM, kit: RepositoryKit, clock: Clock) -> None:
        created = at(2001, 2, 3, 4, 5, 6, 789, offset=-9.5)
        stored = kit.service(timed).add(attrs.evolve(kit.new(timed), created_at=created))
        got = kit.service(timed).get(stored.id)
        assert got.created_at == created and got.updated_at == clock()

    def test_add_refuses_a_record_that_is_not_new(self, crm: CRM, kit: RepositoryKit) -> None:
        record = attrs.evolve(kit.new(crm), version=3)
        before = kit.service(crm).count()
        with pytest.raises(ValidationError) as err:
            kit.service(crm).add(record)
        assert err.value.field == "version"
        assert kit.service(crm).count() == before

    def test_add_refuses_another_type(self, crm: CRM, kit: RepositoryKit) -> None:
        other = "transactions" if kit.name != "transactions" else "customers"
        with pytest.raises(ValidationError):
            kit.service(crm).add(KITS[other].new(crm))
        with pytest.raises(ValidationError):
            kit.service(crm).add({"id": uuid.uuid4()})

    def test_adding_an_existing_id_is_a_conflict_and_changes_nothing(self, crm: CRM, kit: RepositoryKit) -> None:
        stored = kit.service(crm).add(kit.new(crm))
        clash = kit.change(attrs.evolve(kit.new(crm), id=stored.id), "intruder")
        before = kit.service(crm).count()
        with pytest.raises(ConflictError):
            kit.service(crm).add(clash)
        assert kit.service(crm).get(stored.id) == stored
        assert kit.service(crm).count() == before

    def test_get_of_an_unknown_id_is_not_found(self, crm: CRM, kit: RepositoryKit) -> None:
        with pytest.raises(NotFound):
            kit.service(crm).get(uuid.uuid4())
        with pytest.raises(ValidationError):
            kit.service(crm).get(str(uuid.uuid4()))

    def test_update_bumps_the_version_and_keeps_created_at(self, timed: CRM, kit: RepositoryKit, clock: Clock) -> None:
        stored = kit.service(timed).add(kit.new(timed))
        later = clock.advance(days=2, microseconds=1)
        edited = kit.change(stored, "edited ✓ ويرايش")
        updated = kit.service(timed).update(attrs.evolve(edited, created_at=at(1999, 1, 1)))
        assert updated.version == 2
        assert updated.created_at == stored.created_at
        assert updated.updated_at == later
        assert kit.value(updated) == "edited ✓ ويرايش"
        assert kit.service(timed).get(stored.id) == updated
        assert kit.service(timed).count(F(kit.field) == "edited ✓ ويرايش") == 1
        assert kit.service(timed).count(F(kit.field) == kit.value(stored)) == 0
        again = kit.service(timed).update(kit.change(updated, "third"))
        assert again.version == 3 and kit.service(timed).get(stored.id).version == 3

    def test_update_of_an_unknown_record_is_not_found(self, crm: CRM, kit: RepositoryKit) -> None:
        record = attrs.evolve(kit.new(crm), version=1)
        with pytest.raises(NotFound):
            kit.service(crm).update(record)
        assert kit.service(crm).count(F("id") == record.id) == 0

    def test_stale_update_is_a_conflict_and_changes_nothing(self, crm: CRM, kit: RepositoryKit) -> None:
        stored = kit.service(crm).add(kit.new(crm))
        current = kit.service(crm).update(kit.change(stored, "first writer"))
        with pytest.raises(ConflictError):
            kit.service(crm).update(kit.change(stored, "second writer"))
        with pytest.raises(ConflictError):
            kit.service(crm).update(attrs.evolve(kit.change(stored, "from the future"), version=7))
        assert kit.service(crm).get(stored.id) == current

    def test_delete_removes_the_record(self, crm: CRM, kit: RepositoryKit) -> None:
        keep = kit.service(crm).add(kit.new(crm))
        doomed = kit.service(crm).add(kit.new(crm))
        before = kit.service(crm).count()
        kit.service(crm).delete(doomed.id)
        with pytest.raises(NotFound):
            kit.service(crm).get(doomed.id)
        assert kit.service(crm).count() == before - 1
        assert kit.service(crm).get(keep.id) == keep
        with pytest.raises(NotFound):
            kit.service(crm).delete(doomed.id)

    def test_delete_with_an_expected_version(self, crm: CRM, kit: RepositoryKit) -> None:
        stored = kit.service(crm).add(kit.new(crm))
        updated = kit.service(crm).update(kit.change(stored, "v2"))
        with pytest.raises(ConflictError):
            kit.service(crm).delete(stored.id, expected_version=1)
        assert kit.service(crm).get(stored.id) == updated
        kit.service(crm).delete(stored.id, expected_version=2)
        assert kit.service(crm).count(F("id") == stored.id) == 0

    def test_count_matches_find(self, crm: CRM, kit: RepositoryKit) -> None:
        records = [kit.service(crm).add(kit.change(kit.new(crm), text)) for text in ("x", "y", "x")]
        assert kit.service(crm).count(F(kit.field) == "x") == 2
        assert kit.service(crm).count({kit.field: "y"}) == 1
        assert kit.service(crm).count(F("id").in_([r.id for r in records])) == 3
        assert kit.service(crm).count() == len(kit.service(crm).find())


class ExternalIdContract(ClockedContractBase):
    """external_id is unique per tenant and repository, and frees up when it changes."""

    @pytest.fixture(params=sorted(k for k, kit in KITS.items() if kit.has_external_id))
    def kit(self, request: pytest.FixtureRequest) -> RepositoryKit:
        return KITS[request.param]

    def test_get_by_external_id(self, crm: CRM, kit: RepositoryKit) -> None:
        stored = kit.service(crm).add(kit.new(crm, external_id="crm-7/ș"))
        assert kit.service(crm).get_by_external_id("crm-7/ș") == stored
        with pytest.raises(NotFound):
            kit.service(crm).get_by_external_id("crm-8")
        with pytest.raises(ValidationError):
            kit.service(crm).get_by_external_id(7)

    def test_a_second_record_with_the_same_external_id_is_a_conflict(self, crm: CRM, kit: RepositoryKit) -> None:
        first = kit.service(crm).add(kit.new(crm, external_id="dup"))
        before = kit.service(crm).count()
        with pytest.raises(ConflictError):
            kit.service(crm).add(kit.new(crm, external_id="dup"))
        assert kit.service(crm).count() == before
        assert kit.service(crm).get_by_external_id("dup") == first

    def test_changing_to_a_taken_external_id_is_a_conflict(self, crm: CRM, kit: RepositoryKit) -> None:
        kit.service(crm).add(kit.new(crm, external_id="taken"))
        other = kit.service(crm).add(kit.new(crm, external_id="mine"))
        with pytest.raises(ConflictError):
            kit.service(crm).update(attrs.evolve(other, external_id="taken"))
        assert kit.service(crm).get(other.id) == other

    def test_an_external_id_frees_up_when_changed_or_deleted(self, crm: CRM, kit: RepositoryKit) -> None:
        a = kit.service(crm).add(kit.new(crm, external_id="A"))
        renamed = kit.service(crm).update(attrs.evolve(a, external_id="A2"))
        assert kit.service(crm).get_by_external_id("A2") == renamed
        with pytest.raises(NotFound):
            kit.service(crm).get_by_external_id("A")
        b = kit.service(crm).add(kit.new(crm, external_id="A"))
        kit.service(crm).delete(b.id)
        c = kit.service(crm).add(kit.new(crm, external_id="A"))
        assert kit.service(crm).get_by_external_id("A") == c

    def test_many_records_without_external_id(self, crm: CRM, kit: RepositoryKit) -> None:
        for _ in range(3):
            kit.service(crm).add(kit.new(crm, external_id=None))
        assert kit.service(crm).count(F("external_id") == None) >= 3  # noqa: E711


class ReferenceContract(ContractBase):
    """Records may only refer to customers of their own tenant, and to registered vocabularies."""

    def test_interactions_and_transactions_need_a_stored_customer(self, crm: CRM) -> None:
        ghost = person("Ghost")
        with pytest.raises(ValidationError) as err:
            crm.interactions.add(contact(ghost, at(2024, 1, 1)))
        assert err.value.field == "customer_id"
        with pytest.raises(ValidationError) as err:
            crm.transactions.add(purchase(ghost, 5, at(2024, 1, 1)))
        assert err.value.field == "customer_id"
        assert crm.interactions.count() == 0 and crm.transactions.count() == 0

    def test_relationships_need_both_customers(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        ghost = person("Ghost")
        for source, target, field in ((ada, ghost, "target_id"), (ghost, ada, "source_id")):
            with pytest.raises(ValidationError) as err:
                crm.relationships.add(edge(source, "works_for", target))
            assert err.value.field == field
        assert crm.relationships.count() == 0

    def test_an_update_may_not_point_at_a_missing_customer(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        stored = crm.transactions.add(purchase(ada, 5, at(2024, 1, 1)))
        with pytest.raises(ValidationError):
            crm.transactions.update(attrs.evolve(stored, customer_id=uuid.uuid4()))
        assert crm.transactions.get(stored.id) == stored

    def test_unregistered_channel_and_inverse_relationship_names_are_refused(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        acme = crm.customers.add(organization())
        with pytest.raises(ValidationError) as err:
            crm.interactions.add(contact(ada, at(2024, 1, 1), channel="carrier_pigeon"))
        assert err.value.field == "channel"
        with pytest.raises(ValidationError) as err:
            crm.relationships.add(edge(acme, "employs", ada))
        assert err.value.field == "kind"
        with pytest.raises(ValidationError):
            crm.relationships.add(edge(acme, "owes_money_to", ada))
        assert crm.interactions.count() == 0 and crm.relationships.count() == 0


class DeleteCascadeContract(ContractBase):
    """Deleting a customer deletes its history, and nobody else's."""

    def test_delete_cascades_to_everything_of_the_customer(self, crm: CRM) -> None:
        ada = crm.customers.add(person("Ada"))
        bob = crm.customers.add(person("Bob"))
        acme = crm.customers.add(organization("Acme"))
        crm.interactions.add(contact(ada, at(2024, 1, 1)))
        crm.transactions.add(purchase(ada, "10.50", at(2024, 1, 2)))
        crm.relationships.add(edge(ada, "works_for", acme))
        crm.relationships.add(edge(bob, "referred_by", ada))
        crm.relationships.add(edge(ada, "household_member", bob))
        crm.lifecycle.move(ada.id, Stage.PROSPECT)
        kept: list[Any] = [
            crm.interactions.add(contact(bob, at(2024, 1, 1))),
            crm.transactions.add(purchase(bob, "3", at(2024, 1, 3))),
            crm.relationships.add(edge(bob, "works_for", acme)),
        ]
        assert crm.stage_changes.count(F("customer_id") == ada.id) == 1

        crm.customers.delete(ada.id)

        with pytest.raises(NotFound):
            crm.customers.get(ada.id)
        assert crm.interactions.count(F("customer_id") == ada.id) == 0
        assert crm.transactions.count(F("customer_id") == ada.id) == 0
        assert crm.stage_changes.count(F("customer_id") == ada.id) == 0
        assert crm.relationships.count((F("source_id") == ada.id) | (F("target_id") == ada.id)) == 0
        assert crm.customers.count() == 2
        assert [crm.interactions.get(kept[0].id), crm.transactions.get(kept[1].id)] == kept[:2]
        assert list(crm.relationships.find()) == [kept[2]]
        assert crm.relationships.neighbours(bob.id) and crm.purchase_summaries([ada.id]) == []


class StageChangeContract(ClockedContractBase):
    """Stage changes are written with the customer's update and read through crm.stage_changes."""

    def test_a_stage_change_is_recorded_and_readable(self, timed: CRM, clock: Clock) -> None:
        ada = timed.customers.add(person())
        clock.advance(hours=1)
        moved = timed.customers.update(attrs.evolve(ada, stage=Stage.PROSPECT))
        clock.advance(hours=1)
        timed.lifecycle.move(ada.id, Stage.CUSTOMER, reason="signed the contract ✍")
        changes = list(timed.stage_changes.find(F("customer_id") == ada.id))
        assert [(c.from_stage, c.to_stage, c.rule) for c in changes] == [
            (Stage.LEAD, Stage.PROSPECT, "manual"),
            (Stage.PROSPECT, Stage.CUSTOMER, "manual"),
        ]
        assert changes[0].occurred_at == moved.updated_at
        assert changes[1].occurred_at == clock() and changes[1].reason == "signed the contract ✍"
        assert timed.stage_changes.get(changes[1].id) == changes[1]
        assert timed.stage_changes.count(F("to_stage") == "customer") == 1
        assert timed.stage_changes.count(F("from_stage") == None) == 0  # noqa: E711
        assert list(timed.stage_changes.find(order_by="-occurred_at")) == changes[::-1]
        assert timed.lifecycle.history(ada.id) == changes
        assert timed.customers.get(ada.id).stage == Stage.CUSTOMER

    def test_an_update_without_a_stage_change_records_none(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        crm.customers.update(attrs.evolve(ada, name="Ada King"))
        assert crm.stage_changes.count() == 0
        with pytest.raises(NotFound):
            crm.stage_changes.get(uuid.uuid4())

    def test_stage_changes_take_no_custom_attributes(self, crm: CRM) -> None:
        with pytest.raises(ValidationError):
            crm.stage_changes.count(F("attributes.x") == 1)

    def test_a_change_of_stage_of_any_record_reads_the_clock_once_and_names_the_actor(
        self, crmkit_backend: Backend
    ) -> None:
        start = at(2025, 3, 1, 9, 30, 0, 123456)
        ticks = iter(start + dt.timedelta(seconds=i) for i in range(10_000))  # every reading is a new second
        crm = crmkit_backend.crm(clock=lambda: next(ticks), actor="user:42")
        ada = crm.customers.add(person())
        note = crm.interactions.add(contact(ada, at(2024, 1, 1)))
        with crm.transaction(), crm.acting_as("user:7"):
            first = crm.state_changes.record_change(note, stage_set="triage", from_stage=None, to_stage="open")
            second = crm.state_changes.record_change(
                ("interactions", note.id), stage_set="triage", from_stage="open", to_stage="done", rule="auto",
                reason="answered", at=at(2024, 1, 2),
            )
        assert first.occurred_at == first.created_at == first.updated_at and first.actor == "user:7"
        assert (second.occurred_at, second.rule, second.reason) == (at(2024, 1, 2), "auto", "answered")
        assert crm.state_changes.history(note) == [second, first]  # oldest first, by occurred_at
        assert crm.state_changes.history(note, stage_set="other") == []
        assert crm.state_changes.get(first.id) == first and crm.state_changes.count() == 2
        crm.lifecycle.move(ada.id, Stage.PROSPECT)
        (change,) = crm.state_changes.history(ada, stage_set="lifecycle")
        assert (change.record.aggregate, change.from_stage, change.to_stage, change.actor) == (
            "customers", "lead", "prospect", "user:42",
        )
        assert change.occurred_at == change.created_at == change.updated_at
        # crm.stage_changes shows the customers' life cycle only, as StageChange records
        assert [c.id for c in crm.stage_changes.find()] == [change.id]
        assert crm.stage_changes.count() == 1 and crm.stage_changes.get(change.id).customer_id == ada.id
        with pytest.raises(NotFound):
            crm.stage_changes.get(first.id)
        with pytest.raises(ValidationError) as refused:
            crm.state_changes.record_change(("customers", uuid.uuid4()), stage_set="x", from_stage=None, to_stage="y")
        assert refused.value.field == "record"
        crm.interactions.delete(note.id)  # a record's history goes with it
        assert crm.state_changes.count() == 1

    def test_stage_changes_page_and_filter_by_customer_like_a_stored_aggregate(self, timed: CRM, clock: Clock) -> None:
        people = [timed.customers.add(person(f"P{i}")) for i in range(4)]
        for stage in (Stage.PROSPECT, Stage.CUSTOMER, Stage.REPEAT):
            for p in people:
                clock.advance(seconds=1)
                timed.lifecycle.move(p.id, stage, reason=None if stage is Stage.CUSTOMER else f"to {stage}")
        timed.state_changes.record_change(people[0], stage_set="other", from_stage=None, to_stage="lead")
        everything = list(timed.stage_changes.find(order_by=("customer_id", "-occurred_at")))
        assert len(everything) == 12 == timed.stage_changes.count()
        assert [(c.customer_id, c.occurred_at) for c in everything] == sorted(
            ((c.customer_id, c.occurred_at) for c in everything), key=lambda k: (k[0], -k[1].timestamp())
        )
        pages: list[StageChange] = []
        after: Cursor | None = None
        while True:
            page = timed.stage_changes.find(order_by=("customer_id", "-occurred_at"), limit=5, after=after)
            pages += page.items
            if page.next is None:
                break
            after = page.next
        assert pages == everything
        ids = sorted(p.id for p in people)[1:3]
        chosen = timed.stage_changes.find(F("customer_id").in_(ids) & (F("reason") == None), order_by="customer_id")  # noqa: E711
        assert [(c.customer_id, c.to_stage) for c in chosen] == [(i, Stage.CUSTOMER) for i in ids]
        assert timed.stage_changes.count(~(F("customer_id") == people[0].id) & (F("rule") == "manual")) == 9
        assert list(timed.stage_changes.stream(F("customer_id") > ids[0], batch_size=2)) == [
            c for c in timed.stage_changes.find() if c.customer_id > ids[0]
        ]

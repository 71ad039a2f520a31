"""The generic contract: what ``crm.records(...)`` must do for every declared aggregate, on every store.

Each test runs once per declared aggregate (the probe, which has a field of every kind and
a reference of every kind, among them), with records built from the declaration alone:
a store that passes holds any aggregate a plugin may declare.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crmkit
from crmkit import BulkResult, ConflictError, CRMError, Customer, Interaction, NotFound, ValidationError
from crmkit.crm import CRM, Records
from crmkit.events import Event
from crmkit.query import F
from crmkit.schema import AggregateSpec, Ref
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.aggregates import REF_ANY_TARGETS, add_targets, unique_keys_of
from crmkit.testing.conformance._aggregate_kit import (
    AggregateContractBase,
    AggregateKit,
    assert_exact,
    collected_aggregates,
    delete_target,
    ref_targets,
)
from crmkit.testing.conformance._harness import Clock, at, conformance_settings

__all__ = ["AggregateRecordsContract", "AggregateReferencesContract", "AggregateUnitOfWorkContract"]


def _stored(record: Any, when: Any, version: int = 1) -> Any:
    return attrs.evolve(record, created_at=record.created_at or when, updated_at=when, version=version)


def _read_every_way(service: Any, stored: Any) -> None:
    assert_exact(stored, service.get(stored.id), "get")
    found = list(service.find(F("id") == stored.id))
    assert len(found) == 1, f"find by id returned {len(found)} records"
    assert_exact(stored, found[0], "find")
    if stored.external_id is not None:
        assert_exact(stored, service.get_by_external_id(stored.external_id), "get_by_external_id")


class _Boom(Exception):
    pass


class AggregateRecordsContract(AggregateContractBase):
    """add, get, update, delete, count, keys and exact round trips of every declared aggregate."""

    def test_the_contract_covers_every_declared_aggregate(self, request: pytest.FixtureRequest, crm: CRM) -> None:
        written_by_users = {n for n, s in crm.schema.derived.items() if not getattr(s.cls, "__crmkit_append_only__", 0)}
        missing = sorted(written_by_users - set(collected_aggregates(request.module)))
        assert not missing, (
            f"the store declares {missing}, which the generic contract was not collected for: install the "
            "plugin that declares them, or list their classes in CRMKIT_AGGREGATES in the test module"
        )
        assert {"crmkit_probes", "crmkit_probe_links"} <= set(crm.schema.derived)

    def test_add_returns_the_stored_copy_at_version_1(self, kit: AggregateKit, clock: Clock) -> None:
        record = kit.new(external_id="ext-1/ș")
        before = kit.service.count()
        stored = kit.service.add(record)
        assert stored.version == 1 and stored.id == record.id
        assert stored.created_at == clock() and stored.updated_at == clock()
        assert_exact(_stored(record, clock()), stored, "add")
        _read_every_way(kit.service, stored)
        assert kit.service.count() == before + 1
        assert kit.service.count(F("id") == record.id) == 1

    def test_add_keeps_a_given_created_at(self, kit: AggregateKit, clock: Clock) -> None:
        created = at(2001, 2, 3, 4, 5, 6, 789, offset=-9.5)
        stored = kit.service.add(attrs.evolve(kit.new(), created_at=created))
        got = kit.service.get(stored.id)
        assert got.created_at == created and got.updated_at == clock()

    def test_add_refuses_what_is_not_a_new_record_of_the_aggregate(self, kit: AggregateKit) -> None:
        with pytest.raises(ValidationError) as err:
            kit.service.add(attrs.evolve(kit.new(), version=3))
        assert err.value.field == "version"
        with pytest.raises(ValidationError):
            kit.service.add(Customer(kind="person", name="not a record of this aggregate"))
        with pytest.raises(ValidationError):
            kit.service.add({"id": uuid.uuid4()})
        assert kit.service.count() == 0

    def test_adding_an_existing_id_is_a_conflict_and_changes_nothing(self, kit: AggregateKit) -> None:
        stored = kit.add()
        with pytest.raises(ConflictError):
            kit.service.add(attrs.evolve(kit.new(), id=stored.id))
        assert_exact(stored, kit.service.get(stored.id))
        assert kit.service.count() == 1

    def test_get_of_an_unknown_id_is_not_found(self, kit: AggregateKit) -> None:
        with pytest.raises(NotFound):
            kit.service.get(uuid.uuid4())
        with pytest.raises(ValidationError):
            kit.service.get(str(uuid.uuid4()))  # type: ignore[arg-type]

    def test_update_rewrites_every_field_and_bumps_the_version(self, kit: AggregateKit, clock: Clock) -> None:
        stored = kit.add(external_id="before")
        later = clock.advance(days=2, microseconds=1)
        edited = attrs.evolve(kit.edited(stored), external_id="after", created_at=at(1999, 1, 1))
        updated = kit.service.update(edited)
        assert updated.version == 2 and updated.created_at == stored.created_at and updated.updated_at == later
        expected = attrs.evolve(edited, created_at=stored.created_at, updated_at=later, version=2)
        assert_exact(expected, updated, "update")
        _read_every_way(kit.service, expected)
        with pytest.raises(NotFound):
            kit.service.get_by_external_id("before")
        again = kit.service.update(kit.edited(updated))
        assert again.version == 3 and kit.service.get(stored.id).version == 3

    def test_update_of_an_unknown_record_is_not_found(self, kit: AggregateKit) -> None:
        record = attrs.evolve(kit.new(), version=1)
        with pytest.raises(NotFound):
            kit.service.update(record)
        assert kit.service.count() == 0

    def test_stale_update_is_a_conflict_and_changes_nothing(self, kit: AggregateKit) -> None:
        stored = kit.add()
        current = kit.service.update(kit.edited(stored))
        kit.hold(current)
        with pytest.raises(ConflictError):
            kit.service.update(kit.edited(stored))
        with pytest.raises(ConflictError):
            kit.service.update(attrs.evolve(kit.edited(stored), version=7))
        assert_exact(current, kit.service.get(stored.id))

    def test_replace_many_writes_each_record_at_its_version_and_never_over_a_moved_one(
        self, kit: AggregateKit, clock: Clock
    ) -> None:
        """The store's bulk replace (``Repository.replace_many``, what upserts write changed rows with)."""
        crm, repo = kit.crm, kit.crm.store.repository(kit.spec)
        a, b, c = kit.add(), kit.add(), kit.add()
        later = clock.advance(days=1, microseconds=3)

        def next_of(record: Any) -> Any:
            edited = kit.edited(record)
            kit.hold(edited)
            return attrs.evolve(edited, updated_at=later, version=record.version + 1)

        new = [next_of(a), next_of(b)]
        with crm.transaction():
            assert repo.replace_many(crm.tenant, new, [1, 1]) == set()
        for record in new:
            assert_exact(record, kit.service.get(record.id), "replace_many")
        moved = kit.service.update(kit.edited(c))  # a concurrent writer: c is at version 2 now
        kit.hold(moved)
        with pytest.raises(_Boom), crm.transaction():
            assert repo.replace_many(crm.tenant, [next_of(new[0]), next_of(c)], [2, 1]) == {c.id}
            raise _Boom  # as upsert_many does: a stale record fails the whole write
        assert_exact(moved, kit.service.get(c.id), "a moved record is never overwritten")
        if crm.store.capabilities.transactions:  # the caller's transaction undid the rest
            assert_exact(new[0], kit.service.get(a.id), "rolled back")
        assert repo.replace_many(crm.tenant, [], []) == set()

    def test_compare_stored_finds_a_change_in_any_one_field(self, kit: AggregateKit) -> None:
        """The store's comparison (``Repository.compare_stored``, what upserts find changed rows with)."""
        crm, repo = kit.crm, kit.crm.store.repository(kit.spec)
        stored = kit.add(external_id="compared")
        fresh = kit.edited(stored)
        assert repo.compare_stored(crm.tenant, [attrs.evolve(stored, version=0)]) == {"compared": (stored.id, 1, True)}
        assert repo.compare_stored(crm.tenant, [attrs.evolve(kit.new(), external_id="unknown")]) == {}
        fields = [n for n in kit.spec.declared if n != "external_id"]
        one_changed = [attrs.evolve(stored, **{name: getattr(fresh, name)}) for name in fields]
        differing = [r for r in one_changed if any(getattr(r, n) != getattr(stored, n) for n in fields)]
        assert differing, "the kit's edit changed no field"
        for record in differing:
            changed = [n for n in fields if getattr(record, n) != getattr(stored, n)]
            assert repo.compare_stored(crm.tenant, [record]) == {"compared": (stored.id, 1, False)}, changed

    def test_upsert_many_updates_changed_records_in_bulk(self, kit: AggregateKit, clock: Clock) -> None:
        stored = [kit.add(external_id=f"sync {n}") for n in range(3)]
        later = clock.advance(days=1)
        rows = [kit.edited(stored[0]), stored[1], attrs.evolve(kit.edited(stored[2]), version=0)]
        result = kit.service.upsert_many(rows, on_error="report")
        assert (result.added, result.updated, result.unchanged, result.failed) == (0, 2, 1, ())
        for row, before in zip(rows, stored, strict=True):
            got = kit.service.get(before.id)
            changed = row is not stored[1]
            want = attrs.evolve(row, version=2 if changed else 1, updated_at=later if changed else before.updated_at)
            assert_exact(want, got, "upsert_many")
        stale = attrs.evolve(kit.edited(stored[0]), version=1)  # based on version 1, stored at 2
        result = kit.service.upsert_many([stale], on_error="report")
        assert result.updated == 0 and [(i, f) for i, f, _ in result.failed] == [(0, "version")]
        assert kit.service.get(stored[0].id).version == 2

    def test_delete_removes_the_record(self, kit: AggregateKit) -> None:
        keep, doomed = kit.add(), kit.add()
        kit.service.delete(doomed.id)
        with pytest.raises(NotFound):
            kit.service.get(doomed.id)
        assert kit.service.count() == 1 and kit.service.count(F("id") == doomed.id) == 0
        assert_exact(keep, kit.service.get(keep.id))
        with pytest.raises(NotFound):
            kit.service.delete(doomed.id)

    def test_delete_with_an_expected_version(self, kit: AggregateKit) -> None:
        stored = kit.add()
        updated = kit.service.update(kit.edited(stored))
        with pytest.raises(ConflictError):
            kit.service.delete(stored.id, expected_version=1)
        assert_exact(updated, kit.service.get(stored.id))
        kit.service.delete(stored.id, expected_version=2)
        assert kit.service.count() == 0

    def test_external_ids_are_unique_per_aggregate_and_tenant(self, kit: AggregateKit) -> None:
        first = kit.add(external_id="dup ș")
        with pytest.raises(ConflictError):
            kit.service.add(kit.build(external_id="dup ș"))
        assert kit.service.count() == 1
        assert_exact(first, kit.service.get_by_external_id("dup ș"))
        other = kit.add(external_id="mine")
        with pytest.raises(ConflictError):
            kit.service.update(attrs.evolve(other, external_id="dup ș"))
        assert_exact(other, kit.service.get(other.id))
        renamed = kit.service.update(attrs.evolve(first, external_id="dup 2"))
        reused = kit.service.add(kit.build(external_id="dup ș"))
        kit.hold(reused)
        assert kit.service.get_by_external_id("dup ș").id == reused.id
        kit.service.delete(renamed.id)
        again = kit.service.add(kit.build(external_id="dup 2"))
        kit.hold(again)
        assert again.external_id == "dup 2"
        with pytest.raises(NotFound):
            kit.service.get_by_external_id("nobody")
        for _ in range(3):
            kit.add(external_id=None)
        assert kit.service.count(F("external_id") == None) == 3  # noqa: E711

    def test_unique_keys_are_held_by_the_store(self, kit: AggregateKit, spec: AggregateSpec) -> None:
        for key in spec.unique:
            first = kit.add()
            same = {name: getattr(first, name) for name in key}
            clash = kit.build(**same)
            before = kit.service.count()
            with pytest.raises(ConflictError) as err:
                kit.service.add(clash)
            message = str(err.value)
            assert all(name in message for name in key), f"the conflict does not name the key {key}: {message}"
            assert kit.service.count() == before
            assert_exact(first, kit.service.get(first.id))
            other = kit.add()
            with pytest.raises(ConflictError):
                kit.service.update(attrs.evolve(other, **same))
            assert_exact(other, kit.service.get(other.id))
            moved = kit.service.update(kit.edited(first))  # the key frees up when it changes...
            kit.release(first)
            kit.hold(moved)
            taken = kit.service.add(clash)
            kit.hold(taken)
            kit.service.delete(taken.id)  # ...and when its record is deleted
            kit.release(taken)
            kit.hold(kit.service.add(attrs.evolve(clash, id=uuid.uuid4())))

    def test_a_unique_key_with_a_missing_part_never_clashes(self, kit: AggregateKit, spec: AggregateSpec) -> None:
        added = 0
        for key in spec.unique:
            for name in key:
                if name in spec.declared and spec.declared[name].nullable:
                    first = kit.add(**{name: None})
                    second = kit.service.add(kit.build(**{n: getattr(first, n) for n in key}))
                    kit.hold(second)
                    added += 2
                    assert kit.service.count(F("id").in_([first.id, second.id])) == 2
        assert kit.service.count() == added

    @pytest.mark.requires("transactions")
    def test_a_batch_that_clashes_on_a_unique_key_writes_nothing(self, kit: AggregateKit, spec: AggregateSpec) -> None:
        for key in spec.unique:
            fine = kit.new()
            first = kit.new()
            clash = kit.build(**{name: getattr(first, name) for name in key})
            with pytest.raises(ConflictError):
                kit.service.add_many([fine, first, clash])
            assert kit.service.count() == 0
            stored = kit.add()
            with pytest.raises(ConflictError):
                kit.service.add_many([fine, kit.build(**{name: getattr(stored, name) for name in key})])
            assert kit.service.count(F("id") == fine.id) == 0
            kit.service.delete(stored.id)
            kit.release(stored)

    def test_example_records_round_trip_exactly(self, kit: AggregateKit, clock: Clock) -> None:
        for n in range(8):
            record = kit.new(external_id=f"example {n}")
            stored = kit.service.add(record)
            kit.hold(stored)
            assert_exact(_stored(record, clock()), stored, f"example {n}")
            _read_every_way(kit.service, stored)
        streamed = sorted(kit.service.stream(batch_size=3), key=lambda r: r.id)
        found = sorted(kit.service.find(), key=lambda r: r.id)
        assert len(streamed) == 8
        for a, b in zip(streamed, found, strict=True):
            assert_exact(b, a, "stream")

    def test_generated_records_round_trip_exactly(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        @conformance_settings(max_examples=20)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            clock = Clock(at(2025, 1, 1))
            crm = crmkit_backend.crm(clock=clock)
            targets = add_targets(crm, spec, count=2)
            records = data.draw(cs.record_lists(spec, targets=targets, min_size=1, max_size=3), label="records")
            service: Records[Any] = crm.records(spec.name)
            stored = [service.add(r) for r in records]
            for record, copy in zip(records, stored, strict=True):
                assert_exact(_stored(record, clock()), copy, "add")
                _read_every_way(service, copy)
            edited = data.draw(cs.records(spec, targets=targets, id=st.just(stored[0].id)), label="edited")
            edited = attrs.evolve(edited, external_id=stored[0].external_id, version=1)
            clashes = {k for r in stored[1:] for k in unique_keys_of(spec, r)}
            if any(k in clashes for k in unique_keys_of(spec, edited)):
                return
            clock.advance(seconds=1)
            updated = service.update(edited)
            assert_exact(attrs.evolve(edited, created_at=stored[0].created_at, updated_at=clock(), version=2), updated)
            _read_every_way(service, updated)

        check()

    def test_add_many_is_idempotent_by_external_id(self, kit: AggregateKit, clock: Clock) -> None:
        records = [kit.new(external_id=f"import {n}") for n in range(5)]
        result = kit.service.add_many(iter(records), batch_size=2)
        assert result == BulkResult(added=5, skipped=0)
        for record in records:
            assert_exact(_stored(record, clock()), kit.service.get_by_external_id(record.external_id))
        kit.hold(*records)
        again = [attrs.evolve(kit.new(), external_id=r.external_id) for r in records]
        newcomer = kit.new(external_id="import new")
        result = kit.service.add_many([*again[:3], newcomer, *again[3:], newcomer], batch_size=3)
        assert result == BulkResult(added=1, skipped=6)
        assert kit.service.count() == 6
        for record in records:
            assert kit.service.get_by_external_id(record.external_id).id == record.id
        assert kit.service.add_many([]) == BulkResult(0, 0)

    def test_add_many_counts_external_ids_stored_by_its_own_earlier_batches(self, kit: AggregateKit) -> None:
        """Repeats in one call, within a batch and across batches (written one after another, or overlapped)."""

        def new(external_id: str) -> Any:
            record = kit.new(external_id=external_id)
            kit.hold(record)
            return record

        for batch_size in (1, 2, 3, 100):
            first, second, third, fourth = (new(f"b{batch_size} {n}") for n in range(4))
            other_id = attrs.evolve(new(f"b{batch_size} other"), external_id=first.external_id)  # a stored one's
            # the same id again, under a new external id: written, while the row before it (batched with it) is not
            twin = attrs.evolve(new(f"b{batch_size} twin"), id=other_id.id)
            rows = [first, second, first, third, second, fourth, other_id, twin, first, third]
            # every row after the first of its external id is skipped, wherever the batches end
            result = kit.service.add_many(iter(rows), batch_size=batch_size)
            assert result == BulkResult(added=5, skipped=5), f"batches of {batch_size}"
            for record in (first, second, third, fourth, twin):
                assert kit.service.get_by_external_id(record.external_id).id == record.id
            assert [r.external_id for r in kit.service.find(F("id") == twin.id)] == [twin.external_id]
            fifth = new(f"b{batch_size} 5")
            again = kit.service.add_many(iter([third, first, fifth, third]), batch_size=batch_size)
            assert again == BulkResult(added=1, skipped=3), f"batches of {batch_size}"
            stored = [first, second, third, fourth, twin, fifth]
            with kit.crm.transaction():  # the next round's records may take their unique keys again
                for record in stored:
                    kit.service.delete(record.id)
            kit.release(*stored, other_id)

    def test_add_many_counts_a_repeated_id_in_big_batches(self, kit: AggregateKit) -> None:
        """As above, in batches a database may load in bulk (PostgreSQL's COPY from 100 rows)."""

        def new(external_id: str) -> Any:
            record = kit.new(external_id=external_id)
            kit.hold(record)
            return record

        made: list[Any] = []
        try:
            for n in range(240):
                made.append(new(f"big {n}"))
        except AssertionError:  # the kit's targets leave fewer free unique keys (one per campaign and customer)
            pass
        first, other, twin, *filler = made
        other_id = attrs.evolve(other, external_id=first.external_id)
        twin = attrs.evolve(twin, id=other_id.id)
        rows = [first, *filler[:119], other_id, twin, *filler[119:]]
        result = kit.service.add_many(iter(rows), batch_size=120)
        assert result == BulkResult(added=len(rows) - 1, skipped=1)
        assert kit.service.get_by_external_id(twin.external_id).id == twin.id
        assert kit.service.get_by_external_id(first.external_id).id == first.id

    def test_add_many_names_the_row_of_a_bad_record(self, kit: AggregateKit) -> None:
        rows: list[Any] = [kit.new(), kit.new(), "not a record"]
        with pytest.raises(ValidationError) as err:
            kit.service.add_many(rows, batch_size=10)
        assert err.value.row == 2
        assert kit.service.count() == 0

    def test_another_tenant_sees_nothing(self, crmkit_backend: Backend, kit: AggregateKit) -> None:
        mine = kit.add(external_id="shared key")
        theirs = crmkit_backend.crm()
        service: Records[Any] = theirs.records(kit.spec.name)
        assert service.count() == 0 and list(service.find()) == []
        assert list(service.find(F("id") == mine.id)) == []
        with pytest.raises(NotFound):
            service.get(mine.id)
        with pytest.raises(NotFound):
            service.get_by_external_id("shared key")
        with pytest.raises(NotFound):
            service.update(mine)
        with pytest.raises(NotFound):
            service.delete(mine.id)
        # their own record may hold the same external id and the same unique key values
        same = {
            n: getattr(mine, n)
            for key in kit.spec.unique
            for n in key
            if n in kit.spec.declared and kit.spec.declared[n].kind != "ref"
        }
        stored = service.add(AggregateKit(theirs, kit.spec).build(external_id="shared key", **same))
        assert service.count() == 1 and kit.service.count() == 1
        assert_exact(mine, kit.service.get(mine.id))
        assert_exact(stored, service.get_by_external_id("shared key"))
        kit.service.delete(mine.id)
        assert_exact(stored, service.get(stored.id))

    def test_another_tenant_may_hold_the_same_ids_and_keys(
        self, crmkit_backend: Backend, kit: AggregateKit, spec: AggregateSpec
    ) -> None:
        mine = kit.add(external_id="shared")
        theirs = crmkit_backend.crm()
        for id in kit.targets.of("customers"):  # the same customers, by id, in the other tenant
            theirs.customers.add(Customer(kind="person", name="twin", id=id))
        if kit.targets.of("interactions"):
            owner = theirs.customers.add(Customer(kind="organization", name="twin owner"))
            for id in kit.targets.of("interactions"):
                theirs.interactions.add(
                    Interaction(id=id, customer_id=owner.id, channel="email", direction="inbound", occurred_at=at(2024))
                )
        own: dict[str, Any] = {}  # references to other declared aggregates point at records of their own
        declared = [(r.field, r.target) for r in spec.references if r.target not in (None, *REF_ANY_TARGETS)]
        if declared:
            targets = add_targets(theirs, spec, count=1)
            own = {f: targets.of(str(t))[0] for f, t in declared if getattr(mine, f) is not None}
        twin = attrs.evolve(mine, version=0, created_at=None, updated_at=None, **own)
        service: Records[Any] = theirs.records(spec.name)
        for derived in list(service.stream()):  # what the twins derived (identity_keys of customers)
            service.delete(derived.id)
        stored = service.add(twin)
        assert stored.id == mine.id and service.get_by_external_id("shared") == stored
        assert service.count() == 1 and kit.service.count() == 1
        service.delete(stored.id)
        assert_exact(mine, kit.service.get(mine.id))


class AggregateReferencesContract(AggregateContractBase):
    """References are checked on write; deleting what they point at applies their ``on_delete``."""

    def test_a_reference_to_a_record_the_tenant_does_not_hold_is_refused(
        self, crmkit_backend: Backend, kit: AggregateKit, spec: AggregateSpec
    ) -> None:
        stranger = crmkit_backend.crm()
        foreign = add_targets(stranger, spec, count=1)
        stored = kit.add()
        for ref in spec.references:
            ghosts: list[Any] = []
            for target in ref_targets(spec, ref.field):
                ids = [uuid.uuid4(), *foreign.of(target)]
                ghosts += ids if ref.target is not None else [Ref(target, i) for i in ids]
            if ref.target is None:
                ghosts.append(Ref("no_such_aggregate", uuid.uuid4()))
            for ghost in ghosts:
                with pytest.raises(ValidationError) as err:
                    kit.service.add(kit.new(**{ref.field: ghost}))
                assert err.value.field == ref.field, f"{ref.field}={ghost!r} refused as {err.value.field}"
                with pytest.raises(ValidationError) as err:
                    kit.service.add_many([kit.new(), kit.new(**{ref.field: ghost})])
                assert err.value.field == ref.field and err.value.row == 1
                with pytest.raises(ValidationError) as err:
                    kit.service.update(attrs.evolve(stored, **{ref.field: ghost}))
                assert err.value.field == ref.field
        assert kit.service.count() == 1
        assert_exact(stored, kit.service.get(stored.id))

    def test_every_on_delete_policy(self, crmkit_backend: Backend, spec: AggregateSpec, clock: Clock) -> None:
        for ref in spec.references:
            for target in ref_targets(spec, ref.field):
                crm = crmkit_backend.crm(clock=clock)
                kit = AggregateKit(crm, spec)
                away = self._pointing_away(kit, spec, ref.field)
                itself = target == spec.name  # a reference to another record of the same aggregate
                if itself:
                    victim, bystander = kit.add(**away).id, kit.add(**away).id
                else:
                    victim, bystander = kit.targets.of(target)[:2]
                point = (lambda i: i) if ref.target is not None else (lambda i, t=target: Ref(t, i))
                referring = [kit.add(**away, **{ref.field: point(victim)}) for _ in range(3)]
                unrelated = kit.add(**away, **{ref.field: point(bystander)})
                context = f"{spec.name}.{ref.field} -> {target} ({ref.on_delete})"
                before = kit.service.count() - (1 if itself else 0)
                clock.advance(seconds=1)
                if ref.on_delete == "restrict":
                    with pytest.raises(ConflictError) as err:
                        delete_target(crm, target, victim)
                    for record in referring:
                        assert str(record.id) in str(err.value), f"{context}: {err.value} does not name {record.id}"
                    for record in referring:
                        assert_exact(record, kit.service.get(record.id), context)
                    for record in referring:
                        if ref.nullable:
                            kit.service.update(attrs.evolve(record, **{ref.field: None}))
                        else:
                            kit.service.delete(record.id)
                    delete_target(crm, target, victim)
                elif ref.on_delete == "cascade":
                    delete_target(crm, target, victim)
                    for record in referring:
                        with pytest.raises(NotFound):
                            kit.service.get(record.id)
                    assert kit.service.count() == before - 3, context
                else:
                    delete_target(crm, target, victim)
                    for record in referring:
                        expected = attrs.evolve(record, **{ref.field: None}, version=2, updated_at=clock())
                        assert_exact(expected, kit.service.get(record.id), context)
                    assert kit.service.count() == before, context
                assert_exact(unrelated, kit.service.get(unrelated.id), context)

    def test_a_cascade_follows_references_between_aggregates(
        self, crmkit_backend: Backend, spec: AggregateSpec
    ) -> None:
        crm = crmkit_backend.crm()
        for ref in spec.references:
            above = crm.schema.derived.get(ref.target or "")
            if ref.on_delete != "cascade" or above is None or above.name == spec.name:
                continue
            for up in above.references:
                if up.on_delete != "cascade" or up.target != "customers":
                    continue
                upper, lower = AggregateKit(crm, above), AggregateKit(crm, spec)
                customer = upper.targets.of("customers")[0]
                parent = upper.add(**self._pointing_away(upper, above, up.field), **{up.field: customer})
                child = lower.add(**self._pointing_away(lower, spec, ref.field), **{ref.field: parent.id})
                crm.customers.delete(customer)  # customer -> parent (its cascade) -> child (ours)
                with pytest.raises(NotFound):
                    upper.service.get(parent.id)
                with pytest.raises(NotFound):
                    lower.service.get(child.id)

    @staticmethod
    def _pointing_away(kit: AggregateKit, spec: AggregateSpec, field: str) -> dict[str, Any]:
        """Every other reference field set to a target no test deletes (the last one), or None; one that makes
        a unique key with ``field`` (a campaign and a customer) and points at another aggregate is left to
        vary, so that several records can refer to one target."""
        out: dict[str, Any] = {}
        paired = {f for key in spec.unique if field in key for f in key}
        target = spec.declared[field].target if field in spec.declared else None
        for ref in spec.references:
            if ref.field == field:
                continue
            if ref.field in paired and ref.target is not None and ref.target != target:
                continue
            if ref.nullable:
                out[ref.field] = None
            elif ref.target is not None:
                out[ref.field] = kit.targets.of(ref.target)[-1]
            else:
                out[ref.field] = Ref("customers", kit.targets.of("customers")[-1])
        return out

    def test_a_delete_applies_its_policies_only_in_its_own_tenant(
        self, crmkit_backend: Backend, spec: AggregateSpec
    ) -> None:
        for ref in spec.references:
            if "customers" not in ref_targets(spec, ref.field):
                continue
            mine = AggregateKit(crmkit_backend.crm(), spec)
            theirs_crm = crmkit_backend.crm()
            victim = mine.targets.of("customers")[0]
            twin = theirs_crm.customers.add(Customer(kind="person", name="same id, other tenant", id=victim))
            theirs = AggregateKit(theirs_crm, spec)
            value = twin.id if ref.target is not None else Ref("customers", twin.id)
            kept = theirs.add(**self._pointing_away(theirs, spec, ref.field), **{ref.field: value})
            if ref.on_delete != "restrict":  # restrict: nothing of this tenant refers to the customer
                mine.add(**self._pointing_away(mine, spec, ref.field), **{ref.field: value})
            mine.crm.customers.delete(victim)
            assert mine.service.count() == 0 or ref.on_delete == "set_null", f"{ref.field}: {ref.on_delete}"
            assert_exact(kept, theirs.service.get(kept.id), f"{ref.field} in the other tenant")
            assert theirs_crm.customers.get(victim) == twin


class _Recorder:
    """Keeps what ``crmkit_before_commit`` and ``crmkit_after_commit`` see; may write or raise before the commit."""

    def __init__(self, spec: AggregateSpec) -> None:
        self.spec = spec
        self.before: list[Event] = []
        self.after: list[Event] = []
        self.visible: list[bool] = []
        self.write_audit = False
        self.fail = False

    @crmkit.hookimpl
    def crmkit_before_commit(self, crm: CRM, events: Sequence[Event]) -> None:
        self.before.extend(events)
        for event in events:
            if event.entity != self.spec.name:
                continue
            if event.after is not None:  # the transaction's own writes are visible inside it
                self.visible.append(crm.records(self.spec.name).get(event.after.id).version == event.after.version)
            if self.write_audit and event.action == "created":
                crm.customers.add(Customer(kind="person", name=f"audit of {event.after.id}", external_id="audit"))
            if self.fail:
                raise _Boom("refused before the commit")

    @crmkit.hookimpl
    def crmkit_after_commit(self, crm: CRM, events: Sequence[Event]) -> None:
        self.after.extend(events)


class AggregateUnitOfWorkContract(AggregateContractBase):
    """Events with before, after and the actor; ``crmkit_before_commit`` inside the transaction; rollbacks."""

    @pytest.fixture
    def recorded(
        self, crmkit_backend: Backend, spec: AggregateSpec, clock: Clock
    ) -> Iterator[tuple[AggregateKit, _Recorder]]:
        recorder = _Recorder(spec)
        crm = crmkit_backend.crm(clock=clock, plugins=[recorder], actor="user:42")
        kit = AggregateKit(crm, spec)
        recorder.before.clear()
        recorder.after.clear()
        yield kit, recorder

    def test_events_carry_before_after_and_the_actor(self, recorded: tuple[AggregateKit, _Recorder]) -> None:
        kit, recorder = recorded
        stored = kit.add()
        with kit.crm.acting_as("user:7"):
            updated = kit.service.update(kit.edited(stored))
        kit.service.delete(updated.id)
        mine = [e for e in recorder.after if e.entity == kit.spec.name]
        assert [(e.action, e.actor) for e in mine] == [
            ("created", "user:42"),
            ("updated", "user:7"),
            ("deleted", "user:42"),
        ]
        assert mine[0].before is None and mine[0].after == stored
        assert mine[1].before == stored and mine[1].after == updated
        assert mine[2].before == updated and mine[2].after is None
        assert [type(e).__name__ for e in mine] == [
            type(e).__name__ for e in recorder.before if e.entity == kit.spec.name
        ]
        assert recorder.visible == [True, True]
        assert len({type(e) for e in mine}) == 3 and all(isinstance(e, Event) for e in mine)

    def test_before_commit_may_write_in_the_transaction(self, recorded: tuple[AggregateKit, _Recorder]) -> None:
        kit, recorder = recorded
        recorder.write_audit = True
        stored = kit.add()
        audit = kit.crm.customers.get_by_external_id("audit")
        assert audit.name == f"audit of {stored.id}"
        ours = (kit.spec.name, "customers")  # features may derive records too (a deal's state change)
        assert [e.entity for e in recorder.after if e.action == "created" and e.entity in ours][-2:] == list(ours)

    @pytest.mark.requires("transactions")
    def test_raising_in_before_commit_aborts_everything(self, recorded: tuple[AggregateKit, _Recorder]) -> None:
        kit, recorder = recorded
        recorder.write_audit = True
        recorder.fail = True
        customers = kit.crm.customers.count()
        with pytest.raises(_Boom):
            kit.service.add(kit.new())
        with pytest.raises(_Boom):
            kit.service.add_many([kit.new(), kit.new()])
        assert kit.service.count() == 0 and kit.crm.customers.count() == customers
        assert recorder.after == []

    @pytest.mark.requires("transactions")
    def test_an_exception_in_a_transaction_rolls_back_every_write(
        self, recorded: tuple[AggregateKit, _Recorder]
    ) -> None:
        kit, recorder = recorded
        kept = kit.add()
        doomed = kit.add()
        before = sorted(kit.service.find(), key=lambda r: r.id)
        with pytest.raises(_Boom), kit.crm.transaction():
            kit.service.add(kit.new())
            kit.service.update(kit.edited(kept))
            kit.service.delete(doomed.id)
            kit.service.add_many([kit.new(), kit.new()])
            for target in ref_targets(kit.spec, kit.spec.references[0].field) if kit.spec.references else ():
                for victim in kit.targets.of(target):
                    try:
                        delete_target(kit.crm, target, victim)
                    except ConflictError:
                        pass
            raise _Boom
        after = sorted(kit.service.find(), key=lambda r: r.id)
        assert len(after) == len(before)
        for a, b in zip(before, after, strict=True):
            assert_exact(a, b, "after the rollback")
        for target, ids in kit.targets.ids.items():
            for i in ids:
                assert i in (r.id for r in self._all(kit.crm, target))
        assert [e for e in recorder.after if e.entity == kit.spec.name][-1].after == doomed

    @staticmethod
    def _all(crm: CRM, aggregate: str) -> list[Any]:
        if aggregate in ("customers", "interactions"):
            return list(getattr(crm, aggregate).find())
        return list(crm.records(aggregate).find())

    @pytest.mark.requires("transactions")
    def test_a_failed_write_inside_a_transaction_dooms_it(self, recorded: tuple[AggregateKit, _Recorder]) -> None:
        kit, _ = recorded
        taken = kit.add(external_id="taken")
        with pytest.raises(CRMError), kit.crm.transaction():
            kit.service.add(kit.new())
            try:
                kit.service.add(kit.build(external_id="taken"))
            except ConflictError:
                pass
        assert [r.id for r in kit.service.find()] == [taken.id]

    def test_events_are_not_given_for_what_was_rolled_back(self, recorded: tuple[AggregateKit, _Recorder]) -> None:
        kit, recorder = recorded
        kit.add()
        count = len(recorder.after)
        with pytest.raises(ConflictError):
            kit.service.add(attrs.evolve(kit.new(), id=kit.service.find()[0].id))
        assert len(recorder.after) == count

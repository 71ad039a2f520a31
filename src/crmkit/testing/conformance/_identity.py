"""The identity contract: contact-point look-ups, upserts, merge and un-merge on every backend."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from crmkit._errors import ConflictError
from crmkit.crm import CRM
from crmkit.customers import Customer, EmailAddress, Phone
from crmkit.identity._service import _OWN
from crmkit.interactions import Interaction
from crmkit.query import ALL, parse_order
from crmkit.relationships import Relationship
from crmkit.schema import Ref
from crmkit.store import scan
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._aggregate_kit import ProbeContractBase
from crmkit.testing.conformance._harness import conformance_settings, person
from crmkit.testing.probe import Probe
from crmkit.transactions import Transaction

__all__ = ["IdentityContract", "snapshot", "references_to"]

#: The identity layer's own aggregates and the search terms: derived keys and texts that stay with the
#: customer they come from (a merged-away customer keeps its own), and the merge history.
_SKIPPED = _OWN
_MOVING = ("version", "updated_at")


def snapshot(crm: CRM) -> dict[tuple[str, uuid.UUID], dict[str, Any]]:
    """Every record of every aggregate of the tenant (identity's own left out), without version and updated_at."""
    out = {}
    for name in crm.schema:
        spec = crm.schema[name]
        if name in _SKIPPED or getattr(spec.cls, "__crmkit_append_only__", False):  # the audit trail records it all
            continue
        for record in scan(crm.store.repository(spec), crm.tenant, ALL, parse_order(None, spec)):
            fields = {a.name: getattr(record, a.name) for a in attrs.fields(type(record)) if a.name not in _MOVING}
            out[(name, record.id)] = fields
    return out


def references_to(crm: CRM, ids: set[uuid.UUID]) -> list[tuple[str, uuid.UUID, str]]:
    """(aggregate, record id, field) of every stored reference to one of ``ids``, over every registered aggregate."""
    found = []
    for ref in crm.schema.references_to("customers"):
        if ref.source in _SKIPPED:
            continue
        spec = crm.schema[ref.source]
        for record in scan(crm.store.repository(spec), crm.tenant, ALL, parse_order(None, spec)):
            value = getattr(record, ref.field)
            pointed = value.id if isinstance(value, Ref) and value.aggregate == "customers" else value
            if pointed in ids:
                found.append((ref.source, record.id, ref.field))
    return found


def _when(minute: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)


class IdentityContract(ProbeContractBase):
    """find_by_email/find_by_phone, upsert_many, merge re-pointing every reference, un-merge restoring all."""

    def test_find_by_email_is_normalised_and_follows_updates(self, crm: CRM) -> None:
        ana = crm.customers.add(person("Ana", emails=[EmailAddress("Ana@Example.RO")]))
        crm.customers.add(person("Bob", emails=[EmailAddress("bob@example.ro")]))
        assert [c.id for c in crm.customers.find_by_email("  ana@EXAMPLE.ro ")] == [ana.id]
        assert crm.customers.get(ana.id).emails[0].address == "Ana@Example.RO"  # kept as typed
        assert crm.customers.find_by_email("an@example.ro") == []
        moved = crm.customers.update(attrs.evolve(ana, emails=(EmailAddress("ana@new.ro"),)))
        assert crm.customers.find_by_email("ana@example.ro") == []
        assert [c.id for c in crm.customers.find_by_email("ANA@new.ro")] == [moved.id]
        crm.customers.delete(ana.id)
        assert crm.customers.find_by_email("ana@new.ro") == []

    def test_find_by_phone_in_e164(self, crm: CRM) -> None:
        ana = crm.customers.add(person("Ana", phones=[Phone("+40 721 234 567")]))
        crm.customers.add_many([person("Eva", phones=[Phone("612 34 56 78")])])  # national, no region: no key
        assert [c.id for c in crm.customers.find_by_phone("0721 234 567", region="RO")] == [ana.id]
        assert [c.id for c in crm.customers.find_by_phone("0040721234567")] == [ana.id]
        assert crm.customers.find_by_phone("612 34 56 78", region="ES") == []
        assert crm.identity.reindex() == 2
        crm.identity.region = "ES"
        assert crm.identity.reindex() == 2
        assert [c.name for c in crm.customers.find_by_phone("+34 612 345 678")] == ["Eva"]

    def test_upsert_many_adds_updates_and_reports(self, crm: CRM) -> None:
        crm.customers.add(person("Ana", external_id="erp-1"))
        crm.customers.add(person("Bob", external_id="erp-2"))
        result = crm.customers.upsert_many(
            [
                {"kind": "person", "name": "Ana Popescu", "external_id": "erp-1"},
                {"kind": "person", "name": "Bob", "external_id": "erp-2"},
                person("Cleo", external_id="erp-3", emails=[EmailAddress("cleo@example.ro")]),
                {"kind": "robot", "name": "R2", "external_id": "erp-4"},
                {"kind": "person", "name": "Dan"},
            ],
            on_error="report",
            batch_size=2,
        )
        assert (result.added, result.updated, result.unchanged) == (1, 1, 1)
        assert [(i, field) for i, field, _ in result.failed] == [(3, "kind"), (4, "external_id")]
        ana = crm.customers.get_by_external_id("erp-1")
        assert (ana.name, ana.version) == ("Ana Popescu", 2)
        assert crm.customers.get_by_external_id("erp-2").version == 1
        assert [c.name for c in crm.customers.find_by_email("cleo@example.ro")] == ["Cleo"]
        stale = attrs.evolve(ana, name="Stale", version=1)
        again = crm.customers.upsert_many([stale], on_error="report")
        assert again.updated == 0 and [f for _, f, _ in again.failed] == ["version"]
        assert crm.customers.count() == 3

    def test_merge_repoints_every_reference_and_unmerge_restores(self, crm: CRM) -> None:
        ana = crm.customers.add(person("Ana", emails=[EmailAddress("ana@example.ro")], tags={"a"}))
        dup = crm.customers.add(person("Ana P", emails=[EmailAddress("ANA@example.ro"), EmailAddress("p@x.ro")]))
        org = crm.customers.add(Customer(kind="organization", name="Acme"))
        crm.relationships.add(Relationship(source_id=dup.id, target_id=ana.id, kind="reports_to"))
        crm.relationships.add(Relationship(source_id=dup.id, target_id=org.id, kind="works_for"))
        crm.relationships.add(Relationship(source_id=ana.id, target_id=org.id, kind="works_for"))
        crm.interactions.add(
            Interaction(customer_id=dup.id, channel="email", direction="inbound", occurred_at=_when(1))
        )
        crm.transactions.add(Transaction(customer_id=dup.id, occurred_at=_when(2), amount=Decimal("5"), currency="EUR"))
        probe = Probe(
            owner_id=dup.id,
            code="p",
            number=1,
            amount=Decimal("1"),
            currency="EUR",
            happened_at=_when(3),
            sponsor_id=dup.id,
            guard_id=dup.id,
            about=Ref("customers", dup.id),
        )
        crm.records(Probe).add(probe)
        before = snapshot(crm)
        merge = crm.identity.merge(ana.id, [dup.id])
        assert references_to(crm, {dup.id}) == []
        survivor = crm.customers.get(ana.id)
        assert [e.address for e in survivor.emails] == ["ana@example.ro", "p@x.ro"]
        assert [c.id for c in crm.customers.find_by_email("ana@example.ro")] == [ana.id]
        assert crm.customers.get(dup.id).attributes["merged_into"] == str(ana.id)
        edges = crm.relationships.find().items
        assert all(e.source_id != e.target_id for e in edges)
        assert len({(e.source_id, e.target_id, e.kind) for e in edges}) == len(edges) == 1
        assert crm.identity.unmerge(merge.id).conflicts == ()
        assert snapshot(crm) == before
        assert sorted(c.name for c in crm.customers.find_by_email("ana@example.ro")) == ["Ana", "Ana P"]

    def test_unmerge_reports_later_changes_and_undoes_latest_first(self, crm: CRM) -> None:
        a, b, c = (crm.customers.add(person(n)) for n in ("A", "B", "C"))
        first = crm.identity.merge(a.id, [b.id])
        second = crm.identity.merge(a.id, [c.id])
        with pytest.raises(Exception, match="undo it first"):
            crm.identity.unmerge(first.id)
        crm.identity.unmerge(second.id)
        current = crm.customers.get(a.id)
        crm.customers.update(attrs.evolve(current, owner="later"))
        interaction = crm.interactions.add(
            Interaction(customer_id=b.id, channel="email", direction="inbound", occurred_at=_when(1))
        )
        assert crm.interactions.get(interaction.id).customer_id == b.id
        assert crm.identity.unmerge(first.id).conflicts == ()  # owner was not set by the merge: kept, no conflict
        assert crm.customers.get(a.id).owner == "later"
        assert "merged_into" not in crm.customers.get(b.id).attributes

    # one contract method, run by every backend's test class in one session: not flaky by that
    @conformance_settings(max_examples=8, suppress_health_check=[HealthCheck.differing_executors])
    @given(data=st.data())
    def test_merge_then_unmerge_is_the_original(self, crmkit_backend: Backend, data: st.DataObject) -> None:
        crm = crmkit_backend.crm()
        names = data.draw(
            st.lists(st.sampled_from(["Ana", "Ana Pop", "Bob", "Ștefan", "زهرا"]), min_size=2, max_size=4)
        )
        customers = [
            crm.customers.add(
                person(
                    name,
                    emails=[EmailAddress(f"{name[:1].lower() or 'x'}{i % 2}@example.ro")] if i % 2 else (),
                    tags=data.draw(st.frozensets(st.sampled_from(["a", "b", "c"]))),
                    attributes=data.draw(st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2)),
                )
            )
            for i, name in enumerate(names)
        ]
        ids = [c.id for c in customers]
        index = st.integers(0, len(ids) - 1)
        for source, target in data.draw(st.lists(st.tuples(index, index), max_size=5)):
            if source != target:
                edge = Relationship(source_id=ids[source], target_id=ids[target], kind="reports_to")
                crm.relationships.add_many([edge])
        for k, who in enumerate(data.draw(st.lists(index, max_size=4))):
            crm.interactions.add(
                Interaction(customer_id=ids[who], channel="email", direction="inbound", occurred_at=_when(k))
            )
        for k, (owner, about) in enumerate(data.draw(st.lists(st.tuples(index, index), max_size=3))):
            crm.records(Probe).add(
                Probe(
                    owner_id=ids[owner],
                    code=f"c{k}",
                    number=k,
                    amount=Decimal(k),
                    currency="EUR",
                    happened_at=_when(k),
                    sponsor_id=ids[about],
                    about=Ref("customers", ids[about]),
                )
            )
        survivor = data.draw(index)
        losers = data.draw(st.lists(index.filter(lambda i: i != survivor), min_size=1, unique=True))
        before = snapshot(crm)
        merge = crm.identity.merge(ids[survivor], [ids[i] for i in losers])
        assert references_to(crm, {ids[i] for i in losers}) == []
        assert all(e.source_id != e.target_id for e in crm.relationships.stream())
        assert crm.identity.unmerge(merge.id).conflicts == ()
        assert snapshot(crm) == before

    def test_unique_emails_policy_names_the_other_customer(self, crm: CRM) -> None:
        ana = crm.customers.add(person("Ana", emails=[EmailAddress("ana@example.ro")]))
        crm.customers.add(person("Twin", emails=[EmailAddress("ANA@example.ro")]))  # a signal only, by default
        crm.identity.unique_emails = True
        with pytest.raises(ConflictError, match=str(ana.id)):
            crm.customers.add(person("Third", emails=[EmailAddress("Ana@Example.RO")]))
        assert crm.customers.count() == 2  # nothing half-written
        assert crm.customers.update(attrs.evolve(ana, name="Ana P")).name == "Ana P"  # her own address is fine

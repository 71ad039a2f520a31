"""Record-level access (``crmkit.access.OwnerPolicy``): two actors through every read path, on every store.

One unrestricted connection plants, for each of two owners, customers (two of them
look like duplicates of the other owner's), interactions, purchases, relationships, a
deal, a case, consents, segment and campaign members. Then each owner reads through
every read API crmkit has, and every answer must hold its own records and none of the
other's. Writes outside one's sight are refused, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.backends import BACKENDS, backend_url

import crmkit
from crmkit import Channel, Customer, EmailAddress, F, Interaction, Relationship, Transaction
from crmkit.access import AccessDenied, OwnerPolicy
from crmkit.marketing import Campaign, MemberStatus, Segment
from crmkit.sales import Note, Opportunity, Pipeline, PipelineStage, Task
from crmkit.service import Case

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
OWNERS = ("user:a", "user:b")


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    found = backend_url(request, tmp_path_factory.mktemp("access"))
    return "memory://access" if found == "memory://" else found  # one store shared by the connections


def _tenant() -> str:
    return f"access-{uuid.uuid4().hex[:12]}"


def _as(url: str, tenant: str, actor: str | None, **policy: Any) -> crmkit.CRM:
    return crmkit.connect(url, tenant=tenant, actor=actor, clock=lambda: NOW, plugins=[OwnerPolicy(**policy)])


def _plant(crm: crmkit.CRM) -> dict[str, dict[str, set[uuid.UUID]]]:
    """Each owner's records by aggregate, written without a policy."""
    stages = (
        PipelineStage("qualify", probability=Decimal("0.1"), forecast="pipeline"),
        PipelineStage("won", probability=Decimal("1"), forecast="closed", closed=True, won=True),
    )
    crm.pipelines.add(Pipeline(key="new", name="New", stages=stages))
    mine: dict[str, dict[str, set[uuid.UUID]]] = {o: {} for o in OWNERS}
    firsts: dict[str, Customer] = {}
    for n, owner in enumerate(OWNERS):
        kept = mine[owner]

        def keep(name: str, record: Any, kept: dict[str, set[uuid.UUID]] = kept) -> Any:
            kept.setdefault(name, set()).add(record.id)
            return record

        # the same person twice per owner, and as the other owner's: one group of four duplicates unfiltered
        twins = [
            keep(
                "customers",
                crm.customers.add(
                    Customer(
                        kind="person",
                        name="Ada Lovelace",
                        emails=[EmailAddress("ada@example.com")],
                        owner=owner,
                        external_id=f"{owner}-{i}",
                        tags={"vip"},
                    )
                ),
            )
            for i in range(2)
        ]
        first = firsts[owner] = twins[0]
        call = Interaction(
            customer_id=first.id, channel=Channel.PHONE, direction="outbound", occurred_at=NOW - dt.timedelta(days=3)
        )
        keep("interactions", crm.interactions.add(call))
        bought = Transaction(
            customer_id=first.id, occurred_at=NOW - dt.timedelta(days=2), amount=Decimal(100 * (n + 1)), currency="EUR"
        )
        keep("transactions", crm.transactions.add(bought))
        household = Relationship(source_id=twins[0].id, target_id=twins[1].id, kind="household_member")
        keep("relationships", crm.relationships.add(household))
        deal = Opportunity(
            name=f"deal {owner}",
            pipeline="new",
            stage="qualify",
            customer_id=first.id,
            amount=Decimal(1000),
            currency="EUR",
            close_date=dt.date(2026, 9, 1),
        )
        deal = keep("opportunities", crm.opportunities.add(deal))
        crm.sales.move(deal.id, "won")
        keep("cases", crm.cases.add(Case(customer_id=first.id, subject=f"case {owner}", opened_at=NOW)))
        keep("tasks", crm.tasks.add(Task(subject=f"call back {owner}", about=deal, due_at=NOW)))
        keep("notes", crm.notes.add(Note(about=first, body=f"note {owner}", written_at=NOW)))
        crm.lifecycle.move(first.id, "prospect")
        for twin in twins:
            crm.consents.record(
                twin.id,
                channel="email",
                purpose="marketing",
                granted=True,
                at=NOW,
                legal_basis="consent",
                source="form",
                expires_at=None,
            )
    # a relationship across owners: neither may reach the other's customer through it
    crm.relationships.add(
        Relationship(source_id=firsts["user:a"].id, target_id=firsts["user:b"].id, kind="referred_by")
    )
    return mine


def _ids(records: Any) -> set[uuid.UUID]:
    return {r.id for r in records}


READ_AGGREGATES = (
    "customers",
    "interactions",
    "transactions",
    "relationships",
    "opportunities",
    "cases",
    "tasks",
    "notes",
)


def _every_read(crm: crmkit.CRM, mine: dict[str, set[uuid.UUID]], theirs: dict[str, set[uuid.UUID]]) -> None:
    """Every read path answers with this actor's records only."""
    own, other = mine["customers"], theirs["customers"]
    customers = {c.external_id: c for c in crm.customers.scan()}
    assert {c.id for c in customers.values()} == own
    first = customers[f"{crm.actor}-0"]
    # records: get, find, count, scan, stream, aggregate of every aggregate planted
    for name in READ_AGGREGATES:
        records = crm.records(name)
        assert _ids(records.find()) == mine[name], name
        assert _ids(records.scan()) == mine[name], name
        assert records.count() == len(mine[name]), name
        assert records.aggregate(count=True).rows[0]["count"] == len(mine[name]), name
        for rid in theirs[name]:
            with pytest.raises(crmkit.NotFound):
                records.get(rid)
        for rid in mine[name]:
            assert records.get(rid).id == rid
    assert crm.customers.get_by_external_id(f"{crm.actor}-0").id == first.id
    for someone in (o for o in OWNERS if o != crm.actor):
        with pytest.raises(crmkit.NotFound):
            crm.customers.get_by_external_id(f"{someone}-0")
    report = crm.transactions.aggregate(group_by="currency", count=True, sum="amount")
    assert [(r["count"], r["sum(amount)"]) for r in report] == [(1, crm.transactions.find()[0].amount)]
    # the timeline: the customer's own call, purchase, stage change, note
    assert {e.kind for e in crm.timeline(first.id)} >= {"interaction", "transaction", "note"}
    assert {e.record.id for e in crm.timeline(first.id) if e.kind in ("interaction", "transaction", "note")} == (
        mine["interactions"] | mine["transactions"] | mine["notes"]
    )
    with pytest.raises(crmkit.NotFound):
        crm.timeline(next(iter(other)))
    # traversal and neighbours never step onto the other's customer (the referral edge is out of sight)
    reached = {r.customer_id for r in crm.relationships.traverse(first.id, depth=3)}
    assert reached == own - {first.id}
    assert {r.customer_id for r in crm.relationships.neighbours(first.id)} == own - {first.id}
    # stage history, audit trail, deal history
    changed = {c.record.id for c in crm.state_changes.scan()}  # the customer's and the deal's stages
    assert first.id in changed and changed <= own | mine["opportunities"]
    assert [c.to_stage for c in crm.state_changes.history(first)] == ["prospect"]
    assert [str(c.new) for c in crm.audit.history(first) if c.field == "stage"][-1] == "prospect"
    for rid in other:
        assert list(crm.audit.history(("customers", rid))) == []
    entries = list(crm.audit_entries.scan())
    assert not {e.record_id for e in entries} & set().union(*theirs.values())
    for entry in entries:  # each entry is about a record in sight (nothing was deleted)
        assert crm.records(entry.aggregate).get(entry.record_id).id == entry.record_id
    (deal,) = mine["opportunities"]
    assert [h.opportunity_id for h in crm.sales.history(deal)] and all(
        h.opportunity_id == deal for h in crm.opportunity_history.scan()
    )
    for rid in theirs["opportunities"]:
        assert crm.sales.history(rid) == []
    # reports: purchase summaries, the sales forecast, open cases
    assert {s.customer_id for s in crm.purchase_summaries()} == {first.id}
    assert crm.purchase_summaries(list(other)) == []
    assert sum(r.amount for r in crm.sales.forecast(currency="EUR")) == Decimal(1000)
    assert sum(r["count"] for r in crm.service.open_cases(group_by=("priority",), age=None)) == 1
    # identity: only one's own twins are duplicates of each other
    assert [set(d.customer_ids) for d in crm.identity.duplicates(0.5)] == [own]
    # segments and campaign targeting
    vip = crm.segments.add(Segment(name=f"vip {crm.actor}", where=F("tags").contains("vip")))
    assert set(crm.segments.members(vip.id)) == own and crm.segments.count(vip.id) == len(own)
    statuses = (MemberStatus("planned", default=True), MemberStatus("clicked", responded=True))
    camp = crm.campaigns.add(
        Campaign(name=f"c {crm.actor}", channel=Channel.EMAIL, purpose="marketing", statuses=statuses)
    )
    assert crm.marketing.target(camp.id, segment=vip.id, at=NOW).added == len(own)
    assert {m.customer_id for m in crm.marketing.members(camp.id)} == own
    assert {c.customer_id for c in crm.consents.scan()} == own
    # privacy export: one's own customer, with nothing of the other's; the other's is not found
    exported = json.dumps(crm.privacy.export(first.id), default=str)
    assert str(first.id) in exported and not any(str(i) in exported for i in set().union(*theirs.values()))
    with pytest.raises(crmkit.NotFound):
        crm.privacy.export(next(iter(other)))


def test_two_actors_see_only_their_own_through_every_read(url: str) -> None:
    tenant = _tenant()
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        owned = _plant(admin)
        assert admin.customers.count() == 4 and admin.tasks.count() == 2
    for actor, other in (OWNERS, OWNERS[::-1]):
        with _as(url, tenant, actor) as crm:
            _every_read(crm, owned[actor], owned[other])
    with _as(url, tenant, "user:z") as nobody:
        assert nobody.customers.count() == 0 and nobody.interactions.count() == 0 and nobody.tasks.count() == 0
        assert nobody.pipelines.count() == 1  # pipelines are shared configuration
    with _as(url, tenant, "user:a", teams={"sales": {"user:a", "user:b"}}) as team:
        assert team.customers.count() == 4 and team.interactions.count() == 2
    teams = {"north": {"user:a"}, "south": {"user:b"}}
    with _as(url, tenant, "user:m", teams=teams, managers={"user:m": {"north"}}) as m:
        assert _ids(m.customers.find()) == owned["user:a"]["customers"]
        assert _ids(m.cases.find()) == owned["user:a"]["cases"]


def test_a_batch_imported_customers_creation_is_in_its_owners_trail_and_export_only(url: str) -> None:
    """An ``add_many`` of 100 or more shares creation entries that list every record of the batch:
    no actor reads such an entry, but each sees its own records' creations in them."""
    from crmkit.audit import BATCH
    from crmkit.audit._journal import BATCHED

    tenant = _tenant()
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        people = [Customer(kind="person", name=f"P{i}", owner=OWNERS[i % 2]) for i in range(BATCHED)]
        assert admin.customers.add_many(people).added == BATCHED
        assert admin.audit_entries.count(F("record_id") == BATCH) == 1
    for actor, other in (OWNERS, OWNERS[::-1]):
        with _as(url, tenant, actor) as crm:
            mine = next(p for p in people if p.owner == actor)
            theirs = next(p for p in people if p.owner == other)
            assert crm.customers.count() == BATCHED // 2
            assert [(c.action, c.field, c.new) for c in crm.audit.history(mine)][:2] == [
                ("created", "kind", "person"),
                ("created", "name", mine.name),
            ]
            assert crm.audit.as_of(("customers", mine.id), at=NOW).name == mine.name
            created = [e for e in crm.privacy.export(mine.id)["records"]["audit_entries"] if e["action"] == "created"]
            assert [(e["record_id"], e["new"]) for e in created] == [(str(mine.id), [])]
            assert list(crm.audit.history(("customers", theirs.id))) == []
            assert crm.audit.as_of(("customers", theirs.id), at=NOW) is None
            with pytest.raises(crmkit.NotFound):
                crm.privacy.export(theirs.id)
            assert crm.audit_entries.count(F("record_id") == BATCH) == 0  # it lists the other's ids


def test_writes_out_of_sight_are_refused_and_nothing_is_written(url: str) -> None:
    tenant = _tenant()
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        bob = admin.customers.add(Customer(kind="person", name="Bob", owner="user:b"))
    with _as(url, tenant, "user:a") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada", owner="user:a"))
        with pytest.raises(AccessDenied, match="user:a may not write customers") as caught:
            crm.customers.add(Customer(kind="person", name="Eve", owner="user:b"))
        assert caught.value.actor == "user:a" and caught.value.aggregate == "customers"
        with pytest.raises(crmkit.ValidationError, match="customer_id: no customer"):  # to user:a, Bob is no one
            crm.interactions.add(
                Interaction(customer_id=bob.id, channel=Channel.PHONE, direction="inbound", occurred_at=NOW)
            )
        with pytest.raises(AccessDenied):  # giving one's customer away
            crm.customers.update(_evolve(ada, owner="user:b"))
        # one transaction: the first write is undone with the refused one
        with pytest.raises(AccessDenied), crm.transaction():
            crm.interactions.add(
                Interaction(customer_id=ada.id, channel=Channel.PHONE, direction="inbound", occurred_at=NOW)
            )
            crm.customers.add(Customer(kind="person", name="Mallory", owner="user:c"))
        with pytest.raises(crmkit.NotFound):
            crm.customers.delete(bob.id)
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        assert admin.customers.count() == 2 and admin.interactions.count() == 0
        assert admin.customers.get(ada.id).owner == "user:a"
        admin.relationships.add(Relationship(source_id=ada.id, target_id=bob.id, kind="referred_by"))
    with _as(url, tenant, "user:a") as crm:
        assert crm.relationships.count() == 0  # Bob's end is out of sight
        crm.customers.delete(ada.id)  # a customer one may delete takes all its dependents along, seen or not
        assert crm.customers.count() == 0
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        assert admin.relationships.count() == 0 and [c.id for c in admin.customers.find()] == [bob.id]


def _evolve(record: Any, **changes: Any) -> Any:
    import attrs

    return attrs.evolve(record, **changes)


def test_a_plugin_vetoes_writes_with_its_reason(url: str) -> None:
    class ReadOnlyInterns:
        @crmkit.hookimpl
        def crmkit_access_write(self, actor: str | None, aggregate: Any, old: Any, new: Any) -> str | None:
            return "interns only read" if actor and actor.startswith("intern:") else None

    tenant = _tenant()
    with crmkit.connect(url, tenant=tenant, actor="intern:x", plugins=[ReadOnlyInterns()]) as crm:
        with pytest.raises(AccessDenied, match="intern:x may not write customers: interns only read"):
            crm.customers.add(Customer(kind="person", name="Ada"))
        assert crm.customers.count() == 0


# --------------------------------------------------------------------------- random ownership

ACTORS = ("user:a", "user:b", "user:c")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    owners=st.lists(st.sampled_from((*ACTORS, None)), min_size=1, max_size=8),
    calls=st.lists(st.integers(0, 2), min_size=8, max_size=8),
    team=st.sets(st.sampled_from(ACTORS)),
)
def test_each_actor_counts_what_its_owners_own(
    url: str, owners: list[str | None], calls: list[int], team: set[str]
) -> None:
    tenant = _tenant()
    with crmkit.connect(url, tenant=tenant, clock=lambda: NOW) as admin:
        customers = admin.customers.add_many(
            Customer(kind="person", name=f"C{i}", owner=o, external_id=f"c{i}") for i, o in enumerate(owners)
        )
        assert customers.added == len(owners)
        stored = {c.external_id: c for c in admin.customers.scan()}
        admin.interactions.add_many(
            Interaction(customer_id=stored[f"c{i}"].id, channel=Channel.EMAIL, direction="inbound", occurred_at=NOW)
            for i in range(len(owners))
            for _ in range(calls[i])
        )
    policy = {"teams": {"t": team}} if team else {}
    for actor in ACTORS:
        sees = {actor} | (team if actor in team else set())
        with _as(url, tenant, actor, **policy) as crm:
            mine = [i for i, o in enumerate(owners) if o in sees]
            assert crm.customers.count() == len(mine)
            assert crm.interactions.count() == sum(calls[i] for i in mine)
            assert {c.external_id for c in crm.customers.scan()} == {f"c{i}" for i in mine}
            report = crm.interactions.aggregate(group_by="customer_id", count=True)
            assert {r["customer_id"]: r["count"] for r in report} == {
                stored[f"c{i}"].id: calls[i] for i in mine if calls[i]
            }


# --------------------------------------------------------------------------- pushed down


def test_the_policy_is_in_the_sql_the_store_runs(tmp_path: Any) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    n = 20_000
    with crmkit.connect(url, tenant="acme", clock=lambda: NOW) as admin:
        admin.customers.add_many(
            Customer(kind="person", name=f"C{i}", owner=OWNERS[i % 7 == 0], external_id=f"c{i}") for i in range(n)
        )
    with _as(url, "acme", "user:b") as crm:
        statements: list[str] = []
        engine = crm.store.inner.engine  # type: ignore[attr-defined]
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        assert crm.customers.count() == len(range(0, n, 7))
        assert crm.interactions.count() == 0
        assert len(statements) == 2  # one statement each, answered by the database
        assert "owner IN" in statements[0] and "count(*)" in statements[0]
        assert "IN (SELECT" in statements[1]  # the semi-join to customers

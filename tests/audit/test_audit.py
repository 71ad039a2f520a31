"""The audit trail on every backend: field-by-field changes with actor, time and cause, as_of replays them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import ConflictError, Customer, ValidationError, schema
from crmkit.audit import AuditEntry, JsonPart
from crmkit.sales import Opportunity

UTC = dt.timezone.utc


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("audit"))


START = dt.datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def open_crm(url: str, clock: Callable[[], dt.datetime] | None = None, **options: object) -> crmkit.CRM:
    return crmkit.connect(url, tenant=unique_name("audit"), clock=clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def crm(url: str, clock: Clock) -> Iterator[crmkit.CRM]:
    with open_crm(url, clock, actor="user:42") as crm:
        yield crm


def test_the_api_of_the_issue_works_as_written(url: str, clock: Clock) -> None:
    with crmkit.connect(url, tenant=unique_name("acme"), actor="user:42", clock=clock) as crm:
        acme = crm.customers.add(Customer(name="Acme", kind="organization", tags=frozenset({"b2b"})))
        created = clock.now
        clock.tick()
        with crm.acting_as("user:7"), crm.caused_by("import:crm-sync"):
            acme = crm.customers.update(attrs.evolve(acme, name="Acme Ltd", tags=frozenset({"b2b", "vip"})))
        renamed = clock.now
        clock.tick()
        acme = crm.customers.update(attrs.evolve(acme, owner="user:9"))

        changes = [(c.field, c.old, c.new, c.actor, c.at, c.cause) for c in crm.audit.history(acme)]
        assert changes == [
            ("kind", None, "organization", "user:42", created, "api"),
            ("name", None, "Acme", "user:42", created, "api"),
            ("stage", None, "lead", "user:42", created, "api"),
            ("tags", None, frozenset({"b2b"}), "user:42", created, "api"),
            ("name", "Acme", "Acme Ltd", "user:7", renamed, "import:crm-sync"),
            ("tags", frozenset({"b2b"}), frozenset({"b2b", "vip"}), "user:7", renamed, "import:crm-sync"),
            ("owner", None, "user:9", "user:42", clock.now, "api"),
        ]
        assert changes == [
            (c.field, c.old, c.new, c.actor, c.at, c.cause) for c in crm.audit.history(("customers", acme.id))
        ]
        then = crm.audit.as_of(acme, at=renamed + dt.timedelta(seconds=30))
        assert (then.name, then.tags, then.owner, then.version) == ("Acme Ltd", frozenset({"b2b", "vip"}), None, 2)
        assert crm.audit.as_of(acme, at=created).name == "Acme"
        assert crm.audit.as_of(acme, at=created - dt.timedelta(microseconds=1)) is None
        assert crm.audit.as_of(acme, at=clock.now) == acme


def test_a_write_that_changes_nothing_leaves_no_entry(crm: crmkit.CRM, clock: Clock) -> None:
    ada = crm.customers.add(Customer(name="Ada", kind="person"))
    before = len(list(crm.audit.entries(ada)))
    clock.tick()
    ada = crm.customers.update(ada)  # same values: a new version, no change of any field
    assert ada.version == 2
    assert len(list(crm.audit.entries(ada))) == before == 1


def test_deletions_and_every_api_s_cause_are_recorded(crm: crmkit.CRM, clock: Clock) -> None:
    result = crm.customers.add_many(Customer(name=f"C{i}", kind="person", external_id=f"c{i}") for i in range(3))
    assert result.added == 3
    first = crm.customers.get_by_external_id("c0")
    assert {c.cause for c in crm.audit.history(first)} == {"import"}
    clock.tick()
    crm.customers.upsert_many([{"name": "C0 renamed", "kind": "person", "external_id": "c0"}])
    assert [(c.field, c.cause) for c in crm.audit.history(first)][-1] == ("name", "import")
    clock.tick()
    merge = crm.identity.merge(first.id, [crm.customers.get_by_external_id("c1").id])
    merged = crm.customers.get_by_external_id("c1")
    assert {c.cause for c in crm.audit.history(merged) if c.action == "updated"} == {"merge"}
    clock.tick()
    crm.identity.unmerge(merge.id)
    assert [c.cause for c in crm.audit.history(merged)][-1] == "unmerge"
    clock.tick()
    with crm.caused_by("job:cleanup"):
        crm.customers.delete(merged.id)
    last = list(crm.audit.history(merged))[-1]
    assert (last.action, last.field, last.old, last.new, last.cause, last.at) == (
        "deleted",
        None,
        None,
        None,
        "job:cleanup",
        clock.now,
    )
    assert crm.audit.as_of(merged, at=clock.now) is None
    assert crm.audit.as_of(merged, at=clock.now - dt.timedelta(seconds=1)).name == "C1"


def test_plugin_aggregates_are_audited_with_their_value_types(crm: crmkit.CRM, clock: Clock) -> None:
    owner = crm.customers.add(Customer(name="Ada", kind="person"))
    deal = crm.opportunities.add(
        Opportunity(
            customer_id=owner.id, name="Big", pipeline="p", amount=Decimal("100.50"), currency="EUR", stage="new"
        )
    )
    clock.tick()
    deal = crm.opportunities.update(attrs.evolve(deal, amount=Decimal("250.00"), close_date=dt.date(2026, 9, 1)))
    updates = [(c.field, c.old, c.new) for c in crm.audit.history(deal) if c.action == "updated"]
    assert updates == [("amount", Decimal("100.50"), Decimal("250.00")), ("close_date", None, dt.date(2026, 9, 1))]
    assert str(updates[0][2]) == "250.00"  # the exponent too
    assert crm.audit.as_of(deal, at=clock.now - dt.timedelta(seconds=1)).amount == Decimal("100.50")


def test_the_audited_fields_are_chosen_per_aggregate(url: str, clock: Clock) -> None:
    with open_crm(url, clock, audit={"customers": ("name",), "interactions": False}) as crm:
        assert crm.audit.audited["customers"] == ("name",)
        assert "interactions" not in crm.audit.audited
        ada = crm.customers.add(Customer(name="Ada", kind="person"))
        clock.tick()
        ada = crm.customers.update(attrs.evolve(ada, owner="user:1"))  # not audited
        ada = crm.customers.update(attrs.evolve(ada, name="Ada L"))
        assert [(c.action, c.field, c.new) for c in crm.audit.history(ada)] == [
            ("created", "name", "Ada"),
            ("updated", "name", "Ada L"),
        ]
    with open_crm(url, clock, audit=False) as crm:
        ada = crm.customers.add(Customer(name="Ada", kind="person"))
        assert list(crm.audit.history(ada)) == [] and crm.audit.audited == {}
        assert crm.events.read(after=0).events[0].record_id == ada.id  # the feed is kept apart
    with pytest.raises(ValidationError, match="audit"):
        open_crm(url, clock, audit={"customers": ("no_such_field",)})
    with pytest.raises(ValidationError, match="audit"):
        open_crm(url, clock, audit={"audit_entries": True})


def test_the_trail_is_append_only_through_the_api(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(name="Ada", kind="person"))
    entry = next(crm.audit.entries(ada))
    entries = crm.records(AuditEntry)
    assert entries.get(entry.id) == entry and entries.count() == 1
    for attempt in (
        lambda: entries.update(attrs.evolve(entry, new=(JsonPart('{"name":"Eve"}'),))),
        lambda: entries.delete(entry.id),
        lambda: entries.add(attrs.evolve(entry, id=crmkit._ids.new_id(), version=0)),
        lambda: entries.add_many([entry]),
        lambda: crm.audit_entries.upsert_many([entry]),
    ):
        with pytest.raises(ConflictError, match="append-only"):
            attempt()
    assert list(crm.audit.entries(ada)) == [entry]


def test_a_rolled_back_transaction_leaves_no_entry(crm: crmkit.CRM) -> None:
    with pytest.raises(RuntimeError), crm.transaction():
        crm.customers.add(Customer(name="Ghost", kind="person"))
        raise RuntimeError("undo")
    assert crm.records(AuditEntry).count() == 0
    assert crm.events.read(after=0).events == ()


# ------------------------------------------------------------------ as_of equals replaying the entries

_NAMES = st.sampled_from(["Ada", "Ada L", "Grace", "Émilie", "李"])
_TAGS = st.frozensets(st.sampled_from(["a", "b", "vip"]), max_size=3)
_OWNERS = st.none() | st.sampled_from(["user:1", "user:2"])
_STORABLE = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=3)  # NUL is refused
_ATTRS = st.dictionaries(st.sampled_from(["tier", "score"]), st.integers(0, 3) | _STORABLE, max_size=2)
_STEP = st.one_of(
    st.tuples(st.just("update"), st.fixed_dictionaries({"name": _NAMES, "tags": _TAGS, "owner": _OWNERS})),
    st.tuples(st.just("attributes"), _ATTRS),
    st.tuples(st.just("same"), st.none()),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("create"), st.none()),
)


def _fields(record: Customer | None) -> object:
    if record is None:
        return None
    return (record.name, record.tags, record.owner, dict(record.attributes), record.version, record.external_id)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    steps=st.lists(st.tuples(_STEP, st.integers(0, 2)), max_size=12), probes=st.lists(st.integers(0, 30), max_size=4)
)
def test_as_of_equals_the_record_as_it_was_for_any_sequence_of_changes(
    url: str, steps: list[tuple[tuple[str, object], int]], probes: list[int]
) -> None:
    clock = Clock(START)
    start = clock.now
    with open_crm(url, clock) as crm:
        record: Customer | None = crm.customers.add(Customer(name="Ada", kind="person", external_id="ada"))
        assert record is not None
        key = record.id
        timeline: list[tuple[dt.datetime, object]] = [(clock.now, _fields(record))]
        for (action, value), pause in steps:
            clock.tick(pause)  # 0: several changes in the same instant
            if action == "create":
                if record is not None:
                    continue
                record = crm.customers.add(Customer(id=key, name="Again", kind="person"))
            elif record is None:
                continue
            elif action == "delete":
                crm.customers.delete(key)
                record = None
            elif action == "update":
                record = crm.customers.update(attrs.evolve(record, **value))  # type: ignore[arg-type]
            elif action == "attributes":
                record = crm.customers.update(attrs.evolve(record, attributes=value))
            else:
                record = crm.customers.update(record)
            timeline.append((clock.now, _fields(record)))
        entries = list(crm.audit.entries(("customers", key)))
        assert all(e.actor is None and e.cause == "api" for e in entries)
        for offset in [*probes, *range(len(steps) * 2 + 2)]:
            moment = start + dt.timedelta(seconds=offset)
            expected = None
            for at, state in timeline:  # the last state written at or before the moment
                if at <= moment:
                    expected = state
            got = crm.audit.as_of(("customers", key), at=moment)
            if got is not None and expected is not None:
                # the version as of a moment is that of the last audited change (an update that changed
                # nothing leaves no entry, so it may be lower than the record's version then)
                assert got.version <= expected[4]  # type: ignore[index]
                expected = (*expected[:4], got.version, *expected[5:])  # type: ignore[index]
            assert _fields(got) == expected, f"as of +{offset}s"


def test_values_longer_than_one_text_are_kept_whole(crm: crmkit.CRM, clock: Clock) -> None:
    long = '"quoted" ' * 11_000  # 99,000 characters, longer still as JSON
    ada = crm.customers.add(Customer(name="Ada", kind="person"))
    clock.tick()
    ada = crm.customers.update(attrs.evolve(ada, name=long))
    entry = list(crm.audit.entries(ada))[-1]
    assert len(entry.new) == 3 and max(len(part.text) for part in entry.new) <= 50_000
    assert [(c.field, c.old, c.new) for c in crm.audit.history(ada)][-1] == ("name", "Ada", long)
    assert crm.events.read(after=1).events[0].after.name == long


@schema.aggregate("audit_tickets", label="ticket")
class Ticket(schema.Record):
    """A plugin's aggregate whose declaration audits only its status."""

    __crmkit_audit__ = ("status",)

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    status: str = schema.text(personal=False)
    body: str = schema.text(personal="free_text")


class _Tickets:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> list[type]:
        return [Ticket]


def test_a_declaration_chooses_its_audited_fields(url: str, clock: Clock) -> None:
    with open_crm(url, clock, plugins=[_Tickets()]) as crm:
        crm.migrate()
        assert crm.audit.audited["audit_tickets"] == ("status",)
        ada = crm.customers.add(Customer(name="Ada", kind="person"))
        ticket = crm.records(Ticket).add(Ticket(customer_id=ada.id, status="open", body="printer on fire"))
        clock.tick()
        ticket = crm.records(Ticket).update(attrs.evolve(ticket, status="closed", body="fixed"))
        assert [(c.action, c.field, c.old, c.new) for c in crm.audit.history(ticket)] == [
            ("created", "status", None, "open"),
            ("updated", "status", "open", "closed"),
        ]
        then = crm.audit.as_of(ticket, at=clock.now - dt.timedelta(seconds=1))
        assert (then.status, then.body) == ("open", "fixed")  # the body is not audited: as it is now
        crm.customers.delete(ada.id)  # the ticket goes with its customer: the trail says so
        assert [c.action for c in crm.audit.history(ticket)][-1] == "deleted"
    with open_crm(url, clock, plugins=[_Tickets()], audit={"audit_tickets": True}) as crm:
        assert crm.audit.audited["audit_tickets"] == ("customer_id", "status", "body", "external_id")


def test_a_creation_keeps_no_values_and_a_deletion_keeps_them_all(crm: crmkit.CRM, clock: Clock) -> None:
    """A creation's values are the record's own, its later updates undone; a deletion keeps a snapshot."""
    ada = crm.customers.add(Customer(name="Ada", kind="person", tags=frozenset({"vip"})))
    born = clock.now
    clock.tick()
    ada = crm.customers.update(attrs.evolve(ada, name="Ada L", tags=frozenset()))
    clock.tick()
    ada = crm.customers.update(attrs.evolve(ada, name="Ada Lovelace"))
    created = next(iter(crm.audit.entries(ada)))
    assert (created.action, created.field, created.old, created.new) == ("created", None, (), ())
    first = [(c.field, c.new) for c in crm.audit.history(ada) if c.action == "created"]
    assert first == [("kind", "person"), ("name", "Ada"), ("stage", "lead"), ("tags", frozenset({"vip"}))]
    assert crm.audit.as_of(ada, at=born).name == "Ada" and crm.audit.as_of(ada, at=born).tags == {"vip"}

    clock.tick()
    crm.customers.delete(ada.id)
    gone = list(crm.audit.entries(ada))[-1]
    assert gone.action == "deleted" and '"name":"Ada Lovelace"' in (gone.old[0].text)
    assert gone.new == (JsonPart(f'{{"$datetime":"{born.isoformat()}"}}'),)  # when it was created, nothing more
    # the record is gone: its creation and each state are replayed back from the deletion's snapshot
    assert [(c.field, c.new) for c in crm.audit.history(ada) if c.action == "created"] == first
    assert crm.audit.as_of(ada, at=born).name == "Ada"
    assert crm.audit.as_of(ada, at=clock.now - dt.timedelta(seconds=1)).name == "Ada Lovelace"

    clock.tick()
    again = crm.customers.add(Customer(name="Ada II", kind="person", id=ada.id))  # the same id, a second life
    lives = [(c.action, c.field, c.new) for c in crm.audit.history(again) if c.field in (None, "name")]
    assert lives == [
        ("created", "name", "Ada"),
        ("updated", "name", "Ada L"),
        ("updated", "name", "Ada Lovelace"),
        ("deleted", None, None),
        ("created", "name", "Ada II"),
    ]
    assert crm.audit.as_of(again, at=born).name == "Ada" and crm.audit.as_of(again, at=clock.now).name == "Ada II"
    # the first life as it was: created then, not when the second life began
    assert crm.audit.as_of(again, at=born).created_at == born and again.created_at == clock.now


def test_erasure_reaches_a_deleted_records_snapshot(url: str, clock: Clock) -> None:
    with open_crm(url, clock) as crm:
        ada = crm.customers.add(Customer(name="Ada Zqsnapshot", kind="person"))
        clock.tick()
        crm.customers.delete(ada.id)
        entry = list(crm.audit.entries(ada))[-1]
        from crmkit.audit._erase import anonymised_entry

        erased = anonymised_entry(entry, crm)
        assert "Zqsnapshot" in entry.old[0].text and "Zqsnapshot" not in erased.old[0].text
        assert '"kind":"person"' in erased.old[0].text  # what is not personal stays


def test_a_batch_of_creations_shares_its_entries_and_each_record_still_has_its_history(
    crm: crmkit.CRM, clock: Clock
) -> None:
    from crmkit.audit import BATCH

    people = [Customer(name=f"P{i}", kind="person", external_id=f"p{i}") for i in range(1234)]
    with crm.caused_by("import:legacy"):
        assert crm.customers.add_many(people, batch_size=1000).added == 1234
    born = clock.now
    stored = list(crm.records(AuditEntry).stream())
    # batches of 1,000 and 234: entries of at most 500 records each
    assert sorted(len(json.loads(e.new[0].text)) for e in stored) == [234, 500, 500]
    assert {(e.record_id, e.action, e.field, e.cause, e.at) for e in stored} == {
        (BATCH, "created", None, "import:legacy", born)
    }
    ada, bob, cy = people[7], people[1100], people[600]
    (created,) = crm.audit.entries(ada)
    assert (created.record_id, created.action, created.new, created.cause) == (ada.id, "created", (), "import:legacy")
    assert [(c.field, c.new) for c in crm.audit.history(bob)] == [
        ("external_id", "p1100"),
        ("kind", "person"),
        ("name", "P1100"),
        ("stage", "lead"),
    ]
    with crm.transaction():  # more creations and an update at the same instant, in one transaction
        crm.customers.add_many([Customer(name=f"Q{i}", kind="person") for i in range(150)])
        crm.customers.update(attrs.evolve(crm.customers.get(ada.id), name="Ada"))
    clock.tick()
    crm.customers.update(attrs.evolve(crm.customers.get(ada.id), name="Ada L"))
    assert [(c.action, c.field, c.new) for c in crm.audit.history(ada) if c.field in (None, "name")] == [
        ("created", "name", "P7"),
        ("updated", "name", "Ada"),
        ("updated", "name", "Ada L"),
    ]
    assert crm.audit.as_of(ada, at=born).name == "Ada" and crm.audit.as_of(ada, at=clock.now).name == "Ada L"
    assert crm.audit.as_of(ada, at=born - dt.timedelta(microseconds=1)) is None
    clock.tick()
    crm.customers.delete(cy.id)  # its deletion keeps when it was created: its creation is still found
    assert [c.action for c in crm.audit.history(cy)] == ["created"] * 4 + ["deleted"]
    assert crm.audit.as_of(cy, at=born).name == "P600" and crm.audit.as_of(cy, at=clock.now) is None
    clock.tick()
    crm.customers.add(Customer(name="Cy II", kind="person", id=cy.id))  # a second life, created alone
    lives = [(c.action, c.field, c.new) for c in crm.audit.history(cy) if c.field in (None, "name")]
    assert lives == [("created", "name", "P600"), ("deleted", None, None), ("created", "name", "Cy II")]
    assert crm.audit.as_of(cy, at=born).name == "P600" and crm.audit.as_of(cy, at=clock.now).name == "Cy II"

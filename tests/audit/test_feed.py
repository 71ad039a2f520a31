"""The event feed: every committed change once, in commit order per tenant, even when the writer is killed."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import attrs
import pytest
from tests.support.backends import Clock
from tests.support.servers import unique_name

import crmkit
from crmkit import ConflictError, Customer
from crmkit.audit import FeedEvent, OutboxChunk
from crmkit.audit._journal import BATCHED
from crmkit.events import CustomerCreated, CustomerUpdated

STORES = ["memory", "sqlite", "postgresql", "mongodb"]


def _url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kind: str) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{(tmp_path_factory.mktemp('feed') / 'crm.db').as_posix()}"
    return str(request.getfixturevalue("postgres_url" if kind == "postgresql" else "mongo_url"))


@pytest.fixture(scope="module", params=STORES)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _url(request, tmp_path_factory, request.param)


@pytest.fixture(scope="module", params=STORES[1:])
def durable_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _url(request, tmp_path_factory, request.param)


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("feed"), actor="user:1") as crm:
        yield crm


def _all(crm: crmkit.CRM, limit: int = 7) -> list[FeedEvent]:
    """The whole feed read in small pages, each resuming from the previous page's cursor."""
    out: list[FeedEvent] = []
    cursor = 0
    while True:
        page = crm.events.read(after=cursor, limit=limit)
        out += page.events
        if not page.events:
            assert page.cursor == cursor
            return out
        cursor = page.cursor


def test_events_are_numbered_in_commit_order_and_read_from_any_cursor(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(name="Ada", kind="person"))
    with crm.transaction(), crm.caused_by("job:rename"):
        ada = crm.customers.update(attrs.evolve(ada, name="Ada L"))
        bob = crm.customers.add(Customer(name="Bob", kind="person"))
    crm.customers.delete(bob.id)
    events = _all(crm, limit=2)
    assert [(e.position, e.aggregate, e.action, e.record_id, e.cause) for e in events] == [
        (1, "customers", "created", ada.id, "api"),
        (2, "customers", "updated", ada.id, "job:rename"),
        (3, "customers", "created", bob.id, "job:rename"),
        (4, "customers", "deleted", bob.id, "api"),
    ]
    assert events[1].before.name == "Ada" and events[1].after == ada and events[1].actor == "user:1"
    assert events[3].after is None and events[3].record.name == "Bob"
    assert events[0].after.name == "Ada" and events[0].after.version == 1  # as created, though renamed since
    assert events[2].after.name == "Bob" and events[2].before is None  # as created, though deleted since
    assert isinstance(events[0].event(crm.tenant), CustomerCreated)
    assert isinstance(events[1].event(crm.tenant), CustomerUpdated)
    assert crm.events.head() == 4
    page = crm.events.read(after=3)
    assert [e.position for e in page] == [4] and page.cursor == 4
    assert crm.events.read(after=4).events == () and crm.events.read(after=4).cursor == 4


def test_a_large_import_spreads_over_chunks_without_gaps(crm: crmkit.CRM) -> None:
    crm.customers.add_many(
        (Customer(name=f"C{i}", kind="person", external_id=f"c{i}") for i in range(1234)), batch_size=700
    )
    events = _all(crm, limit=333)
    assert [e.position for e in events] == list(range(1, 1235))
    assert [e.after.external_id for e in events] == [f"c{i}" for i in range(1234)]
    assert {e.cause for e in events} == {"import"}
    assert crm.records(OutboxChunk).count() == 4  # 500 + 200 + 500 + 34: at most 500 events a chunk
    assert [e.position for e in crm.events.stream(after=1200, batch_size=10)] == list(range(1201, 1235))


def test_the_feed_is_per_tenant_and_read_only(url: str) -> None:
    with crmkit.connect(url, tenant=unique_name("a")) as a, crmkit.connect(url, tenant=unique_name("b")) as b:
        a.customers.add(Customer(name="A", kind="person"))
        b.customers.add(Customer(name="B", kind="person"))
        b.customers.add(Customer(name="B2", kind="person"))
        assert [e.record.name for e in _all(a)] == ["A"]
        assert [(e.position, e.record.name) for e in _all(b)] == [(1, "B"), (2, "B2")]
        chunk = a.records(OutboxChunk).find().items[0]
        with pytest.raises(ConflictError, match="append-only"):
            a.records(OutboxChunk).delete(chunk.id)


def test_erasing_one_person_leaves_the_other_events_of_their_chunk_as_written(crm: crmkit.CRM) -> None:
    ana, ben = Customer(name="Ana Marker", kind="person"), Customer(name="Ben", kind="person")
    assert crm.customers.add_many([ana, ben]).added == 2
    assert len(crm.records(OutboxChunk).find().items) == 1  # one import: both events in one chunk
    crm.privacy.erase(ana.id)
    names = {e.record.id: e.record.name for e in _all(crm) if isinstance(e.record, Customer)}
    assert names[ben.id] == "Ben"  # another person's event is not anonymised with hers
    assert "Marker" not in str(names[ana.id])


def _stored_text(crm: crmkit.CRM) -> str:
    return " ".join("".join(p.text for p in c.events) for c in crm.records(OutboxChunk).stream())


def test_a_creation_refers_to_its_record_and_reads_back_as_it_was_created(url: str) -> None:
    tenant = unique_name("refs")
    with crmkit.connect(url, tenant=tenant, actor="user:1") as crm:
        people = [Customer(name=n, kind="person", external_id=n.lower()) for n in ("Ada", "Bob", "Cy", "Dan")]
        assert crm.customers.add_many(people).added == 4
        (chunk,) = crm.records(OutboxChunk).find().items
        assert chunk.records == frozenset() and chunk.size == 4
        assert not any(name in _stored_text(crm) for name in ("Ada", "Bob", "Cy", "Dan"))  # no copy of the values
        ada, bob, cy, dan = (crm.customers.get(p.id) for p in people)
        with crm.transaction():
            eve = crm.customers.add(Customer(name="Eve", kind="person"))
            crm.customers.update(attrs.evolve(eve, name="Eve 2"))  # changed in the transaction that created it
        crm.customers.update(attrs.evolve(bob, name="Bob 2"))
        crm.customers.update(attrs.evolve(crm.customers.get(bob.id), name="Bob 3"))
        crm.customers.delete(cy.id)
        journal = crm._journal
        assert journal is not None
        journal.feed = False  # as a connection with event_feed=False would (memory:// is one connection's)
        crm.customers.update(attrs.evolve(dan, name="Dan 2"))  # no event in the feed
        journal.feed = True
        events = _all(crm, limit=3)
        audited, journal.audited = journal.audited, {}  # as a connection with audit=False would
        untraced = {e.record_id: e.after for e in _all(crm) if e.action == "created"}
        journal.audited = audited
    assert untraced[dan.id].name == "Dan 2"  # no trail to replay: the record as it is now stands for it
    created = {e.record_id: e.after for e in events if e.action == "created"}
    assert created[dan.id] == dan
    assert [(e.action, e.record.name) for e in events] == [
        ("created", "Ada"),
        ("created", "Bob"),
        ("created", "Cy"),
        ("created", "Dan"),  # changed without the feed since: the audit trail replays it as created
        ("created", "Eve"),
        ("updated", "Eve 2"),
        ("updated", "Bob 2"),
        ("updated", "Bob 3"),
        ("deleted", "Cy"),
    ]
    assert created[ada.id] == ada and created[bob.id] == bob and created[cy.id] == cy
    assert (created[eve.id].name, created[eve.id].version) == ("Eve", 1)
    assert [(e.before.name, e.before.version) for e in events if e.action == "updated"] == [
        ("Eve", 1),
        ("Bob", 1),
        ("Bob 2", 2),
    ]
    assert {e.actor for e in events} == {"user:1"} and {e.cause for e in events} == {"import", "api"}


@pytest.mark.parametrize("batch", [1, BATCHED], ids=["alone", "in-a-batch"])
def test_a_creation_reads_as_its_own_life_when_the_id_was_deleted_and_created_again(url: str, batch: int) -> None:
    """A record deleted and created again under the same id is stored at version 1 again: its
    first creation must still read as the first life, and the second as the second."""
    clock = Clock(dt.datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=dt.timezone.utc))
    with crmkit.connect(url, tenant=unique_name("lives"), actor="user:1", clock=clock) as crm:
        people = [Customer(name=f"P{i}", kind="person") for i in range(batch)]
        assert crm.customers.add_many(people).added == batch
        first = crm.customers.get(people[-1].id)
        clock.tick()
        crm.customers.delete(first.id)
        clock.tick()
        again = crm.customers.add(Customer(name="Second life", kind="person", id=first.id))
        assert again.version == first.version == 1
        events = [e for e in _all(crm, limit=50) if e.record_id == first.id]
        assert [(e.action, e.before and e.before.name, e.after and e.after.name) for e in events] == [
            ("created", None, first.name),
            ("deleted", first.name, None),
            ("created", None, "Second life"),
        ]
        assert events[0].after == first and events[2].after == again
        assert events[0].after.created_at == first.created_at != again.created_at
        clock.tick()
        renamed = crm.customers.update(attrs.evolve(again, name="Second life, renamed"))
        events = [e for e in _all(crm, limit=50) if e.record_id == first.id]
    assert [e.after for e in events] == [first, None, again, renamed]


def test_chunks_holding_whole_records_still_read(crm: crmkit.CRM) -> None:
    """Chunks written when every event held its records whole (before and after) read as they did."""
    import json

    from crmkit.audit._journal import encode_record
    from crmkit.audit._model import split

    ada = Customer(name="Ada", kind="person", version=1)
    renamed = attrs.evolve(ada, name="Ada L", version=2)
    now = crm.now()
    items = [
        {
            "aggregate": "customers",
            "action": action,
            "id": ada.id.hex,
            "at": now.isoformat(),
            "actor": "u",
            "cause": "api",
            "before": before,
            "after": after,
        }
        for action, before, after in (
            ("created", None, encode_record(ada)),
            ("updated", encode_record(ada), encode_record(renamed)),
            ("deleted", encode_record(renamed), None),
        )
    ]
    chunk = OutboxChunk(committed_at=now, size=3, records=frozenset({str(ada.id)}), events=split(json.dumps(items)))
    crm.store.repository(crm.schema.spec(OutboxChunk)).insert(
        crm.tenant, [attrs.evolve(chunk, created_at=now, updated_at=now, version=1)]
    )
    events = _all(crm)
    assert [(e.action, e.before, e.after) for e in events] == [
        ("created", None, ada),
        ("updated", ada, renamed),
        ("deleted", renamed, None),
    ]


def test_erasure_reaches_a_creation_and_the_updates_after_it(crm: crmkit.CRM) -> None:
    from crmkit import EmailAddress

    ana = crm.customers.add(Customer(name="Ana Marker", kind="person", emails=(EmailAddress("marker@example.org"),)))
    ana = crm.customers.update(attrs.evolve(ana, name="Ana Marker Two"))
    crm.customers.update(attrs.evolve(ana, emails=(EmailAddress("marker.two@example.org"),)))
    assert "marker" in _stored_text(crm).lower()
    crm.privacy.erase(ana.id)
    assert "marker" not in _stored_text(crm).lower()
    events = _all(crm)
    assert [e.action for e in events if e.aggregate == "customers"] == ["created", "updated", "updated"]
    assert events[-1].aggregate == "privacy_erasures"  # the erasure's own record
    for event in events:
        for record in (event.before, event.after):
            assert "marker" not in repr(record).lower()


def test_no_feed_when_turned_off(url: str) -> None:
    with crmkit.connect(url, tenant=unique_name("off"), event_feed=False) as crm:
        ada = crm.customers.add(Customer(name="Ada", kind="person"))
        assert crm.events.read().events == () and crm.events.head() == 0
        assert len(list(crm.audit.history(ada))) > 0  # the audit trail is kept apart


_WRITER = textwrap.dedent(
    """
    import sys

    import attrs

    import crmkit
    from crmkit import Customer

    url, tenant = sys.argv[1], sys.argv[2]
    with crmkit.connect(url, tenant=tenant, actor="writer") as crm:
        for i in range(100000):
            with crm.transaction():
                c = crm.customers.add(Customer(name=f"C{i}", kind="person", external_id=f"w{i}"))
                if i % 3 == 0:
                    crm.customers.update(attrs.evolve(c, owner="x"))
            print(i, flush=True)
    """
)


def test_a_writer_killed_mid_stream_loses_no_committed_change(durable_url: str) -> None:
    tenant = unique_name("killed")
    with crmkit.connect(durable_url, tenant=tenant) as crm:
        crm.migrate()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, durable_url, tenant],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    confirmed: list[int] = []
    try:
        assert writer.stdout is not None
        deadline = time.monotonic() + 120
        while len(confirmed) < 40 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            confirmed.append(int(line))
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # by its pid, mid-stream: no after-commit hook, no clean exit
        writer.wait(timeout=60)
    assert len(confirmed) >= 40, writer.stderr.read() if writer.stderr else ""
    with crmkit.connect(durable_url, tenant=tenant) as crm:
        events = _all(crm, limit=17)
        stored = {c.external_id: c for c in crm.customers.stream()}
        created = [e.after.external_id for e in events if e.action == "created"]
        updated = [e.after.external_id for e in events if e.action == "updated"]
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    assert len(created) == len(set(created)), "a change is in the feed twice"
    assert set(created) == set(stored), "the feed and the committed records differ"
    assert {f"w{i}" for i in confirmed} <= set(created)  # every commit the writer saw is there
    assert set(updated) == {k for k, c in stored.items() if c.version == 2}
    assert created == sorted(created, key=lambda k: int(k[1:])), "the feed is not in commit order"


def test_concurrent_writers_get_numbers_in_commit_order(durable_url: str) -> None:
    """Two writers commit at once while two readers follow the feed: each sees every number once, in order."""
    tenant = unique_name("racing")
    with crmkit.connect(durable_url, tenant=tenant) as crm:
        crm.customers.add(Customer(name="first", kind="person"))
    per_writer = 40
    errors: list[BaseException] = []
    done = threading.Event()

    def write(name: str) -> None:
        try:
            with crmkit.connect(durable_url, tenant=tenant) as crm:
                for i in range(per_writer):  # no retries: writers never clash over the feed
                    with crm.transaction():
                        crm.customers.add(Customer(name=f"{name}{i}", kind="person", external_id=f"{name}{i}"))
                        crm.customers.add(Customer(name=f"{name}{i}b", kind="person"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    seen: dict[str, list[FeedEvent]] = {"r1": [], "r2": []}

    def follow(reader: str) -> None:
        try:
            with crmkit.connect(durable_url, tenant=tenant) as crm:
                cursor = 0
                while True:
                    finished = done.is_set()
                    page = crm.events.read(after=cursor, limit=5)  # both readers number new chunks as they go
                    seen[reader].extend(page.events)
                    cursor = page.cursor
                    if finished and not page.events:
                        return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in ("x", "y")]
    readers = [threading.Thread(target=follow, args=(r,)) for r in seen]
    for t in (*writers, *readers):
        t.start()
    for t in writers:
        t.join(timeout=300)
    done.set()
    for t in readers:
        t.join(timeout=300)
    assert not errors, errors
    total = 1 + 2 * 2 * per_writer
    first, second = seen["r1"], seen["r2"]
    assert [e.position for e in first] == list(range(1, total + 1)), "a follower skipped or repeated events"
    assert [(e.position, e.record_id) for e in first] == [(e.position, e.record_id) for e in second]
    names = [e.record.name for e in first]
    for writer in ("x", "y"):  # each writer's transactions in the order it committed them, both events together
        mine = [n for n in names if n.startswith(writer)]
        assert mine == [f"{writer}{i}{s}" for i in range(per_writer) for s in ("", "b")]


def test_the_journals_generated_encoder_writes_crmkits_record_codec() -> None:
    """The feed's per-class encoder gives what ``crmkit.identity._codec.encode`` gives, for every kind of value."""
    import datetime as dt
    from decimal import Decimal

    from crmkit import EmailAddress, Phone, PostalAddress, Transaction
    from crmkit.audit._journal import encode_record
    from crmkit.identity._codec import decode, encode

    when = dt.datetime(2026, 5, 1, 9, 30, 15, 123456, tzinfo=dt.timezone.utc)
    ada = Customer(
        kind="person",
        name="Ada \u0218tefan",
        emails=(EmailAddress("ada@example.org"),),
        phones=(Phone("+49 30 1234567"),),
        addresses=(PostalAddress(("Main St 1",), city="Berlin", postal_code="10115", country="DE"),),
        tags=frozenset({"b", "a"}),
        attributes={"tier": 2, "score": 0.5, "since": dt.date(2020, 1, 2), "at": when},
        external_id="c1",
        created_at=when,
        updated_at=when,
        version=3,
    )
    sale = Transaction(customer_id=ada.id, occurred_at=when, amount=Decimal("10.500"), currency="EUR")
    for record in (ada, sale, attrs.evolve(ada, owner="user:1", external_id=None)):
        assert encode_record(record) == encode(record)
        assert decode(encode_record(record)) == record

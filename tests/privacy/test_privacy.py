"""Export and erase a person everywhere, on every backend, proven with planted markers.

A unique marker goes into every personal field of a record of every registered aggregate
(built from the declarations, references pointing at the person), and into the person's
customer record through ``crm.customers`` so the identity keys it derives carry markers
too. The export must hold every marker; after the erase a raw scan of the store, through
the driver and not crmkit (every table and column, every collection and document, the
memory store's internals; on SQLite the database file's bytes), must find none, while the
business facts (how many records, the amounts) stay as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from crmkit_subscriptions import Subscription
from tests.support.backends import BACKENDS, backend_url

import crmkit
from crmkit import schema
from crmkit._errors import NotFound
from crmkit.audit import BATCH
from crmkit.audit._journal import BATCHED
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.interactions import Interaction
from crmkit.privacy import Erasure, ErasureRefused, Hold
from crmkit.relationships import Relationship
from crmkit.schema import AggregateSpec, FieldDef, Ref
from crmkit.testing.aggregates import Targets, example_record, example_value_object
from crmkit.testing.probe import ProbeLinksPlugin
from crmkit.transactions import Transaction

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class _Declares:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Subscription]


PLUGINS = (ProbeLinksPlugin(), _Declares())


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("privacy"))


def connect(url: str, **options: Any) -> crmkit.CRM:
    tenant = f"privacy-{uuid.uuid4().hex[:16]}"
    return crmkit.connect(url, tenant=tenant, plugins=PLUGINS, clock=lambda: NOW, actor="user:dpo", **options)


# --------------------------------------------------------------------------- markers


class Markers:
    """Unique texts planted in personal fields; ``found(text)`` says which of them a text holds."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.planted: dict[str, str] = {}  # marker -> where

    def new(self, where: str) -> str:
        marker = f"{self.prefix}{secrets.token_hex(6)}"
        self.planted[marker] = where
        return marker

    def digits(self, where: str) -> str:
        marker = "9" + "".join(str(secrets.randbelow(10)) for _ in range(10))
        self.planted[marker] = where
        return marker

    def found(self, text: str) -> set[str]:
        return {m for m in self.planted if m in text}


def _text_value(cls: type, fd: FieldDef, markers: Markers, where: str) -> Any:
    """A marked value the field's own checks accept (plain, an e-mail address or a phone number)."""
    convert = attrs.fields_dict(cls)[fd.name].converter
    assert callable(convert)
    for make in (
        lambda: markers.new(where),
        lambda: f"{markers.new(where)}@example.org",
        lambda: f"+49{markers.digits(where)}",
    ):
        value = make()
        try:
            return convert(value)
        except crmkit.ValidationError:
            continue
    raise AssertionError(f"{where}: no marked value passes the field's check")


def marked(cls: type, fd: FieldDef, markers: Markers, where: str) -> Any:
    """A value of a personal field that carries markers (in every personal part of a value object)."""
    if fd.kind == "text":
        if fd.choices is not None:
            raise AssertionError(f"{where}: a personal field with fixed choices cannot carry a marker")
        return _text_value(cls, fd, markers, where)
    if fd.kind == "text_list":
        return (markers.new(where),)
    if fd.kind == "text_set":
        return frozenset({markers.new(where)})
    if fd.kind == "attributes":
        return {"note": markers.new(where)}
    if fd.kind == "many":
        item = example_value_object(fd.type, 1)
        changes = {
            inner.name: marked(fd.type, inner, markers, f"{where}.{inner.name}")
            for inner in schema.declared_fields(fd.type)
            if inner.is_personal
        }
        return (attrs.evolve(item, **changes),)
    raise AssertionError(f"{where}: no marker for a personal {fd.kind} field")


def _order(specs: Iterable[AggregateSpec]) -> list[AggregateSpec]:
    """Declared aggregates, each after the aggregates its required references need."""
    pending = {s.name: s for s in specs}
    done: list[AggregateSpec] = []
    while pending:
        ready = [
            s
            for s in pending.values()
            if all(
                r.nullable or r.target in (None, "customers", s.name) or r.target not in pending for r in s.references
            )
        ]
        assert ready, f"reference cycle among {sorted(pending)}"
        for s in ready:
            done.append(pending.pop(s.name))
    return done


def plant(crm: crmkit.CRM, markers: Markers, n: int = 1, *, batch: int = 0) -> uuid.UUID:
    """A person with a marker in every personal field of a record of every aggregate about them.

    ``batch``: the person is created by ``add_many`` with that many others (from
    ``crmkit.audit.BATCHED`` on, their creations share audit entries).
    """
    mark = markers.new
    fellows = [Customer(kind="person", name=f"Fellow {i}", external_id=f"fellow-{n}-{i}") for i in range(batch)]
    person = Customer(
        kind="person",
        name=f"Ada {mark('customers.name')}",
        emails=(EmailAddress(f"{mark('customers.emails')}@example.org", consent=(Consent("email", True, NOW),)),),
        phones=(Phone(f"+49 {markers.digits('customers.phones')}"),),
        addresses=(
            PostalAddress(
                (mark("customers.addresses.lines"),),
                city=mark("customers.addresses.city"),
                postal_code=mark("customers.addresses.postal_code"),
                region=mark("customers.addresses.region"),
                country="DE",
            ),
        ),
        handles=(Handle("x", mark("customers.handles")),),
        attributes={"nickname": mark("customers.attributes")},
        external_id=f"person-{n}",
    )
    if batch:
        assert crm.customers.add_many([*fellows[: batch // 2], person, *fellows[batch // 2 :]]).added == batch + 1
        person = crm.customers.get_by_external_id(f"person-{n}")
    else:
        person = crm.customers.add(person)
    # renamed: the old name is kept only by the audit trail's update entry (a creation copies no values)
    person = crm.customers.update(attrs.evolve(person, name=f"Ada L {mark('customers.name.renamed')}"))
    company = crm.customers.add(Customer(kind="organization", name="Analytical Engines Ltd"))
    crm.relationships.add(
        Relationship(
            person.id, company.id, "works_for", role=mark("relationships.role"), attributes={"n": mark("r.attributes")}
        )
    )
    crm.interactions.add(
        Interaction(
            customer_id=person.id,
            channel="email",
            direction="inbound",
            occurred_at=NOW,
            subject=mark("interactions.subject"),
            summary=mark("interactions.summary"),
            participants=frozenset({mark("interactions.participants")}),
            attributes={"mood": mark("interactions.attributes")},
        )
    )
    crm.transactions.add(
        Transaction(
            customer_id=person.id,
            occurred_at=NOW,
            amount=Decimal("120.50"),
            currency="EUR",
            attributes={"card": mark("transactions.attributes")},
        )
    )
    crm.lifecycle.move(person.id, "customer", reason=mark("state_changes.reason"))
    about: dict[str, uuid.UUID] = {"customers": person.id}
    for spec in _order(crm.schema.derived.values()):
        if getattr(spec.cls, "__crmkit_append_only__", False):
            continue  # the audit trail and the feed: crmkit writes them, with the markers of every write above
        overrides: dict[str, Any] = {}
        reachable = False
        for fd in spec.declared.values():
            where = f"{spec.name}.{fd.name}"
            if fd.kind == "ref" and fd.required and fd.target and fd.target not in about:
                # a record about no person (a segment, a campaign) that this one needs
                held = Targets({name: (id,) for name, id in about.items()})
                target = crm.schema.declared[fd.target]
                about[fd.target] = crm.records(fd.target).add(example_record(target, n, targets=held)).id
            if fd.kind == "ref" and fd.target in about:
                overrides[fd.name] = about[fd.target]  # type: ignore[index]
                reachable = True
            elif fd.kind == "ref_any":
                overrides[fd.name] = Ref("customers", person.id)
                reachable = True
            elif fd.is_personal:
                overrides[fd.name] = marked(spec.cls, fd, markers, where)
        for field, target in getattr(spec.cls, "__crmkit_mentions__", {}).items():
            if target == "customers":
                kind = spec.declared[field].kind
                overrides[field] = frozenset({str(person.id)}) if kind == "text_set" else person.id
                reachable = True
        if spec.cls is Hold:
            overrides["until"] = dt.date(2020, 1, 1)  # ended: it must not stop the erase
        if not reachable:
            personal = [fd.name for fd in spec.declared.values() if fd.is_personal]
            assert not personal, f"{spec.name} holds personal data ({personal}) but cannot refer to a person"
            continue
        targets = Targets({name: (id,) for name, id in about.items()})
        record = crm.records(spec.name).add(example_record(spec, n, targets=targets, **overrides))
        about.setdefault(spec.name, record.id)
    return person.id


# --------------------------------------------------------------------------- raw scans


def _strings(value: Any, seen: set[int], depth: int = 0) -> Iterator[str]:
    """Every text reachable from an object (the memory store's rows, indexes and keys)."""
    if depth > 40 or id(value) in seen:
        return
    if isinstance(value, str):
        yield value
        return
    if isinstance(value, (int, float, Decimal, uuid.UUID, dt.date, bytes, type(None))):
        return
    seen.add(id(value))
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k, seen, depth + 1)
            yield from _strings(v, seen, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v, seen, depth + 1)
    elif attrs.has(type(value)):
        for a in attrs.fields(type(value)):
            yield from _strings(getattr(value, a.name), seen, depth + 1)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("crmkit"):
        yield from _strings(vars(value), seen, depth + 1)


def raw_dump(crm: crmkit.CRM, url: str) -> str:
    """Everything the store holds, read through the driver (or the memory store's internals)."""
    if url.startswith("memory://"):
        return "\n".join(_strings(crm.store, set()))
    if url.startswith("mongodb://"):
        import pymongo

        with pymongo.MongoClient(url, serverSelectionTimeoutMS=20_000) as client:
            db = client[crm.store.db.name]  # type: ignore[attr-defined]
            return "\n".join(repr(doc) for name in db.list_collection_names() for doc in db[name].find({}))
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return "\n".join(repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(repr(row) for table in meta.sorted_tables for row in conn.execute(sa.select(table)))
    finally:
        engine.dispose()


def business_facts(crm: crmkit.CRM) -> dict[str, Any]:
    """What an erase must keep: how many records of each aggregate, and the money."""
    facts: dict[str, Any] = {name: crm.records(name).count() for name in crm.schema}
    facts["revenue"] = crm.transactions.aggregate(sum="amount").rows[0]["sum(amount)"]
    return facts


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("batch", [0, BATCHED], ids=["alone", "in-a-batch"])
def test_export_finds_every_marker_and_erase_leaves_none(url: str, batch: int) -> None:
    """``batch``: the person is created by one ``add_many`` with others, so their creation's
    audit entry is shared with the others' (``crmkit.audit.BATCH``)."""
    markers, others = Markers("zqa"), Markers("zqb")
    with connect(url) as crm:
        person = plant(crm, markers, batch=batch)
        plant(crm, others, 4)  # another person with the same kinds of records
        aggregates = {
            name for name, spec in crm.schema.declared.items() if any(f.is_personal for f in spec.declared.values())
        }

        data = crm.privacy.export(person)
        text = json.dumps(data)
        created = [
            e for e in data["records"]["audit_entries"] if e["aggregate"] == "customers" and e["action"] == "created"
        ]
        # the person's creation entry, as theirs even when shared with the batch (no other record's id)
        assert [(e["record_id"], e["actor"], e["cause"], e["at"], e["new"]) for e in created] == [
            (str(person), "user:dpo", "import" if batch else "api", NOW.isoformat(), [])
        ]
        fellows = [c.id for c in crm.customers.find(crmkit.F("name").startswith("Fellow "), limit=None)]
        assert len(fellows) == batch and not any(str(i) in text or i.hex in text for i in fellows)
        shared = list(crm.records("audit_entries").find(crmkit.F("record_id") == BATCH))
        assert len(shared) == (1 if batch else 0)
        assert markers.found(text) == set(markers.planted), "missing: " + ", ".join(
            sorted(markers.planted[m] for m in set(markers.planted) - markers.found(text))
        )
        assert others.found(text) == set()
        assert aggregates <= set(data["records"]), aggregates - set(data["records"])
        assert data["consents"][0]["channel"] == "email" and data["consents"][0]["granted"] is True

        before = business_facts(crm)
        plan = crm.privacy.erase(person, dry_run=True)
        assert plan.dry_run and plan.changes
        unchanged = raw_dump(crm, url)  # a dry run writes nothing
        assert markers.found(unchanged) == set(markers.planted), "not seen: " + ", ".join(
            sorted(markers.planted[m] for m in set(markers.planted) - markers.found(unchanged))
        )
        assert crm.privacy.export(person)["records"] == data["records"]

        report = crm.privacy.erase(person)
        assert [c.to_json() for c in report.changes] == [c.to_json() for c in plan.changes]
        assert {a for a, _ in report.records} >= aggregates - {"privacy_holds", "privacy_erasures"}
        assert crm.privacy.erase(person).changes == ()  # nothing left to erase
        after = business_facts(crm)
        expected = {**before, "privacy_erasures": before["privacy_erasures"] + 2}
        for journal in ("audit_entries", "event_outbox"):  # each erasure record is audited and in the feed
            if journal in before:
                expected[journal] = before[journal] + 2
        for name in ("documents", "document_versions", "document_blobs", "document_blob_chunks"):
            if name in before:  # the document attached to the person goes, with its version and its content
                expected[name] = before[name] - 1
        assert after == expected

        dump = raw_dump(crm, url)
        assert markers.found(dump) == set(), "left: " + ", ".join(
            sorted(markers.planted[m] for m in markers.found(dump))
        )
        assert others.found(dump) == set(others.planted)  # the other person is untouched
        # the trail still tells the person's life from its creation, with the erased values
        history = list(crm.audit.history(("customers", person)))
        first = {c.field: c.new for c in history if c.action == "created"}
        assert history[0].action == "created" and history[0].cause == ("import" if batch else "api")
        assert first["name"].startswith("erased-") and first["kind"] == "person"
        then = crm.audit.as_of(("customers", person), at=NOW)
        assert then is not None and then.name == crm.customers.get(person).name and not markers.found(repr(then))

        erasures = list(crm.records(Erasure).find((crmkit.F("person_id") == person) & (crmkit.F("erased_at") == NOW)))
        assert [(e.actor, e.erased_at) for e in erasures] == [("user:dpo", NOW)] * 2
        assert erasures[0].records == len(report.records) and erasures[0].fields == len(report.changes)
        json.dumps(report.to_json())
        if url.startswith("sqlite:///"):  # this Python's SQLite may default to it; crmkit asks either way
            with crm.store.engine.connect() as conn:  # type: ignore[attr-defined]
                assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        assert not Path(f"{path}-wal").exists()  # the last connection folded the log into the file
        raw = path.read_bytes().decode("utf-8", errors="replace")  # free pages included
        assert markers.found(raw) == set(), "in the file: " + ", ".join(sorted(markers.found(raw)))
        assert others.found(raw) == set(others.planted)


def test_a_retention_hold_refuses_the_erase_until_it_ends(url: str) -> None:
    days = [NOW]
    with crmkit.connect(url, tenant=f"privacy-{uuid.uuid4().hex[:16]}", plugins=PLUGINS, clock=lambda: days[0]) as crm:
        bob = crm.customers.add(Customer(kind="person", name="Bob Roberts"))
        held = crm.privacy.hold(bob.id, until=dt.date(2033, 12, 31), reason="tax records")
        assert crm.privacy.holds(bob.id) == [held]
        for dry_run in (True, False):
            with pytest.raises(ErasureRefused, match=r"until 2033-12-31 \(tax records\)") as refused:
                crm.privacy.erase(bob.id, dry_run=dry_run)
            assert refused.value.until == dt.date(2033, 12, 31)
        assert crm.customers.get(bob.id).name == "Bob Roberts"
        assert crm.records(Erasure).count() == 0
        assert crm.privacy.export(bob.id)["records"]["privacy_holds"][0]["reason"] == "tax records"

        days[0] = dt.datetime(2034, 1, 1, tzinfo=UTC)
        assert crm.privacy.holds(bob.id) == [] and crm.privacy.holds(bob.id, active=False) == [held]
        report = crm.privacy.erase(bob.id)
        assert [(c.aggregate, c.field, c.action) for c in report.changes] == [
            ("customers", "name", "replaced"),
            ("identity_keys", "key", "replaced"),  # the name's blocking key (an audited creation keeps none)
        ]  # nor does the feed: its creation event refers to the record, which the erasure anonymised
        assert re.fullmatch(r"erased-[0-9a-f]{12}", crm.customers.get(bob.id).name)


def test_erase_is_one_transaction(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    markers = Markers("zqc")
    with connect(url) as crm:
        person = plant(crm, markers)
        before = crm.privacy.export(person)["records"]
        from crmkit.privacy import _service

        calls = []
        real = _service._anonymised

        def failing(spec: AggregateSpec, record: Any, crm: Any = None, erased: Any = ()) -> Any:
            calls.append(spec.name)
            return real(spec, record, crm, erased)

        monkeypatch.setattr(_service, "_anonymised", failing)
        monkeypatch.setattr(crm.records(Erasure), "add", _boom)
        with pytest.raises(RuntimeError, match="disk full"):
            crm.privacy.erase(person)
        assert calls  # the records were anonymised, then the write failed
        assert crm.privacy.export(person)["records"] == before
        assert markers.found(raw_dump(crm, url)) == set(markers.planted)


def _boom(record: Any) -> Any:
    raise RuntimeError("disk full")


def test_an_export_shows_only_the_persons_events_of_a_transaction_shared_with_others(url: str) -> None:
    """A feed chunk is one transaction's events: an import that changed two people's records holds both."""
    markers, others = Markers("zqf"), Markers("zqg")
    with connect(url) as crm:
        ada = crm.customers.add(Customer(kind="person", name=markers.new("ada")))
        bob = crm.customers.add(Customer(kind="person", name=others.new("bob")))
        with crm.transaction():
            crm.customers.update(attrs.evolve(ada, name=markers.new("ada renamed")))
            crm.customers.update(attrs.evolve(bob, name=others.new("bob renamed")))
        shared = [c for c in crm.records("event_outbox").scan() if c.size == 2]
        assert len(shared) == 1 and others.found(repr(shared)) == set(others.planted)  # both are in the chunk
        data = crm.privacy.export(ada.id)
        text = json.dumps(data)
        assert markers.found(text) == set(markers.planted) and others.found(text) == set()
        assert str(bob.id) not in text and bob.id.hex not in text
        (chunk,) = [c for c in data["records"]["event_outbox"] if c["id"] == str(shared[0].id)]
        assert (chunk["size"], chunk["records"]) == (1, [str(ada.id)])


def test_export_of_an_unknown_person_is_not_found() -> None:
    with connect("memory://") as crm:
        with pytest.raises(NotFound):
            crm.privacy.export(uuid.uuid4())
        with pytest.raises(crmkit.ValidationError, match="person_id"):
            crm.privacy.export("ada")  # type: ignore[arg-type]


def test_merged_duplicates_are_one_person_and_unmerge_still_works(url: str) -> None:
    markers = Markers("zqd")
    with connect(url) as crm:
        ada = crm.customers.add(
            Customer(
                kind="person",
                name=f"Ada {markers.new('survivor.name')}",
                emails=(EmailAddress(f"{markers.new('survivor.email')}@example.org"),),
            )
        )
        twin = crm.customers.add(
            Customer(
                kind="person",
                name=f"Ada L. {markers.new('duplicate.name')}",
                emails=(EmailAddress(f"{markers.new('duplicate.email')}@example.org"),),
                attributes={"source": markers.new("duplicate.attributes")},
            )
        )
        crm.interactions.add(
            Interaction(
                customer_id=twin.id,
                channel="email",
                direction="inbound",
                occurred_at=NOW,
                summary=markers.new("duplicate.interaction"),
            )
        )
        merge = crm.identity.merge(ada.id, [twin.id])

        for someone in (ada.id, twin.id):  # either id names the one person
            text = json.dumps(crm.privacy.export(someone))
            assert markers.found(text) == set(markers.planted)

        crm.privacy.erase(twin.id)
        assert markers.found(raw_dump(crm, url)) == set()
        undone = crm.identity.unmerge(merge.id)
        assert undone is not None
        assert markers.found(raw_dump(crm, url)) == set()
        assert crm.customers.get(twin.id).name.startswith("erased-")
        assert crm.interactions.count(crmkit.F("customer_id") == twin.id) == 1


@schema.aggregate("crmkit_test_journal", indexes=[("aggregate", "record_id")])
class JournalEntry(schema.Record):
    """An audit-like entry: a value of one field of any record, personal when that field is."""

    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"record_id": "@aggregate"}

    aggregate: str = schema.text(personal=False)
    record_id: uuid.UUID = schema.uuid(personal=False)
    field: str = schema.text(personal=False)
    value: str = schema.text(personal="free_text")

    @staticmethod
    def __crmkit_anonymise__(entry: JournalEntry, crm: crmkit.CRM, erased: object) -> JournalEntry:
        spec = crm.schema[entry.aggregate]
        declared = spec.declared.get(entry.field) if isinstance(spec, AggregateSpec) else None
        if declared is None or not declared.is_personal:
            return entry  # a business fact: kept
        return attrs.evolve(entry, value="erased")


@schema.aggregate("crmkit_test_feed")
class FeedChunk(schema.Record):
    """An outbox-like chunk: events of any records, found by the ids it lists."""

    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"ids": "*"}

    ids: frozenset[str] = schema.text_set(personal=False)
    payload: str = schema.text(personal="free_text")


class _Journal:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [JournalEntry, FeedChunk]


def test_history_kept_by_aggregate_and_id_is_reached_and_keeps_business_facts(url: str) -> None:
    markers = Markers("zqe")
    tenant = f"privacy-{uuid.uuid4().hex[:16]}"
    with crmkit.connect(url, tenant=tenant, plugins=(*PLUGINS, _Journal()), clock=lambda: NOW) as crm:
        ada = crm.customers.add(Customer(kind="person", name=markers.new("name")))
        bought = crm.transactions.add(
            Transaction(customer_id=ada.id, occurred_at=NOW, amount=Decimal("120.50"), currency="EUR")
        )
        journal = crm.records(JournalEntry)
        named = journal.add(
            JournalEntry(aggregate="customers", record_id=ada.id, field="name", value=markers.new("old"))
        )
        paid = journal.add(JournalEntry(aggregate="transactions", record_id=bought.id, field="amount", value="120.50"))
        unrelated = journal.add(
            JournalEntry(aggregate="interactions", record_id=bought.id, field="summary", value=markers.new("x"))
        )
        chunk = crm.records(FeedChunk).add(
            FeedChunk(ids=frozenset({str(bought.id), str(uuid.uuid4())}), payload=markers.new("payload"))
        )

        data = crm.privacy.export(ada.id)
        assert {r["id"] for r in data["records"]["crmkit_test_journal"]} == {str(named.id), str(paid.id)}
        assert [r["id"] for r in data["records"]["crmkit_test_feed"]] == [str(chunk.id)]

        report = crm.privacy.erase(ada.id)
        assert ("crmkit_test_journal", named.id) in report.records and (
            "crmkit_test_journal",
            paid.id,
        ) not in report.records
        assert journal.get(named.id).value == "erased" and journal.get(paid.id).value == "120.50"
        assert journal.get(unrelated.id).value == unrelated.value  # another aggregate's record with the same id
        assert markers.found(raw_dump(crm, url)) == {unrelated.value}


def test_every_read_of_the_walk_is_a_filter_on_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export and erase never read a whole table: each query names the ids it looks for."""
    from crmkit.backends.memory import MemoryRepository
    from crmkit.query import Compare, Contains, In, Or, conjuncts

    reads: list[tuple[str, Any]] = []
    real_find = MemoryRepository.find

    def find(self: MemoryRepository, tenant: str, where: Any, order: Any, limit: int | None) -> list[Any]:
        reads.append((self.spec.name, where))
        return real_find(self, tenant, where, order, limit)

    def by_id(where: Any) -> bool:
        if isinstance(where, Or):
            return all(by_id(part) for part in where.items)
        if isinstance(where, (In, Contains)):
            return True
        return isinstance(where, Compare) and where.op == "==" and isinstance(where.value, uuid.UUID)

    with connect("memory://") as crm:
        person = plant(crm, Markers("zqf"))
        plant(crm, Markers("zqg"), 4)
        monkeypatch.setattr(MemoryRepository, "find", find)
        crm.privacy.export(person)
        crm.privacy.erase(person)
    assert len(reads) > 20
    unfiltered = [name for name, where in reads if not any(by_id(part) for part in conjuncts(where))]
    assert unfiltered == [], unfiltered

"""Declared aggregates on MongoDB: documents, indexes, queries and deletes derived from the declaration alone.

The probe (one field of every kind), the example plugin's ``Subscription`` and a small
aggregate of this module with nested value objects and a nullable key part are stored
with no MongoDB code of their own; every answer is compared with the reference store.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from bson import Decimal128, Int64
from crmkit_mongo._filters import for_tenant, sort_spec, translate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import ConflictError, Customer, F, Interaction, schema
from crmkit._host import PluginHost
from crmkit.crm import CRM
from crmkit.hookspecs import hookimpl
from crmkit.query import And, Compare, Not, Or, keyset_after, parse_order
from crmkit.testing import strategies as cst
from crmkit.testing.probe import Probe, ProbeColour, ProbePart

try:
    from crmkit_subscriptions import Seat, Status, Subscription
except ImportError:  # the example plugin is not installed: use it from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "subscriptions" / "src"))
    from crmkit_subscriptions import Seat, Status, Subscription

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)


@schema.value_object
class Leaf:
    word: str = schema.text()
    tags: frozenset[str] = schema.text_set(default=frozenset())


@schema.value_object
class Box:
    name: str = schema.text()
    leaves: tuple[Leaf, ...] = schema.many(Leaf, default=())
    weight: Decimal | None = schema.money(default=None)
    at: dt.datetime | None = schema.instant(default=None)
    ok: bool | None = schema.boolean(default=None)


@schema.aggregate("mongo_test_nests", unique=[("code", "day")])
class Nest(schema.Record):
    """Nested value objects, a text set that may be None, and a unique key whose second part may be None."""

    code: str = schema.text()
    day: dt.date | None = schema.date(default=None)
    tags: frozenset[str] | None = schema.text_set(default=None)
    boxes: tuple[Box, ...] = schema.many(Box, default=())


class Declared:
    @hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Probe, Subscription, Nest]


def connect(url: str, tenant: str, **options) -> CRM:
    return crmkit.connect(url, tenant=tenant, plugins=[Declared()], **options)


def fresh_tenant() -> str:
    return "d-" + uuid.uuid4().hex[:12]


@pytest.fixture
def crm(mongo_db_url: str) -> Iterator[CRM]:
    with connect(mongo_db_url, fresh_tenant()) as opened:
        yield opened


def customers(crm: CRM, n: int) -> list[Customer]:
    return [crm.customers.add(Customer(kind="person", name=f"C{i}")) for i in range(n)]


def probe(owner: Customer, code: str = "p", number: int = 1, **fields) -> Probe:
    fields.setdefault("amount", Decimal("1.00"))
    fields.setdefault("currency", "EUR")
    fields.setdefault("happened_at", T0)
    return Probe(owner_id=owner.id, code=code, number=number, **fields)


# --------------------------------------------------------------------------- CRUD, versions, documents


def test_crud_and_versions(crm):
    (ada,) = customers(crm, 1)
    probes = crm.records(Probe)
    stored = probes.add(probe(ada, note="first", external_id="ext-1"))
    assert stored.version == 1 and stored.created_at == stored.updated_at is not None
    assert probes.get(stored.id) == stored
    assert probes.get_by_external_id("ext-1") == stored
    changed = probes.update(attrs.evolve(stored, note="second", flag=True))
    assert changed.version == 2 and probes.get(stored.id) == changed
    with pytest.raises(ConflictError):
        probes.update(attrs.evolve(stored, note="stale"))
    assert probes.get(stored.id).note == "second"
    assert probes.count() == 1 and probes.count(F("flag") == True) == 1  # noqa: E712
    with pytest.raises(ConflictError):
        probes.delete(stored.id, expected_version=1)
    probes.delete(stored.id)
    assert probes.count() == 0
    with pytest.raises(crmkit.NotFound):
        probes.get(stored.id)


def test_document_shape(crm, raw_db):
    (ada,) = customers(crm, 1)
    p = crm.records(Probe).add(
        probe(
            ada,
            amount=Decimal("-0.50"),
            happened_at=dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            day=dt.date(2020, 2, 29),
            colour=ProbeColour.BLUE,
            labels={"b", "a"},
            parts=[ProbePart(label="x", amount=Decimal("2.500"), marks={"z", "y"})],
            about=schema.Ref("customers", ada.id),
            attributes={"n": 3},
        )
    )
    doc = raw_db["crmkit_probes"].find_one({"id": p.id}, {"_id": 0})
    assert list(doc)[:3] == ["tenant", "id", "owner_id"] and doc["tenant"] == crm.tenant
    assert list(doc)[-6:] == ["attributes", "created_at", "updated_at", "version", "_folded", "_words"]
    assert set(doc["_folded"]) == set(doc["_words"]) == {"code"}  # the searchable fields given a value
    assert doc["owner_id"] == ada.id and doc["about"] == {"aggregate": "customers", "id": ada.id}
    assert doc["amount"] == Decimal128("-0.50") and doc["happened_at"] == Int64(-1)
    assert doc["day"] == dt.datetime(2020, 2, 29)  # a BSON date at UTC midnight
    assert doc["colour"] == "blue" and doc["flag"] is False and doc["labels"] == ["a", "b"]
    assert doc["parts"] == [
        {"label": "x", "amount": Decimal128("2.500"), "count": 0, "flag": False, "marks": ["y", "z"]}
    ]
    assert isinstance(doc["attributes"]["n"], Int64)
    for absent in ("note", "token", "sponsor_id", "guard_id", "external_id"):
        assert absent not in doc  # None is left out


# --------------------------------------------------------------------------- exact round trips


def _optional(strategy):
    return st.none() | strategy


money = cst.money(min_value=-(Decimal(10) ** 15) + Decimal("0.000001"))
parts = st.builds(
    ProbePart,
    label=cst.texts(min_size=1, max_size=20, blank=False),
    amount=money,
    at=_optional(cst.aware_datetimes()),
    on=_optional(st.dates()),
    count=st.integers(-(2**63), 2**63 - 1),
    flag=st.booleans(),
    colour=_optional(st.sampled_from(ProbeColour)),
    token=_optional(cst.uuids()),
    marks=cst.tags(),
)


@pytest.fixture(scope="module")
def round_trip_crm(mongo_db_url: str) -> Iterator[tuple[CRM, list[Customer]]]:
    with connect(mongo_db_url, fresh_tenant()) as opened:
        yield opened, customers(opened, 3)


def _same_types(a, b) -> None:
    """Equal, with the same types all the way down (Decimal exponents and enum members included)."""
    assert a == b
    assert type(a) is type(b), (a, b)
    if isinstance(a, Decimal):
        assert str(a) == str(b)
    elif isinstance(a, dt.datetime):
        assert b.utcoffset() == dt.timedelta(0)  # read back in UTC
    elif isinstance(a, (tuple, list)):
        for x, y in zip(a, b, strict=True):
            _same_types(x, y)
    elif isinstance(a, Mapping):
        for key in a:
            _same_types(a[key], b[key])
    elif attrs.has(type(a)):
        for field in attrs.fields(type(a)):
            _same_types(getattr(a, field.name), getattr(b, field.name))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_probe_round_trips_exactly(round_trip_crm, data):
    crm, people = round_trip_crm
    pick = st.sampled_from(people).map(lambda c: c.id)
    record = data.draw(
        st.builds(
            Probe,
            owner_id=pick,
            code=cst.texts(min_size=1, max_size=30, blank=False),
            note=_optional(cst.texts(max_size=30)),
            number=st.integers(-(2**63), 2**63 - 1),
            flag=st.booleans(),
            amount=money,
            currency=cst.currencies(),
            happened_at=cst.aware_datetimes(),
            day=_optional(st.dates()),
            token=_optional(cst.uuids()),
            colour=st.sampled_from(ProbeColour),
            labels=cst.tags(),
            parts=st.lists(parts, max_size=3),
            sponsor_id=_optional(pick),
            guard_id=_optional(pick),
            about=_optional(pick.map(lambda i: schema.Ref("customers", i))),
            attributes=cst.attributes(),
            external_id=_optional(cst.external_ids()),
            created_at=_optional(cst.aware_datetimes()),
        )
    )
    probes = crm.records(Probe)
    stored = probes.add(record)
    try:
        _same_types(stored, probes.get(stored.id))
        (found,) = probes.find(F("id") == stored.id).items
        _same_types(stored, found)
        if stored.external_id is not None:
            _same_types(stored, probes.get_by_external_id(stored.external_id))
    finally:
        probes.delete(stored.id)


def test_nested_value_objects_and_a_nullable_set_round_trip(crm, raw_db):
    nests = crm.records(Nest)
    deep = Nest(
        code="deep",
        tags=frozenset(),
        boxes=(
            Box(name="b1", leaves=(Leaf(word="w", tags={"t2", "t1"}), Leaf(word="v")), weight=Decimal("0.10")),
            Box(name="b2", at=dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), ok=False),
        ),
    )
    bare = Nest(code="bare")
    for record in (deep, bare):
        stored = nests.add(record)
        _same_types(stored, nests.get(stored.id))
    assert nests.get(deep.id).tags == frozenset() and nests.get(bare.id).tags is None
    doc = raw_db["mongo_test_nests"].find_one({"id": deep.id})
    assert doc["tags"] == []  # kept, so that it does not come back as None
    assert doc["boxes"][0]["leaves"] == [{"word": "w", "tags": ["t1", "t2"]}, {"word": "v"}]
    assert doc["boxes"][1] == {"name": "b2", "at": Int64(946677600000000), "ok": False}
    assert "tags" not in raw_db["mongo_test_nests"].find_one({"id": bare.id})


def test_subscription_round_trip_and_queries(crm):
    ada, bob = customers(crm, 2)
    subs = crm.records(Subscription)
    s = subs.add(
        Subscription(
            customer_id=ada.id,
            plan="pro",
            price=Decimal("49.00"),
            currency="EUR",
            started_at=T0,
            renews_on=dt.date(2025, 5, 1),
            features={"sso", "api"},
            seats=[Seat(email="a@example.org", since=dt.date(2024, 5, 1))],
            referred_by=bob.id,
            attributes={"tier": "gold"},
        )
    )
    _same_types(s, subs.get(s.id))
    assert subs.get(s.id).status is Status.ACTIVE
    assert subs.count(F("plan") == "pro") == 1
    assert [r.id for r in subs.find(F("status") == Status.ACTIVE, order_by="-started_at", limit=20).items] == [s.id]
    assert subs.count(F("auto_renew") == True) == 1 and subs.count(F("auto_renew") != True) == 0  # noqa: E712
    assert subs.count(F("features").contains("sso")) == 1
    with pytest.raises(ConflictError) as caught:
        subs.add(Subscription(customer_id=ada.id, plan="pro", price=Decimal(1), currency="EUR", started_at=T0))
    assert caught.value.key == (ada.id, "pro")


# --------------------------------------------------------------------------- unique keys


def test_composite_unique_key_is_enforced_by_the_database(crm):
    (ada,) = customers(crm, 1)
    probes = crm.records(Probe)
    first = probes.add(probe(ada, code="k", number=7))
    with pytest.raises(ConflictError) as caught:
        probes.add(probe(ada, code="k", number=7))
    assert caught.value.key == (ada.id, "k", 7)
    assert "owner_id=" in str(caught.value) and "code='k'" in str(caught.value) and "number=7" in str(caught.value)
    # an update into the key of another record, and a batch holding the key twice, are refused too
    other = probes.add(probe(ada, code="k", number=8))
    with pytest.raises(ConflictError):
        probes.update(attrs.evolve(other, number=7))
    with pytest.raises(ConflictError):
        probes.add_many([probe(ada, code="m", number=1), probe(ada, code="m", number=1)])
    assert probes.count() == 2 and probes.get(first.id) == first
    probes.add(probe(ada, code="k", number=9))  # other values of the key are free


def test_the_memory_store_names_the_same_key(crm):
    with connect("memory://", crm.tenant) as memory:
        answers = []
        for store in (crm, memory):
            ada = store.customers.add(Customer(kind="person", name="Ada", id=uuid.UUID(int=7)))
            store.records(Probe).add(probe(ada, code="k", number=7))
            with pytest.raises(ConflictError) as caught:
                store.records(Probe).add(probe(ada, code="k", number=7))
            answers.append((caught.value.entity, caught.value.key, str(caught.value)))
        assert answers[0] == answers[1]


def test_a_key_with_a_missing_part_never_clashes(crm):
    nests = crm.records(Nest)
    nests.add(Nest(code="same"))
    nests.add(Nest(code="same"))  # day is None in both: SQL NULL semantics
    nests.add(Nest(code="same", day=dt.date(2024, 1, 1)))
    with pytest.raises(ConflictError) as caught:
        nests.add(Nest(code="same", day=dt.date(2024, 1, 1)))
    assert caught.value.key == ("same", dt.date(2024, 1, 1))
    assert nests.count() == 3


def test_unique_keys_without_transactions(mongo_db_url):
    tenant = fresh_tenant()
    with connect(mongo_db_url, tenant, transactions=False) as crm:
        (ada,) = customers(crm, 1)
        crm.records(Probe).add(probe(ada, code="k", number=1))
        with pytest.raises(ConflictError) as caught:
            crm.records(Probe).add(probe(ada, code="k", number=1))
        assert caught.value.key == (ada.id, "k", 1)
        assert crm.records(Probe).count() == 1


# --------------------------------------------------------------------------- bulk import


def test_add_many_is_idempotent_by_external_id(crm):
    people = customers(crm, 3)
    probes = crm.records(Probe)

    def batch(start: int, stop: int) -> Iterator[Probe]:
        for i in range(start, stop):
            yield probe(people[i % 3], code=f"c{i}", number=i, external_id=f"e{i}", happened_at=T0 + dt.timedelta(i))

    first = probes.add_many(batch(0, 250), batch_size=60)  # several batches: written on a helper thread
    assert (first.added, first.skipped) == (250, 0)
    again = probes.add_many(batch(100, 300), batch_size=60)
    assert (again.added, again.skipped) == (50, 150)
    assert probes.count() == 300
    assert probes.get_by_external_id("e299").number == 299
    assert probes.count(F("owner_id") == people[0].id) == 100
    with pytest.raises(crmkit.ValidationError):  # references are checked on import
        probes.add_many([probe(Customer(kind="person", name="ghost"), code="g", external_id="g")])


# --------------------------------------------------------------------------- deletes and references


def test_on_delete_policies_through_customers_delete(crm):
    owner, sponsor, guard, topic = customers(crm, 4)
    probes = crm.records(Probe)
    kept = probes.add(probe(topic, code="kept", sponsor_id=sponsor.id))
    about = probes.add(probe(sponsor, code="about", about=schema.Ref("customers", topic.id)))
    guarded = probes.add(probe(sponsor, code="guarded", guard_id=guard.id))
    mine = probes.add(probe(owner, code="mine"))
    crm.interactions.add(
        Interaction(customer_id=guard.id, channel="email", direction="inbound", occurred_at=T0, subject="s")
    )

    crm.customers.delete(owner.id)  # cascade
    assert probes.count(F("id") == mine.id) == 0

    with pytest.raises(ConflictError) as caught:  # restrict: nothing of the delete stays
        crm.customers.delete(guard.id)
    assert str(guarded.id) in str(caught.value)
    assert crm.customers.get(guard.id) and crm.interactions.count(F("customer_id") == guard.id) == 1

    crm.customers.delete(sponsor.id)  # set_null on kept; cascade on what sponsor owns (about, guarded)
    after = probes.get(kept.id)
    assert after.sponsor_id is None and after.version == kept.version + 1
    assert probes.count(F("id").in_([about.id, guarded.id])) == 0

    again = probes.add(probe(guard, code="about-topic", about=schema.Ref("customers", topic.id)))
    crm.customers.delete(topic.id)  # ref_any cascade (and cascade of kept, which topic owns)
    assert probes.count(F("id").in_([again.id, kept.id])) == 0


def test_ref_any_cascade_through_records_delete(crm):
    (ada,) = customers(crm, 1)
    probes = crm.records(Probe)
    target = probes.add(probe(ada, code="target"))
    pointer = probes.add(probe(ada, code="pointer", about=schema.Ref("crmkit_probes", target.id)))
    other = probes.add(probe(ada, code="other", about=schema.Ref("customers", ada.id)))
    assert probes.count(F("about.aggregate") == "crmkit_probes") == 1
    assert probes.count(F("about.id") == target.id) == 1
    probes.delete(target.id)
    assert probes.count(F("id") == pointer.id) == 0 and probes.get(other.id) == other


def test_subscription_on_delete(crm):
    ada, bob = customers(crm, 2)
    subs = crm.records(Subscription)
    mine = subs.add(Subscription(customer_id=ada.id, plan="a", price=Decimal(1), currency="EUR", started_at=T0))
    referred = subs.add(
        Subscription(customer_id=bob.id, plan="b", price=Decimal(1), currency="EUR", started_at=T0, referred_by=ada.id)
    )
    crm.customers.delete(ada.id)
    assert subs.count(F("id") == mine.id) == 0
    assert subs.get(referred.id).referred_by is None


# --------------------------------------------------------------------------- tenancy


def test_tenants_never_see_each_other(mongo_db_url):
    ids = [uuid.UUID(int=i + 1) for i in range(3)]
    with connect(mongo_db_url, fresh_tenant()) as a, connect(mongo_db_url, fresh_tenant()) as b:
        for crm in (a, b):
            ada = crm.customers.add(Customer(kind="person", name="Ada", id=ids[0]))
            crm.records(Probe).add(probe(ada, code="same", external_id="same", id=ids[1]))
            crm.records(Nest).add(Nest(code="n", day=dt.date(2024, 1, 1), id=ids[2]))
        a.records(Probe).delete(ids[1])
        assert b.records(Probe).get(ids[1]).code == "same"
        assert b.records(Probe).get_by_external_id("same").id == ids[1]
        assert a.records(Probe).count() == 0 and b.records(Probe).count() == 1
        a.customers.delete(ids[0])
        assert b.customers.get(ids[0]) and b.records(Nest).count(F("code") == "n") == 1


# --------------------------------------------------------------------------- indexes


def _indexes(crm: CRM, collection: str) -> dict[str, tuple]:
    info = crm.store.db[collection].index_information()
    return {
        name: (tuple(spec["key"]), spec.get("unique", False), dict(spec.get("partialFilterExpression", {})))
        for name, spec in info.items()
        if name != "_id_"
    }


def _exists(*fields: str) -> dict:
    return {f: {"$exists": True} for f in fields}


def test_the_indexes_match_the_declarations(crm):
    t = ("tenant", 1)
    base = {
        "tenant_id": ((t, ("id", 1)), True, {}),
        "tenant_external_id": ((t, ("external_id", 1)), True, _exists("external_id")),
    }
    probes = {
        **base,
        "unique_owner_id_code_number": (
            (t, ("owner_id", 1), ("code", 1), ("number", 1)),
            True,
            _exists("owner_id", "code", "number"),
        ),
        "index_code": ((t, ("code", 1)), False, {}),
        "index_happened_at_amount": ((t, ("happened_at", 1), ("amount", 1)), False, {}),
        "index_about_happened_at": ((t, ("about.aggregate", 1), ("about.id", 1), ("happened_at", 1)), False, {}),
        "ref_owner_id": ((t, ("owner_id", 1), ("happened_at", 1), ("id", 1)), False, {}),
        "ref_sponsor_id": ((t, ("sponsor_id", 1), ("happened_at", 1), ("id", 1)), False, {}),
        "ref_guard_id": ((t, ("guard_id", 1), ("happened_at", 1), ("id", 1)), False, {}),
        "ref_about": ((t, ("about.aggregate", 1), ("about.id", 1), ("happened_at", 1), ("id", 1)), False, {}),
        "tenant_time": ((t, ("happened_at", 1), ("id", 1)), False, {}),
        # schema.text(search=True): the folded value for prefixes, its words for matches
        "search_code": ((t, ("_folded.code", 1)), False, {}),
        "search_note": ((t, ("_folded.note", 1)), False, {}),
        "words_code": ((t, ("_words.code", 1)), False, {}),
        "words_note": ((t, ("_words.note", 1)), False, {}),
    }
    subscriptions = {
        **base,
        "unique_customer_id_plan": ((t, ("customer_id", 1), ("plan", 1)), True, _exists("customer_id", "plan")),
        "index_customer_id_started_at": ((t, ("customer_id", 1), ("started_at", 1)), False, {}),
        "ref_customer_id": ((t, ("customer_id", 1), ("started_at", 1), ("id", 1)), False, {}),
        "ref_referred_by": ((t, ("referred_by", 1), ("started_at", 1), ("id", 1)), False, {}),
        "tenant_time": ((t, ("started_at", 1), ("id", 1)), False, {}),
    }
    nests = {**base, "unique_code_day": ((t, ("code", 1), ("day", 1)), True, _exists("code", "day"))}
    assert _indexes(crm, "crmkit_probes") == probes
    assert _indexes(crm, "subscriptions") == subscriptions
    assert _indexes(crm, "mongo_test_nests") == nests


def test_an_aggregate_met_inside_a_transaction_gets_its_indexes_when_it_ends(mongo_url, url_with_database):
    """A CRM whose schema has more than the store was opened with (the test kit's extra plugins)."""
    name = "late" + uuid.uuid4().hex[:8]
    with crmkit.connect(url_with_database(mongo_url, name), tenant=fresh_tenant()) as plain:
        try:
            crm = CRM(plain.store, PluginHost(plugins=[Declared()]), plain.tenant)
            collection = plain.store.db["mongo_test_nests"]
            collection.insert_one({"tenant": "elsewhere", "id": uuid.uuid4()})
            with crm.transaction():
                collection.find_one({"tenant": crm.tenant}, session=plain.store.session())  # touched by it
                nests = crm.records(Nest)  # building an index now would wait for this very transaction
                nests.add(Nest(code="late"))
            assert "unique_code_day" in collection.index_information()
            assert nests.count() == 1
            nests.add(Nest(code="late", day=dt.date(2024, 1, 1)))
            with pytest.raises(ConflictError):
                nests.add(Nest(code="late", day=dt.date(2024, 1, 1)))
        finally:
            plain.store.client.drop_database(name)


def test_reference_lookups_use_their_index(crm):
    people = customers(crm, 3)
    crm.records(Probe).add_many(probe(people[i % 3], code=f"c{i}", number=i) for i in range(60))
    collection = crm.store.db["crmkit_probes"]
    plan = str(
        collection.find(
            {"tenant": crm.tenant, "owner_id": people[0].id}, sort=[("happened_at", 1), ("id", 1)]
        ).explain()["queryPlanner"]["winningPlan"]
    )
    assert "ref_owner_id" in plan and "'SORT'" not in plan


def test_keyset_pages_read_the_order_index_from_the_cursor_on(crm):
    people = customers(crm, 2)
    probes = crm.records(Probe)
    probes.add_many(
        probe(people[i % 2], code=f"c{i}", number=i, happened_at=T0 + dt.timedelta(seconds=i)) for i in range(300)
    )
    spec = Probe.__crmkit_spec__
    for order_by in (None, "id", "-id"):  # orders an index gives
        order = parse_order(order_by, spec)
        page = probes.find(None, order_by=order_by, limit=100)
        after = keyset_after(order, order.sort_key_values(spec, page.items[-1]))
        collection = crm.store.db["crmkit_probes"]
        explain = collection.database.command(
            "explain",
            {"find": collection.name, "filter": for_tenant(crm.tenant, after, spec), "sort": dict(sort_spec(order))},
            verbosity="executionStats",
            codec_options=collection.codec_options,
        )
        assert "'SORT'" not in str(explain["queryPlanner"]["winningPlan"]), order_by
        assert explain["executionStats"]["totalKeysExamined"] <= 201, order_by  # the rest, read once


def test_the_implied_bound_is_added_only_where_every_branch_implies_it():
    spec = Probe.__crmkit_spec__
    later = And((Compare("number", "==", 5), Compare("id", ">", uuid.UUID(int=1))))
    assert translate(Or((Compare("number", ">", 5), later)), spec)["$and"][0] == {"number": {"$gte": 5}}
    assert translate(Or((Compare("number", "<", 5), later)), spec)["$and"][0] == {"number": {"$lte": 5}}
    for loose in (
        Or((Compare("number", ">", 5), Compare("code", "==", "x"))),
        Or((Compare("number", ">", 5), And((Compare("number", "==", 6), Compare("id", ">", uuid.UUID(int=1)))))),
        Or((Compare("attributes.x", ">", 1), And((Compare("attributes.x", "==", 1), Compare("flag", "==", True))))),
        Or((Compare("note", "!=", None), Compare("note", "==", None))),
    ):
        assert set(translate(loose, spec)) == {"$or"}, loose


# --------------------------------------------------------------------------- the query battery


CODES = ["a", "B", "b", "é", "e\u0301", "\U0001f600", "Zebra", "$where", "$ne", ".*", "(", "\\", "a\nb"]
NOTES = [None, "", "a", "ab", "b", "%_", "Zebra", "\U0001f600"]
NUMBERS = [0, 1, -1, 2**62, -(2**63), 2**63 - 1, 5]
AMOUNTS = [Decimal("1.0"), Decimal("1.00"), Decimal("0.1"), Decimal("-3.25"), Decimal("0"), Decimal("-0"),
           Decimal("999999999999999.999999"), Decimal("-0.000001")]  # fmt: skip
TIMES = [T0, T0 + dt.timedelta(microseconds=1), T0 - dt.timedelta(microseconds=1),
         dt.datetime(1960, 1, 1, tzinfo=UTC), dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]  # fmt: skip
DAYS = [None, dt.date(1969, 12, 31), dt.date(2024, 5, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)]
TOKENS = [None, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=1 << 127), uuid.UUID(int=255)]
LABELS = ["vip", "VIP", "a.b", "$gt", "é"]
ATTRS = [0, 1, -1, 0.5, 1.0, Decimal("1.0"), True, False, "a", "B", "", dt.date(2024, 5, 1), T0, None]
CURRENCIES = ["EUR", "USD", "JPY"]
PEOPLE = [uuid.UUID(int=(i + 1) * 2654435761) for i in range(4)]
N = 45


def _battery_records() -> tuple[list[Probe], list[Probe]]:
    """Probes whose values collide, straddle kind boundaries and need exact comparisons (two batches)."""
    first, second = [], []
    for i in range(N):
        about = None
        if i % 4 == 1:
            about = schema.Ref("customers", PEOPLE[i % 4])
        elif i % 4 == 2 and i > 20:
            about = schema.Ref("crmkit_probes", uuid.UUID(int=1000 + i % 20))
        attributes = {} if ATTRS[i % len(ATTRS)] is None else {"x": ATTRS[i % len(ATTRS)]}
        record = Probe(
            id=uuid.UUID(int=1000 + i),
            owner_id=PEOPLE[i % 3],
            code=CODES[i % len(CODES)],
            note=NOTES[i % len(NOTES)],
            number=NUMBERS[i % len(NUMBERS)],
            flag=i % 3 == 0,
            amount=AMOUNTS[i % len(AMOUNTS)],
            currency=CURRENCIES[i % 3],
            happened_at=TIMES[i % len(TIMES)],
            day=DAYS[i % len(DAYS)],
            token=TOKENS[(i * 3) % len(TOKENS)],
            colour=list(ProbeColour)[i % 3],
            labels=frozenset(LABELS[j] for j in range(len(LABELS)) if (i >> j) & 1),
            sponsor_id=None if i % 2 else PEOPLE[3],
            guard_id=None if i % 5 else PEOPLE[i % 4],
            about=about,
            attributes=attributes,
            external_id=None if i % 3 == 1 else CODES[i % len(CODES)] + f"-{i}",
            created_at=TIMES[(i * 7) % len(TIMES)],
        )
        (second if about is not None and about.aggregate == "crmkit_probes" else first).append(record)
    return first, second


@pytest.fixture(scope="module")
def pair(mongo_db_url: str) -> Iterator[tuple[CRM, CRM]]:
    """The same probes in MongoDB and in the reference store (and a second tenant with the same ids)."""
    tenant = fresh_tenant()
    clock = lambda: T0  # noqa: E731
    mongo = connect(mongo_db_url, tenant, clock=clock)
    memory = connect("memory://", tenant, clock=clock)
    other = connect(mongo_db_url, tenant + "-other", clock=clock)
    for crm in (mongo, memory, other):
        crm.customers.add_many(Customer(kind="person", name=f"P{i}", id=p) for i, p in enumerate(PEOPLE))
        for batch in _battery_records():
            crm.records(Probe).add_many(batch)
    other.close()
    yield mongo, memory
    mongo.close()
    memory.close()


VALUES: dict[str, list] = {
    "code": [*CODES, "", "A", "zz", "a\u0301"],
    "note": [v for v in NOTES if v is not None] + ["c"],
    "number": [*NUMBERS, 2, -2],
    "flag": [True, False],
    "amount": [*AMOUNTS, Decimal("0.10"), 1, -4],
    "currency": [*CURRENCIES, "GBP"],
    "happened_at": [*TIMES, dt.datetime(2024, 5, 1, 14, 0, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=2)))],
    "day": [d for d in DAYS if d is not None] + [dt.date(2000, 1, 1)],
    "token": [t for t in TOKENS if t is not None] + [uuid.UUID(int=256)],
    "colour": [*ProbeColour, "red", "purple", "gr"],
    "owner_id": PEOPLE,
    "sponsor_id": PEOPLE,
    "guard_id": PEOPLE,
    "about.aggregate": ["customers", "crmkit_probes", "nope"],
    "about.id": [*PEOPLE, uuid.UUID(int=1021), uuid.UUID(int=1000)],
    "id": [uuid.UUID(int=1000 + i) for i in (0, 7, 44, 99)],
    "version": [0, 1, 2],
    "created_at": TIMES,
    "updated_at": [T0, TIMES[1]],
    "external_id": ["a-0", "$where-7", "zz", "B-1"],
    "attributes.x": [v for v in ATTRS if v is not None] + [2, "b", dt.date(1, 1, 1)],
}
TEXTUAL = ["code", "note", "currency", "colour", "about.aggregate", "external_id", "attributes.x"]


def _compare(field: str, op: str, value):
    f = F(field)
    return {"==": f == value, "!=": f != value, "<": f < value, "<=": f <= value, ">": f > value, ">=": f >= value}[op]


@st.composite
def leaves(draw):
    field = draw(st.sampled_from(sorted(VALUES)))
    shape = draw(st.sampled_from(["compare", "compare", "null", "in", "contains"]))
    if shape == "null":
        return F(field) == None if draw(st.booleans()) else F(field) != None  # noqa: E711
    if shape == "in":
        return F(field).in_(draw(st.lists(st.sampled_from(VALUES[field]), min_size=0, max_size=3)))
    if shape == "contains":
        if draw(st.booleans()):
            return F("labels").contains(draw(st.sampled_from([*LABELS, "vi", "nope"])))
        text = draw(st.sampled_from(["", "a", "b", "$", ".", "\\", "e", "é", "1", "r"]))
        return F(draw(st.sampled_from(TEXTUAL))).contains(text)
    ops = ["==", "!="] if field == "flag" else ["==", "!=", "<", "<=", ">", ">="]
    return _compare(field, draw(st.sampled_from(ops)), draw(st.sampled_from(VALUES[field])))


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=5,
)


def _ids(crm: CRM, where, **kwargs) -> list[uuid.UUID]:
    return [r.id for r in crm.records(Probe).find(where, **kwargs).items]


def test_the_battery_holds_what_it_was_given(pair):
    mongo, memory = pair
    assert mongo.records(Probe).count() == memory.records(Probe).count() == N
    assert _ids(mongo, None) == _ids(memory, None)
    for record in memory.records(Probe).find(None).items:
        _same_types(record, mongo.records(Probe).get(record.id))


@pytest.mark.parametrize("field", sorted(VALUES))
def test_every_field_answers_as_the_reference_does(pair, field):
    """Every value of every field with every operator (the query battery per kind)."""
    mongo, memory = pair
    ops = ["==", "!="] if field == "flag" else ["==", "!=", "<", "<=", ">", ">="]
    checks = [F(field) == None, F(field) != None, F(field).in_(VALUES[field])]  # noqa: E711
    checks += [_compare(field, op, value) for op in ops for value in VALUES[field]]
    for where in checks:
        assert _ids(mongo, where) == _ids(memory, where), where
        assert mongo.records(Probe).count(where) == memory.records(Probe).count(where), where


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=conditions)
def test_combined_conditions_answer_as_the_reference_does(pair, where):
    mongo, memory = pair
    assert _ids(mongo, where) == _ids(memory, where)
    assert mongo.records(Probe).count(where) == memory.records(Probe).count(where)


SORTABLE = sorted(name for name, spec in Probe.__crmkit_spec__.fields.items() if spec.sortable)


@pytest.mark.parametrize("desc", [False, True])
@pytest.mark.parametrize("field", SORTABLE)
def test_ordering_and_keyset_pages_on_every_sortable_field(pair, field, desc):
    """Missing values (note, day, token, sponsor_id, guard_id) sort first ascending, last descending."""
    mongo, memory = pair
    order = [("-" if desc else "") + field]
    expected = _ids(memory, None, order_by=order)
    assert _ids(mongo, None, order_by=order) == expected
    pages, after = [], None
    for _ in range(len(expected)):  # a wrong keyset could page forever
        page = mongo.records(Probe).find(None, order_by=order, limit=4, after=after)
        pages.extend(r.id for r in page.items)
        if page.next is None:
            break
        after = str(page.next)
    assert pages == expected
    # with a condition, and with a second key before id
    where = F("flag") == False  # noqa: E712
    for by in (order, [*order, "-number"] if field not in ("number", "id") else order):
        assert _ids(mongo, where, order_by=by) == _ids(memory, where, order_by=by)


def test_streams_follow_the_default_order(pair):
    mongo, memory = pair
    got = [r.id for r in mongo.records(Probe).stream(batch_size=7)]
    assert got == [r.id for r in memory.records(Probe).stream(batch_size=7)] and len(got) == len(set(got))

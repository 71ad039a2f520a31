"""Declared aggregates on SQLite and PostgreSQL: tables derived from the declaration, no code of their own.

The probe (one field of every kind, a ref per delete policy, a ref_any, a composite key),
the example plugin's ``Subscription`` and a small badge aggregate whose unique key may
miss a part are stored, queried, sorted, paged, bulk-imported and deleted with cascades,
and every answer is compared with the memory store's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
import crmkit_subscriptions  # importable from the checkout: conftest.py
import pytest
import sqlalchemy as sa
from crmkit_subscriptions import Seat, Status, Subscription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.servers import create_database, drop_database, unique_name

import crmkit
from crmkit import BackendError, BulkResult, ConflictError, Customer, F, NotFound, PluginError, schema
from crmkit._host import PluginHost
from crmkit.crm import CRM
from crmkit.query import Expr
from crmkit.schema import Ref, spec_of
from crmkit.testing import strategies as cs
from crmkit.testing.probe import Probe, ProbeColour, ProbePart, ProbePlugin

UTC = dt.timezone.utc
TEHRAN = dt.timezone(dt.timedelta(hours=3, minutes=30))
BASE = dt.datetime(2024, 1, 1, tzinfo=UTC)


@schema.aggregate("sql_badges", unique=[("holder_id", "code")])
class Badge(schema.Record):
    """A unique key with a part that may be missing: (holder, None) never clashes."""

    holder_id: uuid.UUID = schema.ref("customers", on_delete="cascade")
    code: str | None = schema.text(default=None)


class _Badges:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Badge]


PLUGINS: list[object] = [ProbePlugin(), crmkit_subscriptions, _Badges()]
#: The aggregates crmkit itself lays out from declarations (the identity layer's), after the test's own.
BUILTIN_DERIVED = tuple(s for s in PluginHost().schema().derived.values() if s.cls.__module__.split(".")[0] == "crmkit")
DECLARED = (spec_of(Probe), spec_of(Subscription), spec_of(Badge), *BUILTIN_DERIVED)


def fresh_tenant() -> str:
    return "d-" + uuid.uuid4().hex[:12]


def _connect(url: str, tenant: str | None = None, **options: Any) -> CRM:
    return crmkit.connect(url, tenant=tenant or fresh_tenant(), plugins=PLUGINS, **options)


@pytest.fixture(scope="module")
def declared_urls(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A database per dialect for the module, its tables made by the first connect."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('declared') / 'crm.db'}"}
    urls["postgresql"] = create_database(request.getfixturevalue("postgres_url"), unique_name("declared"))
    yield urls
    drop_database(urls["postgresql"])


@pytest.fixture
def url(dialect: str, declared_urls: dict[str, str]) -> str:
    return declared_urls[dialect]


@pytest.fixture
def crm(url: str) -> Iterator[CRM]:
    with _connect(url) as opened:
        yield opened


@pytest.fixture
def memory() -> Iterator[CRM]:
    """The reference: the memory store with the same aggregates."""
    with _connect("memory://") as opened:
        yield opened


def _probe(owner: Customer | uuid.UUID, **fields: Any) -> Probe:
    values: dict[str, Any] = {
        "owner_id": owner if isinstance(owner, uuid.UUID) else owner.id,
        "code": "x",
        "number": 1,
        "amount": Decimal("1.50"),
        "currency": "EUR",
        "happened_at": BASE,
    }
    values.update(fields)
    return Probe(**values)


def _subscription(customer: Customer, **fields: Any) -> Subscription:
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "plan": "pro",
        "price": Decimal("49.00"),
        "currency": "EUR",
        "started_at": BASE,
    }
    values.update(fields)
    return Subscription(**values)


def _same(a: Any, b: Any, path: str = "record") -> None:
    """Equal, and of the same types all the way down (Decimal exponents, UTC tzinfo, enum members...)."""
    assert type(a) is type(b), (path, a, b)
    if attrs.has(type(a)):
        for field in attrs.fields(type(a)):
            _same(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, Decimal):
        assert str(a) == str(b), (path, a, b)
    elif isinstance(a, dt.datetime):
        assert a == b and a.tzinfo is UTC and b.tzinfo is UTC, (path, a, b)
    elif isinstance(a, tuple):
        assert len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, Mapping):
        assert list(a) == list(b), (path, a, b)
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    else:
        assert a == b, (path, a, b)


# --------------------------------------------------------------------------- CRUD


def test_crud_and_versions(crm: CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    probes = crm.records(Probe)
    p = probes.add(_probe(ada, external_id="p-1"))
    assert p.version == 1 and p.created_at is not None and p.created_at == p.updated_at
    _same(probes.get(p.id), p)
    _same(probes.get_by_external_id("p-1"), p)
    changed = probes.update(attrs.evolve(p, code="y", flag=True, colour=ProbeColour.BLUE, note=""))
    assert changed.version == 2
    _same(probes.get(p.id), changed)
    with pytest.raises(ConflictError, match="version"):
        probes.update(attrs.evolve(p, code="z"))  # based on version 1
    assert probes.count() == 1 and probes.count(F("code") == "y") == 1
    probes.delete(p.id)
    with pytest.raises(NotFound):
        probes.get(p.id)
    assert probes.count() == 0

    subs = crm.records("subscriptions")
    s = subs.add(
        _subscription(ada, seats=(Seat(email="ada@example.com", since=dt.date(2024, 1, 2)),), features={"sso", "api"})
    )
    _same(subs.get(s.id), s)
    assert subs.count(F("plan") == "pro") == 1
    assert [x.id for x in subs.find(F("status") == Status.ACTIVE, order_by="-started_at", limit=20)] == [s.id]
    paused = subs.update(attrs.evolve(s, status=Status.PAUSED, quantity=3, auto_renew=False))
    assert subs.count(F("status") == Status.PAUSED) == 1 and subs.count(F("auto_renew") == False) == 1  # noqa: E712
    _same(subs.get(s.id), paused)
    subs.delete(s.id)
    assert subs.count() == 0


# --------------------------------------------------------------------------- exact round trips

_texts = cs.texts(max_size=30, blank=False)
_parts = st.builds(
    ProbePart,
    label=_texts,
    amount=cs.money(min_value=-(10**6), max_value=10**6)
    | st.sampled_from([Decimal("1E+2"), Decimal("-0.00"), Decimal("0E-6"), Decimal("123.450000")]),
    at=st.none() | cs.aware_datetimes(),
    on=st.none() | st.dates(),
    count=st.integers(-(2**63), 2**63 - 1),
    flag=st.booleans(),
    colour=st.none() | st.sampled_from(ProbeColour),
    token=st.none() | cs.uuids(),
    marks=cs.tags(),
)


def _probes(owners: list[uuid.UUID], abouts: list[Ref]) -> st.SearchStrategy[Probe]:
    return st.builds(
        Probe,
        owner_id=st.sampled_from(owners),
        code=_texts,
        note=st.none() | cs.texts(max_size=40),
        number=st.integers(-(2**63), 2**63 - 1),
        flag=st.booleans(),
        amount=cs.money(min_value=-(10**15) + 1),
        currency=cs.currencies(),
        happened_at=cs.aware_datetimes(),
        day=st.none() | st.dates(),
        token=st.none() | cs.uuids(),
        colour=st.sampled_from(ProbeColour),
        labels=cs.tags(),
        parts=st.lists(_parts, max_size=3).map(tuple),
        sponsor_id=st.none() | st.sampled_from(owners),
        guard_id=st.none() | st.sampled_from(owners),
        about=st.none() | st.sampled_from(abouts),
        attributes=cs.attributes(),
        external_id=st.none() | cs.external_ids(),
    )


def test_every_field_kind_round_trips_exactly(crm: CRM) -> None:
    owners = [crm.customers.add(Customer(kind="person", name=n)).id for n in ("Ada", "Bob")]
    sub = crm.records(Subscription).add(_subscription(crm.customers.get(owners[0])))
    abouts = [Ref("customers", owners[1]), Ref("subscriptions", sub.id)]
    probes = crm.records(Probe)

    @given(record=_probes(owners, abouts), data=st.data())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(record: Probe, data: st.DataObject) -> None:
        record = attrs.evolve(record, number=data.draw(st.integers(-(2**63), 2**63 - 1)), external_id=None)
        try:
            stored = probes.add(record)
        except ConflictError:  # the drawn (owner, code, number) is taken already
            return
        _same(probes.get(stored.id), stored)
        (found,) = probes.find(F("id") == stored.id)
        _same(found, stored)

    check()


def test_value_objects_keep_every_kind_exactly(crm: CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    when = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=TEHRAN)
    parts = (
        ProbePart(
            label="a",
            amount=Decimal("1E+2"),
            at=when,
            on=dt.date(1, 1, 1),
            count=-(2**63),
            flag=True,
            colour=ProbeColour.GREEN,
            token=uuid.UUID(int=0),
            marks=frozenset({"b", "a", "😀"}),
        ),
        ProbePart(label="b", amount=Decimal("-0.000001")),
    )
    stored = crm.records(Probe).add(_probe(ada, parts=parts, labels={"z", "ä"}, about=Ref("customers", ada.id)))
    back = crm.records(Probe).get(stored.id)
    _same(back, stored)
    assert str(back.parts[0].amount) == "1E+2" and back.parts[0].at == when


# --------------------------------------------------------------------------- queries against the reference

CODES = ["a", "B", "ä", "😀", "a%", "_", "z", "a_b"]
NOTES = [None, "", "a", "' OR 1=1 --", "\\", "ab"]
NUMBERS = [-(2**63), -1, 0, 1, 2, 2**63 - 1]
AMOUNTS = [Decimal(a) for a in ("0", "1.5", "1.50", "-2", "0.000001", "999999999999999.999999", "-7.25")]
INSTANTS = [
    BASE,
    dt.datetime(2024, 1, 1, 3, 30, tzinfo=TEHRAN),
    BASE + dt.timedelta(microseconds=1),
    dt.datetime(1900, 5, 5, tzinfo=UTC),
]
DAYS = [None, dt.date(2024, 1, 1), dt.date(1999, 12, 31)]
TOKENS = [None, uuid.UUID(int=1), uuid.UUID(int=2**127), uuid.UUID("ffffffff-0000-0000-0000-000000000000")]
LABELS = [frozenset(), frozenset({"a"}), frozenset({"a", "b%"}), frozenset({"😀"})]
ATTRIBUTES: list[Any] = [0, 1, 1.0, Decimal("1.0"), True, "1", "a", dt.date(2024, 1, 1), BASE]


def _population(owners: list[uuid.UUID], abouts: list[Ref | None]) -> st.SearchStrategy[list[Probe]]:
    one = st.builds(
        Probe,
        owner_id=st.sampled_from(owners),
        code=st.sampled_from(CODES),
        note=st.sampled_from(NOTES),
        number=st.sampled_from(NUMBERS),
        flag=st.booleans(),
        amount=st.sampled_from(AMOUNTS),
        currency=st.sampled_from(["EUR", "USD"]),
        happened_at=st.sampled_from(INSTANTS),
        day=st.sampled_from(DAYS),
        token=st.sampled_from(TOKENS),
        colour=st.sampled_from(ProbeColour),
        labels=st.sampled_from(LABELS),
        sponsor_id=st.none() | st.sampled_from(owners),
        about=st.sampled_from(abouts),
        attributes=st.dictionaries(st.just("x"), st.sampled_from(ATTRIBUTES), max_size=1),
        external_id=st.none() | st.sampled_from(["e1", "e2", "E1", "e%"]),
    )
    return st.lists(one, min_size=1, max_size=10)


OPS = ["==", "!=", "<", "<=", ">", ">="]


def _cmp(field: str, op: str, value: Any) -> Expr:
    f = F(field)
    if value is None:
        op = "!=" if op == "!=" else "=="  # None only compares with == and !=
    return {"==": f == value, "!=": f != value, "<": f < value, "<=": f <= value, ">": f > value, ">=": f >= value}[op]


def _atoms(owners: list[uuid.UUID]) -> st.SearchStrategy[Expr]:
    def compare(field: str, values: list[Any], ops: list[str] = OPS) -> st.SearchStrategy[Expr]:
        return st.builds(lambda op, v: _cmp(field, op, v), st.sampled_from(ops), st.sampled_from(values))

    def among(field: str, values: list[Any], size: int = 4) -> st.SearchStrategy[Expr]:
        return st.builds(lambda vs: F(field).in_(vs), st.lists(st.sampled_from(values), max_size=size))

    def many(field: str, values: list[Any]) -> st.SearchStrategy[Expr]:  # above 64 values: one array parameter
        return st.builds(lambda vs: F(field).in_(vs), st.lists(st.sampled_from(values), min_size=65, max_size=70))

    ids = [*owners, uuid.uuid4()]
    return st.one_of(
        compare("code", [*CODES, "a\x00", "0"]),
        compare("note", NOTES),
        compare("number", NUMBERS),
        compare("flag", [True, False], ["==", "!="]),
        compare("amount", [*AMOUNTS, Decimal("1.500000")]),
        compare("currency", ["EUR", "USD", "JPY"]),
        compare("happened_at", INSTANTS),
        compare("day", DAYS),
        compare("token", TOKENS),
        compare("colour", [*ProbeColour, "red", "purple"]),
        compare("owner_id", ids),
        compare("sponsor_id", [None, *ids]),
        compare("about.aggregate", [None, "customers", "subscriptions", "nothing"]),
        compare("about.id", [None, *ids]),
        compare("external_id", [None, "e1", "E1", "e%"]),
        compare("attributes.x", [*ATTRIBUTES, None]),
        compare("version", [0, 1, 2]),
        among("code", CODES),
        among("flag", [True, False]),
        among("amount", AMOUNTS),
        among("colour", list(ProbeColour)),
        among("about.id", ids),
        among("about.aggregate", ["customers", "subscriptions"]),
        many("number", NUMBERS),
        many("amount", AMOUNTS),
        many("happened_at", INSTANTS),
        many("day", [d for d in DAYS if d is not None]),
        many("token", [t for t in TOKENS if t is not None]),
        many("flag", [True, False]),
        many("colour", list(ProbeColour)),
        st.builds(lambda v: F("labels").contains(v), st.sampled_from(["a", "b%", "b", "😀", ""])),
        st.builds(lambda v: F("code").contains(v), st.sampled_from(["a", "%", "_", ""])),
        st.builds(lambda v: F("note").contains(v), st.sampled_from(["a", "'", "\\", ""])),
        st.sampled_from([F("note").is_null(), F("day").is_null(), F("about.id").is_null(), F("token") != None]),  # noqa: E711
    )


def _conditions(owners: list[uuid.UUID]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        _atoms(owners),
        lambda inner: st.one_of(
            st.builds(lambda a, b: a & b, inner, inner),
            st.builds(lambda a, b: a | b, inner, inner),
            st.builds(lambda a: ~a, inner),
        ),
        max_leaves=5,
    )


def _unique(records: list[Probe]) -> list[Probe]:
    """Drop records whose external id or (owner, code, number) an earlier one has."""
    seen: set[Any] = set()
    out = []
    for r in records:
        keys = {("k", r.owner_id, r.code, r.number), ("e", r.external_id)} - {("e", None)}
        if keys & seen:
            continue
        seen |= keys
        out.append(r)
    return out


def _twins(crm: CRM, memory: CRM) -> tuple[list[uuid.UUID], list[Ref | None]]:
    """The same customers and one subscription in the store under test and in the reference."""
    owners = []
    for name in ("Ada", "Bob", "Cy"):
        customer = Customer(kind="person", name=name)
        crm.customers.add(customer)
        memory.customers.add(customer)
        owners.append(customer.id)
    sub = _subscription(crm.customers.get(owners[0]))
    crm.records(Subscription).add(sub)
    memory.records(Subscription).add(sub)
    return owners, [None, Ref("customers", owners[1]), Ref("subscriptions", sub.id)]


_QUERY_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def test_queries_give_the_memory_stores_answers(crm: CRM, memory: CRM) -> None:
    owners, abouts = _twins(crm, memory)
    sql_probes, mem_probes = crm.records(Probe), memory.records(Probe)

    @given(population=_population(owners, abouts), wheres=st.lists(_conditions(owners), min_size=1, max_size=6))
    @_QUERY_SETTINGS
    def check(population: list[Probe], wheres: list[Expr]) -> None:
        for probes in (sql_probes, mem_probes):
            for p in probes.find():
                probes.delete(p.id)
        records = _unique(population)
        sql_probes.add_many(records)
        mem_probes.add_many(records)
        for where in wheres:
            expected = [p.id for p in mem_probes.find(where, order_by="id")]
            assert [p.id for p in sql_probes.find(where, order_by="id")] == expected, repr(where)
            assert sql_probes.count(where) == len(expected), repr(where)

    check()


# --------------------------------------------------------------------------- ordering and keyset pages


def _sortable(spec: Any) -> list[str]:
    return sorted(name for name, f in spec.fields.items() if f.sortable)


def test_every_sortable_field_orders_and_pages_like_the_memory_store(crm: CRM, memory: CRM) -> None:
    """Missing values included: None sorts before every value (first ascending, last descending)."""
    owners, _ = _twins(crm, memory)
    assert set(_sortable(spec_of(Probe))) >= {
        "code",
        "note",
        "number",
        "amount",
        "currency",
        "happened_at",
        "day",
        "token",
        "colour",
        "owner_id",
        "sponsor_id",
        "guard_id",
    }
    records = [
        _probe(
            owners[i % 3],
            code=CODES[i % len(CODES)],
            note=[None, "", "a", "B", "ä", "😀"][i % 6],
            number=NUMBERS[i % len(NUMBERS)],
            amount=AMOUNTS[i % len(AMOUNTS)],
            currency=["EUR", "USD", "JPY"][i % 3],
            happened_at=INSTANTS[i % len(INSTANTS)],
            day=None if i % 5 == 2 else dt.date(2024, 1, 1) - dt.timedelta(days=i % 4),
            token=None if i % 4 == 1 else uuid.UUID(int=(i * 7919) % 5 * 2**120),
            colour=list(ProbeColour)[i % 3],
            sponsor_id=None if i % 3 == 0 else owners[(i + 1) % 3],
            guard_id=owners[(i + 2) % 3],
        )
        for i in range(17)
    ]
    crm.records(Probe).add_many(records)
    memory.records(Probe).add_many(records)
    orders: list[tuple[str, ...]] = [(name,) for name in _sortable(spec_of(Probe))]
    orders += [("-" + name,) for name in _sortable(spec_of(Probe))]
    orders += [("currency", "-amount"), ("colour", "-happened_at"), ("-day", "note"), ("owner_id", "-number")]
    for order in orders:
        expected = [p.id for p in memory.records(Probe).find(order_by=order)]
        assert [p.id for p in crm.records(Probe).find(order_by=order)] == expected, order
        paged: list[uuid.UUID] = []
        page = crm.records(Probe).find(order_by=order, limit=4)
        paged += [p.id for p in page]
        while page.next is not None:
            page = crm.records(Probe).find(order_by=order, limit=4, after=page.next)
            paged += [p.id for p in page]
        assert paged == expected, order
    subs = [
        _subscription(crm.customers.get(owners[i % 3]), plan=f"p{i % 5}", quantity=i % 4, started_at=INSTANTS[i % 4])
        for i in range(10)
    ]
    subs = [s for i, s in enumerate(subs) if (s.customer_id, s.plan) not in {(t.customer_id, t.plan) for t in subs[:i]}]
    crm.records(Subscription).add_many(subs)
    memory.records(Subscription).add_many(subs)
    for order in (("plan",), ("-quantity",), ("started_at",), ("-started_at", "plan")):
        expected = [s.id for s in memory.records(Subscription).find(order_by=order)]
        assert [s.id for s in crm.records(Subscription).find(order_by=order)] == expected, order


# --------------------------------------------------------------------------- unique keys


def test_composite_unique_keys_are_kept_by_the_database(crm: CRM) -> None:
    ada, bob = (crm.customers.add(Customer(kind="person", name=n)) for n in ("Ada", "Bob"))
    probes = crm.records(Probe)
    first = probes.add(_probe(ada, code="k", number=7))
    with pytest.raises(ConflictError, match=r"owner_id=.*code='k', number=7") as clash:
        probes.add(_probe(ada, code="k", number=7, external_id="other"))
    assert clash.value.key == (ada.id, "k", 7)
    probes.add(_probe(bob, code="k", number=7))  # another owner: another key
    second = probes.add(_probe(ada, code="k", number=8))
    with pytest.raises(ConflictError, match="code='k', number=7"):
        probes.update(attrs.evolve(second, number=7))
    with pytest.raises(ConflictError, match=r"\(owner_id, code, number\)"):
        probes.add_many([_probe(ada, code="new", number=1), _probe(ada, code="k", number=7)])
    assert probes.count(F("code") == "new") == 0  # the batch was refused whole
    with pytest.raises(ConflictError, match="appears twice"):
        probes.add_many([_probe(ada, code="twice", number=1), _probe(ada, code="twice", number=1)])
    assert probes.count() == 3 and probes.get(first.id) == first

    badges = crm.records(Badge)
    badges.add(Badge(holder_id=ada.id))
    badges.add(Badge(holder_id=ada.id))  # (ada, None) twice: a key with a missing part never clashes
    badges.add(Badge(holder_id=ada.id, code="gold"))
    with pytest.raises(ConflictError, match="code='gold'"):
        badges.add(Badge(holder_id=ada.id, code="gold"))
    assert badges.count() == 3

    subs = crm.records(Subscription)
    subs.add(_subscription(ada, plan="pro"))
    with pytest.raises(ConflictError, match="plan='pro'"):
        subs.add(_subscription(ada, plan="pro", price=Decimal("1")))


def test_unique_keys_are_per_tenant(url: str) -> None:
    with _connect(url) as one, _connect(url) as two:
        for crm in (one, two):
            ada = crm.customers.add(Customer(kind="person", name="Ada", id=uuid.UUID(int=42)))
            crm.records(Probe).add(_probe(ada, code="same", number=1, external_id="same"))
            crm.records(Badge).add(Badge(holder_id=ada.id, code="same"))
        for crm in (one, two):
            assert crm.records(Probe).count() == 1 and crm.records(Badge).count() == 1


# --------------------------------------------------------------------------- deletes and references


def test_on_delete_policies(crm: CRM) -> None:
    ada, bob = (crm.customers.add(Customer(kind="person", name=n)) for n in ("Ada", "Bob"))
    probes, subs = crm.records(Probe), crm.records(Subscription)
    owned = probes.add(_probe(ada, code="owned"))
    sponsored = probes.add(_probe(bob, code="sponsored", sponsor_id=ada.id))
    about = probes.add(_probe(bob, code="about", about=Ref("customers", ada.id)))
    guarded = probes.add(_probe(bob, code="guarded", guard_id=ada.id))
    sub = subs.add(_subscription(ada))
    referred = subs.add(_subscription(bob, referred_by=ada.id))

    with pytest.raises(ConflictError, match=str(guarded.id)):
        crm.customers.delete(ada.id)  # restrict: nothing happens
    assert crm.customers.get(ada.id) == ada
    assert probes.count() == 4 and subs.count() == 2 and probes.get(sponsored.id) == sponsored

    probes.update(attrs.evolve(guarded, guard_id=None))
    crm.customers.delete(ada.id)
    assert {p.id for p in probes.find()} == {sponsored.id, guarded.id}
    assert probes.get(sponsored.id).sponsor_id is None and probes.get(sponsored.id).version == 2
    assert [s.id for s in subs.find()] == [referred.id] and subs.get(referred.id).referred_by is None
    for gone in (owned, about):
        with pytest.raises(NotFound):
            probes.get(gone.id)
    with pytest.raises(NotFound):
        subs.get(sub.id)

    # a ref_any pointing at a probe: deleting the probe through records() cascades
    target = probes.add(_probe(bob, code="target"))
    pointer = probes.add(_probe(bob, code="pointer", about=Ref("crmkit_probes", target.id)))
    probes.delete(target.id)
    with pytest.raises(NotFound):
        probes.get(pointer.id)


def test_references_are_checked_on_write(crm: CRM) -> None:
    from crmkit import ValidationError

    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    with pytest.raises(ValidationError, match="sponsor_id"):
        crm.records(Probe).add(_probe(ada, sponsor_id=uuid.uuid4()))
    with pytest.raises(ValidationError, match="about"):
        crm.records(Probe).add(_probe(ada, about=Ref("subscriptions", uuid.uuid4())))


# --------------------------------------------------------------------------- bulk imports


@pytest.mark.parametrize("size,batch_size", [(250, 100), (2_500, 1_000)])
def test_add_many_is_idempotent_by_external_id(crm: CRM, size: int, batch_size: int) -> None:
    """Batches of 100 or more go through COPY on PostgreSQL, and two or more overlap with a helper thread."""
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    probes = crm.records(Probe)

    def batch(start: int, stop: int) -> list[Probe]:
        return [
            _probe(
                ada,
                code=f"c{i % 7}",
                number=i,
                external_id=f"ext-{i}",
                amount=Decimal(i).scaleb(-2),
                parts=(ProbePart(label=f"part {i}", amount=Decimal("-1.10")),),
                labels={f"l{i % 3}"},
                attributes={"i": i},
                about=Ref("customers", ada.id) if i % 2 else None,
            )
            for i in range(start, stop)
        ]

    records = batch(0, size)
    assert probes.add_many(records, batch_size=batch_size) == BulkResult(size, 0)
    assert probes.add_many(records, batch_size=batch_size) == BulkResult(0, size)
    overlap = batch(size - size // 5, size + size // 4)
    assert probes.add_many(overlap, batch_size=batch_size) == BulkResult(size // 4, size // 5)
    assert probes.count() == size + size // 4
    first = {r.external_id: r for r in overlap} | {r.external_id: r for r in records}  # the first import wins
    for i in (0, size - 1, size, size + size // 4 - 1):
        stored = probes.get_by_external_id(f"ext-{i}")
        expected = first[f"ext-{i}"]
        _same(stored, attrs.evolve(expected, created_at=stored.created_at, updated_at=stored.updated_at, version=1))
    subs = crm.records(Subscription)
    rows = [
        _subscription(
            ada,
            plan=f"plan-{i}",
            external_id=f"s-{i}",
            features={"a", "b"},
            seats=(Seat(email=f"{i}@example.com", since=dt.date(2024, 1, 1)),),
        )
        for i in range(size)
    ]
    assert subs.add_many(rows, batch_size=batch_size) == BulkResult(size, 0)
    assert subs.add_many(rows, batch_size=batch_size) == BulkResult(0, size)
    assert subs.count(F("features").contains("b")) == size


def test_bulk_rows_are_what_sqlalchemy_would_bind(crm: CRM) -> None:
    """The generated converters of the bulk paths write, for derived tables too, what an INSERT writes."""
    import json

    from crmkit_sqlalchemy._ingest import driver_rows

    when = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    owner = uuid.uuid4()
    records = [
        _probe(
            owner,
            note="😀",
            flag=True,
            day=dt.date(2020, 2, 29),
            token=uuid.uuid4(),
            labels={"b", "a"},
            parts=(ProbePart(label="x", amount=Decimal("1E+2"), at=when),),
            sponsor_id=owner,
            about=Ref("customers", owner),
            attributes={"x": Decimal("1.50"), "d": when},
            created_at=when,
            updated_at=when,
            version=1,
        ),
        _probe(owner, created_at=when, updated_at=when, version=1),
    ]
    dialect = crm.store.engine.dialect  # type: ignore[attr-defined]
    repo = crm.store.repository(spec_of(Probe))
    for record in records:
        (row,) = repo.rows(crm.tenant, [record])
        (fast,) = driver_rows(repo.table, dialect, crm.tenant, [record])
        slow = []
        for column in repo.table.c:
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            slow.append(process(row[column.name]) if process else row[column.name])
        for column, a, b in zip(repo.table.c, fast, slow, strict=True):
            if isinstance(column.type.dialect_impl(dialect), sa.JSON):
                a, b = json.loads(a), json.loads(b if isinstance(b, str) else json.dumps(b.obj))
            assert (a == b and type(a) is type(b)) or (isinstance(a, bool) and a == b), (column.name, a, b)


def test_copy_text_stores_exactly_what_an_insert_stores(new_database: Callable[[str], str]) -> None:
    """PostgreSQL: a derived table's COPY rows come out column for column as an INSERT's."""
    with _connect(new_database("postgresql")) as crm:
        owners = [crm.customers.add(Customer(kind="person", name=n)).id for n in ("Ada", "Bob")]
        repo = crm.store.repository(spec_of(Probe))
        engine: sa.Engine = crm.store.engine  # type: ignore[attr-defined]
        columns = ", ".join(f"{c.name}::text" for c in repo.table.c if c.name != "tenant")
        when = dt.datetime(2024, 1, 1, tzinfo=UTC)

        @given(drawn=st.lists(_probes(owners, [Ref("customers", owners[0])]), min_size=1, max_size=12))
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        def check(drawn: list[Probe]) -> None:
            # 120 rows (the COPY path starts at 100) from a dozen drawn ones: drawing 100 is slow
            records = [
                attrs.evolve(
                    drawn[i % len(drawn)],
                    id=uuid.uuid4(),
                    number=i,
                    external_id=f"x{i}" if i % 2 else None,
                    created_at=when,
                    updated_at=when,
                    version=1,
                )
                for i in range(120)
            ]
            copied, inserted = "c-" + uuid.uuid4().hex[:12], "i-" + uuid.uuid4().hex[:12]
            assert len(repo.insert_new(copied, records)) == len(records)  # >= COPY_MIN_ROWS: the COPY path
            repo.insert(inserted, records)
            with engine.connect() as conn:

                def rows(tenant: str) -> list[Any]:
                    sql = f"SELECT {columns} FROM crmkit_probes WHERE tenant = %(t)s ORDER BY id"
                    return conn.exec_driver_sql(sql, {"t": tenant}).all()

                assert rows(copied) == rows(inserted)
            for r in records:
                _same(repo.get(copied, r.id), r)

        check()


# --------------------------------------------------------------------------- tenancy


def test_tenants_do_not_see_each_others_records(url: str) -> None:
    with _connect(url) as one, _connect(url) as two:
        ada = one.customers.add(Customer(kind="person", name="Ada"))
        p = one.records(Probe).add(_probe(ada, external_id="mine"))
        s = one.records(Subscription).add(_subscription(ada))
        assert two.records(Probe).count() == 0 and two.records(Subscription).count() == 0
        assert list(two.records(Probe).find(F("owner_id") == ada.id)) == []
        with pytest.raises(NotFound):
            two.records(Probe).get(p.id)
        with pytest.raises(NotFound):
            two.records(Probe).get_by_external_id("mine")
        with pytest.raises(NotFound):
            two.records(Subscription).delete(s.id)
        assert one.records(Subscription).get(s.id) == s


# --------------------------------------------------------------------------- the derived tables


def _expected_columns(spec: Any) -> list[str]:
    names = ["tenant", "id"]
    for fd in spec.declared.values():
        names += [f"{fd.name}_aggregate", f"{fd.name}_id"] if fd.kind == "ref_any" else [fd.name]
    folded = [f"{fd.name}_folded" for fd in spec.declared.values() if fd.kind == "text" and fd.search]
    return [*names, *folded, "created_at", "updated_at", "version", "external_id"]


def test_derived_tables_match_their_declarations(empty_url: str) -> None:
    from crmkit_sqlalchemy._derived import columns_of
    from crmkit_sqlalchemy._migrate import diff

    with _connect(empty_url) as crm:  # crmkit's own declared aggregates (sales) are tables too
        derived = tuple(crm.schema.derived.values())
    assert {spec.name for spec in DECLARED} <= {spec.name for spec in derived}
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for spec in derived:
                columns = inspector.get_columns(spec.name)
                assert [c["name"] for c in columns] == _expected_columns(spec)
                nullable = {c["name"]: c["nullable"] for c in columns}
                for fd in spec.declared.values():
                    for name in _expected_columns(spec):
                        if name == fd.name or (name.startswith(f"{fd.name}_") and fd.kind == "ref_any"):
                            json = fd.kind in ("text_set", "many", "attributes")
                            assert nullable[name] is (fd.nullable and not json), (spec.name, name)
                uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(spec.name)}
                assert uniques == {("tenant", "external_id"), *(("tenant", *key) for key in spec.unique)}
                assert inspector.get_pk_constraint(spec.name)["constrained_columns"] == ["tenant", "id"]
                indexes = {tuple(i["column_names"]) for i in inspector.get_indexes(spec.name) if not i["unique"]}
                indexes |= uniques
                for key in spec.indexes:  # a ref_any field stands for its two columns
                    assert ("tenant", *(c for n in key for c in columns_of(spec, n))) in indexes, (spec.name, key)
                if spec.time_field is not None:
                    assert ("tenant", spec.time_field, "id") in indexes
                for fd in spec.declared.values():  # schema.text(search=True): the folded form, indexed
                    if fd.kind == "text" and fd.search:
                        assert ("tenant", f"{fd.name}_folded", "id") in indexes, (spec.name, fd.name)
                for ref in spec.references:  # every reference can be followed back with an index
                    parts = {f"{ref.field}_id", f"{ref.field}_aggregate"} if ref.any else {ref.field}
                    assert any(ix[:1] == ("tenant",) and set(ix[1 : 1 + len(parts)]) == parts for ix in indexes), (
                        spec.name,
                        ref.field,
                    )
            assert diff(conn, derived) == []
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_crmkit_probes_tenant_code")
        with engine.connect() as conn:
            assert [d[0] for d in diff(conn, derived)] == ["add_index"]  # the drift test sees plugin tables
            without_probe = tuple(spec for spec in derived if spec.name != DECLARED[0].name)
            removed = [d[1].name for d in diff(conn, without_probe) if d[0] == "remove_table"]
            assert removed == ["crmkit_probes"]  # a table no declaration of the connection derives
    finally:
        engine.dispose()


def test_the_probe_table_on_postgresql(new_database: Callable[[str], str]) -> None:
    """Column types where the databases differ: booleans, money, instants, text order."""
    url = new_database("postgresql")
    _connect(url).close()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT column_name, data_type, collation_name FROM information_schema.columns "
                "WHERE table_name = 'crmkit_probes'"
            ).all()
    finally:
        engine.dispose()
    types = {name: kind for name, kind, _ in found}
    collations = {name: collation for name, _, collation in found}
    assert types["flag"] == "boolean" and types["amount"] == "numeric" and types["number"] == "bigint"
    assert types["happened_at"] == "timestamp with time zone" and types["parts"] == "jsonb"
    assert types["about_id"] == "uuid" and types["day"] == "date"
    assert {collations[c] for c in ("code", "note", "currency", "colour", "about_aggregate")} == {"C"}


# --------------------------------------------------------------------------- connecting and migrating


def test_missing_tables_are_named_without_upgrade(empty_url: str) -> None:
    crmkit.connect(empty_url).close()  # crmkit's own tables (and those of installed plugins)
    missing = r"no table for the declared aggregates crmkit_probes, (subscriptions, )?sql_badges"
    with pytest.raises(BackendError, match=missing):
        _connect(empty_url, upgrade=False)
    _connect(empty_url).close()  # creates them
    with _connect(empty_url, upgrade=False) as crm:
        assert crm.records(Probe).count() == 0


def test_a_table_that_differs_from_its_declaration_is_refused(empty_url: str) -> None:
    _connect(empty_url).close()
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE sql_badges ADD COLUMN colour TEXT")
    finally:
        engine.dispose()
    with pytest.raises(BackendError, match=r"sql_badges \(has undeclared colour\)"):
        _connect(empty_url)
    crmkit.connect(empty_url).close()  # connections that do not declare badges do not care


def test_a_database_at_the_first_revision_keeps_every_record(empty_url: str) -> None:
    """Today's schema (0001) with data, then a connect that declares aggregates: nothing else changes."""
    from alembic import command
    from crmkit_sqlalchemy._migrate import alembic_config, current_revision
    from crmkit_sqlalchemy._schema import TABLES

    from crmkit import Interaction, Relationship, Transaction

    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
        with crmkit.connect(empty_url, tenant="acme") as crm:
            ada = crm.customers.add(Customer(kind="person", name="Ada", tags={"vip"}, attributes={"n": 1}))
            bob = crm.customers.add(Customer(kind="organization", name="Bob Ltd", external_id="bob"))
            crm.relationships.add(Relationship(source_id=ada.id, target_id=bob.id, kind="works_for"))
            crm.interactions.add(
                Interaction(customer_id=ada.id, channel="email", direction="inbound", occurred_at=BASE)
            )
            crm.transactions.add_many(
                Transaction(
                    customer_id=ada.id,
                    occurred_at=BASE + dt.timedelta(days=i),
                    amount=Decimal(i).scaleb(-2),
                    currency="EUR",
                    external_id=f"t{i}",
                )
                for i in range(150)
            )
            crm.customers.update(attrs.evolve(crm.customers.get(bob.id), owner="sales"))

        def dump() -> dict[str, list[Any]]:
            with engine.connect() as conn:
                return {
                    name: conn.exec_driver_sql(f"SELECT * FROM {name} ORDER BY tenant, id").all() for name in TABLES
                }

        before = dump()
        assert sum(map(len, before.values())) > 150
        with _connect(empty_url, "acme") as crm:
            assert crm.transactions.count() == 150 and crm.customers.get(ada.id) == ada
            crm.records(Probe).add(_probe(ada))
        assert dump() == before  # the rows of crmkit's own tables, byte for byte
        with engine.connect() as conn:
            assert current_revision(conn) is not None
            assert set(sa.inspect(conn).get_table_names()) >= {"crmkit_probes", "subscriptions", "sql_badges"}
    finally:
        engine.dispose()


def test_a_store_serves_an_aggregate_it_was_not_opened_with(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    with crmkit.connect(url, tenant="acme") as plain:
        repo = plain.store.repository(spec_of(Badge))  # creates the table on first use
        ada = plain.customers.add(Customer(kind="person", name="Ada"))
        stored = attrs.evolve(Badge(holder_id=ada.id, code="x"), version=1)
        repo.insert("acme", [stored])
        assert repo.get("acme", stored.id) == stored
    other_url = new_database("sqlite")
    crmkit.connect(other_url).close()
    with (
        crmkit.connect(other_url, upgrade=False) as other,
        pytest.raises(BackendError, match=r"no table for the declared aggregates? sql_badges"),
    ):
        other.store.repository(spec_of(Badge))


def test_declarations_sql_cannot_hold_are_refused_at_connect(new_database: Callable[[str], str]) -> None:
    @schema.aggregate("sql_clashes")
    class Clash(schema.Record):
        about: Ref | None = schema.ref_any(default=None)
        about_id: uuid.UUID | None = schema.uuid(default=None)

    class Plugin:
        @crmkit.hookimpl
        def crmkit_aggregates(self) -> Iterable[type]:
            return [Clash]

    with pytest.raises(PluginError, match="about_id"):
        crmkit.connect(new_database("sqlite"), plugins=[Plugin()])


def test_upgrade_ahead_of_time_creates_the_declared_tables(empty_url: str) -> None:
    import crmkit_sqlalchemy

    assert crmkit_sqlalchemy.upgrade(empty_url, plugins=PLUGINS) == crmkit_sqlalchemy.HEAD
    with _connect(empty_url, upgrade=False) as crm:
        assert crm.records(Subscription).count() == 0 and crm.records(Probe).count() == 0


def test_long_names_are_cut_alike_by_metadata_and_database(empty_url: str) -> None:
    """Constraint and index names over 63 characters: PostgreSQL's cut matches the metadata's, clashes are named."""
    from crmkit_sqlalchemy._migrate import diff

    @schema.aggregate(
        "a_rather_long_aggregate_name_for_tests",
        unique=[("customer_identifier_field", "another_long_field_name_here")],
        indexes=[("another_long_field_name_here", "customer_identifier_field")],
    )
    class Long(schema.Record):
        customer_identifier_field: uuid.UUID = schema.ref("customers", on_delete="cascade")
        another_long_field_name_here: str = schema.text()

    class Plugin:
        @crmkit.hookimpl
        def crmkit_aggregates(self) -> Iterable[type]:
            return [Long]

    with crmkit.connect(empty_url, tenant="acme", plugins=[Plugin()]) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        crm.records(Long).add(Long(customer_identifier_field=ada.id, another_long_field_name_here="x"))
        with pytest.raises(ConflictError, match="another_long_field_name_here='x' already exists"):
            crm.records(Long).add(Long(customer_identifier_field=ada.id, another_long_field_name_here="x"))
        declared = list(crm.schema.derived.values())  # installed plugins' aggregates too
    assert spec_of(Long) in declared
    engine = sa.create_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert diff(conn, declared) == []
    finally:
        engine.dispose()

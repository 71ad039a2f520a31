"""MongoDB's two plans of a sub-query, read first (``$in`` its values) or looked up (``$lookup``), answer alike.

``crmkit_mongo._semijoin.READ_FIRST`` decides per sub-query: one with at most that many records
is read first. These tests set it so that every sub-query is looked up (None), every one is
read first (a large bound), or some are and some are not (small bounds), and check that each
condition, on random data, gives the memory store's answer (the reference) every time: plain
sub-queries, negated, in an ``|``, on a nullable reference and on text, nested, grouped
(``having``) and first-of-group (``first_by``/``first_where``, with a sub-query inside).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from crmkit_mongo import _semijoin
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import crmkit
from crmkit import Customer, F
from crmkit.query import Expr, Select, bind
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import at, conformance_settings, person
from crmkit.testing.probe import Probe, ProbePlugin

#: None: every sub-query looked up; 0, 1, 3: the empty or small ones read first; 10**9: every one read first.
PLANS: tuple[int | None, ...] = (None, 0, 1, 3, 10**9)
TIMES = (at(2026, 1, 1), at(2026, 1, 2), at(2026, 1, 3))
FLAGGED = F("flag") == True  # noqa: E712


@pytest.fixture(scope="module")
def stores(mongo_db_url: str) -> Iterator[tuple[Backend, Backend]]:
    mongo = Backend(mongo_db_url, {}, plugins=[ProbePlugin()])
    memory = Backend("memory://", {}, plugins=[ProbePlugin()])
    yield mongo, memory
    mongo.close()
    memory.close()


def conditions(k: int, at_least: int, more_than: Decimal) -> tuple[list[Expr], list[Expr]]:
    """(conditions on probes, conditions on customers) with sub-queries of every shape."""
    vip = F("tags").contains("vip")
    big = F("number") > k
    theirs = F("owner_id").among(Customer, vip)
    latest_flag = Select(Probe, "owner_id", F("number") <= k, first_by="-happened_at", first_where=FLAGGED)
    sponsored = Select(
        Probe, "owner_id", None, first_by=("-number", "-happened_at"), first_where=F("sponsor_id").among(Customer, vip)
    )
    busy = Select(Probe, "owner_id", None, having=("count", ">=", at_least))
    spent = Select(Probe, "owner_id", ~big, having=("sum(amount)", ">", more_than))
    on_probes: list[Expr] = [
        theirs,
        ~theirs & big,
        theirs | big,
        F("sponsor_id").among(Customer, vip),
        ~F("sponsor_id").among(Customer, vip),
        F("code").in_(Select(Probe, "code", big)),
        F("owner_id").among(Customer, F("id").in_(Select(Probe, "owner_id", big)) & vip),
        F("owner_id").among(Customer, F("id").in_(latest_flag)) & FLAGGED,
        F("code").in_(Select(Probe, "code", None, first_by="-happened_at", first_where=FLAGGED)),
        F("owner_id").in_(busy) | ~F("sponsor_id").in_(spent),
    ]
    on_customers: list[Expr] = [
        F("id").in_(busy),
        ~F("id").in_(spent) & vip,
        F("id").in_(latest_flag),
        ~F("id").in_(latest_flag),
        F("id").in_(sponsored) | F("id").in_(spent),
        F("id").in_(Select(Probe, "owner_id", F("owner_id").in_(busy), first_by="happened_at", first_where=FLAGGED)),
    ]
    return on_probes, on_customers


def answer(records: Any, condition: Expr) -> tuple[int, set[uuid.UUID], list[uuid.UUID], int]:
    """Count, every id, a first page in an order, and a report's count."""
    page = [r.id for r in records.find(condition, order_by="-id", limit=3)]
    total = records.aggregate(condition, count=True).rows[0]["count"]
    return records.count(condition), {r.id for r in records.scan(condition)}, page, total


def lookups(records: Any, crm: Any, condition: Expr) -> int:
    """How many ``$lookup`` stages the pipeline of ``condition`` has (at its top level)."""
    repo = crm.store.repository(records.spec)
    return sum("$lookup" in stage for stage in repo.stages(crm.tenant, bind(condition, records.spec, crm.schema)))


@conformance_settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    people=st.lists(st.frozensets(st.sampled_from(("vip", "b2b"))), min_size=1, max_size=4),
    probes=st.lists(
        st.tuples(
            st.integers(0, 3),  # owner
            st.sampled_from(("a", "b", "c")),  # code
            st.integers(0, 5),  # number
            st.booleans(),  # flag
            st.integers(0, len(TIMES) - 1),  # happened_at: few values, so first records tie
            st.one_of(st.none(), st.integers(0, 3)),  # sponsor
            st.sampled_from(("0", "2.50", "-1", "10")),  # amount
        ),
        max_size=12,
    ),
    k=st.integers(0, 5),
    at_least=st.integers(1, 3),
    more_than=st.sampled_from((Decimal("-1"), Decimal("0"), Decimal("2.5"))),
)
def test_both_plans_give_the_reference_answers(
    stores: tuple[Backend, Backend],
    monkeypatch: pytest.MonkeyPatch,
    people: list[frozenset[str]],
    probes: list[tuple[int, str, int, bool, int, int | None, str]],
    k: int,
    at_least: int,
    more_than: Decimal,
) -> None:
    mongo, memory = (backend.crm() for backend in stores)
    customers = [person(f"P{i}", tags=tags) for i, tags in enumerate(people)]
    n = len(customers)
    unique = {(o % n, code, number): rest for o, code, number, *rest in probes}
    stored = [
        Probe(
            owner_id=customers[o].id,
            code=code,
            number=number,
            flag=flag,
            amount=Decimal(amount),
            currency="EUR",
            happened_at=TIMES[t],
            sponsor_id=None if sponsor is None else customers[sponsor % n].id,
        )
        for (o, code, number), (flag, t, sponsor, amount) in unique.items()
    ]
    for crm in (mongo, memory):
        crm.customers.add_many(customers)
        crm.records(Probe).add_many(stored)
    on_probes, on_customers = conditions(k, at_least, more_than)
    for of, where in [*((Probe, c) for c in on_probes), *((Customer, c) for c in on_customers)]:
        records = memory.customers if of is Customer else memory.records(Probe)
        want = answer(records, where)
        for plan in PLANS:
            monkeypatch.setattr(_semijoin, "READ_FIRST", plan)
            found = mongo.customers if of is Customer else mongo.records(Probe)
            assert answer(found, where) == want, (plan, where)
            if plan is None:  # every sub-query of the condition (at its level) is looked up
                assert lookups(found, mongo, where) >= 1
            elif plan == 10**9:  # every one is read first: one $match
                assert lookups(found, mongo, where) == 0


def test_values_read_first_are_read_in_the_transaction(
    stores: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a unit of work, a sub-query read first sees the unit's own writes (its session's snapshot), and
    another connection's writes made meanwhile are not seen by either plan."""
    mongo = stores[0]
    crm = mongo.crm()
    ada, bob = crm.customers.add(person("Ada")), crm.customers.add(person("Bob"))
    probes = crm.records(Probe)
    base: dict[str, Any] = {"number": 1, "amount": Decimal(1), "currency": "EUR"}
    probes.add(Probe(owner_id=ada.id, code="a", flag=True, happened_at=TIMES[0], **base))
    latest_flag = F("id").in_(Select(Probe, "owner_id", None, first_by="-happened_at", first_where=FLAGGED))
    other = crmkit.connect(mongo.url, tenant=crm.tenant, plugins=[ProbePlugin()])  # a store of its own
    for plan in (None, 10**9):
        monkeypatch.setattr(_semijoin, "READ_FIRST", plan)
        assert {c.id for c in crm.customers.scan(latest_flag)} == {ada.id}
        with pytest.raises(RuntimeError), crm.transaction():
            # in the unit: Bob's latest probe is flagged, Ada's latest is not
            probes.add(Probe(owner_id=bob.id, code="b", flag=True, happened_at=TIMES[1], **base))
            probes.add(Probe(owner_id=ada.id, code="c", flag=False, happened_at=TIMES[2], **base))
            assert {c.id for c in crm.customers.scan(latest_flag)} == {bob.id}, plan
            assert crm.customers.count(~latest_flag) == 1
            # outside the unit, nothing of it is seen yet
            assert other.customers.count(latest_flag) == 1
            raise RuntimeError("roll back")
        assert {c.id for c in crm.customers.scan(latest_flag)} == {ada.id}
    other.close()


def test_a_sub_query_with_more_records_than_the_bound_is_looked_up(
    stores: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = stores[0].crm()
    owners = [person(f"P{i}", tags={"vip"} if i % 2 else set()) for i in range(6)]
    crm.customers.add_many(owners)
    theirs = F("owner_id").among(Customer, F("tags").contains("vip"))
    base: dict[str, Any] = {"code": "a", "amount": Decimal(1), "currency": "EUR", "happened_at": TIMES[0]}
    crm.records(Probe).add_many([Probe(owner_id=c.id, number=1, **base) for c in owners])
    probes = crm.records(Probe)
    for bound, looked_up in ((2, 1), (3, 0), (10, 0)):  # three VIP customers
        monkeypatch.setattr(_semijoin, "READ_FIRST", bound)
        assert lookups(probes, crm, theirs) == looked_up
        assert probes.count(theirs) == 3
    # an empty sub-query is read first even with a bound of 0: $in no values
    monkeypatch.setattr(_semijoin, "READ_FIRST", 0)
    assert lookups(probes, crm, F("owner_id").among(Customer, F("name") == "nobody")) == 0
    assert probes.count(F("owner_id").among(Customer, F("name") == "nobody")) == 0
    assert probes.count(~F("owner_id").among(Customer, F("name") == "nobody")) == 6


def test_large_values_are_looked_up(stores: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-query with a long text value, or once the condition's values read first reach their byte bound, is
    looked up: the values travel in the query, which MongoDB bounds."""
    crm = stores[0].crm()
    owner = crm.customers.add(person("Ada"))
    base: dict[str, Any] = {"owner_id": owner.id, "amount": Decimal(1), "currency": "EUR", "happened_at": TIMES[0]}
    probes = crm.records(Probe)
    long_code = "x" * 2_000
    probes.add_many([Probe(code=long_code, number=1, **base), Probe(code="a", number=0, **base)])
    monkeypatch.setattr(_semijoin, "READ_FIRST", 10**9)
    same_code = F("code").in_(Select(Probe, "code", F("number") > 0))
    short_code = F("code").in_(Select(Probe, "code", F("number") == 0))
    assert lookups(probes, crm, same_code) == 1  # 2,000 bytes of text
    assert lookups(probes, crm, short_code) == 0
    assert [p.code for p in probes.find(same_code)] == [long_code]
    assert [p.code for p in probes.find(~same_code)] == ["a"]
    # the condition's budget: the first sub-query read first spends it, the second is looked up
    monkeypatch.setattr(_semijoin, "READ_FIRST_BYTES", 20)
    both = short_code | F("owner_id").among(Customer, F("name") == "Ada")
    assert lookups(probes, crm, both) == 1
    assert probes.count(both) == 2
    monkeypatch.setattr(_semijoin, "READ_FIRST_BYTES", 0)
    assert lookups(probes, crm, both) == 2
    assert probes.count(both & short_code) == 1


def test_the_shipped_bound_reads_a_few_thousand_first() -> None:
    assert _semijoin.READ_FIRST is not None and 1_000 <= _semijoin.READ_FIRST <= 10_000

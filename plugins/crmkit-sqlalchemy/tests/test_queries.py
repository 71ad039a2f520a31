"""The SQL translation of the query language gives exactly the answers of ``crmkit.query.evaluate``.

Hypothesis builds small populations whose values collide in every way the semantics care
about (1 / 1.0 / Decimal("1.0") / True, 0.1 / Decimal("0.1"), the same instant at two
offsets, hostile text with quotes, ``--``, ``%``, ``_`` and backslashes) and random
conditions over them; the database must find exactly the records the reference finds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from crmkit_sqlalchemy import SqlStore
from crmkit_sqlalchemy._words import index_name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import Customer, F, Transaction
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS, TRANSACTIONS
from crmkit.query import Expr, bind, evaluate, parse_order
from crmkit.testing.probe import Probe, ProbePlugin

UTC = dt.timezone.utc
TEHRAN = dt.timezone(dt.timedelta(hours=3, minutes=30))

TEXTS = ["", "a", "A", "ab", "a%", "%", "_", "a_b", "\\", "\\%", "'", "' OR 1=1 --", "--", "زهرا", "😀", "ä", "z", "1"]
ATTRIBUTES = [
    0, 1, -1, 1.0, 0.1, 2.5, Decimal("1.0"), Decimal("0.1"), Decimal("-2.500"), 2**63 - 1, 9.3e18, True, False,
    "1", "a", "A", "%", "", "a_b",
    dt.date(2024, 1, 1), dt.date(2023, 12, 31),
    dt.datetime(2024, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 3, 30, tzinfo=TEHRAN),  # the same instant as the one above
    dt.datetime(2023, 12, 31, 23, tzinfo=UTC),
]

texts = st.sampled_from(TEXTS)
nonblank = texts.filter(lambda s: s.strip() != "")
attribute_values = st.sampled_from(ATTRIBUTES)
attributes = st.dictionaries(st.sampled_from(["a", "b"]), attribute_values, max_size=2)

customers = st.builds(
    Customer,
    kind=st.sampled_from(["person", "organization"]),
    name=nonblank,
    owner=st.none() | texts,
    tags=st.frozensets(nonblank, max_size=3),
    attributes=attributes,
    external_id=st.none() | nonblank,
)

OPS = ["==", "!=", "<", "<=", ">", ">="]
_op = st.sampled_from(OPS)


def _compare(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Expr]:
    return st.builds(lambda op, v: _cmp(field, op, v), _op, values)


def _cmp(field: str, op: str, value: Any) -> Expr:
    f = F(field)
    return {"==": f == value, "!=": f != value, "<": f < value, "<=": f <= value, ">": f > value, ">=": f >= value}[op]


def _atoms() -> st.SearchStrategy[Expr]:
    return st.one_of(
        _compare("name", texts),
        _compare("owner", texts),
        _compare("external_id", texts),
        _compare("kind", st.sampled_from(["person", "organization", "x"])),
        st.sampled_from([F("owner") == None, F("owner") != None, F("external_id").is_null()]),  # noqa: E711
        st.builds(lambda v: F("name").contains(v), texts),
        st.builds(lambda v: F("owner").contains(v), texts),
        st.builds(lambda v: F("tags").contains(v), texts),
        st.builds(lambda vs: F("name").in_(vs), st.lists(texts, max_size=3)),
        st.builds(lambda vs: F("owner").in_(vs), st.lists(texts, min_size=60, max_size=80)),
        _compare("attributes.a", attribute_values),
        _compare("attributes.b", attribute_values),
        st.sampled_from([F("attributes.a") == None, F("attributes.b") != None]),  # noqa: E711
        st.builds(lambda v: F("attributes.a").contains(v), texts),
        st.builds(lambda vs: F("attributes.b").in_(vs), st.lists(attribute_values, max_size=3)),
        _compare("version", st.sampled_from([0, 1, 2])),
    )


conditions = st.recursive(
    _atoms(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a: ~a, inner),
    ),
    max_leaves=6,
)

_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _fresh(crm: CRM) -> CRM:
    return CRM(crm.store, crm._host, "q-" + uuid.uuid4().hex[:12])


@given(population=st.lists(customers, min_size=1, max_size=8), wheres=st.lists(conditions, min_size=1, max_size=6))
@_SETTINGS
def test_find_and_count_match_the_reference(crm: CRM, population: list[Customer], wheres: list[Expr]) -> None:
    crm = _fresh(crm)
    seen: set[str] = set()
    unique = []
    for c in population:  # external ids are unique per tenant
        if c.external_id is None or c.external_id not in seen:
            unique.append(c)
            seen.add(c.external_id or "")
    crm.customers.add_many(unique)
    stored = list(crm.customers.find())
    for where in wheres:
        bound = bind(where, CUSTOMERS)
        expected = {c.id for c in stored if evaluate(bound, CUSTOMERS, c)}
        assert {c.id for c in crm.customers.find(where)} == expected, repr(where)
        assert crm.customers.count(where) == len(expected), repr(where)


@given(names=st.lists(nonblank, min_size=2, max_size=10, unique=True), desc=st.booleans())
@_SETTINGS
def test_text_sorts_by_code_point_and_pages_by_keyset(crm: CRM, names: list[str], desc: bool) -> None:
    crm = _fresh(crm)
    crm.customers.add_many(Customer(kind="person", name=n) for n in names)
    order = "-name" if desc else "name"
    got: list[str] = []
    page = crm.customers.find(order_by=order, limit=3)
    got += [c.name for c in page]
    while page.next is not None:
        page = crm.customers.find(order_by=order, limit=3, after=page.next)
        got += [c.name for c in page]
    assert got == sorted(names, reverse=desc)


def test_money_conditions_and_order(crm: CRM) -> None:
    crm = _fresh(crm)
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    amounts = ["0", "0.000001", "1.5", "1.50", "10", "9.999999", "999999999999999.999999", "100"]
    crm.transactions.add_many(
        Transaction(customer_id=ada.id, occurred_at=base + dt.timedelta(days=i), amount=Decimal(a), currency="EUR")
        for i, a in enumerate(amounts)
    )
    stored = list(crm.transactions.find())
    for where in [F("amount") == Decimal("1.5"), F("amount") > 9, F("amount") <= Decimal("1.500000"),
                  F("amount").in_([0, Decimal("100.0")]), ~(F("amount") < 10)]:
        bound = bind(where, TRANSACTIONS)
        expected = {t.id for t in stored if evaluate(bound, TRANSACTIONS, t)}
        assert {t.id for t in crm.transactions.find(where)} == expected
    by_amount = [str(t.amount) for t in crm.transactions.find(order_by=["-amount", "occurred_at"])]
    assert by_amount == ["999999999999999.999999", "100", "10", "9.999999", "1.5", "1.50", "0.000001", "0"]
    order = parse_order(("amount",), TRANSACTIONS)
    assert [t.id for t in crm.transactions.find(order_by="amount")] == [
        t.id for t in sorted(stored, key=lambda t: order.sort_key_values(TRANSACTIONS, t))
    ]


def test_keyset_conditions_use_row_values(crm: CRM) -> None:
    """The keyset condition is recognised and sent as one row comparison the index can seek."""
    from crmkit.query import keyset_after

    assert isinstance(crm.store, SqlStore)
    repo = crm.store.repository(TRANSACTIONS)
    last = (dt.datetime(2024, 1, 1, tzinfo=UTC), uuid.uuid4())
    same = keyset_after(parse_order(("occurred_at",), TRANSACTIONS), last)
    sql = str(repo.compiler.expr(bind(same, TRANSACTIONS)).compile(crm.store.engine))
    assert "(transactions.occurred_at, transactions.id) >" in sql
    mixed = keyset_after(parse_order(("-occurred_at",), TRANSACTIONS), last)
    sql = str(repo.compiler.expr(bind(mixed, TRANSACTIONS)).compile(crm.store.engine))
    assert " OR " in sql  # mixed directions stay plain comparisons


def test_query_values_with_nul_behave_as_on_memory(crm: CRM) -> None:
    """Stored text never holds NUL; a query value may, and PostgreSQL cannot even bind it."""
    crm = _fresh(crm)
    names = ["a", "a\x01", "ab", "b", "", "😀"]
    crm.customers.add_many(Customer(kind="person", name=n if n else "blank name", owner=n or None) for n in names)
    stored = list(crm.customers.find())
    for value in ["a\x00", "\x00", "a\x00b", "ab\x00"]:
        for where in [F("name") == value, F("name") != value, F("name") < value, F("name") <= value,
                      F("name") > value, F("name") >= value, F("owner") < value, F("owner") >= value,
                      ~(F("owner") > value), F("name").contains(value), F("tags").contains(value),
                      F("name").in_([value, "b"]), F("owner").in_([value])]:
            bound = bind(where, CUSTOMERS)
            expected = {c.id for c in stored if evaluate(bound, CUSTOMERS, c)}
            assert {c.id for c in crm.customers.find(where)} == expected, repr(where)
    assert crm.store.repository(CUSTOMERS).get_by_external_id(crm.tenant, "x\x00") is None


def test_type_ahead_is_served_by_the_folded_name_index(crm: CRM) -> None:
    """``startswith(fold=True)`` is a range on ``name_folded``, which (tenant, name_folded) serves."""
    import sqlalchemy as sa

    crm = _fresh(crm)
    crm.customers.add_many(Customer(kind="person", name=n) for n in ("Ștefan Popescu", "POPESCU, Ştefan", "Ana"))
    crm.customers.add_many(Customer(kind="person", name=f"Person {i}") for i in range(500))
    assert [c.name for c in crm.customers.find(F("name").startswith("Pop", fold=True))] == ["POPESCU, Ştefan"]
    assert isinstance(crm.store, SqlStore)
    repo = crm.store.repository(CUSTOMERS)
    where = bind(F("name").startswith("pop", fold=True), CUSTOMERS)
    statement = sa.select(repo.table.c.id).where(repo.compiler.where(crm.tenant, where))
    with crm.store.engine.connect() as conn:
        explain = "EXPLAIN QUERY PLAN" if crm.store.dialect == "sqlite" else "EXPLAIN"
        if crm.store.dialect == "postgresql":
            conn.exec_driver_sql("ANALYZE customers")
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(row) for row in conn.exec_driver_sql(f"{explain} {sql}"))
    assert "ix_customers_tenant_name_folded_id" in plan, plan


def test_word_search_is_served_by_the_word_index(shared_url: str) -> None:
    """``matches`` looks its words up: a GIN index on PostgreSQL, the words table's key on SQLite."""
    with crmkit.connect(shared_url, tenant="w-" + uuid.uuid4().hex[:12], plugins=[ProbePlugin()]) as crm:
        _served_by_word_index(crm)


def _served_by_word_index(crm: CRM) -> None:
    crm.customers.add_many(Customer(kind="person", name=n) for n in ("Ștefan Popescu", "POPESCU, Ştefan", "Ana Pop"))
    crm.customers.add_many(Customer(kind="person", name=f"Person {i} Popa") for i in range(500))
    assert sorted(c.name for c in crm.customers.find(F("name").matches("popescu STEFAN"))) == [
        "POPESCU, Ştefan",
        "Ștefan Popescu",
    ]
    owner = crm.customers.find(limit=1)[0].id
    when = dt.datetime(2026, 1, 1, tzinfo=UTC)
    codes = ["Ștefan Popescu", *(f"P-{i} Popa" for i in range(500))]
    crm.records(Probe).add_many(
        Probe(owner_id=owner, code=c, number=1, amount=Decimal(1), currency="EUR", happened_at=when) for c in codes
    )
    assert crm.records(Probe).count(F("code").matches("popescu stefan")) == 1
    assert isinstance(crm.store, SqlStore)
    for spec, field, table in (
        (CUSTOMERS, "name", "customers"),
        (crm.schema.spec(Probe), "code", crm.schema.spec(Probe).name),
    ):
        repo = crm.store.repository(spec)
        for query in ("popescu", "popescu stefan"):
            where = bind(F(field).matches(query), spec)
            if crm.store.dialect == "postgresql":  # the index on (tenant, ...) would win on a table this small
                statement = sa.select(repo.table.c.id).where(repo.compiler.expr(where, crm.tenant))
            else:
                statement = sa.select(repo.table.c.id).where(repo.compiler.where(crm.tenant, where))
            with crm.store.engine.connect() as conn:
                if crm.store.dialect == "postgresql":
                    conn.exec_driver_sql(f"ANALYZE {table}")
                    conn.exec_driver_sql("SET enable_seqscan = off")  # ask whether the index can serve it at all
                    conn.exec_driver_sql("SET enable_indexscan = off")
                    explain = "EXPLAIN"
                else:
                    explain = "EXPLAIN QUERY PLAN"
                sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
                plan = " ".join(str(row) for row in conn.exec_driver_sql(f"{explain} {sql}"))
            if crm.store.dialect == "postgresql":
                assert index_name(table, f"{field}_folded") in plan, plan
            else:
                assert f"{table}__{field}_folded_words USING PRIMARY KEY (tenant=? AND word=?)" in plan, plan

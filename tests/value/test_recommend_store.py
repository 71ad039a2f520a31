"""crm.value.baskets and next_purchase on every backend: pushed-down reads, the same answer as NextPurchase."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.servers import unique_name

pytest.importorskip("numpy")
pytest.importorskip("scipy")

import crmkit
from crmkit import Customer, LineItem, Transaction, ValidationError
from crmkit.value.datasets import simulate_baskets
from crmkit.value.recommend import NextPurchase

NAMESPACE = uuid.UUID("5b0d7c55-0f9e-4a43-9a47-6a4f0f4b1d20")
Basket = tuple[uuid.UUID, dt.datetime, tuple[str, ...]]


def customer_id(n: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, str(n))


def records() -> tuple[list[Customer], list[Transaction], list[Basket]]:
    """A small simulated shop as crmkit records, plus what ``baskets()`` must return."""
    sim = simulate_baskets(120, 25, seed=2)
    customers = [Customer(kind="person", name=f"C{n}", id=customer_id(n)) for n in range(120)]
    sales, expected = [], []
    for n, at, products in sim.baskets():
        names = tuple(f"p{p:02d}" for p in products)
        lines = [LineItem(name, 1, Decimal("2.50")) for name in names]
        sales.append(
            Transaction(
                customer_id=customer_id(n),
                occurred_at=at,
                amount=Decimal("2.50") * len(lines),
                currency="EUR",
                line_items=lines,
            )
        )
        expected.append((customer_id(n), at, names))
    at = dt.datetime(2025, 6, 1, 12, tzinfo=dt.timezone.utc)
    one = customer_id(0)
    # Two lines of one product: both listed; two baskets at one instant: both kept.
    twice = (LineItem("p01", 1, 1), LineItem("p01", 2, 1))
    sales += [
        Transaction(customer_id=one, occurred_at=at, amount=Decimal(3), currency="EUR", line_items=twice),
        Transaction(customer_id=one, occurred_at=at, amount=Decimal(1), currency="EUR", line_items=[LineItem("p02")]),
    ]
    expected += [(one, at, ("p01", "p01")), (one, at, ("p02",))]
    # Never baskets: a refund, and a purchase without line items.
    sales += [
        Transaction(
            customer_id=one,
            occurred_at=at,
            amount=Decimal(3),
            currency="EUR",
            kind="refund",
            line_items=[LineItem("p03")],
        ),
        Transaction(customer_id=customer_id(1), occurred_at=at, amount=Decimal(9), currency="EUR"),
    ]
    return customers, sales, expected


@pytest.fixture(scope="module")
def shop() -> tuple[list[Customer], list[Transaction], list[Basket]]:
    return records()


@dataclasses.dataclass
class Store:
    crm: crmkit.CRM
    backend: str
    url: str
    expected: list[Basket]


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mongodb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, shop: tuple[list[Customer], list[Transaction], list[Basket]]
) -> Iterator[Store]:
    if request.param == "memory":
        url = "memory://shop-" + unique_name("m")
    elif request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = request.getfixturevalue("mongo_url")
    customers, sales, expected = shop
    tenant = unique_name("baskets")
    with crmkit.connect(url, tenant=f"{tenant}-other") as other:  # another tenant's data stays out
        ghost = other.customers.add(Customer(kind="person", name="Ghost"))
        other.transactions.add(
            Transaction(
                customer_id=ghost.id,
                occurred_at=sales[0].occurred_at,
                amount=Decimal(1),
                currency="EUR",
                line_items=[LineItem("p00")],
            )
        )
    with crmkit.connect(url, tenant=tenant) as crm:
        crm.customers.add_many(customers)
        crm.transactions.add_many(sales)
        yield Store(crm, request.param, url, expected)


def test_baskets_hold_customer_time_and_products_of_purchases(store: Store) -> None:
    got = list(store.crm.value.baskets())
    assert sorted(got) == sorted(store.expected)
    ids = [b[0] for b in got]
    assert ids == sorted(ids)  # grouped by customer, ascending
    assert all(isinstance(b[0], uuid.UUID) and b[1].tzinfo is not None and isinstance(b[2], tuple) for b in got)


def test_the_time_window_is_inclusive(store: Store) -> None:
    times = sorted({t for _, t, _ in store.expected})
    since, until = times[10], times[-20]
    window = sorted(b for b in store.expected if since <= b[1] <= until)
    assert sorted(store.crm.value.baskets(since=since, until=until)) == window
    assert sorted(store.crm.value.baskets(until=times[0])) == sorted(b for b in store.expected if b[1] == times[0])
    with pytest.raises(ValidationError, match="since"):
        store.crm.value.baskets(since=dt.datetime(2025, 1, 1))  # naive


def test_backends_push_the_read_down(store: Store) -> None:
    crm = store.crm
    answer = crm._host.pm.hook.crmkit_baskets(store=crm.store, tenant=crm.tenant, since=None, until=None)
    if store.backend == "memory":
        assert answer is None  # memory:// streams its records: they are in memory already
        return
    assert answer is not None
    assert sorted(answer) == sorted(store.expected)
    if store.backend in ("sqlite", "postgresql"):
        import sqlalchemy as sa

        seen: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            seen.append(statement)

        engine = crm.store.engine  # type: ignore[attr-defined]
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            assert len(list(crm.value.baskets())) == len(store.expected)
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        reads = [s for s in seen if "FROM transactions" in s]
        assert reads, seen
        for statement in reads:  # three fields; the database picks the products out of the JSON
            assert "transactions.amount" not in statement and "transactions.attributes" not in statement
            assert "json" in statement.lower()


def test_pages_and_batches_join_up(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from crmkit_mongo import _baskets as mongo_baskets
    from crmkit_sqlalchemy import _baskets as sql_baskets

    monkeypatch.setattr(sql_baskets, "PAGE", 7)
    monkeypatch.setattr(mongo_baskets, "BATCH", 7)
    assert sorted(store.crm.value.baskets()) == sorted(store.expected)
    with store.crm.transaction():  # inside a transaction the read goes through its connection or session
        assert len(list(store.crm.value.baskets())) == len(store.expected)


def test_next_purchase_is_next_purchase_fitted_on_the_baskets(store: Store) -> None:
    crm, expected = store.crm, store.expected
    reference = NextPurchase().fit(expected)
    got = crm.value.next_purchase(5)
    assert got == reference.recommend_many(None, 5)
    assert len(got) == 120 and all(len(v) == 5 for v in got.values())
    first = customer_id(0)
    new = crm.value.next_purchase(3, new_only=True, customer_ids=[first])
    bought = {p for c, _, ps in expected if c == first for p in ps}
    assert list(new) == [first] and len(new[first]) == 3 and not ({p for p, _ in new[first]} & bought)
    stranger = uuid.uuid4()
    mixed = crm.value.next_purchase(4, customer_ids=[stranger, customer_id(3)])
    assert list(mixed) == [stranger, customer_id(3)]
    assert mixed[stranger] == reference.recommend("someone unseen", 4)  # the most popular products
    custom = crm.value.next_purchase(2, model=NextPurchase(decay=0.5, explore_weight=2.0))
    assert custom == NextPurchase(decay=0.5, explore_weight=2.0).fit(expected).recommend_many(None, 2)
    with pytest.raises(ValidationError, match="model"):
        crm.value.next_purchase(model="popularity")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="customer_ids"):
        crm.value.next_purchase(customer_ids=["not an id"])  # type: ignore[list-item]
    for bad in ({"k": 0}, {"k": "10"}, {"new_only": "yes"}):
        with pytest.raises(ValidationError) as info:
            crm.value.next_purchase(**bad)  # type: ignore[arg-type]
        assert info.value.field == next(iter(bad))


def test_a_tenant_without_baskets_gets_nothing(store: Store) -> None:
    with crmkit.connect(store.url, tenant=unique_name("empty")) as empty:
        assert list(empty.value.baskets()) == []
        assert empty.value.next_purchase() == {}
        someone = uuid.uuid4()
        assert empty.value.next_purchase(customer_ids=[someone]) == {someone: []}

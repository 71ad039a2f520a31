"""The raw read path (``_fastread``) returns exactly what SQLAlchemy's execute path returns.

Hot reads (get by id; "field = value" in order with a limit) run compiled SQL on the DBAPI
cursor and build records with a generated decoder, on SQLite and PostgreSQL. Here every kind
of value crmkit stores is read both ways and compared field by field, type and time zone
included.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import Consent, Customer, EmailAddress, F, Interaction, LineItem, Phone, PostalAddress, Transaction
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS, INTERACTIONS, TRANSACTIONS
from crmkit.query import bind, parse_order

UTC = dt.timezone.utc
WHEN = dt.datetime(1999, 12, 31, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _same(fast: Any, slow: Any) -> None:
    assert fast == slow
    assert type(fast) is type(slow)
    for field in attrs.fields(type(slow)):
        mine, theirs = getattr(fast, field.name), getattr(slow, field.name)
        assert type(mine) is type(theirs), (field.name, type(mine), type(theirs))
        if isinstance(mine, Mapping):
            assert list(mine.items()) == list(theirs.items()), field.name
            for key, value in mine.items():
                assert type(value) is type(theirs[key]), (field.name, key)
        if isinstance(mine, dt.datetime):
            assert mine.tzinfo is theirs.tzinfo, field.name
        if isinstance(mine, Decimal):
            assert str(mine) == str(theirs), field.name


def _both_ways(crm: CRM, spec: Any, read: Callable[[Any], Any]) -> tuple[Any, Any]:
    """What ``read(repository)`` returns on the raw path, then on SQLAlchemy's."""
    repo: Any = crm.store.repository(spec)
    assert repo._raw
    fast = read(repo)
    repo._raw = False
    try:
        slow = read(repo)
    finally:
        repo._raw = True
    return fast, slow


def test_hot_reads_build_the_records_sqlalchemy_builds(crm: CRM) -> None:
    ada = crm.customers.add(
        Customer(
            kind="person",
            name="Ada",
            emails=(EmailAddress("ada@example.com", label="work", consent=(Consent("email", True, at=WHEN),)),),
            phones=(Phone("+44 20 7946 0000"),),
            addresses=(PostalAddress(("1 Main Street",), city="London", country="GB"),),
            tags=frozenset({"vip", "beta"}),
            attributes={
                "score": Decimal("1.50"),
                "since": dt.date(2020, 1, 2),
                "n": 3,
                "ok": True,
                "x": 0.5,
                "at": WHEN,
                "note": "hi",
            },
            external_id="c-1",
        )
    )
    crm.customers.add(Customer(kind="organization", name="Empty"))
    records = [
        crm.transactions.add(
            Transaction(
                customer_id=ada.id,
                occurred_at=WHEN + dt.timedelta(days=i),
                amount=amount,
                currency="EUR",
                kind=kind,
                line_items=(LineItem("book", Decimal("2"), Decimal("6.15")),) if i == 0 else (),
                attributes={"channel": "web"} if i == 1 else {},
                external_id=f"tx-{i}",
            )
        )
        for i, (amount, kind) in enumerate(
            [
                (Decimal("12.30"), "purchase"),
                (Decimal("0.000001"), "purchase"),
                (Decimal("100"), "refund"),
                (Decimal("999999999999999.999999"), "purchase"),
                (Decimal("7.0"), "purchase"),
            ]
        )
    ]
    talks = [
        crm.interactions.add(
            Interaction(
                customer_id=ada.id,
                channel="email" if i else "phone",
                direction="inbound",
                occurred_at=WHEN + dt.timedelta(hours=i),
                subject=f"Hello {i}",
                participants=frozenset({"ada", "bob"}) if i else frozenset(),
                attributes={"mood": "good"} if i else {},
            )
        )
        for i in range(3)
    ]

    fast, slow = _both_ways(crm, CUSTOMERS, lambda repo: repo.get(crm.tenant, ada.id))
    _same(fast, slow)
    assert fast == ada
    for spec, stored in ((TRANSACTIONS, records), (INTERACTIONS, talks)):
        where = bind(F("customer_id") == ada.id, spec)
        order = parse_order("-occurred_at", spec)
        fast_page, slow_page = _both_ways(crm, spec, lambda repo, w=where, o=order: repo.find(crm.tenant, w, o, 21))
        assert len(fast_page) == len(slow_page) == len(stored)
        for a, b in zip(fast_page, slow_page, strict=True):
            _same(a, b)
        assert fast_page == sorted(stored, key=lambda r: r.occurred_at, reverse=True)
        for record in stored:
            _same(*_both_ways(crm, spec, lambda repo, record=record: repo.get(crm.tenant, record.id)))


def test_hot_reads_inside_a_transaction_see_its_writes(crm: CRM) -> None:
    with crm.transaction():
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        tx = crm.transactions.add(
            Transaction(customer_id=ada.id, occurred_at=WHEN, amount=Decimal("1.00"), currency="EUR")
        )
        assert crm.customers.get(ada.id) == ada
        assert list(crm.transactions.find(F("customer_id") == ada.id, order_by="-occurred_at", limit=20)) == [tx]


def test_with_echo_every_read_is_logged(shared_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with crmkit.connect(shared_url, tenant="echo-" + shared_url[-8:].replace("/", ""), echo=True) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            caplog.clear()
            assert crm.customers.get(ada.id) == ada
            crm.transactions.find(F("customer_id") == ada.id, order_by="-occurred_at", limit=20)
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "FROM customers" in logged and "FROM transactions" in logged

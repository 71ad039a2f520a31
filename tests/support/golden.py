"""Fixed records of crmkit's own aggregates, and the stored form each backend gave them.

The stored-bytes tests of the backends write these records and compare what lands in the
database (SQL rows as the database's own text of each column, MongoDB documents as BSON
bytes) with the files in ``golden/``, taken when the form was decided. A change of stored
form then fails loudly and needs a migration, never a silent data rewrite. Regenerate
the files only on purpose: ``CRMKIT_WRITE_GOLDEN=1 pytest -k stored_bytes``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

import crmkit
from crmkit import (
    Consent,
    Customer,
    EmailAddress,
    Handle,
    Interaction,
    LineItem,
    Phone,
    PostalAddress,
    Relationship,
    Transaction,
)
from crmkit.sales import Order

FOLDER = Path(__file__).resolve().parent / "golden"
TENANT = "golden"
_UTC = dt.timezone.utc
_T0 = dt.datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=_UTC)


def _id(n: int) -> uuid.UUID:
    return uuid.UUID(int=(0x01A2 << 112) | n)


def fixed_clock() -> Callable[[], dt.datetime]:
    """A clock that ticks one second a call from a fixed instant."""
    ticks = iter(_T0 + dt.timedelta(seconds=i) for i in range(1_000_000))
    return lambda: next(ticks)


def write_records(crm: crmkit.CRM) -> None:
    """Add one record of every kind with every field set, and one stage change, in a fixed order."""
    east = dt.timezone(dt.timedelta(hours=2))
    ada = crm.customers.add(
        Customer(
            kind="person",
            name="Ada Lovelace-Ionescu 😀",
            emails=[
                EmailAddress("ada@example.ro", label="work", consent=[Consent("email", True, at=_T0, source="form")])
            ],
            phones=[Phone("+40 21 555 0101", consent=[Consent("phone", True), Consent("sms", False)])],
            addresses=[
                PostalAddress(
                    ["Str. Lipscani 12", "ap. 3"],
                    city="București",
                    postal_code="030167",
                    region="B",
                    country="RO",
                    label="home",
                )
            ],
            handles=[Handle("linkedin", "ada")],
            tags={"vip", "newsletter"},
            owner="user:7",
            attributes={
                "score": Decimal("9.50"),
                "n": 3,
                "f": 0.25,
                "ok": True,
                "day": dt.date(2025, 1, 2),
                "at": dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=east),
                "note": "ş",
            },
            external_id="crm-1",
            id=_id(1),
        )
    )
    acme = crm.customers.add(Customer(kind="organization", name="Acme", id=_id(2)))
    crm.relationships.add(
        Relationship(
            ada.id,
            acme.id,
            "works_for",
            role="CTO",
            since=dt.date(2024, 1, 1),
            until=dt.date(2026, 12, 31),
            attributes={"badge": 12},
            id=_id(3),
        )
    )
    crm.interactions.add(
        Interaction(
            customer_id=ada.id,
            channel="email",
            direction="inbound",
            occurred_at=_T0 - dt.timedelta(days=3),
            subject="Hello",
            summary="asked about prices",
            outcome="quote sent",
            participants={"user:7", "user:9"},
            attributes={"thread": "t-1"},
            external_id="mail-1",
            id=_id(4),
        )
    )
    crm.transactions.add(
        Transaction(
            customer_id=ada.id,
            occurred_at=_T0 - dt.timedelta(days=1),
            amount=Decimal("1234.500"),
            currency="EUR",
            kind="purchase",
            line_items=[LineItem("SKU-1", Decimal("2"), Decimal("617.25")), LineItem("SKU-2", Decimal("0.5"))],
            attributes={"channel": "web"},
            external_id="order-1",
            id=_id(5),
        )
    )
    crm.transactions.add(
        Transaction(customer_id=ada.id, occurred_at=_T0, amount=Decimal("10"), currency="JPY", kind="refund", id=_id(6))
    )
    crm.customers.update(attrs.evolve(crm.customers.get(acme.id), stage="prospect"))
    # written last, so that the records above keep their instants: a payment for an order (order_id)
    order = crm.orders.add(Order(currency="EUR", customer_id=ada.id, id=_id(7)))
    crm.transactions.add(
        Transaction(
            customer_id=ada.id, occurred_at=_T0, amount=Decimal("99.99"), currency="EUR", order_id=order.id, id=_id(8)
        )
    )


def check(name: str, stored: dict[str, Any]) -> None:
    """Compare ``stored`` with the golden file ``name`` (or write it when asked to)."""
    path = FOLDER / f"{name}.json"
    text = json.dumps(stored, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("CRMKIT_WRITE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert stored == expected, f"the stored form of crmkit's aggregates changed ({path.name}): that needs a migration"

"""Bad input is refused on construction with a ValidationError that names the field."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import (
    Consent,
    Customer,
    EmailAddress,
    Interaction,
    LineItem,
    Phone,
    PostalAddress,
    Relationship,
    Transaction,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
CID = uuid.uuid4()


def _txn(**kw: Any) -> Transaction:
    base: dict[str, Any] = {"customer_id": CID, "occurred_at": NOW, "amount": Decimal("1.00"), "currency": "EUR"}
    return Transaction(**{**base, **kw})


CASES: list[tuple[str, Any]] = [
    ("name", lambda: Customer(kind="person", name="")),
    ("name", lambda: Customer(kind="person", name="   ")),
    ("kind", lambda: Customer(kind="robot", name="R2")),
    ("occurred_at", lambda: _txn(occurred_at=dt.datetime(2026, 1, 1))),
    ("amount", lambda: _txn(amount=Decimal("NaN"))),
    ("amount", lambda: _txn(amount=Decimal("Infinity"))),
    ("amount", lambda: _txn(amount=1.5)),
    ("amount", lambda: _txn(amount=Decimal("-3"))),
    ("amount", lambda: _txn(amount=Decimal("0.0000001"))),
    ("currency", lambda: _txn(currency="EURO")),
    ("currency", lambda: _txn(currency="XYZ")),
    ("email", lambda: EmailAddress("not-an-address")),
    ("email", lambda: EmailAddress("two@@example.org")),
    ("phone", lambda: Phone("call me")),
    ("quantity", lambda: LineItem("cd", quantity=Decimal("-1"), unit_price=Decimal(3))),
    ("quantity", lambda: LineItem("cd", quantity=0)),
    ("customer_id", lambda: _txn(customer_id=str(CID))),
    ("id", lambda: Customer(kind="person", name="x", id=123)),
    ("source_id", lambda: Relationship(source_id="a", target_id=CID, kind="works_for")),
    ("target_id", lambda: Relationship(source_id=CID, target_id=CID, kind="works_for")),
    ("kind", lambda: Relationship(source_id=CID, target_id=uuid.uuid4(), kind="works for")),
    (
        "until",
        lambda: Relationship(CID, uuid.uuid4(), "works_for", since=dt.date(2026, 2, 1), until=dt.date(2026, 1, 1)),
    ),
    ("direction", lambda: Interaction(customer_id=CID, channel="email", direction="sideways", occurred_at=NOW)),
    ("channel", lambda: Interaction(customer_id=CID, channel="e mail", direction="inbound", occurred_at=NOW)),
    ("attributes.score", lambda: Customer(kind="person", name="x", attributes={"score": math.nan})),
    ("attributes", lambda: Customer(kind="person", name="x", attributes={"bad key": 1})),
    ("attributes.when", lambda: Customer(kind="person", name="x", attributes={"when": dt.datetime(2026, 1, 1)})),
    ("attributes.blob", lambda: Customer(kind="person", name="x", attributes={"blob": b"bytes"})),
    ("attributes.big", lambda: Customer(kind="person", name="x", attributes={"big": 2**64})),
    ("tags", lambda: Customer(kind="person", name="x", tags="vip")),
    ("stage", lambda: Customer(kind="person", name="x", stage="happy")),
    ("name", lambda: Customer(kind="person", name="nul\x00byte")),
    ("name", lambda: Customer(kind="person", name="lone \ud800 surrogate")),
    ("country", lambda: PostalAddress(["1 Main St"], country="Germany")),
    ("lines", lambda: PostalAddress([])),
    ("consent", lambda: EmailAddress("a@b.org", consent=[Consent("email", True), Consent("email", False)])),
    ("at", lambda: Consent("email", True, at=dt.datetime(2026, 1, 1))),
    ("version", lambda: Customer(kind="person", name="x", version=-1)),
    ("emails[0]", lambda: Customer(kind="person", name="x", emails=["ada@example.org"])),
]


@pytest.mark.parametrize(("field", "build"), CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_bad_input_names_the_field(field: str, build: Any) -> None:
    with pytest.raises(crmkit.ValidationError) as info:
        build()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert isinstance(info.value, ValueError)


def test_unicode_text_is_kept_as_given() -> None:
    names = ["محمد رضایی", "Ștefan Dumitrescu", "Zoë 👩‍💻 Ltd", "x" * 10_000]
    for name in names:
        assert Customer(kind="person", name=name).name == name


def test_money_accepts_ints_and_keeps_decimals_exact() -> None:
    assert _txn(amount=12).amount == Decimal(12)
    assert _txn(amount=Decimal("0.10")).amount == Decimal("0.10")


def test_aware_datetimes_in_any_zone_are_the_same_instant() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    t = _txn(occurred_at=dt.datetime(2026, 3, 1, 14, tzinfo=plus2))
    assert t.occurred_at == NOW


def test_domain_objects_are_frozen_and_hashable() -> None:
    c = Customer(kind="person", name="Ada", tags={"vip"}, attributes={"tier": "gold"})
    with pytest.raises(AttributeError):
        c.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.attributes["tier"] = "silver"  # type: ignore[index]
    twin = attrs.evolve(c)
    assert twin == c and hash(twin) == hash(c)


def test_consent_decides_may_contact() -> None:
    granted = EmailAddress("a@example.org", consent=[Consent("email", True, at=NOW, source="web form")])
    denied = Phone("+49 30 1234567", consent=[Consent("sms", False)])
    c = Customer(kind="person", name="Ada", emails=[granted], phones=[denied])
    assert c.may_contact("email") and not c.may_contact("sms") and not c.may_contact("phone")


def test_validation_error_can_be_located_at_a_row() -> None:
    err = crmkit.ValidationError("amount", "must be a finite number", "NaN").at_row(41)
    assert err.row == 41 and str(err).startswith("row 41: amount:")

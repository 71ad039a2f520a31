"""How values are stored: exact keys, exact money, UTC instants, and records that come back unchanged."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit_sqlalchemy._encoding import (
    decode_attributes,
    encode_attributes,
    money_key,
    money_text,
    number_key,
    parse_money_text,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit import Consent, Customer, EmailAddress, Handle, LineItem, Phone, PostalAddress, Transaction
from crmkit.crm import CRM

# ----------------------------------------------------------------------------- strategies

#: Text that has broken SQL layers before: quotes, comments, LIKE wildcards, escapes, RTL, emoji.
HOSTILE = ["'", '"', "--", ";", "%", "_", "\\", "\\%", "'; DROP TABLE customers; --", "زهرا", "😀", "\u200f", "ß", "Ş"]

texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=5).map("".join),
)
nonblank = texts.filter(lambda s: s.strip() != "")
moneys = st.integers(0, 6).flatmap(
    lambda places: st.decimals(min_value=-(10**15) + 1, max_value=10**15 - 1, places=places, allow_nan=False,
                               allow_infinity=False)
)
amounts = st.integers(0, 6).flatmap(
    lambda places: st.decimals(min_value=0, max_value=10**15 - 1, places=places, allow_nan=False, allow_infinity=False)
)
zones = st.sampled_from(
    [dt.timezone.utc, dt.timezone(dt.timedelta(hours=3, minutes=30)), dt.timezone(dt.timedelta(hours=-11))]
)
instants = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=zones
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    moneys,
)
attribute_values = st.one_of(
    texts, st.booleans(), numbers, st.dates(), instants
)
attribute_maps = st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), attribute_values, max_size=5)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _cmp(a: Any, b: Any) -> int:
    return _sign((a > b) - (a < b))


# ----------------------------------------------------------------------------- encodings


@given(numbers, numbers)
@settings(max_examples=400)
def test_number_keys_order_exactly_like_the_numbers(a: Any, b: Any) -> None:
    assert _cmp(number_key(a), number_key(b)) == _cmp(a, b)


def test_number_keys_of_awkward_pairs() -> None:
    assert number_key(1) == number_key(1.0) == number_key(Decimal("1.000"))
    assert number_key(0.1) != number_key(Decimal("0.1"))  # 0.1 is not exactly one tenth
    assert number_key(0.1) > number_key(Decimal("0.1"))
    assert number_key(-0.0) == number_key(0) == number_key(Decimal("-0"))
    assert number_key(2**63 - 1) < number_key(2.0**63) < number_key(1e308)
    assert number_key(-5e-324) < number_key(0) < number_key(5e-324)


@given(moneys, moneys)
@settings(max_examples=300)
def test_money_text_sorts_and_round_trips(a: Decimal, b: Decimal) -> None:
    assert _cmp(money_key(a), money_key(b)) == _cmp(a, b)
    assert len(money_key(a)) == 23
    text = money_text(a)
    exponent = a.as_tuple().exponent
    assert isinstance(exponent, int)
    assert text == f"{money_key(a)}s{max(0, -exponent)}"  # key, then the scale as numeric keeps it
    back = parse_money_text(text)
    assert back == a
    if not a.is_zero():
        assert str(back) == str(a)  # the exponent survives: 1.50 stays 1.50


def test_money_text_examples() -> None:
    assert money_text(Decimal("1.50")) == "P000000000000001.500000s2"
    assert money_text(Decimal("-0.000001")) == "N999999999999999.999998s6"
    assert money_text(Decimal("-0.00")) == money_text(Decimal("0.00")) == "P000000000000000.000000s2"
    assert money_text(Decimal("-999999999999999.999999")) == "N000000000000000.000000s6"
    assert money_text(Decimal("12")) == "P000000000000012.000000s0"
    assert str(parse_money_text(money_text(Decimal("1E+2")))) == "100"  # as numeric does: no negative scale


@given(attribute_maps)
def test_attribute_encoding_keeps_python_types(values: dict[str, Any]) -> None:
    back = decode_attributes(encode_attributes(Customer(kind="person", name="x", attributes=values).attributes))
    expected = dict(Customer(kind="person", name="x", attributes=values).attributes)
    assert back == expected
    assert {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in expected.items()}


# ----------------------------------------------------------------------------- stored shapes


def test_stored_shapes(crm: CRM, dialect: str) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    when = dt.datetime(1900, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    tx = crm.transactions.add(
        Transaction(customer_id=ada.id, occurred_at=when, amount=Decimal("12.30"), currency="EUR")
    )
    engine: sa.Engine = crm.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT id, occurred_at, amount FROM transactions WHERE tenant = " + ("?" if dialect == "sqlite" else "%s"),
            (crm.tenant,),
        ).one()
        if dialect == "sqlite":
            assert row[0] == tx.id.hex
            assert row[1] == (when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
            assert row[2] == "P000000000000012.300000s2"
        else:
            assert row[0] == tx.id
            assert row[1] == when
            assert row[2] == Decimal("12.30") and str(row[2]) == "12.30"
            types = dict(
                conn.exec_driver_sql(
                    "SELECT column_name, data_type || coalesce(' ' || collation_name, '') "
                    "FROM information_schema.columns WHERE table_name = 'customers'"
                ).all()
            )
            assert types["id"] == "uuid"
            assert types["created_at"] == "timestamp with time zone"
            assert types["name"] == "text C"
            assert types["attributes"] == "jsonb"
    assert crm.transactions.get(tx.id) == tx
    assert crm.transactions.get(tx.id).occurred_at.utcoffset() == dt.timedelta(0)


def _customers(draw: Any) -> Customer:
    consent = st.builds(Consent, channel=st.sampled_from(["email", "sms", "phone"]), granted=st.booleans(),
                        at=st.none() | instants, source=st.none() | texts)
    return draw(
        st.builds(
            Customer,
            kind=st.sampled_from(["person", "organization"]),
            name=nonblank,
            tags=st.frozensets(nonblank.filter(lambda s: len(s) <= 200), max_size=4),
            owner=st.none() | texts,
            attributes=attribute_maps,
            external_id=st.none() | nonblank.filter(lambda s: len(s) <= 200),
            emails=st.lists(st.builds(EmailAddress, address=st.sampled_from(["a@b.co", "o'neil@x.org"]),
                                      label=st.none() | texts, consent=st.lists(consent, max_size=1)), max_size=2),
            phones=st.lists(st.builds(Phone, number=st.sampled_from(["+49 30 1234", "(555) 010-9999"])), max_size=1),
            addresses=st.lists(st.builds(PostalAddress, lines=st.lists(nonblank, min_size=1, max_size=2),
                                         city=st.none() | texts, country=st.none() | st.just("IR")), max_size=1),
            handles=st.lists(st.builds(Handle, network=nonblank, handle=nonblank), max_size=1),
        )
    )


@st.composite
def customer_records(draw: Any) -> Customer:
    return _customers(draw)


@given(customer=customer_records(), amount=amounts, when=instants, lines=st.lists(st.builds(
    LineItem, product=nonblank, quantity=st.decimals(min_value=Decimal("0.5"), max_value=100, places=2),
    unit_price=st.decimals(min_value=0, max_value=1000, places=3)), max_size=2))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_records_come_back_unchanged(crm: CRM, customer: Customer, amount: Decimal, when: dt.datetime,
                                     lines: list[LineItem]) -> None:
    if customer.external_id is not None:
        customer = customer.__class__(**{**_fields(customer), "external_id": f"{customer.external_id}-{customer.id}"})
    stored = crm.customers.add(customer)
    assert crm.customers.get(stored.id) == stored
    if stored.external_id is not None:
        assert crm.customers.get_by_external_id(stored.external_id) == stored
    tx = crm.transactions.add(Transaction(customer_id=stored.id, occurred_at=when, amount=amount, currency="JPY",
                                          line_items=lines, attributes=stored.attributes))
    back = crm.transactions.get(tx.id)
    assert back == tx
    assert str(back.amount) == str(amount) or amount.is_zero()
    assert back.occurred_at == when and back.occurred_at.microsecond == when.astimezone(dt.timezone.utc).microsecond
    assert {k: type(v) for k, v in back.attributes.items()} == {k: type(v) for k, v in stored.attributes.items()}


def _fields(record: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(record, recurse=False)


@pytest.mark.parametrize("size", [100_000])
def test_very_long_text(crm: CRM, size: int) -> None:
    name = ("زهرا😀'%_\\" * size)[:size]
    ada = crm.customers.add(Customer(kind="person", name=name, attributes={"bio": name}))
    assert crm.customers.get(ada.id) == ada
    assert crm.customers.count({"name": name}) == 1


@given(data=st.data())
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_records_read_back_are_what_the_validating_constructors_build(crm: CRM, data: st.DataObject) -> None:
    """Rows are rebuilt without re-running validators; every field must be exactly what they would produce."""
    import attrs

    from crmkit import StateChange
    from crmkit.testing import strategies as cs

    now = data.draw(cs.aware_datetimes())
    records = {
        "customers": data.draw(cs.customers()),
        "interactions": data.draw(cs.interactions()),
        "transactions": data.draw(cs.transactions()),
        "relationships": data.draw(cs.relationships()),
        "state_changes": data.draw(cs.records(StateChange)),
    }
    tenant = "r-" + uuid.uuid4().hex  # Hypothesis may draw the same ids in two examples
    for name, record in records.items():
        record = attrs.evolve(record, created_at=now, updated_at=now, version=1)
        repo = crm.store.repository(crm.schema[name])
        repo.insert(tenant, [record])
        back = repo.get(tenant, record.id)
        validated = attrs.evolve(back)  # the domain's converters and validators run here
        assert back == record == validated
        for field in attrs.fields(type(record)):
            mine, theirs = getattr(back, field.name), getattr(validated, field.name)
            assert type(mine) is type(theirs), (name, field.name, type(mine), type(theirs))
            if isinstance(mine, Mapping):
                assert list(mine.items()) == list(theirs.items()), (name, field.name)
            if isinstance(mine, dt.datetime):
                assert mine.tzinfo is theirs.tzinfo, (name, field.name)


@given(moneys, st.decimals(min_value=10**15, max_value=10**30, places=6, allow_nan=False, allow_infinity=False))
@settings(max_examples=200)
def test_a_query_bound_past_the_money_range_sorts_past_every_stored_amount(a: Decimal, bound: Decimal) -> None:
    assert money_key(a) < money_key(bound) == money_key(bound.scaleb(3))
    assert money_key(-bound) < money_key(a)
    assert money_key(Decimal("1000000000000000.000000")) == "Q"

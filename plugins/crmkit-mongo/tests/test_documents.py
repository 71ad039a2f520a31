"""Stored shapes: exact round trips, BSON types chosen for queries, the tenant in every document."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from bson import Decimal128, Int64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit import (
    Channel,
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

UTC = dt.timezone.utc

texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.sampled_from(
        [UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))]
    )
)
exact_money = st.builds(
    lambda units, places: Decimal(units).scaleb(-places), st.integers(-(10**15) + 1, 10**15 - 1), st.integers(0, 6)
).filter(lambda d: abs(d) < 10**15)
attribute_values = st.one_of(
    texts,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.dates(),
    aware,
    exact_money,
)
attribute_maps = st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), attribute_values,
                                 max_size=6)


def _same(a, b):
    """Equal values of exactly the same types (attributes included)."""
    assert a == b
    for name in ("attributes",):
        if hasattr(a, name):
            for key, value in getattr(a, name).items():
                assert type(getattr(b, name)[key]) is type(value), key
                if isinstance(value, Decimal):
                    assert str(getattr(b, name)[key]) == str(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attributes=attribute_maps, created=aware, tags=st.frozensets(texts.filter(str.strip), max_size=3))
def test_customers_round_trip_with_exact_attribute_types(crm, attributes, created, tags):
    customer = Customer(
        kind="person",
        name="Zoë \u4e2d\u6587 \U0001f600",
        attributes=attributes,
        tags=tags,
        created_at=created,
        emails=[EmailAddress("zoe@example.org", label="work", consent=[Consent(Channel.EMAIL, True, at=created)])],
        phones=[Phone("+44 20 7946 0000", consent=[Consent(Channel.SMS, False)])],
        addresses=[PostalAddress(["1 Rue de la Paix"], city="Paris", country="FR")],
        handles=[Handle("mastodon", "@zoe@example.social")],
        external_id="crm-" + uuid.uuid4().hex,
    )
    stored = crm.customers.add(customer)
    again = crm.customers.get(stored.id)
    _same(stored, again)
    assert again.created_at == created.astimezone(UTC)
    assert crm.customers.get_by_external_id(customer.external_id) == stored


def test_transactions_keep_money_exactly_and_microseconds(crm, raw_db):
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    when = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    t = crm.transactions.add(
        Transaction(
            customer_id=ada.id,
            occurred_at=when,
            amount=Decimal("999999999999999.999999"),
            currency="EUR",
            line_items=[LineItem("tea", Decimal("1.500"), Decimal("0.10"))],
            attributes={"note": "$where", "score": 3, "ratio": 0.5, "day": dt.date(2020, 2, 29)},
        )
    )
    back = crm.transactions.get(t.id)
    assert back == t
    assert str(back.amount) == "999999999999999.999999"
    assert str(back.line_items[0].quantity) == "1.500"
    assert back.occurred_at == when

    doc = raw_db["transactions"].find_one({"id": t.id})
    assert doc["tenant"] == crm.tenant
    assert isinstance(doc["id"], uuid.UUID)  # Binary subtype 4 read with the standard representation
    assert isinstance(doc["amount"], Decimal128)
    assert isinstance(doc["occurred_at"], Int64) and doc["occurred_at"] == -1
    assert doc["attributes"]["day"] == dt.datetime(2020, 2, 29)  # a BSON date at UTC midnight
    assert "external_id" not in doc  # None is left out, so the partial unique index skips it


def test_raw_uuid_is_binary_subtype_4(crm, mongo_url, raw_db):
    from pymongo import MongoClient

    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    with MongoClient(mongo_url) as plain:  # no uuidRepresentation: raw Binary comes back
        doc = plain[raw_db.name]["customers"].find_one({"tenant": crm.tenant})
    assert doc["id"].subtype == 4
    assert bytes(doc["id"]) == ada.id.bytes


def test_relationship_and_interaction_round_trip(crm):
    a = crm.customers.add(Customer(kind="person", name="A"))
    b = crm.customers.add(Customer(kind="organization", name="B"))
    rel = crm.relationships.add(
        Relationship(a.id, b.id, "works_for", role="CTO", since=dt.date(1, 1, 2), until=dt.date(9999, 12, 31))
    )
    assert crm.relationships.get(rel.id) == rel
    i = crm.interactions.add(
        Interaction(
            customer_id=a.id,
            channel=Channel.CHAT,
            direction="inbound",
            occurred_at=dt.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
            subject="",
            participants={"u1", "u2"},
        )
    )
    back = crm.interactions.get(i.id)
    assert back == i and back.subject == "" and back.participants == {"u1", "u2"}


def test_every_document_carries_the_tenant(crm, raw_db):
    a = crm.customers.add(Customer(kind="person", name="A"))
    crm.interactions.add(
        Interaction(customer_id=a.id, channel=Channel.EMAIL, direction="outbound", occurred_at=dt.datetime.now(UTC))
    )
    for name in ("customers", "interactions"):
        assert raw_db[name].count_documents({"tenant": crm.tenant}) == 1
        assert raw_db[name].count_documents({"tenant": {"$exists": False}}) == 0

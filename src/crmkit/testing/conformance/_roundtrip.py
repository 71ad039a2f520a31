"""What goes into a store comes out exactly: money, instants, attribute types, any Unicode, contact points."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crmkit import Consent, Customer, EmailAddress, Handle, LineItem, Phone, PostalAddress, Stage, ValidationError
from crmkit._budget import MAX_ITEMS
from crmkit._validation import MAX_TEXT
from crmkit.crm import CRM
from crmkit.query import F
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import (
    ContractBase,
    at,
    conformance_settings,
    contact,
    edge,
    organization,
    person,
    purchase,
    sample_customer,
    sample_history,
)

__all__ = ["RoundTripContract", "assert_round_trip"]


def _same_value(path: str, want: Any, got: Any) -> None:
    assert type(got) is type(want), (
        f"{path}: stored {type(want).__name__} {want!r}, read back {type(got).__name__} {got!r}"
    )
    assert got == want, f"{path}: stored {want!r}, read back {got!r}"
    if isinstance(want, dt.datetime):
        assert got.utcoffset() is not None, f"{path}: read back a naive datetime {got!r}"


def assert_round_trip(want: Any, got: Any) -> None:
    """``got`` equals ``want`` and every attribute value kept its exact Python type."""
    assert got == want, f"read back a different record:\n  stored {want!r}\n  got    {got!r}"
    for key, value in want.attributes.items() if hasattr(want, "attributes") else ():
        _same_value(f"attributes.{key}", value, got.attributes[key])
    for name in ("occurred_at", "created_at", "updated_at"):
        value = getattr(want, name, None)
        if value is not None:
            assert getattr(got, name).utcoffset() is not None, f"{name}: read back a naive datetime"
    for name in ("amount",):
        if hasattr(want, name):
            _same_value(name, getattr(want, name), getattr(got, name))


def _read_every_way(crm: CRM, service: Any, stored: Any) -> None:
    assert_round_trip(stored, service.get(stored.id))
    found = list(service.find(F("id") == stored.id))
    assert len(found) == 1
    assert_round_trip(stored, found[0])
    if getattr(stored, "external_id", None) is not None:
        assert_round_trip(stored, service.get_by_external_id(stored.external_id))


class RoundTripContract(ContractBase):
    """Every field type survives the store unchanged, through get, find and external id."""

    def test_generated_customers_round_trip(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=30)
        @given(customer=cs.customers())
        @example(customer=sample_customer())
        def check(customer: Customer) -> None:
            crm = crmkit_backend.crm()
            _read_every_way(crm, crm.customers, crm.customers.add(customer))

        check()

    def test_generated_histories_round_trip(self, crmkit_backend: Backend) -> None:
        # Customers here are plain (the test above covers contact points), which keeps a failing
        # example quick to shrink.
        plain = cs.customers(
            emails=st.just(()),
            phones=st.just(()),
            addresses=st.just(()),
            handles=st.just(()),
            attributes=cs.attributes(max_size=2),
        )
        histories = cs.crm_histories(
            min_size=2, max_size=3, max_interactions=4, max_transactions=4, max_relationships=3, customers=plain
        )

        @conformance_settings(max_examples=15)
        @given(history=histories)
        @example(history=sample_history())
        def check(history: cs.CRMHistory) -> None:
            crm = crmkit_backend.crm()
            stored = history.load(crm)
            for service, records in (
                (crm.relationships, stored.relationships),
                (crm.interactions, stored.interactions),
                (crm.transactions, stored.transactions),
            ):
                for record in records:
                    _read_every_way(crm, service, record)

        check()

    def test_money_is_exact(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        amounts = ["0", "0.000001", "0.1", "0.2", "0.30", "999999999999999.999999", "12345678901234.56789", "5"]
        stored = [crm.transactions.add(purchase(ada, a, at(2024, 1, 1), "BHD")) for a in amounts]
        for record in stored:
            _same_value("amount", record.amount, crm.transactions.get(record.id).amount)
        assert crm.transactions.count(F("amount") == Decimal("0.3")) == 1
        assert crm.transactions.count(F("amount") == Decimal("0.000001")) == 1
        assert crm.transactions.count(F("amount") > Decimal("999999999999999.999998")) == 1
        lines = (
            LineItem("ș 😀", quantity=Decimal("0.000001"), unit_price=Decimal("999999999.999999")),
            LineItem("bulk", quantity=Decimal("1000000"), unit_price=Decimal("0")),
        )
        with_lines = crm.transactions.add(purchase(ada, "1000.000001", at(2024, 1, 2), line_items=lines))
        got = crm.transactions.get(with_lines.id)
        assert got.line_items == lines
        for want_line, got_line in zip(lines, got.line_items, strict=True):
            _same_value("quantity", want_line.quantity, got_line.quantity)
            _same_value("unit_price", want_line.unit_price, got_line.unit_price)

    def test_datetimes_are_the_same_instant_to_the_microsecond(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        moments = [
            at(2024, 3, 30, 23, 59, 59, 999999, offset=3.5),
            at(2024, 3, 31, 0, 0, 0, 1, offset=-9.5),
            at(1, 1, 2, 0, 0, 0, 0, offset=14),
            at(9999, 12, 30, 23, 59, 59, 999999, offset=-12),
            at(1969, 12, 31, 23, 59, 59, 999999),
            at(2038, 1, 19, 3, 14, 8, 500000, offset=5.75),
            dt.datetime(1900, 1, 1, 12, 0, 0, 7, tzinfo=dt.timezone(dt.timedelta(hours=3, minutes=25, seconds=44))),
        ]
        for when in moments:
            stored = crm.interactions.add(contact(ada, when, created_at=when))
            got = crm.interactions.get(stored.id)
            assert got.occurred_at == when and got.created_at == when
            utc = got.occurred_at.astimezone(dt.timezone.utc)
            assert (utc.microsecond, utc.utcoffset()) == (when.astimezone(dt.timezone.utc).microsecond, dt.timedelta(0))
        assert crm.interactions.count(F("occurred_at") == moments[0]) == 1
        assert crm.interactions.count(F("occurred_at") == moments[0] + dt.timedelta(microseconds=1)) == 0
        assert crm.interactions.count(F("occurred_at") == moments[0].astimezone(dt.timezone.utc)) == 1

    def test_every_attribute_type_keeps_its_type(self, crm: CRM) -> None:
        values: dict[str, Any] = {
            "text": "Ștefan 😀",
            "empty": "",
            "digits": "1",
            "looks_true": "true",
            "looks_like_a_date": "2020-01-01",
            "looks_like_json": '{"a": 1}',
            "zero": 0,
            "int_max": 2**63 - 1,
            "int_min": -(2**63),
            "float": 0.1,
            "float_whole": 5.0,
            "float_big": 1e300,
            "float_tiny": 5e-324,
            "float_negative": -2.5,
            "yes": True,
            "no": False,
            "day": dt.date(2020, 2, 29),
            "first_day": dt.date(1, 1, 1),
            "last_day": dt.date(9999, 12, 31),
            "moment": at(2020, 2, 29, 13, 14, 15, 161718, offset=3.5),
            "money": Decimal("-0.000001"),
            "money_whole": Decimal("5"),
            "money_big": Decimal("999999999999999.999999"),
        }
        customer = crm.customers.add(person(attributes=values))
        got = crm.customers.get(customer.id)
        assert set(got.attributes) == set(values)
        for key, value in customer.attributes.items():
            _same_value(f"attributes.{key}", value, got.attributes[key])
        pairs: list[tuple[Any, Any]] = [
            (crm.interactions, contact(customer, at(2024, 1, 1), attributes=values)),
            (crm.transactions, purchase(customer, 1, at(2024, 1, 1), attributes=values)),
            (crm.relationships, edge(customer, "works_for", crm.customers.add(organization()), attributes=values)),
        ]
        for service, record in pairs:
            stored = service.add(record)
            _read_every_way(crm, service, stored)

    def test_any_unicode_text_round_trips_and_matches_exactly(self, crm: CRM) -> None:
        stored = [
            crm.customers.add(person(name, tags={name}, owner=name, external_id=f"{i}:{name}"))
            for i, name in enumerate(cs.UNICODE_SAMPLES)
        ]
        for record in stored:
            _read_every_way(crm, crm.customers, record)
            assert [c.id for c in crm.customers.find(F("name") == record.name)] == [record.id]
        # Composed and decomposed forms are different text: no normalisation, no case folding.
        nfc = crm.customers.add(person("\u00c5ngstr\u00f6m"))
        nfd = crm.customers.add(person("A\u030angstro\u0308m"))
        assert [c.id for c in crm.customers.find(F("name") == nfc.name)] == [nfc.id]
        assert [c.id for c in crm.customers.find(F("name") == nfd.name)] == [nfd.id]
        assert crm.customers.count(F("name") == "ada lovelace") == 0

    def test_very_long_text_round_trips(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        long_text = ("ș😀ز\u200c" * 25_000)[:100_000]
        stored = crm.interactions.add(contact(ada, at(2024, 1, 1), summary=long_text, subject="x" * 5000))
        got = crm.interactions.get(stored.id)
        assert got.summary == long_text and len(got.summary) == 100_000
        assert crm.interactions.count(F("summary") == long_text) == 1

    def test_a_record_at_the_size_budget_round_trips_and_a_larger_one_is_refused(self, crm: CRM) -> None:
        """Every store holds what the core's size budget lets through, and refuses the rest the same way.

        The record below is just under the budget with four bytes to every character: about
        8 MB of UTF-8, which MongoDB stores (its limit is 16 MB) as the SQL databases do.
        """
        tags = {f"{i:04d}" + "😀" * 196 for i in range(MAX_ITEMS)}  # 1,000 tags of 200 characters
        attributes: dict[str, Any] = {f"a{i:02d}": "😀" * MAX_TEXT for i in range(17)}
        biggest = person("Ada", tags=tags, attributes=attributes, external_id="biggest")
        stored = crm.customers.add(biggest)
        got = crm.customers.get(stored.id)
        assert got.tags == tags and got.attributes == attributes
        assert crm.customers.count(F("tags").contains("0999" + "😀" * 196)) == 1

        too_large = [
            ("tags", person("Ada", tags={f"t{i}" for i in range(MAX_ITEMS + 1)})),
            ("tags", person("Ada", tags={f"{i:06d}" + "x" * 194 for i in range(100_000)})),  # about 20 MB
            ("attributes", person("Ada", attributes={f"a{i}": i for i in range(MAX_ITEMS + 1)})),
            ("customer", person("Ada", tags=tags, attributes={**attributes, "a17": "😀" * MAX_TEXT})),
        ]
        for field, record in too_large:
            with pytest.raises(ValidationError) as err:
                crm.customers.add(record)
            assert err.value.field == field
            with pytest.raises(ValidationError) as err:
                crm.customers.add_many([person("fits", external_id="fits"), record], batch_size=1)
            assert (err.value.field, err.value.row) == (field, 1)
            with pytest.raises(ValidationError):
                crm.customers.update(attrs.evolve(record, id=stored.id, version=stored.version))
        assert crm.customers.get(stored.id) == stored
        assert crm.customers.count() == 2  # the biggest, and "fits" (the batch before each bad row)
        ada = crm.customers.add(person("Ada"))
        with pytest.raises(ValidationError) as err:
            crm.transactions.add(purchase(ada, "1", at(2024, 1, 1), attributes={f"a{i}": i for i in range(1_001)}))
        assert err.value.field == "attributes"
        lines = [LineItem(product="p" * MAX_TEXT) for _ in range(20)]
        with pytest.raises(ValidationError) as err:
            crm.transactions.add(purchase(ada, "1", at(2024, 1, 1), line_items=lines))
        assert err.value.field == "transaction"
        with pytest.raises(ValidationError) as err:
            crm.interactions.add(contact(ada, at(2024, 1, 1), participants={f"p{i}" for i in range(1_001)}))
        assert err.value.field == "participants"
        assert crm.transactions.count() == 0 and crm.interactions.count() == 0

    def test_contact_points_with_consent_round_trip(self, crm: CRM) -> None:
        asked = at(2023, 5, 1, 10, 0, 0, 5, offset=2)
        customer = person(
            "Zahra Mohammadi",
            emails=[
                EmailAddress("زهرا@مثال.ایران", label="کار", consent=(Consent("email", True, asked, "web form"),)),
                EmailAddress("z@example.com", consent=(Consent("email", False, None, None),)),
            ],
            phones=[Phone("+98 (21) 8888-0000", consent=(Consent("phone", True), Consent("sms", False, asked)))],
            addresses=[
                PostalAddress(
                    ("Strada Ștefan cel Mare 1", "ap. 2"),
                    city="Iași",
                    postal_code="700001",
                    region="Iași",
                    country="RO",
                    label="home",
                    consent=(Consent("letter", True, asked, "signed form"),),
                )
            ],
            handles=[Handle("mastodon", "@zahra@example.social", consent=(Consent("social", True),))],
            tags={"vip", "مشتری", "😀"},
            stage=Stage.LOYAL,
        )
        stored = crm.customers.add(customer)
        got = crm.customers.get(stored.id)
        assert_round_trip(stored, got)
        assert got.emails[0].consent[0].at == asked
        assert [got.may_contact(c) for c in ("email", "phone", "sms", "letter", "social", "fax")] == [
            False,
            True,
            False,
            True,
            True,
            False,
        ]

    def test_empty_and_missing_values_round_trip(self, crm: CRM) -> None:
        bare = crm.customers.add(Customer(kind="organization", name="x"))
        got = crm.customers.get(bare.id)
        assert_round_trip(bare, got)
        empty: tuple[Any, ...] = (frozenset(), (), {}, None, None)
        assert (got.tags, got.emails, dict(got.attributes), got.owner, got.external_id) == empty
        ada = crm.customers.add(person())
        link = crm.relationships.add(edge(ada, "reports_to", bare, since=dt.date(2020, 1, 31)))
        assert crm.relationships.get(link.id) == link and crm.relationships.get(link.id).until is None
        note = crm.interactions.add(contact(ada, at(2024, 1, 1), subject="", participants=()))
        assert crm.interactions.get(note.id).subject == ""
        assert crm.interactions.count(F("subject") == "") == 1
        assert crm.interactions.count(F("subject") == None) == 0  # noqa: E711

    def test_stage_changes_round_trip(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        crm.lifecycle.move(ada.id, Stage.CHURNED, reason="a dit «au revoir» 👋")
        (change,) = crm.lifecycle.history(ada.id)
        assert crm.stage_changes.get(change.id) == change
        assert change.reason == "a dit «au revoir» 👋" and change.to_stage is Stage.CHURNED

    def test_generated_money_and_instants_round_trip(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=30)
        @given(amount=cs.money(), when=cs.aware_datetimes(), currency=cs.currencies(), value=cs.attribute_values())
        @example(
            amount=Decimal("0.000001"),
            when=at(2024, 1, 1, 0, 0, 0, 1, offset=3.5),
            currency="EUR",
            value=Decimal("1.5"),
        )
        def check(amount: Decimal, when: dt.datetime, currency: str, value: Any) -> None:
            crm = crmkit_backend.crm()
            ada = crm.customers.add(person())
            stored = crm.transactions.add(purchase(ada, amount, when, currency, attributes={"v": value}))
            got = crm.transactions.get(stored.id)
            assert_round_trip(stored, got)
            assert crm.transactions.count(F("amount") == amount) == 1
            assert crm.transactions.count(F("occurred_at") == when) == 1
            assert crm.transactions.count(F("attributes.v") == value) == 1

        check()

    def test_strategies_can_be_pinned(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=10)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            org = crm.customers.add(data.draw(cs.customers(kind=st.just("organization"))))
            sale = data.draw(cs.transactions(customer_id=st.just(org.id), currency=st.just("RON")))
            assert crm.transactions.add(sale).currency == "RON"

        check()

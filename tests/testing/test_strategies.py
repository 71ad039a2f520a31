"""crmkit.testing.strategies: valid data, pinned fields, consistent histories, from_type registration."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import Consent, Customer, EmailAddress, Interaction, LineItem, Relationship, Transaction, ValidationError
from crmkit.testing import strategies as cs

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "cls", [Customer, Interaction, Transaction, Relationship, LineItem, Consent, EmailAddress], ids=lambda c: c.__name__
)
def test_from_type_uses_crmkit_strategies(cls: type) -> None:
    @FAST
    @given(value=st.from_type(cls))
    def check(value: object) -> None:
        assert type(value) is cls
        if hasattr(value, "version"):
            assert value.version == 0 and value.created_at is None  # type: ignore[attr-defined]

    check()


def test_registration_waits_for_hypothesis_and_survives_any_import_order() -> None:
    script = (
        "import sys, crmkit, crmkit.testing\n"
        "assert 'hypothesis' not in sys.modules and 'pytest' not in sys.modules\n"
        "import crmkit.testing.strategies\n"  # imports Hypothesis, which calls our entry point
        "from hypothesis import strategies as st\n"
        "assert isinstance(st.from_type(crmkit.Customer).example(), crmkit.Customer)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@FAST
@given(customer=cs.customers(), sale=cs.transactions(), note=cs.interactions(), link=cs.relationships())
def test_generated_records_can_be_added_as_they_are(
    customer: Customer, sale: Transaction, note: Interaction, link: Relationship
) -> None:
    with crmkit.connect("memory://") as crm:
        stored = crm.customers.add(customer)
        assert crm.customers.get(customer.id) == stored
    for record in (customer, sale, note, link):
        assert record.version == 0 and record.created_at is None and record.updated_at is None
    assert link.source_id != link.target_id
    assert link.since is None or link.until is None or link.since <= link.until
    assert sale.amount >= 0 and sale.amount.as_tuple().exponent >= -6  # type: ignore[operator]


def test_arguments_are_strategies() -> None:
    cid = uuid.uuid4()

    @FAST
    @given(
        org=cs.customers(kind=st.just("organization"), tags=st.just(frozenset({"vip"}))),
        sale=cs.transactions(customer_id=st.just(cid), currency=st.just("RON"), kind=st.just("refund")),
    )
    def check(org: Customer, sale: Transaction) -> None:
        assert org.kind == "organization" and org.tags == {"vip"}
        assert (sale.customer_id, sale.currency, sale.kind) == (cid, "RON", "refund")

    check()
    with pytest.raises(TypeError, match=r"st\.just"):
        cs.customers(kind="person")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=cs.crm_histories(min_size=1, max_size=4))
def test_histories_refer_only_to_their_own_customers(history: cs.CRMHistory) -> None:
    ids = {c.id for c in history.customers}
    assert len(ids) == len(history.customers)
    assert {i.customer_id for i in history.interactions} <= ids
    assert {t.customer_id for t in history.transactions} <= ids
    assert all(r.source_id in ids and r.target_id in ids and r.source_id != r.target_id for r in history.relationships)
    for records in (history.customers, history.interactions, history.transactions):
        externals = [r.external_id for r in records if r.external_id is not None]
        assert len(externals) == len(set(externals))
        assert len({r.id for r in records}) == len(records)
    with crmkit.connect("memory://") as crm:
        stored = history.load(crm)
        assert crm.customers.count() == len(history.customers)
        assert crm.transactions.count() == len(history.transactions)
        assert crm.relationships.count() == len(history.relationships)
        first = stored.customers[0].id
        notes, sales = stored.of(first)
        assert {t.id for t in sales} == {t.id for t in crm.transactions.find({"customer_id": first})}
        assert len(notes) == crm.interactions.count({"customer_id": first})


def test_empty_histories_are_allowed() -> None:
    assert find(cs.crm_histories(), lambda h: not h.customers) == cs.CRMHistory((), (), (), ())


@FAST
@given(amount=cs.money(), signed=cs.money(min_value=-5, max_value=5, places=2))
def test_money_is_exact_and_in_range(amount: Decimal, signed: Decimal) -> None:
    for value in (amount, signed):
        assert isinstance(value, Decimal) and value.is_finite()
        assert value.as_tuple().exponent >= -6  # type: ignore[operator]
    assert 0 <= amount < Decimal(10) ** 15
    assert -5 <= signed <= 5 and signed.as_tuple().exponent >= -2  # type: ignore[operator]


def test_money_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        cs.money(places=7)
    with pytest.raises(ValueError):
        cs.money(min_value=10, max_value=1)
    with pytest.raises(ValueError):
        cs.money(max_value=10**15)


def test_money_reaches_six_places_and_the_largest_amounts() -> None:
    assert find(cs.money(), lambda m: m.as_tuple().exponent == -6).is_finite()  # type: ignore[comparison-overlap]
    assert find(cs.money(), lambda m: m > Decimal(10) ** 14) > Decimal(10) ** 14


@pytest.mark.parametrize(
    ("label", "predicate"),
    [
        ("Persian", lambda s: any("\u0600" <= c <= "\u06ff" for c in s)),
        ("Romanian comma below", lambda s: any(c in "ȘșȚț" for c in s)),
        ("Romanian cedilla", lambda s: any(c in "ŞşŢţ" for c in s)),
        ("emoji outside the BMP", lambda s: any(ord(c) > 0xFFFF for c in s)),
        ("zero-width joiner", lambda s: "\u200d" in s),
        ("combining mark", lambda s: "\u0301" in s),
    ],
)
def test_text_covers_the_scripts_that_matter(label: str, predicate: object) -> None:
    assert find(cs.texts(), predicate)  # type: ignore[arg-type]


@FAST
@given(text=cs.texts(max_size=30, blank=False))
def test_text_is_always_valid(text: str) -> None:
    assert text.strip() and len(text) <= 30
    assert "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_datetimes_are_aware_in_many_offsets() -> None:
    offsets: set[dt.timedelta | None] = set()

    @settings(max_examples=150, deadline=None)
    @given(when=cs.aware_datetimes())
    def check(when: dt.datetime) -> None:
        assert when.utcoffset() is not None
        when.astimezone(dt.timezone.utc)  # never overflows
        offsets.add(when.utcoffset())

    check()
    assert len(offsets) >= 5
    assert find(cs.aware_datetimes(), lambda d: d.microsecond not in (0, 999999))


@pytest.mark.parametrize("kind", [str, int, float, bool, dt.date, dt.datetime, Decimal], ids=lambda t: t.__name__)
def test_attribute_values_cover_every_allowed_type(kind: type) -> None:
    found = find(cs.attribute_values(), lambda v: type(v) is kind)
    Customer(kind="person", name="x", attributes={"v": found})


def test_customers_have_contact_points_with_consent_and_typed_attributes() -> None:
    with_consent = find(cs.customers(), lambda c: any(p.consent for p in c.contact_points()))
    assert with_consent.contact_points()
    mixed = find(cs.customers(), lambda c: len({type(v) for v in c.attributes.values()}) >= 3)
    assert len(mixed.attributes) >= 3


@settings(max_examples=150, deadline=None)
@given(value=cs.hostile_values())
def test_hostile_values_are_refused_or_accepted_by_name(value: object) -> None:
    try:
        Customer(kind="person", name=value)  # type: ignore[arg-type]
    except ValidationError as exc:
        assert exc.field == "name"
    else:
        assert isinstance(value, str) and value.strip()


def test_identifiers_are_valid_attribute_keys() -> None:
    @FAST
    @given(key=cs.identifiers(), value=cs.attribute_values())
    def check(key: str, value: object) -> None:
        assert dict(Customer(kind="person", name="x", attributes={key: value}).attributes) == {key: value}

    check()

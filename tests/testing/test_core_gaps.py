"""Regression tests for core input-handling gaps the test kit's fuzzing found (all fixed).

Each input here once escaped as a non-crmkit exception or was wrongly accepted; every
one must now be refused with a ValidationError naming the field.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import crmkit
from crmkit import (
    ChannelType,
    Consent,
    Customer,
    EmailAddress,
    F,
    Interaction,
    LifecyclePolicy,
    Phone,
    PostalAddress,
    RelationshipType,
    StageProposal,
    Transaction,
    ValidationError,
)
from crmkit.entities import CUSTOMERS
from crmkit.lifecycle_model import StageChange
from crmkit.query import Compare, bind

PLUS_14 = dt.timezone(dt.timedelta(hours=14))
MINUS_12 = dt.timezone(dt.timedelta(hours=-12))
NOW = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def crm() -> crmkit.CRM:
    crm = crmkit.connect("memory://")
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    crm.transactions.add(Transaction(customer_id=ada.id, occurred_at=NOW, amount=Decimal(1), currency="EUR"))
    return crm


@pytest.mark.parametrize(
    "build",
    [
        lambda: Customer(kind="person", name="a", created_at=dt.datetime(1, 1, 1, tzinfo=PLUS_14)),
        lambda: Customer(kind="person", name="a", attributes={"x": dt.datetime(9999, 12, 31, 23, tzinfo=MINUS_12)}),
        lambda: Transaction(
            customer_id=uuid.uuid4(),
            occurred_at=dt.datetime(1, 1, 1, tzinfo=PLUS_14),
            amount=Decimal(1),
            currency="EUR",
        ),
        lambda: Consent("email", True, dt.datetime(1, 1, 1, tzinfo=PLUS_14)),
    ],
    ids=["created_at", "attribute", "occurred_at", "consent.at"],
)
def test_datetimes_whose_utc_instant_overflows_are_validation_errors(build: Callable[[], Any]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_query_datetimes_that_overflow_are_validation_errors(crm: crmkit.CRM) -> None:
    with pytest.raises(ValidationError):
        crm.customers.find(F("created_at") > dt.datetime(1, 1, 1, tzinfo=PLUS_14))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Customer(kind="person", name="a", tags=[["vip"]]),
        lambda: Interaction(
            customer_id=uuid.uuid4(), channel="email", direction="inbound", occurred_at=NOW, participants=[{"a"}]
        ),
    ],
    ids=["tags", "participants"],
)
def test_unhashable_set_items_are_validation_errors(build: Callable[[], Any]) -> None:
    with pytest.raises(ValidationError):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Consent("email", granted="yes"),  # type: ignore[arg-type]
        lambda: RelationshipType("mentor_of", "mentored_by", symmetric="no"),  # type: ignore[arg-type]
        lambda: RelationshipType("mentor_of", "mentored_by", description=5),  # type: ignore[arg-type]
        lambda: ChannelType("whatsapp", description=None),  # type: ignore[arg-type]
        lambda: ChannelType("whatsapp", needs_consent="yes"),  # type: ignore[arg-type]
        lambda: StageProposal("lead", rule=5),  # type: ignore[arg-type]
        lambda: LifecyclePolicy(loyal_purchase_days="5"),  # type: ignore[arg-type]
        lambda: LifecyclePolicy(loyal_purchase_days=1),
    ],
    ids=[
        "Consent.granted",
        "RelationshipType.symmetric",
        "RelationshipType.description",
        "ChannelType.description",
        "ChannelType.needs_consent",
        "StageProposal.rule",
        "LifecyclePolicy.loyal_purchase_days type",
        "LifecyclePolicy.loyal_purchase_days range",
    ],
)
def test_attrs_validators_raise_validation_errors(build: Callable[[], Any]) -> None:
    try:
        build()
    except ValidationError:
        return
    raise AssertionError("not refused with a ValidationError")


def test_bind_refuses_non_string_fields() -> None:
    with pytest.raises(ValidationError):
        bind(Compare(5, "==", 1), CUSTOMERS)  # type: ignore[arg-type]


def test_order_by_must_be_a_string_or_a_sequence(crm: crmkit.CRM) -> None:
    with pytest.raises(ValidationError):
        crm.customers.find(order_by=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN")], ids=str)
def test_non_finite_decimal_query_values_are_refused(crm: crmkit.CRM, value: Decimal) -> None:
    with pytest.raises(ValidationError):
        crm.transactions.find(F("amount") < value)
    with pytest.raises(ValidationError):
        crm.transactions.find(F("amount") == value)


def test_a_forged_cursor_with_a_naive_datetime_is_refused(crm: crmkit.CRM) -> None:
    raw = json.dumps(["created_at,id", [{"t": "2020-01-01T00:00:00"}, {"u": uuid.uuid4().hex}]])
    token = base64.urlsafe_b64encode(raw.encode()).decode()
    with pytest.raises(ValidationError):
        crm.customers.find(order_by="created_at", limit=1, after=token)


@pytest.mark.parametrize(
    "call",
    [
        lambda crm, cid: crm.relationships.traverse(cid, kind=5),
        lambda crm, cid: crm.purchase_summaries(5),
        lambda crm, cid: crm.purchase_summaries([[]]),
    ],
    ids=["traverse kind", "summaries ids", "summaries unhashable id"],
)
def test_kind_and_customer_ids_are_checked(crm: crmkit.CRM, call: Callable[[crmkit.CRM, uuid.UUID], Any]) -> None:
    cid = crm.customers.find(limit=1)[0].id
    with pytest.raises(ValidationError):
        call(crm, cid)


@pytest.mark.parametrize(
    "build",
    [lambda: Phone("123\n"), lambda: EmailAddress("a@b.co\n"), lambda: PostalAddress(["x"], country="DE\n")],
    ids=["phone", "email", "country"],
)
def test_trailing_newlines_are_not_valid_contact_data(build: Callable[[], Any]) -> None:
    with pytest.raises(ValidationError):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Interaction(
            customer_id=uuid.uuid4(), channel="email", direction="inbound", occurred_at=NOW, external_id=" "
        ),
        lambda: Transaction(
            customer_id=uuid.uuid4(), occurred_at=NOW, amount=Decimal(1), currency="EUR", external_id=""
        ),
    ],
    ids=["interaction", "transaction"],
)
def test_blank_external_ids_are_refused_everywhere(build: Callable[[], Any]) -> None:
    with pytest.raises(ValidationError):
        build()


def test_stage_change_versions_are_checked() -> None:
    with pytest.raises(ValidationError):
        StageChange(customer_id=uuid.uuid4(), from_stage=None, to_stage="lead", occurred_at=NOW, version="x")  # type: ignore[arg-type]


def test_a_non_integer_expected_version_is_a_validation_error(crm: crmkit.CRM) -> None:
    cid = crm.customers.find(limit=1)[0].id
    with pytest.raises(ValidationError):
        crm.customers.delete(cid, expected_version="1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda crm: crm.customers.find(limit=2**63 - 1),
        lambda crm: list(crm.customers.stream(batch_size=2**63 - 1)),
        lambda crm: list(crm.lifecycle.evaluate_all(batch_size=2**63 - 1)),
        lambda crm: crm.customers.add_many([], batch_size=2**40),
        lambda crm: crm.customers.get_by_external_id("\ud800"),
        lambda crm: crm.customers.get_by_external_id("nul\x00"),
    ],
    ids=["find limit", "stream batch", "evaluate_all batch", "add_many batch", "surrogate key", "NUL key"],
)
def test_sizes_and_keys_no_store_can_hold_are_refused(crm: crmkit.CRM, call: Callable[[crmkit.CRM], Any]) -> None:
    with pytest.raises(ValidationError):
        call(crm)

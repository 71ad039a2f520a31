"""The query language on MongoDB gives exactly the answers of the in-memory reference store."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import Customer, F, Interaction, Stage
from crmkit.crm import CRM
from crmkit.query import And, Not, Or

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)

# Values that probe every rule: kinds that must never mix, numbers of three types that
# must, microseconds a BSON date would lose, code-point order, and text that looks like
# MongoDB syntax or regular expressions.
TRICKY_TEXT = ["", "a", "B", "b", "é", "e\u0301", "\U0001f600", "Zebra", "$where", "$ne", '{"$ne": null}',
               "a.b", "$gt", ".*", "(", "\\", "[a-z]", "a+b", "^a$", "%_", "a\nb"]
VALUES = [
    0, 1, -1, 2**62, 0.5, 1.0, -0.0, 2.5, Decimal("1.0"), Decimal("0.1"), Decimal("-3.25"), 0.1,
    True, False,
    dt.date(2024, 5, 1), dt.date(1969, 12, 31),
    T0, T0 + dt.timedelta(microseconds=1), T0 - dt.timedelta(microseconds=1), dt.datetime(1960, 1, 1, tzinfo=UTC),
    *TRICKY_TEXT,
]


def _customers() -> list[Customer]:
    out = []
    for i in range(len(VALUES) + 6):
        attrs = {}
        if i < len(VALUES):
            attrs["x"] = VALUES[i]
        attrs["y"] = VALUES[(i * 7) % len(VALUES)]
        if i % 5 == 0:
            del attrs["y"]
        out.append(
            Customer(
                kind="person" if i % 3 else "organization",
                name=TRICKY_TEXT[i % len(TRICKY_TEXT)] or "blank-name" if i % 4 else f"name {i}",
                owner=None if i % 2 else TRICKY_TEXT[(i * 3) % len(TRICKY_TEXT)],
                tags=frozenset(TRICKY_TEXT[j % len(TRICKY_TEXT)] for j in range(i % 4) if TRICKY_TEXT[j].strip()),
                stage=list(Stage)[i % len(Stage)],
                attributes=attrs,
                external_id=None if i % 3 == 1 else TRICKY_TEXT[i % len(TRICKY_TEXT)] + f"-{i}",
                id=uuid.UUID(int=(i * 2654435761) % 2**128),
            )
        )
    return out


@pytest.fixture(scope="module")
def pair(mongo_db_url: str) -> Iterator[tuple[CRM, CRM]]:
    """The same customers in MongoDB and in the reference store."""
    clock = lambda: T0  # noqa: E731
    tenant = "q-" + uuid.uuid4().hex[:8]
    mongo = crmkit.connect(mongo_db_url, tenant=tenant, clock=clock)
    memory = crmkit.connect("memory://", tenant=tenant, clock=clock)
    for crm in (mongo, memory):
        crm.customers.add_many(_customers())
    # A second tenant with the same ids must never leak into answers.
    with crmkit.connect(mongo_db_url, tenant=tenant + "-other", clock=clock) as other:
        other.customers.add_many(_customers())
    yield mongo, memory
    mongo.close()


FIELDS = ["name", "owner", "kind", "stage", "external_id", "attributes.x", "attributes.y", "attributes.nope"]
values = st.sampled_from([*VALUES, None, "person", "organization", "lead", "customer"])


def compares():
    return st.builds(
        lambda f, op, v: {"==": F(f) == v, "!=": F(f) != v, "<": F(f) < v, "<=": F(f) <= v, ">": F(f) > v,
                          ">=": F(f) >= v}[op],
        st.sampled_from(FIELDS), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), values,
    )


leaves = st.one_of(
    compares(),
    st.builds(lambda f, vs: F(f).in_(vs), st.sampled_from(FIELDS), st.lists(values, min_size=1, max_size=4)),
    st.builds(lambda f, v: F(f).contains(v), st.sampled_from(["name", "owner", "tags", "attributes.x"]),
              st.sampled_from(TRICKY_TEXT)),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda items: And(tuple(items)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: Or(tuple(items)), st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)
orders = st.sampled_from([None, "name", "-name", ("kind", "-name"), ("stage", "-id"), "-version"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=conditions, order=orders, limit=st.one_of(st.none(), st.integers(1, 10)))
def test_find_and_count_match_the_reference(pair, where, order, limit):
    mongo, memory = pair
    try:
        expected = memory.customers.find(where, order_by=order, limit=limit)
    except crmkit.ValidationError:
        with pytest.raises(crmkit.ValidationError):
            mongo.customers.find(where, order_by=order, limit=limit)
        return
    got = mongo.customers.find(where, order_by=order, limit=limit)
    assert [c.id for c in got] == [c.id for c in expected]
    assert mongo.customers.count(where) == memory.customers.count(where)


def test_paging_with_cursors_matches_the_reference(pair):
    mongo, memory = pair
    for order in ("name", "-stage", ("kind", "-name")):
        pages = []
        for crm in (mongo, memory):
            ids, after = [], None
            while True:
                page = crm.customers.find(F("kind") != "robot", order_by=order, limit=4, after=after)
                ids += [c.id for c in page]
                if page.next is None:
                    break
                after = str(page.next)
            pages.append(ids)
        assert pages[0] == pages[1] and len(pages[0]) == len(_customers())


def test_values_that_look_like_operators_are_plain_data(crm):
    names = ["$where", '{"$ne": null}', "a.b", "$gt", "$regex", "$$ROOT"]
    stored = [
        crm.customers.add(
            Customer(kind="person", name=n, owner=n, tags={n}, external_id=n, attributes={"s": n, "t": n + "x"})
        )
        for n in names
    ]
    for customer, n in zip(stored, names, strict=True):
        back = crm.customers.get_by_external_id(n)
        assert back == customer and back.name == n and back.attributes["s"] == n and back.tags == {n}
        assert [c.id for c in crm.customers.find(F("name") == n)] == [customer.id]
        assert [c.id for c in crm.customers.find(F("attributes.s") == n)] == [customer.id]
        assert [c.id for c in crm.customers.find(F("tags").contains(n))] == [customer.id]
        assert [c.id for c in crm.customers.find(F("owner").in_([n]))] == [customer.id]
        assert crm.customers.count(F("name") != n) == len(names) - 1
    # A mapping where a value belongs is refused, never sent as an operator.
    with pytest.raises(crmkit.ValidationError):
        crm.customers.find(F("name") == {"$ne": None})
    with pytest.raises(crmkit.ValidationError):
        crm.customers.find({"attributes.s": {"$ne": None}})
    with pytest.raises(crmkit.ValidationError):
        crm.customers.find(F("attributes.$where") == 1)
    with pytest.raises(crmkit.ValidationError):
        crm.customers.find(F("attributes.a.b") == 1)


def test_contains_is_a_literal_case_sensitive_substring(crm):
    a = crm.customers.add(Customer(kind="person", name="Price (net) is $5.00 [approx] \\o/ a+b ^x$"))
    crm.customers.add(Customer(kind="person", name="price net is 5 dollars"))
    for needle in ["(net)", "$5.00", "[approx]", "\\o/", "a+b", "^x$", ""]:
        got = {c.id for c in crm.customers.find(F("name").contains(needle))}
        assert (a.id in got) and (len(got) == (2 if needle == "" else 1)), needle
    assert crm.customers.count(F("name").contains(".*")) == 0
    assert crm.customers.count(F("name").contains("PRICE")) == 0


def test_participants_contains_is_membership(crm):
    c = crm.customers.add(Customer(kind="person", name="C"))
    crm.interactions.add(
        Interaction(customer_id=c.id, channel="email", direction="inbound", occurred_at=T0, participants={"ann", "bob"})
    )
    assert crm.interactions.count(F("participants").contains("ann")) == 1
    assert crm.interactions.count(F("participants").contains("an")) == 0
    assert crm.interactions.count(~F("participants").contains("ann")) == 0

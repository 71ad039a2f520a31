"""Traversal as one recursive CTE gives the default breadth-first answer; per-customer reads are one query each."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit import Customer, Interaction, Relationship
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS, INTERACTIONS, RELATIONSHIPS
from crmkit.store import Activity, Repository, Store

KINDS = ["works_for", "referred_by", "household_member"]
DAYS = [None, dt.date(2024, 1, 1), dt.date(2024, 6, 1), dt.date(2025, 1, 1)]

edges = st.lists(
    st.tuples(
        st.integers(0, 6), st.integers(0, 6), st.sampled_from(KINDS), st.sampled_from(DAYS), st.sampled_from(DAYS)
    ).filter(lambda e: e[0] != e[1] and (e[3] is None or e[4] is None or e[3] <= e[4])),
    max_size=18,
)


def _fresh(crm: CRM) -> CRM:
    return CRM(crm.store, crm._host, "g-" + uuid.uuid4().hex[:12])


def _key(reached: Any) -> tuple[Any, ...]:
    return (reached.depth, reached.customer_id, reached.via)


@given(
    graph=edges,
    start=st.integers(0, 6),
    kinds=st.sets(st.sampled_from(KINDS), min_size=1),
    direction=st.sampled_from(["out", "in", "both"]),
    depth=st.integers(1, 5),
    as_of=st.sampled_from(DAYS),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_traversal_equals_the_breadth_first_default(
    crm: CRM, graph: list[Any], start: int, kinds: set[str], direction: str, depth: int, as_of: dt.date | None
) -> None:
    crm = _fresh(crm)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    people = [Customer(kind="person", name=f"c{i}", version=1, created_at=now, updated_at=now) for i in range(7)]
    crm.store.repository(CUSTOMERS).insert(crm.tenant, people)
    one_per_key = {(a, b, k, s): u for a, b, k, s, u in graph}  # stores keep one edge per natural key
    rels = [
        Relationship(source_id=people[a].id, target_id=people[b].id, kind=k, since=s, until=u, version=1,
                     created_at=now, updated_at=now)
        for (a, b, k, s), u in one_per_key.items()
    ]
    crm.store.repository(RELATIONSHIPS).insert(crm.tenant, rels)
    args = (crm.tenant, people[start].id, frozenset(kinds), direction, depth, as_of)
    got = crm.store.traverse(*args)
    expected = Store.traverse(crm.store, *args)
    assert sorted(got, key=_key) == sorted(expected, key=_key)


def test_traversal_is_one_query(crm: CRM, count_statements: Callable[[CRM], Any]) -> None:
    chain = [crm.customers.add(Customer(kind="organization", name=f"org {i}")) for i in range(6)]
    for child, parent in zip(chain[1:], chain[:-1], strict=True):
        crm.relationships.add(Relationship(source_id=child.id, target_id=parent.id, kind="subsidiary_of"))
    with count_statements(crm) as seen:
        reached = crm.store.traverse(crm.tenant, chain[0].id, frozenset({"subsidiary_of"}), "in", 10, None)
    assert len(seen.statements) == 1
    assert [(r.customer_id, r.depth) for r in sorted(reached, key=lambda r: r.depth)] == [
        (c.id, i) for i, c in enumerate(chain[1:], start=1)
    ]
    assert crm.relationships.traverse(chain[0].id, kind="parent_of", depth=2)[1].customer_id == chain[2].id


def test_existing_ids_and_activity_are_one_query_each(crm: CRM, count_statements: Callable[[CRM], Any]) -> None:
    people = [crm.customers.add(Customer(kind="person", name=f"c{i}")) for i in range(3)]
    base = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    for i, person in enumerate(people[:2]):
        for k in range(i + 2):
            crm.interactions.add(Interaction(customer_id=person.id, channel="email", direction="inbound",
                                             occurred_at=base + dt.timedelta(days=k, microseconds=i)))
    customers: Repository[Any] = crm.store.repository(CUSTOMERS)
    interactions: Repository[Any] = crm.store.repository(INTERACTIONS)
    stranger = uuid.uuid4()
    with count_statements(crm) as seen:
        found = customers.existing_ids(crm.tenant, [p.id for p in people] + [stranger])
    assert len(seen.statements) == 1
    assert found == {p.id for p in people}
    with count_statements(crm) as seen:
        activity = interactions.activity(crm.tenant, [p.id for p in people] + [stranger])
    assert len(seen.statements) == 1
    assert activity == {
        people[0].id: Activity(2, base, base + dt.timedelta(days=1)),
        people[1].id: Activity(3, base + dt.timedelta(microseconds=1), base + dt.timedelta(days=2, microseconds=1)),
    }
    assert activity == Repository.activity(interactions, crm.tenant, [p.id for p in people] + [stranger])

"""Relationship traversal by $graphLookup gives the answers of the default breadth-first walk."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import Customer, Relationship
from crmkit.store import Store

KINDS = ["works_for", "household_member", "reports_to"]
DAYS = [None, dt.date(2020, 1, 1), dt.date(2021, 6, 1), dt.date(2022, 1, 1)]
N = 7

edges = st.lists(
    st.tuples(st.integers(0, N - 1), st.integers(0, N - 1), st.sampled_from(KINDS), st.sampled_from(DAYS),
              st.sampled_from(DAYS)).filter(lambda e: e[0] != e[1]),
    max_size=18,
)
walks = st.lists(
    st.tuples(st.integers(0, N - 1), st.frozensets(st.sampled_from(KINDS), min_size=1),
              st.sampled_from(["out", "in", "both"]), st.integers(1, 4), st.sampled_from(DAYS)),
    min_size=1, max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edges=edges, walks=walks)
def test_graph_lookup_equals_the_default_walk(mongo_db_url, edges, walks):
    with crmkit.connect(mongo_db_url, tenant="g-" + uuid.uuid4().hex[:10]) as crm:
        people = [crm.customers.add(Customer(kind="person", name=f"P{i}")) for i in range(N)]
        keys = set()
        for source, target, kind, since, until in edges:
            if since and until and until < since:
                since, until = until, since
            if (source, target, kind, since) in keys:  # one edge per natural key
                continue
            keys.add((source, target, kind, since))
            crm.relationships.add(Relationship(people[source].id, people[target].id, kind, since=since, until=until))
        for start, kinds, direction, depth, as_of in walks:
            args = (crm.tenant, people[start].id, kinds, direction, depth, as_of)
            native = crm.store.traverse(*args)
            default = sorted(Store.traverse(crm.store, *args), key=lambda r: (r.depth, r.customer_id))
            assert native == default


def test_a_chain_is_walked_in_one_query_and_respects_dates(mongo_db_url):
    from pymongo import monitoring

    class Names(monitoring.CommandListener):
        names: list[str] = []

        def started(self, event):
            self.names.append(event.command_name)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    listener = Names()
    with crmkit.connect(mongo_db_url, tenant="g-" + uuid.uuid4().hex[:10], event_listeners=[listener]) as crm:
        p = [crm.customers.add(Customer(kind="person", name=f"P{i}")) for i in range(5)]
        for i in range(4):
            until = dt.date(2020, 1, 1) if i == 2 else None
            crm.relationships.add(Relationship(p[i].id, p[i + 1].id, "reports_to", until=until))
        listener.names.clear()
        reached = crm.store.traverse(crm.tenant, p[0].id, frozenset({"reports_to"}), "out", 10, None)
        assert listener.names == ["aggregate"]
        assert [(r.customer_id, r.depth) for r in reached] == [(p[i].id, i) for i in range(1, 5)]
        assert all(r.via.target_id == r.customer_id for r in reached)
        later = crm.relationships.traverse(p[0].id, kind="reports_to", depth=10, as_of=dt.date(2021, 1, 1))
        assert [r.customer_id for r in later] == [p[1].id, p[2].id]
        up = crm.relationships.traverse(p[4].id, kind="manages", depth=2)
        assert [(r.customer_id, r.depth) for r in up] == [(p[3].id, 1), (p[2].id, 2)]

"""Relationship queries: neighbours by type, direction, inverse name and symmetry, as_of dates, depth-N walks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit import BulkResult, ConflictError, NotFound, Reached, Relationship, ValidationError
from crmkit.crm import CRM
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import ContractBase, conformance_settings, edge, organization, person

__all__ = ["RelationshipGraphContract", "reference_walk"]


def reference_walk(
    edges: Iterable[Relationship], start: uuid.UUID, kinds: set[str], direction: str, depth: int, as_of: dt.date | None
) -> dict[uuid.UUID, int]:
    """Breadth-first: each customer reachable within ``depth`` steps and its smallest distance."""
    usable = [e for e in edges if e.kind in kinds and (as_of is None or e.active_on(as_of))]
    found: dict[uuid.UUID, int] = {}
    frontier = {start}
    for level in range(1, depth + 1):
        step: set[uuid.UUID] = set()
        for e in usable:
            if direction in ("out", "both") and e.source_id in frontier:
                step.add(e.target_id)
            if direction in ("in", "both") and e.target_id in frontier:
                step.add(e.source_id)
        frontier = {c for c in step if c != start and c not in found}
        for c in frontier:
            found[c] = level
    return found


def _check_reached(
    reached: list[Reached],
    expected: dict[uuid.UUID, int],
    edges: list[Relationship],
    start: uuid.UUID,
    kinds: set[str],
    direction: str,
    as_of: dt.date | None,
) -> None:
    assert {r.customer_id: r.depth for r in reached} == expected
    assert len(reached) == len(expected), "a customer was reported twice"
    assert [(r.depth, r.customer_id) for r in reached] == sorted((r.depth, r.customer_id) for r in reached)
    depth_of = {**expected, start: 0}
    stored = {e.id: e for e in edges}
    for r in reached:
        assert stored.get(r.via.id) == r.via, f"via is not a stored edge: {r.via!r}"
        assert r.via.kind in kinds and (as_of is None or r.via.active_on(as_of))
        ends = []
        if direction in ("out", "both"):
            ends.append((r.via.source_id, r.via.target_id))
        if direction in ("in", "both"):
            ends.append((r.via.target_id, r.via.source_id))
        assert any(there == r.customer_id and depth_of.get(here) == r.depth - 1 for here, there in ends), r


class RelationshipGraphContract(ContractBase):
    """neighbours() and traverse() over typed, dated, directed (or symmetric) edges."""

    @pytest.fixture
    def graph(self, crm: CRM) -> dict[str, Any]:
        c = {
            "ada": person("Ada"),
            "bob": person("Bob"),
            "cyd": person("Cyd"),
            "acme": organization("Acme"),
            "parent": organization("Acme Holding"),
            "top": organization("Top Group"),
        }
        c = {k: crm.customers.add(v) for k, v in c.items()}
        e = {
            "ada_acme": edge(c["ada"], "works_for", c["acme"], since=dt.date(2020, 1, 1), until=dt.date(2022, 12, 31)),
            "bob_acme": edge(c["bob"], "works_for", c["acme"], since=dt.date(2021, 6, 1)),
            "acme_parent": edge(c["acme"], "subsidiary_of", c["parent"]),
            "parent_top": edge(c["parent"], "subsidiary_of", c["top"]),
            "home": edge(c["ada"], "household_member", c["bob"]),
            "referral": edge(c["cyd"], "referred_by", c["ada"]),
            "boss": edge(c["bob"], "reports_to", c["ada"], role="team lead"),
        }
        e = {k: crm.relationships.add(v) for k, v in e.items()}
        return {"crm": crm, **c, "edges": e}

    @staticmethod
    def _names(g: dict[str, Any], reached: list[Reached]) -> list[tuple[str, int]]:
        names = {v.id: k for k, v in g.items() if hasattr(v, "kind") and hasattr(v, "name")}
        return sorted((names[r.customer_id], r.depth) for r in reached)

    def test_neighbours_by_type_and_direction(self, graph: dict[str, Any]) -> None:
        g, rel = graph, graph["crm"].relationships
        assert self._names(g, rel.neighbours(g["ada"].id, kind="works_for", direction="out")) == [("acme", 1)]
        assert rel.neighbours(g["ada"].id, kind="works_for", direction="in") == []
        staff = [("ada", 1), ("bob", 1)]
        assert self._names(g, rel.neighbours(g["acme"].id, kind="works_for", direction="in")) == staff
        assert self._names(g, rel.neighbours(g["acme"].id, kind="works_for")) == [("ada", 1), ("bob", 1)]
        (via,) = rel.neighbours(g["ada"].id, kind="referred_by", direction="in")
        assert via.customer_id == g["cyd"].id and via.via == g["edges"]["referral"]

    def test_neighbours_by_inverse_name(self, graph: dict[str, Any]) -> None:
        g, rel = graph, graph["crm"].relationships
        assert self._names(g, rel.neighbours(g["acme"].id, kind="employs", direction="out")) == [("ada", 1), ("bob", 1)]
        assert rel.neighbours(g["ada"].id, kind="employs", direction="out") == []
        assert self._names(g, rel.neighbours(g["ada"].id, kind="manages", direction="out")) == [("bob", 1)]
        assert self._names(g, rel.neighbours(g["parent"].id, kind="parent_of", direction="out")) == [("acme", 1)]

    def test_symmetric_types_ignore_the_stored_direction(self, graph: dict[str, Any]) -> None:
        g, rel = graph, graph["crm"].relationships
        for who, other in (("ada", "bob"), ("bob", "ada")):
            for direction in ("out", "in", "both"):
                found = rel.neighbours(g[who].id, kind="household_member", direction=direction)
                assert self._names(g, found) == [(other, 1)], (who, direction)

    def test_every_type_at_once(self, graph: dict[str, Any]) -> None:
        g, rel = graph, graph["crm"].relationships
        assert self._names(g, rel.neighbours(g["ada"].id)) == [("acme", 1), ("bob", 1), ("cyd", 1)]
        assert self._names(g, rel.neighbours(g["ada"].id, kind=["works_for", "reports_to"], direction="out")) == [
            ("acme", 1)
        ]
        assert self._names(g, rel.neighbours(g["ada"].id, kind=("referred_by", "reports_to"), direction="in")) == [
            ("bob", 1),
            ("cyd", 1),
        ]

    @pytest.mark.parametrize(
        ("day", "expected"),
        [
            (dt.date(2019, 12, 31), []),
            (dt.date(2020, 1, 1), ["ada"]),
            (dt.date(2021, 6, 1), ["ada", "bob"]),
            (dt.date(2022, 12, 31), ["ada", "bob"]),
            (dt.date(2023, 1, 1), ["bob"]),
            (None, ["ada", "bob"]),
        ],
    )
    def test_as_of_dates_are_inclusive(self, graph: dict[str, Any], day: dt.date | None, expected: list[str]) -> None:
        g = graph
        found = g["crm"].relationships.neighbours(g["acme"].id, kind="employs", direction="out", as_of=day)
        assert [name for name, _ in self._names(g, found)] == expected

    def test_traversal_to_depth_n(self, graph: dict[str, Any]) -> None:
        g, rel = graph, graph["crm"].relationships
        up = [("parent", 1), ("top", 2)]
        assert self._names(g, rel.traverse(g["acme"].id, kind="subsidiary_of", depth=1)) == up[:1]
        assert self._names(g, rel.traverse(g["acme"].id, kind="subsidiary_of", depth=2)) == up
        assert self._names(g, rel.traverse(g["acme"].id, kind="subsidiary_of", depth=100)) == up
        assert self._names(g, rel.traverse(g["top"].id, kind="parent_of", depth=5)) == [("acme", 2), ("parent", 1)]
        assert rel.traverse(g["top"].id, kind="subsidiary_of", depth=5) == []
        everyone = rel.traverse(g["cyd"].id, direction="both", depth=3, kind=None)
        assert self._names(g, everyone) == [("acme", 2), ("ada", 1), ("bob", 2), ("parent", 3)]

    def test_each_customer_once_at_its_smallest_depth(self, graph: dict[str, Any]) -> None:
        g, crm = graph, graph["crm"]
        shortcut = crm.relationships.add(edge(g["acme"], "subsidiary_of", g["top"]))
        found = crm.relationships.traverse(g["acme"].id, kind="subsidiary_of", depth=3)
        assert self._names(g, found) == [("parent", 1), ("top", 1)]
        assert [r.via for r in found if r.customer_id == g["top"].id] == [shortcut]
        ring = [crm.customers.add(person(f"ring {i}")) for i in range(4)]
        for i in range(4):
            crm.relationships.add(edge(ring[i], "partner_of", ring[(i + 1) % 4]))
        walk = crm.relationships.traverse(ring[0].id, kind="partner_of", depth=10)
        assert sorted((r.customer_id, r.depth) for r in walk) == sorted(
            [(ring[1].id, 1), (ring[3].id, 1), (ring[2].id, 2)]
        )

    def test_results_carry_the_edge_and_are_ordered(self, graph: dict[str, Any]) -> None:
        g, crm = graph, graph["crm"]
        edges = list(crm.relationships.find())
        reached = crm.relationships.traverse(g["cyd"].id, direction="both", depth=4, kind=None)
        kinds = {t.name for t in crm.relationship_types.values()}
        expected = reference_walk(edges, g["cyd"].id, kinds, "both", 4, None)
        _check_reached(reached, expected, edges, g["cyd"].id, kinds, "both", None)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"kind": "best_friend_of"},
            {"kind": []},
            {"kind": ["works_for", "employs"]},
            {"direction": "sideways"},
            {"depth": 0},
            {"depth": 101},
            {"depth": True},
            {"as_of": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)},
            {"as_of": "2024-01-01"},
        ],
        ids=repr,
    )
    def test_bad_arguments_are_validation_errors(self, graph: dict[str, Any], kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            graph["crm"].relationships.traverse(graph["ada"].id, **{"kind": "works_for", **kwargs})

    def test_unknown_start_is_not_found(self, crm: CRM) -> None:
        with pytest.raises(NotFound):
            crm.relationships.neighbours(uuid.uuid4())
        with pytest.raises(NotFound):
            crm.relationships.traverse(uuid.uuid4(), kind="works_for", depth=3)

    def test_importing_the_same_relationships_twice_stores_them_once(self, crm: CRM) -> None:
        ada, bob, acme = (crm.customers.add(c) for c in (person("Ada"), person("Bob"), organization()))

        def rows() -> list[Relationship]:  # fresh ids each time, as a re-read import file gives
            return [
                edge(ada, "works_for", acme, external_id="hr-1"),
                edge(bob, "works_for", acme, since=dt.date(2020, 1, 1), external_id="hr-2"),
                edge(ada, "partner_of", bob),  # undated, no external id: the natural key alone
                edge(ada, "reports_to", bob, since=dt.date(2021, 3, 1)),
                edge(ada, "reports_to", bob, since=dt.date(2022, 3, 1)),  # a later spell: another edge
            ]

        assert crm.relationships.add_many(rows()) == BulkResult(5, 0)
        assert crm.relationships.add_many(rows()) == BulkResult(0, 5)
        assert crm.relationships.add_many(rows() + rows(), batch_size=3) == BulkResult(0, 10)
        # a repeat inside one import, and a known edge under a new external id: skipped by the natural key
        twice = edge(bob, "referred_by", ada)
        again = edge(bob, "works_for", acme, since=dt.date(2020, 1, 1), external_id="other-2")
        assert crm.relationships.add_many([twice, edge(bob, "referred_by", ada), again]) == BulkResult(1, 2)
        stored = crm.relationships.find()
        assert len(stored) == 6
        assert crm.relationships.get_by_external_id("hr-1").source_id == ada.id
        with pytest.raises(NotFound):
            crm.relationships.get_by_external_id("other-2")

    def test_a_natural_key_clash_through_add_is_a_conflict(self, crm: CRM) -> None:
        ada, acme = crm.customers.add(person("Ada")), crm.customers.add(organization())
        crm.relationships.add(edge(ada, "works_for", acme))
        crm.relationships.add(edge(ada, "works_for", acme, since=dt.date(2020, 1, 1), external_id="x-1"))
        for clash in (
            edge(ada, "works_for", acme),  # undated twice: the same edge
            edge(ada, "works_for", acme, since=dt.date(2020, 1, 1)),
        ):
            with pytest.raises(ConflictError) as caught:
                crm.relationships.add(clash)
            assert "since" in str(caught.value)
        with pytest.raises(ConflictError, match="external_id"):
            crm.relationships.add(edge(ada, "works_for", acme, since=dt.date(2021, 1, 1), external_id="x-1"))
        later = crm.relationships.add(edge(ada, "works_for", acme, since=dt.date(2021, 1, 1)))
        with pytest.raises(ConflictError):  # moving an edge onto another's key
            crm.relationships.update(attrs.evolve(later, since=dt.date(2020, 1, 1)))
        assert crm.relationships.count() == 3
        with pytest.raises(ValidationError):
            edge(ada, "works_for", acme, since=dt.date.min)

    def test_random_graphs_agree_with_a_breadth_first_walk(self, crmkit_backend: Backend) -> None:
        types = {t.name: t for t in crmkit_backend.crm().relationship_types.values()}
        day = st.sampled_from([None, dt.date(2020, 1, 1), dt.date(2021, 1, 1), dt.date(2022, 1, 1)])

        @conformance_settings(max_examples=25)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            people = [crm.customers.add(person(f"n{i}")) for i in range(6)]
            pairs = st.tuples(st.integers(0, 5), st.integers(0, 5)).filter(lambda p: p[0] != p[1])
            spec = st.tuples(pairs, st.sampled_from(sorted(types)), day, day)
            edges = []
            keys = set()
            for (s, t), kind, since, until in data.draw(st.lists(spec, max_size=14)):
                if since and until and until < since:
                    since, until = until, since
                if (s, t, kind, since) in keys:  # one edge per natural key
                    continue
                keys.add((s, t, kind, since))
                edges.append(crm.relationships.add(edge(people[s], kind, people[t], since=since, until=until)))
            start = people[data.draw(st.integers(0, 5))].id
            name = data.draw(st.sampled_from(sorted({n for t in types.values() for n in (t.name, t.inverse)})))
            direction: Any = data.draw(st.sampled_from(["out", "in", "both"]))
            depth = data.draw(st.integers(1, 4))
            as_of = data.draw(day)
            rtype = types.get(name) or next(t for t in types.values() if t.inverse == name)
            if rtype.symmetric:
                walk = "both"
            elif rtype.name == name:
                walk = direction
            else:
                walk = {"out": "in", "in": "out", "both": "both"}[direction]
            reached = crm.relationships.traverse(start, kind=name, direction=direction, depth=depth, as_of=as_of)
            expected = reference_walk(edges, start, {rtype.name}, walk, depth, as_of)
            _check_reached(reached, expected, edges, start, {rtype.name}, walk, as_of)

        check()

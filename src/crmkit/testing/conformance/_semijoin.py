"""The semi-join ``F(field).among(aggregate, condition)``, judged against the records read back.

Random customers (owners, tags), their interactions and relationships between them are
stored; then interactions and relationships are selected by conditions on the customers
they refer to, negated, nested (relationships whose source has an interaction of a
channel) and combined with conditions of their own. Counts, pages, scans, reports and
deletions must hold exactly the records the reference finds: the referred records that
match, looked up among everything stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crmkit import Customer, F, Interaction, Relationship
from crmkit.query import Expr, Where, bind
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import ContractBase, at, conformance_settings, person

__all__ = ["SemiJoinContract"]

_OWNERS = ("user:a", "user:b", None)
_TAGS = ("vip", "b2b")
_CHANNELS = ("email", "phone")

#: Conditions on customers, each with its reference test of a stored customer.
_CUSTOMER_CONDITIONS: tuple[tuple[Where, Callable[[Customer], bool]], ...] = (
    (F("owner") == "user:a", lambda c: c.owner == "user:a"),
    (F("owner").in_(["user:a", "user:b"]), lambda c: c.owner in ("user:a", "user:b")),
    (F("owner") == None, lambda c: c.owner is None),  # noqa: E711
    (F("tags").contains("vip"), lambda c: "vip" in c.tags),
    (~F("tags").contains("b2b") & (F("owner") != "user:b"), lambda c: "b2b" not in c.tags and c.owner != "user:b"),
    (None, lambda c: True),
)


class SemiJoinContract(ContractBase):
    """``among``: records selected by a condition on the records they refer to, in the store."""

    def test_among_matches_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=15)
        @given(
            people=st.lists(
                st.tuples(st.sampled_from(_OWNERS), st.frozensets(st.sampled_from(_TAGS))), min_size=1, max_size=6
            ),
            calls=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(_CHANNELS)), max_size=10),
            edges=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=6),
            which=st.integers(0, len(_CUSTOMER_CONDITIONS) - 1),
        )
        def check(
            people: list[tuple[str | None, frozenset[str]]],
            calls: list[tuple[int, str]],
            edges: list[tuple[int, int]],
            which: int,
        ) -> None:
            crm = crmkit_backend.crm()
            customers = [
                crm.customers.add(person(f"P{i}", owner=owner, tags=tags)) for i, (owner, tags) in enumerate(people)
            ]
            stored_calls = [
                crm.interactions.add(
                    Interaction(
                        customer_id=customers[i % len(customers)].id,
                        channel=channel,
                        direction="inbound",
                        occurred_at=at(2026, 1, 1 + n),
                    )
                )
                for n, (i, channel) in enumerate(calls)
            ]
            stored_edges = [
                crm.relationships.add(
                    Relationship(
                        source_id=customers[s].id,
                        target_id=customers[t].id,
                        kind="referred_by",
                    )
                )
                for s, t in dict.fromkeys((s % len(customers), t % len(customers)) for s, t in edges)
                if s != t
            ]
            where, test = _CUSTOMER_CONDITIONS[which]
            chosen = {c.id for c in customers if test(c)}
            among = F("customer_id").among(Customer, where)
            own = F("channel") == "email"
            for condition, want in (
                (among, {i.id for i in stored_calls if i.customer_id in chosen}),
                (~among, {i.id for i in stored_calls if i.customer_id not in chosen}),
                (among & own, {i.id for i in stored_calls if i.customer_id in chosen and i.channel == "email"}),
                (among | own, {i.id for i in stored_calls if i.customer_id in chosen or i.channel == "email"}),
            ):
                _same(crm.interactions, condition, want)
            # nested: a semi-join inside a semi-join (sources among chosen customers that are among talkers)
            talkers = {i.customer_id for i in stored_calls if i.channel == "email" and i.customer_id in chosen}
            nested = F("source_id").among(
                Customer, F("id").among(Customer, where) & F("id").in_([c.id for c in customers if c.id in talkers])
            )
            _same(crm.relationships, nested, {e.id for e in stored_edges if e.source_id in talkers})
            both = F("source_id").among(Customer, where) & F("target_id").among(Customer, where)
            _same(crm.relationships, both, {e.id for e in stored_edges if {e.source_id, e.target_id} <= chosen})
            report = crm.interactions.aggregate(among, group_by="channel", count=True)
            expected: dict[str, int] = {}
            for call in stored_calls:
                if call.customer_id in chosen:
                    expected[call.channel] = expected.get(call.channel, 0) + 1
            assert {r["channel"]: r["count"] for r in report} == expected
            # deleting by the condition removes exactly those
            spec = crm.interactions.spec
            doomed = crm.store.repository(spec).delete_where(crm.tenant, bind(among, spec))
            assert doomed == sum(expected.values())
            kept = {i.id for i in stored_calls if i.customer_id not in chosen}
            assert {i.id for i in crm.interactions.scan()} == kept

        check()

    def test_among_reads_only_the_tenant(self, crmkit_backend: Backend) -> None:
        one, two = crmkit_backend.crm(), crmkit_backend.crm()
        ada = one.customers.add(person("Ada", owner="user:a"))
        bob = two.customers.add(person("Bob", owner="user:b"))
        for crm, who in ((one, ada), (two, bob)):
            crm.interactions.add(
                Interaction(customer_id=who.id, channel="email", direction="inbound", occurred_at=at(2026))
            )
        assert two.interactions.count(F("customer_id").among(Customer, F("owner") == "user:a")) == 0
        assert two.interactions.count(F("customer_id").among(Customer, F("owner") == "user:b")) == 1


def _same(records: Any, condition: Expr, want: set[uuid.UUID]) -> None:
    spec = records.spec
    assert records.count(condition) == len(want), condition
    assert {r.id for r in records.scan(condition)} == want, condition
    page = records.find(condition, limit=2)
    assert {r.id for r in page} <= want and len(page) == min(2, len(want)), condition
    assert records.aggregate(condition, count=True).rows[0]["count"] == len(want), condition
    assert spec.name in ("interactions", "relationships")

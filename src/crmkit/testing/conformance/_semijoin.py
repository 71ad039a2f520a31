"""Sub-queries (semi-joins): ``F(field).in_(Select(aggregate, field, condition, having=...))`` and its
shorthand ``F(field).among(aggregate, condition)`` (``in_(Select(aggregate, "id", condition))``).

On the probe aggregate: random customers and probes referring to them are stored, then
probes are selected by conditions on their customers and customers by conditions on their
probes, a sub-query on the aggregate itself, on text, on a nullable reference, with
``having`` (a count, a money sum), negated and nested; grouped sub-queries with every
operator on counts, sums of money and of integers past 32 bits, minima and maxima of text,
instants and money, negated, in an ``|``, on a text key and nested. Customers, interactions and
relationships check the shorthand with counts, pages, scans, reports and deletions. Every
answer must hold exactly the records the reference finds, looked up among everything stored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from crmkit import Customer, F, Interaction, Relationship, ValidationError
from crmkit.crm import CRM
from crmkit.query import Expr, Select, Where, bind
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._aggregate_kit import ProbeContractBase, add_probes
from crmkit.testing.conformance._harness import at, conformance_settings, person
from crmkit.testing.probe import Probe

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


class SemiJoinContract(ProbeContractBase):
    """Sub-queries (``in_(Select)``, ``among``): records selected by conditions on other records, in the store."""

    def test_sub_queries_on_the_probe_match_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=15, suppress_health_check=[HealthCheck.differing_executors])
        @given(
            people=st.lists(
                st.tuples(st.sampled_from(_OWNERS), st.frozensets(st.sampled_from(_TAGS))), min_size=1, max_size=5
            ),
            probes=st.lists(
                st.tuples(
                    st.integers(0, 4),  # owner
                    st.sampled_from(("a", "b", "c")),  # code
                    st.integers(0, 5),  # number
                    st.sampled_from(("0", "2.50", "-1", "10")),  # amount
                    st.one_of(st.none(), st.integers(0, 4)),  # sponsor
                ),
                max_size=10,
            ),
            which=st.integers(0, len(_CUSTOMER_CONDITIONS) - 1),
            k=st.integers(0, 5),
            at_least=st.integers(1, 3),
            more_than=st.sampled_from((Decimal("-1"), Decimal("0"), Decimal("2.5"), Decimal("11"))),
        )
        def check(
            people: list[tuple[str | None, frozenset[str]]],
            probes: list[tuple[int, str, int, str, int | None]],
            which: int,
            k: int,
            at_least: int,
            more_than: Decimal,
        ) -> None:
            crm = crmkit_backend.crm()
            customers = [
                crm.customers.add(person(f"P{i}", owner=owner, tags=tags)) for i, (owner, tags) in enumerate(people)
            ]
            records = crm.records(Probe)
            stored = add_probes(
                crm,
                customers,
                probes,
                lambda i, amount, sponsor: {
                    "amount": Decimal(amount),
                    "happened_at": at(2026, 1, 1 + i),
                    "sponsor_id": None if sponsor is None else customers[sponsor % len(customers)].id,
                },
            )
            where, test = _CUSTOMER_CONDITIONS[which]
            chosen = {c.id for c in customers if test(c)}
            sugar = F("owner_id").among(Customer, where)
            select = F("owner_id").in_(Select("customers", "id", where))
            assert sugar == F("owner_id").in_(Select(Customer, "id", where))
            big = F("number") > k
            busy = {p.owner_id for p in stored if p.number > k}
            for condition, want in (
                (sugar, {p.id for p in stored if p.owner_id in chosen}),
                (select, {p.id for p in stored if p.owner_id in chosen}),
                (~select & big, {p.id for p in stored if p.owner_id not in chosen and p.number > k}),
                (select | big, {p.id for p in stored if p.owner_id in chosen or p.number > k}),
                # a nullable reference: a missing sponsor is in nothing, and so is not in it
                (
                    F("sponsor_id").in_(Select("customers", "id", where)),
                    {p.id for p in stored if p.sponsor_id in chosen},
                ),
                (
                    ~F("sponsor_id").among("customers", where),
                    {p.id for p in stored if p.sponsor_id not in chosen},
                ),
                # the aggregate itself, on text: probes whose code some big probe has
                (
                    F("code").in_(Select(Probe, "code", big)),
                    {p.id for p in stored if p.code in {q.code for q in stored if q.number > k}},
                ),
                # nested: probes of customers who own a big probe and are chosen
                (
                    F("owner_id").among(Customer, _and(F("id").in_(Select(Probe, "owner_id", big)), where)),
                    {p.id for p in stored if p.owner_id in busy & chosen},
                ),
            ):
                _same(records, condition, want)
            counts: dict[uuid.UUID, int] = {}
            sums: dict[uuid.UUID, Decimal] = {}
            for p in stored:
                counts[p.owner_id] = counts.get(p.owner_id, 0) + 1
                sums[p.owner_id] = sums.get(p.owner_id, Decimal(0)) + p.amount
            for condition, want in (
                (F("id").in_(Select(Probe, "owner_id", big)), busy),
                (_and(~F("id").in_(Select(Probe, "owner_id", big)), where), chosen - busy),
                (
                    F("id").in_(Select(Probe, "owner_id", None, having=("count", ">=", at_least))),
                    {c for c, m in counts.items() if m >= at_least},
                ),
                (
                    F("id").in_(Select(Probe, "owner_id", ~big, having=("sum(amount)", ">", more_than))),
                    {
                        c
                        for c in counts
                        if (s := [p.amount for p in stored if p.owner_id == c and p.number <= k]) and sum(s) > more_than
                    },
                ),
            ):
                _same(crm.customers, condition, want)
            # deleting by a bound sub-query, in the repository, removes exactly those
            spec = records.spec
            doomed = crm.store.repository(spec).delete_where(crm.tenant, bind(select, spec, crm.schema))
            assert doomed == sum(1 for p in stored if p.owner_id in chosen)
            assert {p.id for p in records.scan()} == {p.id for p in stored if p.owner_id not in chosen}

        check()

    def test_grouped_sub_queries_match_the_reference(self, crmkit_backend: Backend) -> None:
        """``having`` with every operator on counts, sums of money and of large integers, minima and maxima of
        text, instants and money, negated, in an ``|``, on a text key, and inside another sub-query."""

        @conformance_settings(max_examples=15, suppress_health_check=[HealthCheck.differing_executors])
        @given(
            owners=st.integers(1, 4),
            probes=st.lists(
                st.tuples(
                    st.integers(0, 3),  # owner
                    st.sampled_from(("a", "b", "c")),  # code
                    st.sampled_from((0, 3, 2**40, -(2**33) - 1, 2**62)),  # number
                    st.sampled_from(("0", "2.50", "-1", "0.000001", "-999999999999.999999", "999999999999.5")),
                    st.integers(0, 40),  # day
                ),
                max_size=10,
            ),
            op=st.sampled_from(("==", "!=", "<", "<=", ">", ">=")),
            measure=st.integers(0, 6),
            pick=st.integers(0, 9),
            inside=st.integers(0, 3),
        )
        def check(
            owners: int,
            probes: list[tuple[int, str, int, str, int]],
            op: str,
            measure: int,
            pick: int,
            inside: int,
        ) -> None:
            crm = crmkit_backend.crm()
            customers = [crm.customers.add(person(f"P{i}", owner=_OWNERS[i % 3])) for i in range(owners)]
            records = crm.records(Probe)
            stored = add_probes(
                crm,
                customers,
                probes,
                lambda i, amount, day: {
                    "amount": Decimal(amount),
                    "happened_at": at(2026, 1, 1) + dt.timedelta(days=day, microseconds=day),
                },
            )
            name, value_of = _MEASURES[measure]
            values = [value_of(p) for p in stored] + _EDGES[measure]
            bound = values[pick % len(values)] if values else _EDGES[measure][0]
            test = _TESTS[op]
            big = F("number") > 0

            def passing(key: Callable[[Probe], Any], where: Callable[[Probe], bool]) -> set[Any]:
                groups: dict[Any, list[Probe]] = {}
                for p in stored:
                    if where(p):
                        groups.setdefault(key(p), []).append(p)
                out = set()
                for k, members in groups.items():
                    measured = _measured(name, [value_of(p) for p in members])
                    if test(measured, bound):
                        out.add(k)
                return out

            rich = passing(lambda p: p.owner_id, lambda p: True)
            selected = F("id").in_(Select(Probe, "owner_id", None, having=(name, op, bound)))
            big_owners = passing(lambda p: p.owner_id, lambda p: p.number > 0)
            selected_big = F("id").in_(Select(Probe, "owner_id", big, having=(name, op, bound)))
            everyone = {c.id for c in customers}
            vip = {c.id for c in customers if c.owner == "user:a"}
            cases: list[tuple[Expr, set[Any]]] = [
                (selected, rich),
                (~selected, everyone - rich),
                (selected_big | (F("owner") == "user:a"), big_owners | vip),
                (~selected_big & (F("owner") != "user:a"), everyone - big_owners - vip),
            ]
            condition, want = cases[inside]
            _same(crm.customers, condition, want)
            # on a text key, and a grouped sub-query inside a sub-query: probes whose code is one of a group
            # that passes, and probes of customers who own a probe of a group that passes
            codes = passing(lambda p: p.code, lambda p: True)
            _same(
                records,
                F("code").in_(Select(Probe, "code", None, having=(name, op, bound))),
                {p.id for p in stored if p.code in codes},
            )
            _same(
                records,
                F("owner_id").among(Customer, F("id").in_(Select(Probe, "owner_id", big, having=(name, op, bound)))),
                {p.id for p in stored if p.owner_id in big_owners},
            )

        check()

    def test_sub_queries_are_checked_against_both_aggregates(self, crm: CRM) -> None:
        records = crm.records(Probe)
        with pytest.raises(ValidationError, match="code"):
            records.count(F("code").among(Customer))  # text against ids
        with pytest.raises(ValidationError, match="colour"):
            records.count(F("owner_id").among(Customer, F("colour") == "red"))  # not a customer field
        with pytest.raises(ValidationError, match="owner_id"):
            records.count(F("owner_id").in_(Select("nothing", "id")))  # no such aggregate
        with pytest.raises(ValidationError, match="owner_id"):
            records.count(F("owner_id").in_(Select(Probe, "code")))  # uuid against text
        with pytest.raises(ValidationError, match="having"):
            crm.customers.count(F("id").in_(Select(Probe, "owner_id", having=("sum(code)", ">", 1))))

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


def _and(condition: Expr, where: Where) -> Expr:
    assert where is None or isinstance(where, Expr)
    return condition if where is None else condition & where


def _same(records: Any, condition: Expr, want: set[uuid.UUID]) -> None:
    """Count, scan, a page and a report in the store all hold exactly ``want``."""
    assert records.count(condition) == len(want), condition
    assert {r.id for r in records.scan(condition)} == want, condition
    page = records.find(condition, limit=2)
    assert {r.id for r in page} <= want and len(page) == min(2, len(want)), condition
    assert records.aggregate(condition, count=True).rows[0]["count"] == len(want), condition


#: The measures a grouped sub-query compares, with the value each probe gives it.
_MEASURES: tuple[tuple[str, Callable[[Probe], Any]], ...] = (
    ("count", lambda p: 1),
    ("sum(amount)", lambda p: p.amount),
    ("sum(number)", lambda p: p.number),
    ("min(code)", lambda p: p.code),
    ("max(happened_at)", lambda p: p.happened_at),
    ("min(amount)", lambda p: p.amount),
    ("max(number)", lambda p: p.number),
)
#: Bounds besides the stored values: between and past them (a sum's steps are millionths).
_EDGES: tuple[list[Any], ...] = (
    [0, 1, 2, 3],
    [Decimal("0"), Decimal("2.4999995"), Decimal("1.5"), Decimal("-1000000000000.000001")],
    [0, 2**40 + 3, 2**62 + 2**40, -(2**34)],
    ["a", "b", "bb", "d"],
    [at(2026, 1, 3), at(2026, 2, 1)],
    [Decimal("-1"), Decimal("0.0000005"), Decimal("3")],
    [2, 2**40, -(2**34)],
)
_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _measured(name: str, values: list[Any]) -> Any:
    if name == "count":
        return len(values)
    if name.startswith("sum"):
        return sum(values)
    return min(values) if name.startswith("min") else max(values)

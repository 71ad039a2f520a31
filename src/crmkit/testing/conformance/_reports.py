"""Group-by reports (``records.aggregate``) of every aggregate, judged by the reference ``crmkit.aggregation.compute``.

Records and reports are drawn by Hypothesis: groupings by every field, by custom
attributes of every kind (numbers of different types that are equal included) and by
every time bucket of every instant and date field; every measure of every field it
applies to; conditions of the query battery. The store's answer must be exactly the
reference's: the same groups, the same counts, the same exact sums (down to the number
of decimal places), minima, maxima, means and distinct counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crmkit import Customer, F, Transaction, ValidationError
from crmkit.aggregation import TIME_UNITS, compute, finish, parse_aggregate
from crmkit.crm import CRM
from crmkit.entities import EntitySpec
from crmkit.query import Expr, bind, evaluate
from crmkit.schema import AggregateSpec
from crmkit.services.records import PAGE_SIZE
from crmkit.store import Repository
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._aggregate_kit import AggregateContractBase, AggregateKit, assert_exact
from crmkit.testing.conformance._aggregate_queries import conditions
from crmkit.testing.conformance._harness import ContractBase, at, conformance_settings, person

__all__ = ["ReportContract", "SetQueryContract", "reports"]

_MEASURES = ("sum", "mean", "min", "max", "count_distinct")
_KINDS = {
    "sum": ("int", "decimal"),
    "mean": ("int", "decimal"),
    "min": ("int", "decimal", "text", "date", "datetime"),
    "max": ("int", "decimal", "text", "date", "datetime"),
    "count_distinct": ("uuid", "text", "int", "decimal", "datetime", "date", "bool"),
}


def reports(spec: EntitySpec, records: Sequence[Any]) -> SearchStrategy[dict[str, Any]]:
    """Arguments of ``aggregate`` for an aggregate: groupings and measures its fields allow."""
    fields = spec.fields
    options = [n for n, f in fields.items() if f.kind != "text_set"]
    options += [f"{u}({n})" for n, f in fields.items() if f.kind in ("datetime", "date") for u in TIME_UNITS]
    if spec.has_attributes:
        keys = sorted({k for r in records for k in r.attributes} | {"nobody"})
        options += [f"attributes.{k}" for k in keys]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        args: dict[str, Any] = {"group_by": tuple(draw(st.lists(st.sampled_from(options), max_size=2, unique=True)))}
        for measure in _MEASURES:
            allowed = [n for n, f in fields.items() if f.kind in _KINDS[measure]]
            if allowed:
                args[measure] = tuple(draw(st.lists(st.sampled_from(allowed), max_size=2, unique=True)))
        args["count"] = draw(st.booleans()) or not any(args.get(m) for m in _MEASURES)
        return args

    return build()


def reference(spec: EntitySpec, stored: Sequence[Any], where: Expr | None, args: dict[str, Any]) -> Any:
    """The report ``compute`` gives for the stored records that match."""
    query = parse_aggregate(
        spec, **{"sum": None, "mean": None, "min": None, "max": None, "count_distinct": None, **args}
    )
    condition = bind(where, spec)
    return finish(query, compute(spec, query, [r for r in stored if evaluate(condition, spec, r)]))


def _random_records(backend: Backend, spec: AggregateSpec, data: st.DataObject) -> tuple[AggregateKit, list[Any]]:
    """Random records of the aggregate stored for a new tenant (with their references' targets), as read back."""
    kit = AggregateKit(backend.crm(), spec)
    records = data.draw(cs.record_lists(spec, targets=kit.targets, max_size=8), label="records")
    kit.service.add_many(records)
    return kit, list(kit.service.stream())


class ReportContract(AggregateContractBase):
    """``aggregate`` on every declared aggregate and on crmkit's customers and transactions."""

    def test_reports_match_the_reference(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        @conformance_settings(max_examples=15)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            kit, stored = _random_records(crmkit_backend, spec, data)
            args = data.draw(reports(spec, stored), label="report")
            where = data.draw(st.none() | conditions(spec, stored), label="where")
            got = kit.service.aggregate(where, **args)
            assert_exact(reference(spec, stored, where, args), got, f"aggregate({where!r}, {args!r})")

        check()

    def test_customers_and_transactions_match_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=15)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            people = data.draw(
                st.lists(cs.customers(), min_size=1, max_size=5, unique_by=lambda c: c.id), label="customers"
            )
            crm.customers.add_many(people)
            ids = st.sampled_from([c.id for c in crm.customers.stream()])  # repeated external ids were skipped
            sales = data.draw(
                st.lists(cs.transactions(customer_id=ids), max_size=10, unique_by=lambda t: t.id), label="transactions"
            )
            crm.transactions.add_many(sales)
            for service, spec in ((crm.customers, crm.customers.spec), (crm.transactions, crm.transactions.spec)):
                stored = list(service.stream())
                args = data.draw(reports(spec, stored), label=f"{spec.name} report")
                where = data.draw(st.sampled_from([None, *_own_conditions(spec.name)]), label="where")
                got = service.aggregate(where, **args)
                assert_exact(reference(spec, stored, where, args), got, f"{spec.name}.aggregate({where!r}, {args!r})")

        check()

    def test_a_count_range_keeps_only_groups_of_that_many_records(
        self, crmkit_backend: Backend, spec: AggregateSpec
    ) -> None:
        """``AggregateQuery.count_range``: the store drops the groups of too few or too many records (``HAVING``)."""

        @conformance_settings(max_examples=10)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            kit, stored = _random_records(crmkit_backend, spec, data)
            crm = kit.crm
            args = {**data.draw(reports(spec, stored), label="report"), "count": True}
            low = data.draw(st.integers(0, 3), label="low")
            high = data.draw(st.none() | st.integers(low, 4), label="high")
            plain = parse_aggregate(
                spec, **{"sum": None, "mean": None, "min": None, "max": None, "count_distinct": None, **args}
            )
            ranged = attrs.evolve(plain, count_range=(low, high))
            at_count = len(plain.group_by) + next(
                i for i, m in enumerate(plain.measures) if m.op == "count" and m.field is None
            )
            want = [
                row
                for row in compute(spec, plain, stored)
                if row[at_count] >= low and (high is None or row[at_count] <= high)
            ]
            repo = crm.store.repository(spec)
            got = repo.aggregate(crm.tenant, bind(None, spec), ranged)
            assert_exact(finish(ranged, want), finish(ranged, got), f"count_range={(low, high)} {args!r}")

        check()

    def test_the_issue_examples(self, crm: CRM) -> None:
        ana = crm.customers.add(Customer(kind="person", name="Ana", owner="ana", attributes={"tier": 1}))
        crm.customers.add(Customer(kind="person", name="Ben", owner="ana", attributes={"tier": Decimal("1.00")}))
        crm.customers.add(Customer(kind="organization", name="Co", attributes={"tier": "gold"}))
        by_owner = crm.customers.aggregate(group_by=("owner",), count=True)
        assert by_owner.as_dict() == {None: {"count": 1}, "ana": {"count": 2}}
        assert crm.customers.aggregate(group_by="attributes.tier", count=True).as_dict() == {
            1: {"count": 2},
            "gold": {"count": 1},
        }
        for amount, when in (("10.50", at(2026, 1, 31, 23, 59, 59)), ("0.25", at(2026, 2, 1)), ("7", at(2026, 2, 2))):
            crm.transactions.add(
                Transaction(
                    customer_id=ana.id, occurred_at=when, amount=Decimal(amount), currency="EUR", kind="purchase"
                )
            )
        report = crm.transactions.aggregate(
            group_by=("currency", "month(occurred_at)"),
            count=True,
            sum="amount",
            mean="amount",
            where=F("kind") == "purchase",
        )
        assert [(r.key, r.count, str(r["sum(amount)"])) for r in report] == [
            (("EUR", dt.date(2026, 1, 1)), 1, "10.50"),
            (("EUR", dt.date(2026, 2, 1)), 2, "7.25"),
        ]
        february = report.get("EUR", dt.date(2026, 2, 1))
        assert february is not None and february["mean(amount)"] == Decimal("3.625")
        assert crm.transactions.aggregate(F("currency") == "XXX", count=True, sum="amount").as_dict() == {
            (): {"count": 0, "sum(amount)": None}
        }

    def test_the_default_for_other_stores_gives_the_same_report(self, crm: CRM) -> None:
        """``Repository.aggregate``'s own default (read page by page, compute in Python) agrees with the store."""
        ana = crm.customers.add(Customer(kind="person", name="Ana"))
        for i in range(30):
            crm.transactions.add(
                Transaction(
                    customer_id=ana.id,
                    occurred_at=at(2026, 1 + i % 12, 1 + i % 28, i % 24),
                    amount=Decimal(i) / 8,
                    currency=("EUR", "USD", "RON")[i % 3],
                    kind="purchase",
                )
            )
        args: dict[str, Any] = {
            "group_by": ("currency", "quarter(occurred_at)"),
            "count": True,
            "sum": "amount",
            "max": "amount",
        }
        query = parse_aggregate(crm.transactions.spec, **{"min": None, "mean": None, "count_distinct": None, **args})
        repo = crm.store.repository(crm.transactions.spec)
        default = finish(query, Repository.aggregate(repo, crm.tenant, bind(None, crm.transactions.spec), query))
        assert_exact(default, crm.transactions.aggregate(**args))

    def test_bad_reports_name_the_argument(self, crm: CRM) -> None:
        for args, field in (
            ({"group_by": "tags", "count": True}, "group_by"),
            ({"group_by": "month(name)", "count": True}, "group_by"),
            ({"sum": "name"}, "sum"),
            ({"mean": "attributes.score"}, "mean"),
            ({"group_by": "nope", "count": True}, "group_by"),
            ({}, "aggregate"),
        ):
            with pytest.raises(ValidationError) as error:
                crm.customers.aggregate(**args)
            assert error.value.field == field, args


def _own_conditions(name: str) -> list[Expr]:
    if name == "customers":
        return [F("kind") == "person", F("owner") != None, F("tags").contains("vip")]  # noqa: E711
    return [F("kind") == "purchase", F("amount") >= Decimal("10"), F("currency").in_(["EUR", "USD"])]


class SetQueryContract(ContractBase):
    """``contains_any`` / ``contains_all`` on sets, and ``scan`` reading everything page by page."""

    def test_contains_any_and_all_match_the_reference(self, crmkit_backend: Backend) -> None:
        words = st.sampled_from(["vip", "VIP", "b2b", "ș", "مشتری", "a b"])

        @conformance_settings(max_examples=15)
        @given(tag_sets=st.lists(st.frozensets(words, max_size=3), min_size=1, max_size=6), asked=st.lists(words))
        def check(tag_sets: list[frozenset[str]], asked: list[str]) -> None:
            crm = crmkit_backend.crm()
            crm.customers.add_many([person(f"P{i}", tags=tags) for i, tags in enumerate(tag_sets)])
            stored = list(crm.customers.scan())
            spec = crm.customers.spec
            for where in (F("tags").contains_any(asked), F("tags").contains_all(asked)):
                condition = bind(where, spec)
                want = sorted(c.id for c in stored if evaluate(condition, spec, c))
                assert sorted(c.id for c in crm.customers.scan(where)) == want, where
                assert crm.customers.count(where) == len(want), where

        check()

    def test_scan_reads_every_record_past_one_page(self, crm: CRM) -> None:
        crm.customers.add_many(person(f"P{i:04d}", tags={"even"} if i % 2 == 0 else set()) for i in range(1_050))
        seen = [c.id for c in crm.customers.scan()]
        assert len(seen) == len(set(seen)) == 1_050
        assert sum(1 for _ in crm.customers.scan(F("tags").contains("even"), order_by="-name")) == 525
        first = crm.customers.find()  # no limit: a first page of PAGE_SIZE, never every row
        assert len(first) == PAGE_SIZE == 1_000 and first.next is not None
        rest = crm.customers.find(after=first.next)
        assert len(rest) == 50 and rest.next is None
        assert [c.id for c in (*first, *rest)] == seen
        with pytest.raises(ValidationError):
            F("tags").contains_any("vip")

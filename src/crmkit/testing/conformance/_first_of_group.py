"""The first record of each group: ``Select(aggregate, field, condition, first_by=order, first_where=test)``.

A value of ``field`` is kept when the first record of its group (the records matching
``condition`` that hold that value) in ``first_by`` (a find order: ``"-happened_at"`` is
the latest, ties broken by id) matches ``first_where``: "the latest consent record of the
customer is a grant". On the probe aggregate: random probes with few distinct times (so
groups tie) are stored, then customers are selected by their latest, earliest and
largest probe, probes by the first probe of their code, negated, nested in another
sub-query and with a sub-query inside ``first_where``. Every answer must hold exactly the
records the reference finds by sorting everything stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from crmkit import Customer, F, ValidationError, schema
from crmkit.crm import CRM
from crmkit.query import Expr, Select
from crmkit.schema._condition import condition_text
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._aggregate_kit import ProbeContractBase, add_probes
from crmkit.testing.conformance._harness import at, conformance_settings, person
from crmkit.testing.probe import Probe

__all__ = ["FirstOfGroupContract"]

_TIMES = (at(2026, 1, 1), at(2026, 1, 2), at(2026, 1, 3))
_FLAGGED = F("flag") == True  # noqa: E712
_UNFLAGGED = F("flag") == False  # noqa: E712


def _firsts(
    probes: Sequence[Probe], key: Callable[[Probe], Any], order: Callable[[Probe], Any], where: Callable[[Probe], bool]
) -> dict[Any, Probe]:
    """The reference: per group value, the first matching probe in ``order`` (then id, ascending)."""
    found: dict[Any, Probe] = {}
    for p in sorted((p for p in probes if where(p)), key=lambda p: (order(p), p.id)):
        value = key(p)
        if value is not None:
            found.setdefault(value, p)
    return found


def _newest(p: Probe) -> Any:
    return -(p.happened_at - _TIMES[0]).total_seconds()


class FirstOfGroupContract(ProbeContractBase):
    """Sub-queries on each group's first record (``first_by``/``first_where``), worked out in the store."""

    def test_first_of_each_group_matches_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=15, suppress_health_check=[HealthCheck.differing_executors])
        @given(
            people=st.lists(st.frozensets(st.sampled_from(("vip", "b2b"))), min_size=1, max_size=4),
            probes=st.lists(
                st.tuples(
                    st.integers(0, 3),  # owner
                    st.sampled_from(("a", "b", "c")),  # code
                    st.integers(0, 5),  # number
                    st.booleans(),  # flag
                    st.integers(0, len(_TIMES) - 1),  # happened_at: few values, so groups tie
                    st.one_of(st.none(), st.integers(0, 3)),  # sponsor
                ),
                max_size=12,
            ),
            k=st.integers(0, 5),
        )
        def check(
            people: list[frozenset[str]], probes: list[tuple[int, str, int, bool, int, int | None]], k: int
        ) -> None:
            crm = crmkit_backend.crm()
            customers = [crm.customers.add(person(f"P{i}", tags=tags)) for i, tags in enumerate(people)]
            records = crm.records(Probe)
            stored = add_probes(
                crm,
                customers,
                probes,
                lambda i, flag, t, sponsor: {
                    "flag": flag,
                    "happened_at": _TIMES[t],
                    "sponsor_id": None if sponsor is None else customers[sponsor % len(customers)].id,
                },
            )
            vip = {c.id for c in customers if "vip" in c.tags}
            small = F("number") <= k

            def owners(first: dict[Any, Probe], test: Callable[[Probe], bool]) -> set[uuid.UUID]:
                return {value for value, p in first.items() if test(p)}

            latest = _firsts(stored, lambda p: p.owner_id, _newest, lambda p: p.number <= k)
            earliest = _firsts(stored, lambda p: p.owner_id, lambda p: p.happened_at, lambda p: True)
            largest = _firsts(stored, lambda p: p.owner_id, lambda p: (-p.number, _newest(p)), lambda p: True)
            flagged = owners(latest, lambda p: p.flag)
            sponsored = owners(latest, lambda p: p.sponsor_id in vip)
            everyone = {c.id for c in customers}
            newest_flag = Select(Probe, "owner_id", small, first_by="-happened_at", first_where=_FLAGGED)
            for condition, want in (
                (F("id").in_(newest_flag), flagged),
                (~F("id").in_(newest_flag), everyone - flagged),
                # no first_where: every group that has a record
                (F("id").in_(Select(Probe, "owner_id", small, first_by="-happened_at")), set(latest)),
                (
                    F("id").in_(Select(Probe, "owner_id", None, first_by="happened_at", first_where=_UNFLAGGED)),
                    owners(earliest, lambda p: not p.flag),
                ),
                (
                    F("id").in_(
                        Select(
                            Probe, "owner_id", None, first_by=("-number", "-happened_at"), first_where=F("code") == "a"
                        )
                    ),
                    owners(largest, lambda p: p.code == "a"),
                ),
                # a sub-query inside first_where: the latest probe's sponsor is a VIP
                (
                    F("id").in_(
                        Select(
                            Probe,
                            "owner_id",
                            small,
                            first_by="-happened_at",
                            first_where=F("sponsor_id").among(Customer, F("tags").contains("vip")),
                        )
                    ),
                    sponsored,
                ),
            ):
                _same(crm.customers, condition, want)
            # on the aggregate itself, grouped by text: probes whose code's newest small probe is flagged
            by_code = _firsts(stored, lambda p: p.code, _newest, lambda p: p.number <= k)
            codes = {c for c, p in by_code.items() if p.flag}
            own = F("code").in_(Select(Probe, "code", small, first_by="-happened_at", first_where=_FLAGGED))
            _same(records, own, {p.id for p in stored if p.code in codes})
            # nested: probes whose owner's newest small probe is flagged, and that are flagged themselves
            nested = F("owner_id").among(Customer, F("id").in_(newest_flag)) & (_FLAGGED)
            _same(records, nested, {p.id for p in stored if p.owner_id in flagged and p.flag})

        check()

    def test_first_of_group_reads_only_the_tenant(self, crmkit_backend: Backend) -> None:
        one, two = crmkit_backend.crm(), crmkit_backend.crm()
        kept = F("code").in_(Select(Probe, "code", None, first_by="-happened_at", first_where=_FLAGGED))
        base: dict[str, Any] = {"code": "a", "number": 1, "amount": Decimal(1), "currency": "EUR"}
        for crm, flag, when in ((one, True, _TIMES[0]), (two, False, _TIMES[2])):
            owner = crm.customers.add(person("Ada"))
            crm.records(Probe).add(Probe(owner_id=owner.id, flag=flag, happened_at=when, **base))
        # the later probe of code "a" in the other tenant does not hide this tenant's first one
        assert one.records(Probe).count(kept) == 1
        assert two.records(Probe).count(kept) == 0

    def test_first_of_group_is_checked_and_stored_as_text(self, crm: CRM) -> None:
        customers = crm.customers
        with pytest.raises(ValidationError, match="order_by"):
            customers.count(F("id").in_(Select(Probe, "owner_id", first_by="labels")))  # not sortable
        with pytest.raises(ValidationError, match="colour"):
            customers.count(F("id").in_(Select(Probe, "owner_id", first_by="number", first_where=F("colour") == 3)))
        with pytest.raises(ValidationError, match="first_by"):
            customers.count(F("id").in_(Select(Probe, "owner_id", first_where=_FLAGGED)))
        with pytest.raises(ValidationError, match="having"):
            customers.count(F("id").in_(Select(Probe, "owner_id", having=("count", ">", 1), first_by="number")))
        condition: Expr = F("id").in_(
            Select(
                "crmkit_probes",
                "owner_id",
                F("number") > 1,
                first_by=("-happened_at", "number"),
                first_where=_FLAGGED,
            )
        )
        assert schema.parse_condition(condition_text(condition)) == condition
        assert customers.count(condition) == 0


def _same(records: Any, condition: Expr, want: set[uuid.UUID]) -> None:
    """Count, scan and a report in the store all hold exactly ``want``."""
    assert records.count(condition) == len(want), condition
    assert {r.id for r in records.scan(condition)} == want, condition
    assert records.aggregate(condition, count=True).rows[0]["count"] == len(want), condition

"""Timelines, purchase summaries and life-cycle decisions computed by the store match the references."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import crmkit
from crmkit import NotFound, Stage, ValidationError
from crmkit._host import BUILTIN_PLUGINS
from crmkit.crm import CRM
from crmkit.documents import Document
from crmkit.lifecycle import Decision, LifecyclePolicy
from crmkit.sales import Note, Task
from crmkit.summaries import summarize
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import (
    Clock,
    ContractBase,
    at,
    conformance_settings,
    contact,
    person,
    purchase,
    sample_history,
)

__all__ = ["LifecycleContract", "PurchaseSummaryContract", "TimelineContract"]


def _bare_customers() -> st.SearchStrategy[Any]:
    """Customers with no contact points or attributes: the histories' purchases are what is tested."""
    return cs.customers(
        emails=st.just(()), phones=st.just(()), addresses=st.just(()), handles=st.just(()), attributes=st.just({})
    )


class TimelineContract(ContractBase):
    """A customer's interactions, transactions and stage changes in one list ordered by instant, then id."""

    def test_timeline_merges_and_orders_by_instant(self, crmkit_backend: Backend) -> None:
        clock = Clock(at(2024, 1, 1, 9, 0, offset=3.5))  # 05:30 UTC
        crm = crmkit_backend.crm(clock=clock)
        ada = crm.customers.add(person())
        other = crm.customers.add(person("Other"))
        items: list[Any] = [
            crm.interactions.add(contact(ada, at(2024, 1, 1, 8, 0, offset=3.5))),  # 04:30 UTC
            crm.transactions.add(purchase(ada, 5, at(2023, 12, 31, 23, 59, offset=-5))),  # 04:59 UTC
            crm.interactions.add(contact(ada, at(2024, 1, 1, 5, 0))),  # 05:00 UTC
            crm.transactions.add(purchase(ada, 6, at(2024, 1, 1, 5, 0))),  # the same instant
            crm.interactions.add(contact(ada, at(2024, 1, 1, 5, 0, 0, 1))),
        ]
        crm.lifecycle.move(ada.id, Stage.PROSPECT)  # at 05:30 UTC
        crm.interactions.add(contact(other, at(2024, 1, 1, 5, 0)))
        change = crm.lifecycle.history(ada.id)[0]
        tied = sorted(items[2:4], key=lambda r: r.id)
        expected = [items[0].id, items[1].id, *(r.id for r in tied), items[4].id, change.id]
        entries = crm.timeline(ada.id)
        assert [e.record.id for e in entries] == expected
        assert [e.kind for e in entries][-1] == "stage_change"
        assert all(isinstance(e.record, (crmkit.Interaction, crmkit.Transaction, crmkit.StageChange)) for e in entries)
        assert all(e.at == e.record.occurred_at for e in entries if not isinstance(e.record, (Task, Note, Document)))
        assert [e.record.id for e in crm.timeline(ada.id, newest_first=True)] == expected[::-1]
        assert [e.record.id for e in crm.timeline(ada.id, limit=2)] == expected[:2]
        assert [e.record.id for e in crm.timeline(ada.id, newest_first=True, limit=2)] == expected[::-1][:2]
        window = crm.timeline(ada.id, since=at(2024, 1, 1, 5, 0), until=at(2024, 1, 1, 9, 0, offset=3.5))
        assert [e.record.id for e in window] == expected[2:]
        first = crm.timeline(other.id)[0].record
        assert isinstance(first, crmkit.Interaction) and first.customer_id == other.id

    def test_timeline_of_an_unknown_customer_is_not_found(self, crm: CRM) -> None:
        with pytest.raises(NotFound):
            crm.timeline(uuid.uuid4())
        ada = crm.customers.add(person())
        assert crm.timeline(ada.id) == []
        with pytest.raises(ValidationError):
            crm.timeline(ada.id, since=dt.datetime(2024, 1, 1))


def _sales(crm: CRM) -> dict[str, Any]:
    ada, bob, cyd, dan = (crm.customers.add(person(n)) for n in ("Ada", "Bob", "Cyd", "Dan"))
    rows = [
        # Ada: two purchases on one UTC day (one written in Tehran time), one later, in two currencies.
        purchase(ada, "10.10", at(2024, 1, 1, 1, 0, offset=3.5)),  # 2023-12-31 21:30 UTC
        purchase(ada, "0.20", at(2023, 12, 31, 23, 0)),
        purchase(ada, "5", at(2024, 1, 1, 0, 30)),
        purchase(ada, "7.000001", at(2024, 3, 1, 12)),
        purchase(ada, "1000", at(2024, 2, 1), "IRR"),
        purchase(ada, "2.50", at(2024, 3, 2), kind="refund"),
        # Bob: only refunds (no summary); Cyd: one purchase late in the evening in New York.
        purchase(bob, "3", at(2024, 1, 5), kind="refund"),
        purchase(cyd, "99.99", at(2024, 1, 5, 23, 30, offset=-5)),  # 2024-01-06 04:30 UTC
        purchase(cyd, "0.01", at(2024, 1, 6, 1)),
    ]
    return {"ada": ada, "bob": bob, "cyd": cyd, "dan": dan, "rows": [crm.transactions.add(r) for r in rows]}


class PurchaseSummaryContract(ContractBase):
    """``crm.purchase_summaries`` equals ``crmkit.summaries.summarize`` over the same transactions."""

    def test_summaries_match_the_reference(self, crm: CRM) -> None:
        data = _sales(crm)
        got = crm.purchase_summaries()
        assert got == summarize(data["rows"])
        ada_eur = next(s for s in got if s.customer_id == data["ada"].id and s.currency == "EUR")
        assert (ada_eur.purchases, ada_eur.purchase_days) == (4, 3)  # 21:30 and 23:00 UTC share a day
        assert ada_eur.total == Decimal("22.300001")
        assert ada_eur.first_day_total == Decimal("10.30")
        assert ada_eur.refunds == Decimal("2.50")
        assert ada_eur.first_purchase_at == at(2023, 12, 31, 21, 30)
        assert ada_eur.last_purchase_at == at(2024, 3, 1, 12)
        assert ada_eur.repeat_mean == Decimal("6.0000005")
        cyd = next(s for s in got if s.customer_id == data["cyd"].id)
        assert (cyd.purchase_days, cyd.total, cyd.first_day_total) == (1, Decimal("100.00"), Decimal("100.00"))
        assert {(s.customer_id, s.currency) for s in got} == {
            (data["ada"].id, "EUR"),
            (data["ada"].id, "IRR"),
            (data["cyd"].id, "EUR"),
        }
        assert [(s.customer_id, s.currency) for s in got] == sorted((s.customer_id, s.currency) for s in got)

    def test_summaries_for_some_customers_and_a_period(self, crm: CRM) -> None:
        data = _sales(crm)
        rows = data["rows"]
        ids = [data["cyd"].id, data["dan"].id, uuid.uuid4()]
        assert crm.purchase_summaries(ids) == summarize(r for r in rows if r.customer_id in ids)
        assert crm.purchase_summaries([]) == []
        assert crm.purchase_summaries([data["bob"].id, data["dan"].id]) == []
        since, until = at(2024, 1, 1, 0, 30), at(2024, 3, 1, 12)  # both bounds are inclusive
        assert crm.purchase_summaries(since=since, until=until) == summarize(rows, since=since, until=until)
        window = crm.purchase_summaries([data["ada"].id], since=at(2024, 1, 1, 4, offset=3.5), until=until)
        assert window == summarize(
            [r for r in rows if r.customer_id == data["ada"].id], since=at(2024, 1, 1, 0, 30), until=until
        )
        with pytest.raises(ValidationError):
            crm.purchase_summaries(since=dt.datetime(2024, 1, 1))

    def test_random_histories_match_the_reference(self, crmkit_backend: Backend) -> None:
        recent = cs.aware_datetimes(min_value=dt.datetime(2023, 12, 30), max_value=dt.datetime(2024, 1, 3))
        histories = cs.crm_histories(
            min_size=1,
            max_size=3,
            max_interactions=0,
            max_relationships=0,
            max_transactions=12,
            customers=_bare_customers(),
            occurred_at=recent,
            currency=st.sampled_from(("EUR", "RON", "IRR")),
        )

        @conformance_settings(max_examples=25)
        @given(history=histories, since=st.none() | recent, until=st.none() | recent)
        @example(history=sample_history(), since=None, until=None)
        def check(history: cs.CRMHistory, since: dt.datetime | None, until: dt.datetime | None) -> None:
            crm = crmkit_backend.crm()
            history.load(crm)
            assert crm.purchase_summaries() == summarize(history.transactions)
            assert crm.purchase_summaries(since=since, until=until) == summarize(
                history.transactions, since=since, until=until
            )
            some = [c.id for c in history.customers[:1]]
            assert crm.purchase_summaries(some) == summarize(t for t in history.transactions if t.customer_id in some)

        check()


def _rule_plugins(crm: CRM) -> list[str]:
    """Installed plugins that propose or veto stage changes (not crmkit's own, not the store's)."""
    hooks = crm._host.pm.hook
    impls = [*hooks.crmkit_propose_stage.get_hookimpls(), *hooks.crmkit_guard_transition.get_hookimpls()]
    return sorted(
        {
            impl.plugin_name
            for impl in impls
            if impl.plugin_name not in BUILTIN_PLUGINS and not hasattr(impl.plugin, "crmkit_open_store")
        }
    )


def _decision_key(d: Decision) -> tuple[Any, ...]:
    change = None if d.change is None else (d.change.from_stage, d.change.to_stage, d.change.rule, d.change.reason)
    return (d.customer_id, d.current, d.proposed, d.rule, d.reason, d.vetoes, change, d.error)


class LifecycleContract(ContractBase):
    """evaluate and evaluate_all decide exactly as they do on memory://, from facts the store computes."""

    NOW = at(2025, 6, 1, 12)

    def _scenario(self, crm: CRM) -> list[uuid.UUID]:
        """Customers in every situation the default rules distinguish, with fixed ids."""

        def day(days_ago: float) -> dt.datetime:
            return self.NOW - dt.timedelta(days=days_ago)

        ids = [uuid.UUID(int=i + 1) for i in range(9)]
        crm.customers.add(person("silent lead", id=ids[0]))
        engaged = crm.customers.add(person("engaged lead", id=ids[1]))
        crm.interactions.add(contact(engaged, day(3)))
        first = crm.customers.add(person("first purchase", id=ids[2], stage=Stage.PROSPECT))
        crm.transactions.add(purchase(first, 10, day(1)))
        repeat = crm.customers.add(person("repeat", id=ids[3], stage=Stage.CUSTOMER))
        for d in (30, 20, 20.1):
            crm.transactions.add(purchase(repeat, 10, day(d)))
        loyal = crm.customers.add(person("loyal", id=ids[4], stage=Stage.REPEAT))
        for d in (50, 40, 30, 20, 10):
            crm.transactions.add(purchase(loyal, 10, day(d)))
        risky = crm.customers.add(person("quiet", id=ids[5], stage=Stage.LOYAL))
        crm.transactions.add(purchase(risky, 10, day(200)))
        gone = crm.customers.add(person("gone", id=ids[6], stage=Stage.AT_RISK))
        crm.transactions.add(purchase(gone, 10, day(400), "RON"))
        back = crm.customers.add(person("back", id=ids[7], stage=Stage.CHURNED))
        crm.transactions.add(purchase(back, 10, day(500)))
        crm.transactions.add(purchase(back, 10, day(2)))
        refunds = crm.customers.add(person("refunds only", id=ids[8], stage=Stage.LEAD))
        crm.transactions.add(purchase(refunds, 10, day(2), kind="refund"))
        return ids

    def test_decisions_match_memory(self, crmkit_backend: Backend) -> None:
        # Only crmkit's default rules, so the expected stages below hold whatever rule plugins are installed.
        policy = LifecyclePolicy(at_risk_after=dt.timedelta(days=180), churned_after=dt.timedelta(days=365))
        rules = _rule_plugins(crmkit_backend.crm())
        with (
            crmkit_backend.connect(block=rules, clock=lambda: self.NOW, policy=policy) as crm,
            crmkit.connect("memory://", block=rules, clock=lambda: self.NOW, policy=policy) as reference,
        ):
            ids = self._scenario(crm)
            self._scenario(reference)
            one = [_decision_key(crm.lifecycle.evaluate(i, apply=False)) for i in ids]
            assert one == [_decision_key(reference.lifecycle.evaluate(i, apply=False)) for i in ids]
            assert [d[2] for d in one] == [
                None,
                Stage.PROSPECT,
                Stage.CUSTOMER,
                Stage.REPEAT,
                Stage.LOYAL,
                Stage.AT_RISK,
                Stage.CHURNED,
                Stage.WON_BACK,
                None,
            ]
            assert crm.stage_changes.count() == 0
            got = [_decision_key(d) for d in crm.lifecycle.evaluate_all(batch_size=2)]
            want = [_decision_key(d) for d in reference.lifecycle.evaluate_all(batch_size=2)]
            assert got == want
            assert sum(1 for d in got if d[6] is not None) == 7
            stages = [(c.id, c.stage, c.version) for c in crm.customers.find(order_by="id")]
            assert stages == [(c.id, c.stage, c.version) for c in reference.customers.find(order_by="id")]
            again = [_decision_key(d) for d in crm.lifecycle.evaluate_all(where={"kind": "person"})]
            assert again == [_decision_key(d) for d in reference.lifecycle.evaluate_all(where={"kind": "person"})]
            assert all(d[6] is None for d in again)
            assert [h.to_stage for h in crm.lifecycle.history(ids[7])] == [Stage.WON_BACK]

    def test_facts_come_from_the_store(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm(clock=lambda: self.NOW)
        ids = self._scenario(crm)
        facts = crm.lifecycle.facts(ids[3])
        assert (facts.purchase_count, facts.purchase_days) == (3, 2)
        assert facts.last_purchase_at == self.NOW - dt.timedelta(days=20)
        engaged = crm.lifecycle.facts(ids[1])
        assert engaged.interaction_count == 1 and engaged.purchases == ()
        assert engaged.interactions is not None and engaged.interactions.first_at == self.NOW - dt.timedelta(days=3)

    def test_random_histories_decide_as_on_memory(self, crmkit_backend: Backend) -> None:
        now = at(2025, 1, 1)
        recent = cs.aware_datetimes(min_value=dt.datetime(2023, 6, 1), max_value=dt.datetime(2024, 12, 31))
        histories = cs.crm_histories(
            min_size=1,
            max_size=4,
            max_relationships=0,
            max_interactions=3,
            max_transactions=8,
            customers=_bare_customers(),
            occurred_at=recent,
        )

        @conformance_settings(max_examples=20)
        @given(history=histories)
        @example(history=sample_history())
        def check(history: cs.CRMHistory) -> None:
            crm = crmkit_backend.crm(clock=lambda: now)
            with crmkit.connect("memory://", clock=lambda: now) as reference:
                history.load(crm)
                history.load(reference)
                got = [_decision_key(d) for d in crm.lifecycle.evaluate_all(batch_size=3)]
                assert got == [_decision_key(d) for d in reference.lifecycle.evaluate_all(batch_size=3)]
                mine = {c.id: (c.stage, c.version) for c in crm.customers.find()}
                assert mine == {c.id: (c.stage, c.version) for c in reference.customers.find()}

        check()

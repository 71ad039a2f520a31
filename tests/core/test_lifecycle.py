"""Life-cycle rules: the default rule set, guards that veto, the installed example plugin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.examples import example_installed

import crmkit
from crmkit import Channel, Customer, Interaction, Stage, StageProposal, Transaction

UTC = dt.timezone.utc
START = dt.datetime(2025, 1, 1, tzinfo=UTC)
WITHOUT_EXAMPLE = ["vip_rules"]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def buy(crm: crmkit.CRM, customer: Customer, when: dt.datetime, amount: str = "10.00") -> None:
    crm.transactions.add(Transaction(customer_id=customer.id, occurred_at=when, amount=Decimal(amount), currency="EUR"))


def test_default_rules_walk_a_customer_through_the_life_cycle() -> None:
    clock = Clock(START)
    with crmkit.connect("memory://", clock=clock, block=WITHOUT_EXAMPLE) as crm:
        c = crm.customers.add(Customer(kind="person", name="Ada"))
        assert crm.lifecycle.evaluate(c.id).proposed is None  # a lead with nothing to go on stays a lead
        crm.interactions.add(Interaction(customer_id=c.id, channel=Channel.WEB, direction="inbound", occurred_at=START))
        steps = [crm.lifecycle.evaluate(c.id).proposed]
        buy(crm, c, START + dt.timedelta(days=1))
        clock.now = START + dt.timedelta(days=2)
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        buy(crm, c, START + dt.timedelta(days=10))
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        for day in (20, 30, 40):
            buy(crm, c, START + dt.timedelta(days=day))
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        clock.now = START + dt.timedelta(days=40 + 200)
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        clock.now = START + dt.timedelta(days=40 + 400)
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        buy(crm, c, clock.now)
        steps.append(crm.lifecycle.evaluate(c.id).proposed)
        assert steps == [
            Stage.PROSPECT,
            Stage.CUSTOMER,
            Stage.REPEAT,
            Stage.LOYAL,
            Stage.AT_RISK,
            Stage.CHURNED,
            Stage.WON_BACK,
        ]
        history = crm.lifecycle.history(c.id)
        assert [(h.from_stage, h.to_stage) for h in history] == list(zip([Stage.LEAD, *steps[:-1]], steps, strict=True))
        assert all(h.rule.startswith("default.") and h.reason for h in history)
        assert crm.customers.get(c.id).stage == Stage.WON_BACK
        kinds = [e.kind for e in crm.timeline(c.id)]
        assert kinds.count("stage_change") == 7 and kinds.count("transaction") == 6


def test_guards_veto_and_every_reason_is_reported() -> None:
    class Guards:
        @crmkit.hookimpl
        def crmkit_guard_transition(self, to_stage: Stage) -> str | None:
            return "no churn during the audit" if to_stage == Stage.CHURNED else None

    class MoreGuards:
        @crmkit.hookimpl
        def crmkit_guard_transition(self, customer: Customer, from_stage: Stage, to_stage: Stage) -> str | None:
            if "contract" in customer.tags and from_stage != Stage.LEAD and to_stage != Stage.LOYAL:
                return f"{customer.name} is under contract"
            return None

    clock = Clock(START)
    with crmkit.connect("memory://", clock=clock, plugins=[Guards(), MoreGuards()], block=WITHOUT_EXAMPLE) as crm:
        c = crm.customers.add(Customer(kind="person", name="Ada", tags={"contract"}))
        buy(crm, c, START)
        crm.lifecycle.evaluate(c.id)
        clock.now = START + dt.timedelta(days=500)
        decision = crm.lifecycle.evaluate(c.id)
        assert decision.proposed == Stage.CHURNED and not decision.applied
        assert set(decision.vetoes) == {"no churn during the audit", "Ada is under contract"}
        assert crm.customers.get(c.id).stage == Stage.CUSTOMER
        with pytest.raises(crmkit.TransitionVetoed) as info:
            crm.lifecycle.move(c.id, Stage.CHURNED, reason="asked by sales")
        assert len(info.value.reasons) == 2
        import attrs

        stored = crm.customers.get(c.id)
        with pytest.raises(crmkit.TransitionVetoed):  # a plain update that changes the stage is guarded too
            crm.customers.update(attrs.evolve(stored, stage=Stage.CHURNED))
        assert crm.customers.get(c.id).stage == Stage.CUSTOMER
        moved = crm.lifecycle.move(c.id, Stage.LOYAL, reason="key customer")
        assert moved.stage == Stage.LOYAL and crm.lifecycle.history(c.id)[-1].rule == "manual"


def test_a_plugin_rule_overrides_the_default_rules() -> None:
    class EveryoneLoyal:
        @crmkit.hookimpl
        def crmkit_propose_stage(self, facts: crmkit.CustomerFacts) -> StageProposal | None:
            return StageProposal(Stage.LOYAL, "test.loyal", "everyone") if facts.purchase_count else None

    with crmkit.connect("memory://", plugins=[EveryoneLoyal()], block=WITHOUT_EXAMPLE) as crm:
        c = crm.customers.add(Customer(kind="person", name="Ada"))
        buy(crm, c, crm.now())
        assert crm.lifecycle.evaluate(c.id).proposed == Stage.LOYAL


@pytest.fixture
def vip_rules(tmp_path: Path) -> Iterator[None]:
    with example_installed(tmp_path):
        yield


@pytest.mark.usefixtures("vip_rules")
def test_installed_example_plugin_changes_the_outcome() -> None:
    """examples/vip-rules is installed through its entry point: VIPs are loyal at once, key accounts never churn."""
    for block, expected in ((WITHOUT_EXAMPLE, Stage.CUSTOMER), ([], Stage.LOYAL)):
        with crmkit.connect("memory://", block=block) as crm:
            vip = crm.customers.add(Customer(kind="person", name="Grace", tags={"vip"}))
            buy(crm, vip, crm.now())
            assert crm.lifecycle.evaluate(vip.id).proposed == expected
    clock = Clock(START)
    with crmkit.connect("memory://", clock=clock) as crm:
        key = crm.customers.add(Customer(kind="organization", name="Initech", tags={"key_account"}))
        buy(crm, key, START)
        clock.now = START + dt.timedelta(days=800)
        decision = crm.lifecycle.evaluate(key.id)
        assert decision.proposed == Stage.CHURNED and decision.vetoes and not decision.applied
        crm.interactions.add(
            Interaction(customer_id=key.id, channel="whatsapp", direction="outbound", occurred_at=clock.now)
        )


def test_evaluate_all_streams_every_customer_in_batches() -> None:
    with crmkit.connect("memory://", block=WITHOUT_EXAMPLE) as crm:
        customers = [crm.customers.add(Customer(kind="person", name=f"C{i}")) for i in range(23)]
        for c in customers[::2]:
            buy(crm, c, crm.now())
        decisions = list(crm.lifecycle.evaluate_all(batch_size=5))
        assert sorted(d.customer_id for d in decisions) == sorted(c.id for c in customers)
        assert sum(d.applied for d in decisions) == 12
        assert crm.customers.count({"stage": "customer"}) == 12
        assert not any(d.applied for d in crm.lifecycle.evaluate_all(batch_size=7))  # nothing left to do
        with pytest.raises(crmkit.ValidationError, match="batch_size"):
            list(crm.lifecycle.evaluate_all(batch_size=0))


def test_policy_thresholds_are_validated() -> None:
    with pytest.raises(crmkit.ValidationError, match="churned_after"):
        crmkit.LifecyclePolicy(at_risk_after=dt.timedelta(days=400))
    policy = crmkit.LifecyclePolicy(at_risk_after=dt.timedelta(days=30), churned_after=dt.timedelta(days=60))
    clock = Clock(START)
    with crmkit.connect("memory://", clock=clock, policy=policy, block=WITHOUT_EXAMPLE) as crm:
        c = crm.customers.add(Customer(kind="person", name="Ada"))
        buy(crm, c, START)
        clock.now = START + dt.timedelta(days=45)
        assert crm.lifecycle.evaluate(c.id).proposed == Stage.AT_RISK


def test_scores_from_a_plugin_reach_the_rules_once_per_batch() -> None:
    calls: list[int] = []

    class Scorer:
        @crmkit.hookimpl
        def crmkit_customer_scores(self, customers: list[Customer]) -> dict[object, dict[str, float]]:
            calls.append(len(customers))
            return {c.id: {"probability_alive": 0.1 if "sleepy" in c.tags else 0.9} for c in customers}

    class ScoreRule:
        @crmkit.hookimpl
        def crmkit_propose_stage(self, facts: crmkit.CustomerFacts) -> StageProposal | None:
            p = facts.scores.get("probability_alive")
            if p is not None and p < 0.5:
                return StageProposal(Stage.AT_RISK, "test.p_alive", f"P(alive)={p}")
            return None

    with crmkit.connect("memory://", plugins=[Scorer(), ScoreRule()], block=WITHOUT_EXAMPLE) as crm:
        for i in range(6):
            crm.customers.add(Customer(kind="person", name=f"C{i}", tags={"sleepy"} if i % 3 == 0 else set()))
        decisions = list(crm.lifecycle.evaluate_all(batch_size=4))
        assert calls == [4, 2]
        assert sorted(d.proposed == Stage.AT_RISK for d in decisions) == [False] * 4 + [True] * 2

"""Probability alive as scores and as a life-cycle rule plugin (``ProbabilityAliveRule``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

import crmkit
from crmkit import Customer, Stage, Transaction
from crmkit.value import ProbabilityAliveRule, customer_summary, probability_alive
from crmkit.value.datasets import CDNOW_CALIBRATION_END, cdnow_transactions

UTC = dt.timezone.utc
START = dt.datetime(2025, 1, 6, 12, tzinfo=UTC)
WITHOUT_EXAMPLE = ["vip_rules"]  # the installed example plugin would make VIPs loyal


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def cdnow_model() -> Any:
    models = pytest.importorskip("crmkit.value.models")
    s = customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
    return models.BetaGeo().fit(s.frequency, s.recency, s.T)


def weekly_buyer(crm: crmkit.CRM, weeks: int, name: str = "weekly") -> Customer:
    customer = crm.customers.add(Customer(kind="person", name=name))
    crm.transactions.add_many(
        Transaction(customer_id=customer.id, occurred_at=START + dt.timedelta(weeks=w), amount=Decimal(20),
                    currency="EUR")
        for w in range(weeks)
    )
    return customer


def test_probability_alive_per_customer_from_a_fitted_bg_nbd(cdnow_model: Any) -> None:
    s = customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
    scores = probability_alive(cdnow_model, s)
    assert set(scores) == set(s.customer_ids)
    assert all(0 <= p <= 1 for p in scores.values())
    assert all(scores[r.customer_id] == 1.0 for r in s if r.frequency == 0)  # BG/NBD: no repeat, no death yet
    busy_then_quiet = min(scores.values())
    assert busy_then_quiet < 0.05


def test_a_silent_frequent_buyer_is_at_risk_before_the_default_rules_notice(cdnow_model: Any) -> None:
    clock = Clock(START + dt.timedelta(weeks=9))
    rule = ProbabilityAliveRule(cdnow_model, unit="week", threshold=0.3)
    with crmkit.connect("memory://", clock=clock, plugins=[rule], block=WITHOUT_EXAMPLE) as crm:
        steady = weekly_buyer(crm, 10)
        once = crm.customers.add(Customer(kind="person", name="once"))
        crm.transactions.add(Transaction(customer_id=once.id, occurred_at=START, amount=Decimal(5), currency="EUR"))
        decision = crm.lifecycle.evaluate(steady.id)
        assert decision.proposed == Stage.LOYAL and decision.rule == "default.loyal"  # still buying: defaults decide
        clock.now = START + dt.timedelta(weeks=21)  # twelve weeks of silence: 84 days, below at_risk_after (180)
        assert rule.score(crm.lifecycle.facts(steady.id)) == pytest.approx(0.0346, abs=1e-3)
        decision = crm.lifecycle.evaluate(steady.id)
        assert (decision.proposed, decision.rule) == (Stage.AT_RISK, "value.probability_alive")
        assert decision.applied and "below 0.3" in (decision.reason or "")
        assert crm.lifecycle.evaluate(steady.id).proposed == Stage.AT_RISK  # stays, is not "won back"
        assert crm.lifecycle.evaluate(once.id).rule == "default.first_purchase"  # P(alive) = 1 without repeats
        clock.now = START + dt.timedelta(days=500)  # over a year of silence: the default rules say churned
        assert crm.lifecycle.evaluate(steady.id).proposed == Stage.CHURNED
        assert crm.value.probability_alive(cdnow_model, unit="week")[steady.id] < 0.01


class Fixed:
    """A stand-in model answering the same probability for everyone."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.calls: list[tuple[Any, Any, Any]] = []

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> Any:
        self.calls.append((frequency, recency, T))
        return [self.p] * len(frequency) if isinstance(frequency, list) else self.p


def test_the_rule_passes_frequency_recency_and_age_in_its_unit() -> None:
    model = Fixed(0.9)
    clock = Clock(START + dt.timedelta(days=30))
    rule = ProbabilityAliveRule(model, unit="day")
    with crmkit.connect("memory://", clock=clock, plugins=[rule], block=WITHOUT_EXAMPLE) as crm:
        c = weekly_buyer(crm, 3)
        assert crm.lifecycle.evaluate(c.id).rule == "default.repeat"  # 0.9 is above the threshold
        assert model.calls == [([2], [14.0], [30.0])]  # one call for the whole batch being evaluated


@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        (object(), {"unit": "week"}, "model"),
        (Fixed(0.5), {"unit": "month"}, "unit"),
        (Fixed(0.5), {"unit": "week", "threshold": 1.5}, "threshold"),
        (Fixed(0.5), {"unit": "week", "name": " "}, "name"),
    ],
)
def test_bad_rule_arguments_are_named(model: object, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(crmkit.ValidationError) as info:
        ProbabilityAliveRule(model, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_model_answering_nonsense_is_caught() -> None:
    s = customer_summary(
        [Transaction(customer_id=Customer(kind="person", name="x").id, occurred_at=START, amount=Decimal(1),
                     currency="EUR")],
        unit="week", observation_end=START.date(),
    )
    with pytest.raises(crmkit.ValidationError, match=r"outside 0\.\.1"):
        probability_alive(Fixed(1.5), s)
    with pytest.raises(crmkit.ValidationError) as info:
        probability_alive(Fixed(0.5), [])  # type: ignore[arg-type]
    assert info.value.field == "summary"

"""Life-cycle rules: facts about a customer, proposals from rule plugins, guards, decisions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import attrs

from crmkit._errors import ConflictError, TransitionVetoed, ValidationError
from crmkit._validation import at_least, count_of, nonempty_text, of_type
from crmkit.entities import CUSTOMERS, INTERACTIONS
from crmkit.lifecycle_model import Stage, StageChange, StageSet, to_stage
from crmkit.query import Compare, Where, bind
from crmkit.store import Activity
from crmkit.summaries import PurchaseSummary

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.customers import Customer

__all__ = ["CustomerFacts", "Decision", "Lifecycle", "LifecyclePolicy", "StageProposal"]


def _days(value: object) -> dt.timedelta:
    if not isinstance(value, dt.timedelta) or value <= dt.timedelta(0):
        raise ValidationError("policy", "durations must be positive timedeltas", value)
    return value


@attrs.frozen
class LifecyclePolicy:
    """Thresholds the default rules use (rule plugins may read them too)."""

    at_risk_after: dt.timedelta = attrs.field(default=dt.timedelta(days=180), converter=_days)
    churned_after: dt.timedelta = attrs.field(default=dt.timedelta(days=365), converter=_days)
    loyal_purchase_days: int = attrs.field(default=5, validator=at_least(2))

    def __attrs_post_init__(self) -> None:
        if self.churned_after <= self.at_risk_after:
            raise ValidationError("churned_after", "must be longer than at_risk_after", self.churned_after)


@attrs.frozen
class CustomerFacts:
    """What rules know about a customer when they decide: the record, purchases, interactions, now."""

    customer: Customer
    now: dt.datetime
    policy: LifecyclePolicy
    purchases: tuple[PurchaseSummary, ...] = ()
    interactions: Activity | None = None
    #: Extra scores (e.g. probability alive from a value model), keyed by name.
    scores: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def purchase_count(self) -> int:
        """Purchase transactions in all currencies."""
        return sum(p.purchases for p in self.purchases)

    @property
    def purchase_days(self) -> int:
        """Distinct purchase days (summed over currencies)."""
        return sum(p.purchase_days for p in self.purchases)

    @property
    def first_purchase_at(self) -> dt.datetime | None:
        return min((p.first_purchase_at for p in self.purchases), default=None)

    @property
    def last_purchase_at(self) -> dt.datetime | None:
        return max((p.last_purchase_at for p in self.purchases), default=None)

    @property
    def since_last_purchase(self) -> dt.timedelta | None:
        last = self.last_purchase_at
        return None if last is None else self.now - last

    @property
    def interaction_count(self) -> int:
        return 0 if self.interactions is None else self.interactions.count


@attrs.frozen
class StageProposal:
    """A rule's answer: move to ``stage``, because ``reason``; ``rule`` names the rule."""

    stage: Stage = attrs.field(converter=to_stage)
    rule: str = attrs.field(validator=nonempty_text)
    reason: str = attrs.field(default="", validator=of_type(str, "string"))


@attrs.frozen
class Decision:
    """The outcome of evaluating one customer: what was proposed, vetoed and applied."""

    customer_id: uuid.UUID
    current: Stage
    proposed: Stage | None
    rule: str | None = None
    reason: str | None = None
    vetoes: tuple[str, ...] = ()
    change: StageChange | None = None
    error: str | None = None

    @property
    def applied(self) -> bool:
        """True when the customer moved to a new stage."""
        return self.change is not None


class Lifecycle:
    """``crm.lifecycle``: evaluate rules for one or all customers, move customers, read history."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        #: The stages of the customer life cycle on this connection, plugins' included.
        self.stages: StageSet = crm._host.customer_stages()

    def facts(self, customer_id: uuid.UUID) -> CustomerFacts:
        """The facts rules see for one customer, computed in the store."""
        customer = self._crm.customers.get(customer_id)
        return self._facts_for([customer])[customer.id]

    def _facts_for(self, customers: list[Customer]) -> dict[uuid.UUID, CustomerFacts]:
        crm = self._crm
        now = crm.now()
        ids = [c.id for c in customers]
        summaries: dict[uuid.UUID, list[PurchaseSummary]] = {}
        for s in crm._host.purchase_summaries(crm.store, crm.tenant, ids, None, None):
            summaries.setdefault(s.customer_id, []).append(s)
        activity = crm.store.repository(INTERACTIONS).activity(crm.tenant, ids)
        scores = crm._host.customer_scores(crm, customers, now)
        return {
            c.id: CustomerFacts(
                customer=c,
                now=now,
                policy=crm.policy,
                purchases=tuple(summaries.get(c.id, ())),
                interactions=activity.get(c.id),
                scores=scores.get(c.id, {}),
            )
            for c in customers
        }

    def evaluate(self, customer_id: uuid.UUID, *, apply: bool = True) -> Decision:
        """Ask the rules where a customer belongs; move it there unless a guard vetoes."""
        customer = self._crm.customers.get(customer_id)
        facts = self._facts_for([customer])[customer.id]
        return self._decide(facts, apply=apply)

    def evaluate_all(self, *, where: Where = None, batch_size: int = 500, apply: bool = True) -> Iterator[Decision]:
        """Evaluate every customer (matching ``where``), streaming in batches; yields one Decision each."""
        count_of("batch_size", batch_size)
        bind(where, CUSTOMERS)
        after = None
        while True:
            page = self._crm.customers.find(where=where, order_by="id", limit=batch_size, after=after)
            if not page.items:
                return
            facts = self._facts_for(list(page.items))
            for customer in page.items:
                yield self._decide(facts[customer.id], apply=apply)
            if page.next is None:
                return
            after = page.next

    def _decide(self, facts: CustomerFacts, *, apply: bool) -> Decision:
        crm = self._crm
        customer = facts.customer
        proposal = crm._host.propose_stage(facts)
        if proposal is None or proposal.stage == customer.stage:
            return Decision(
                customer.id,
                customer.stage,
                proposal.stage if proposal else None,
                proposal.rule if proposal else None,
                proposal.reason if proposal else None,
            )
        vetoes = crm._host.guard_transition(customer, customer.stage, proposal.stage, facts, proposal.rule)
        decision = Decision(customer.id, customer.stage, proposal.stage, proposal.rule, proposal.reason, vetoes)
        if vetoes or not apply:
            return decision
        try:
            with crm._unless_caused(f"rule:{proposal.rule}"):
                change = crm.customers._move(customer, proposal.stage, rule=proposal.rule, reason=proposal.reason)
        except ConflictError as exc:
            return attrs.evolve(decision, error=str(exc))
        return attrs.evolve(decision, change=change)

    def move(self, customer_id: uuid.UUID, stage: Stage | str, *, reason: str | None = None) -> Customer:
        """Move a customer by hand (rule ``manual``); guards still apply (TransitionVetoed)."""
        target = to_stage(stage)
        customer = self._crm.customers.get(customer_id)
        if customer.stage == target:
            return customer
        self.guard(customer, target, "manual")
        self._crm.customers._move(customer, target, rule="manual", reason=reason)
        return self._crm.customers.get(customer_id)

    def history(self, customer_id: uuid.UUID) -> list[StageChange]:
        """Every stage change of a customer, oldest first (its state changes of stage set ``lifecycle``)."""
        return list(self._crm.stage_changes.stream(Compare("customer_id", "==", customer_id)))

    def guard(self, customer: Customer, target: Stage, rule: str) -> None:
        """Raise TransitionVetoed with every guard's reason if the move is not allowed."""
        facts = self._facts_for([customer])[customer.id]
        vetoes = self._crm._host.guard_transition(customer, customer.stage, target, facts, rule)
        if vetoes:
            raise TransitionVetoed(customer.id, customer.stage.value, target.value, vetoes)

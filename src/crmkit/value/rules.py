"""Probability alive from a fitted repeat-purchase model, as scores and as a life-cycle rule plugin.

A model here is anything with ``probability_alive(frequency, recency, T)``
accepting scalars or sequences (``crmkit.value.models.BetaGeo`` once fitted). The rule
scores each batch of customers the life cycle evaluates with one model call, from the
store's purchase summaries; purchase timing counts every currency (see
``crmkit.value.currencies``).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from crmkit._errors import ValidationError
from crmkit.hookspecs import hookimpl
from crmkit.lifecycle import CustomerFacts, StageProposal
from crmkit.lifecycle_model import Stage
from crmkit.value.currencies import merge_purchases, rate_for
from crmkit.value.periods import SummaryUnit, check_unit, day_of
from crmkit.value.summary import Summary

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.customers import Customer

__all__ = ["AliveModel", "ProbabilityAliveRule", "probability_alive"]


class AliveModel(Protocol):
    """What the rule needs from a model: probability alive given (frequency, recency, T)."""

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> Any: ...


def _check_model(model: object) -> AliveModel:
    if not callable(getattr(model, "probability_alive", None)):
        raise ValidationError("model", "must have probability_alive (e.g. a fitted BetaGeo)", model)
    return model  # type: ignore[return-value]


def _probability(value: Any, field: str) -> float:
    p = float(value)
    if not math.isfinite(p) or not 0 <= p <= 1:
        raise ValidationError(field, "the model returned a probability outside 0..1", value)
    return p


def probability_alive(model: AliveModel, summary: Summary) -> dict[uuid.UUID, float]:
    """P(alive) of every customer of a summary, from a model fitted in the summary's unit."""
    model = _check_model(model)
    if not isinstance(summary, Summary):
        raise ValidationError("summary", "must be a crmkit.value.Summary", summary)
    if not summary.rows:
        return {}
    values = model.probability_alive(list(summary.frequency), list(summary.recency), list(summary.T))
    return {cid: _probability(v, "model") for cid, v in zip(summary.customer_ids, _sequence(values), strict=True)}


def _sequence(values: Any) -> Sequence[Any]:
    return list(values.tolist() if hasattr(values, "tolist") else values)


_DAYS = {"day": 1.0, "week": 7.0}


class ProbabilityAliveRule:
    """A rule plugin: propose ``at_risk`` when the model's probability alive falls below ``threshold``.

    Register it with ``crmkit.connect(url, plugins=[ProbabilityAliveRule(model, unit="week")])``.
    ``unit`` is the time unit the model was fitted in (day or week: the rule derives
    frequency, recency and T from the customer's purchase days, in every currency). It
    answers only for customers with a purchase who have not been silent for
    ``policy.churned_after``; for everyone else, and when the probability is at or above
    the threshold, it returns None and the other rules (the defaults) decide. A customer
    with no repeat purchase has probability 1 under BG/NBD, so one-time buyers are left to
    the defaults. Scores are computed per batch of evaluated customers
    (``crmkit_customer_scores``, one model call per batch) and land in
    ``CustomerFacts.scores`` under the rule's name.
    """

    def __init__(self, model: AliveModel, *, unit: str, threshold: float = 0.3, name: str = "value.probability_alive"):
        self.model = _check_model(model)
        self.unit = cast(SummaryUnit, check_unit(unit, ("day", "week")))
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValidationError("threshold", "must be a probability strictly between 0 and 1", threshold)
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name", "must be a non-empty rule name", name)
        self.threshold = float(threshold)
        self.name = name

    def __repr__(self) -> str:
        return f"ProbabilityAliveRule(threshold={self.threshold}, unit={self.unit!r})"

    def score(self, facts: CustomerFacts) -> float | None:
        """The customer's probability alive at ``facts.now``, or None without purchases.

        The batch score in ``facts.scores`` when the life cycle computed it; otherwise from
        ``facts.purchases``, merging currencies (exact unless two currencies share a
        purchase day inside both of their spans, see ``crmkit.value.currencies``).
        """
        if self.name in facts.scores:
            return _probability(facts.scores[self.name], "model")
        if not facts.purchases:
            return None
        (merged,) = merge_purchases(facts.purchases, currency=None, rate=rate_for(None, None))
        first = day_of(merged.first_purchase_at)
        recency = (day_of(merged.last_purchase_at) - first).days / _DAYS[self.unit]
        age = max((day_of(facts.now) - first).days / _DAYS[self.unit], recency)
        frequency = merged.purchase_days - 1
        return _probability(self.model.probability_alive(frequency, recency, age), "model")

    @hookimpl
    def crmkit_customer_scores(
        self, crm: CRM, customers: Sequence[Customer], now: dt.datetime
    ) -> Mapping[uuid.UUID, Mapping[str, float]]:
        """P(alive) of a batch of customers, with one model call and exact purchase days."""
        alive = crm.value.probability_alive(
            self.model, unit=self.unit, as_of=now, customer_ids=[c.id for c in customers]
        )
        return {cid: {self.name: p} for cid, p in alive.items()}

    @hookimpl
    def crmkit_propose_stage(self, facts: CustomerFacts) -> StageProposal | None:
        quiet = facts.since_last_purchase
        if quiet is None or quiet >= facts.policy.churned_after:
            return None
        p = self.score(facts)
        if p is None or p >= self.threshold:
            return None
        return StageProposal(Stage.AT_RISK, self.name, f"probability alive {p:.2f} is below {self.threshold:g}")

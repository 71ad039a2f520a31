"""A predictive win probability learnt from the tenant's closed deals, and its evaluation on held-out deals.

The model is a frequency table per field value, as Odoo's is, combined as naive Bayes: for
each field (source, campaign, owner, pipeline by default) and value, how many closed deals
with it were won and how many lost; a deal's log-odds of winning are the overall log-odds
plus, per field, the log of how much more often its value came with a win than with a loss
(Laplace smoothing: a value never seen adds nothing). The counts are group-bys in the store
(one per field, over pipeline and stage, whose closed and won flags say won or lost), and so
is the evaluation: held-out deals are grouped by every field at once, a group shares one
prediction, and AUC and calibration follow from the groups' won and lost counts.

With fewer than ``min_deals`` closed deals to learn from, a deal keeps its stage's default.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ValidationError
from crmkit._validation import utc
from crmkit.query import Expr, F
from crmkit.sales._model import Opportunity, Pipeline

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["Calibration", "WinEvaluation", "WinModel", "evaluate", "train"]

#: The fields a win model learns from unless told otherwise.
DEFAULT_FIELDS = ("source", "campaign", "owner", "pipeline")
_PLACES = Decimal("0.0001")
_ALLOWED = frozenset({"source", "campaign", "owner", "pipeline", "currency", "lead_id", "customer_id"})


@attrs.frozen
class WinModel:
    """Won and lost counts of closed deals per field value; ``probability`` scores a deal."""

    fields: tuple[str, ...]
    #: Closed deals learnt from, and how many of them were won.
    deals: int
    won: int
    #: field -> value -> (won, lost)
    counts: Mapping[str, Mapping[Any, tuple[int, int]]]
    min_deals: int

    @property
    def usable(self) -> bool:
        """Whether there were enough closed deals (``min_deals``, with a win and a loss) to learn from."""
        return self.deals >= self.min_deals and 0 < self.won < self.deals

    def score(self, values: Sequence[Any]) -> float:
        """The win probability of a deal with these values of ``fields`` (in their order)."""
        won, lost = self.won, self.deals - self.won
        logit = math.log((won + 1) / (lost + 1))
        for field, value in zip(self.fields, values, strict=True):
            table = self.counts[field]
            w, lo = table.get(value, (0, 0))
            k = len(table) + 1  # the values seen, and one for an unseen value
            logit += math.log((w + 1) / (won + k)) - math.log((lo + 1) / (lost + k))
        return 1 / (1 + math.exp(-logit)) if logit > -700 else 0.0

    def probability(self, deal: Opportunity) -> Decimal | None:
        """The deal's learnt win probability (4 places), or its own probability when the model is not usable."""
        if not isinstance(deal, Opportunity):
            raise ValidationError("deal", "must be an Opportunity", deal)
        if not self.usable:
            return deal.probability
        return Decimal(repr(self.score([getattr(deal, f) for f in self.fields]))).quantize(_PLACES)


@attrs.frozen
class Calibration:
    """One bin of predicted probabilities: how many deals, their mean prediction, and the share that won."""

    low: float
    high: float
    deals: int
    predicted: float
    observed: float


@attrs.frozen
class WinEvaluation:
    """A win model on held-out closed deals: AUC (0.5 is chance), Brier score and calibration by bin."""

    deals: int
    won: int
    auc: float | None
    brier: float | None
    calibration: tuple[Calibration, ...]


def _fields(fields: Sequence[str]) -> tuple[str, ...]:
    if isinstance(fields, str) or not fields:
        raise ValidationError("fields", "must be a sequence of opportunity field names", fields)
    for name in fields:
        if name not in _ALLOWED:
            raise ValidationError("fields", f"must name fields among {', '.join(sorted(_ALLOWED))}", name)
    return tuple(fields)


def _with_stage(fields: Sequence[str]) -> tuple[str, ...]:
    """The fields, then pipeline (unless among them) and stage: what says whether a closed deal was won."""
    return (*fields, *(() if "pipeline" in fields else ("pipeline",)), "stage")


def _closed(crm: CRM) -> dict[tuple[str, str], bool]:
    """(pipeline, stage) -> won, for every closed stage of every stored pipeline."""
    return {(p.key, s.key): s.won for p in crm.records(Pipeline).stream() for s in p.stages if s.closed}


def _window(since: dt.datetime | None, until: dt.datetime | None) -> Expr | None:
    where: Expr | None = None
    if since is not None:
        where = F("created_at") >= utc(since, "since")
    if until is not None:
        before = F("created_at") < utc(until, "until")
        where = before if where is None else where & before
    return where


def train(
    crm: CRM,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    min_deals: int = 30,
) -> WinModel:
    """Count the closed deals created in [since, until) per field value, won and lost: one group-by per field."""
    names = _fields(fields)
    if isinstance(min_deals, bool) or not isinstance(min_deals, int) or min_deals < 1:
        raise ValidationError("min_deals", "must be a positive integer", min_deals)
    closed = _closed(crm)
    deals = crm.records(Opportunity)
    where = _window(since, until)
    counts: dict[str, dict[Any, tuple[int, int]]] = {}
    total = won = 0
    for k, name in enumerate(names):
        table: dict[Any, tuple[int, int]] = {}
        for row in deals.aggregate(where, group_by=_with_stage((name,)), count=True):
            outcome = closed.get((row["pipeline"], row["stage"]))
            if outcome is None:
                continue  # an open deal
            n = row.count or 0
            w, lo = table.get(row[name], (0, 0))
            table[row[name]] = (w + n, lo) if outcome else (w, lo + n)
            if k == 0:
                total += n
                won += n if outcome else 0
        counts[name] = table
    return WinModel(names, total, won, counts, min_deals)


def evaluate(
    crm: CRM, model: WinModel, *, since: dt.datetime | None = None, until: dt.datetime | None = None, bins: int = 10
) -> WinEvaluation:
    """Score the closed deals created in [since, until) (held out from training) and compare with what happened."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValidationError("bins", "must be a positive integer", bins)
    closed = _closed(crm)
    groups: dict[tuple[Any, ...], list[int]] = {}
    report = crm.records(Opportunity).aggregate(_window(since, until), group_by=_with_stage(model.fields), count=True)
    width = len(model.fields)
    for row in report:
        outcome = closed.get((row["pipeline"], row["stage"]))
        if outcome is None:
            continue
        values = row.key[:width]
        tally = groups.setdefault(values, [0, 0])
        tally[0 if outcome else 1] += row.count or 0
    by_score: dict[float, list[int]] = {}
    for values, (w, lo) in groups.items():
        tally = by_score.setdefault(model.score(list(values)), [0, 0])
        tally[0] += w
        tally[1] += lo
    scored = sorted((p, w, lo) for p, (w, lo) in by_score.items())
    won = sum(w for _, w, _ in scored)
    lost = sum(lo for _, _, lo in scored)
    deals = won + lost
    auc = None
    if won and lost:
        # Mann-Whitney: the chance a won deal scores above a lost one, ties counting half
        below = 0  # lost deals with a lower score than the current group
        pairs = 0.0
        for _, w, lo in scored:
            pairs += w * (below + lo / 2)
            below += lo
        auc = pairs / (won * lost)
    brier = sum(w * (1 - p) ** 2 + lo * p**2 for p, w, lo in scored) / deals if deals else None
    calibration = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [(p, w, lo) for p, w, lo in scored if low <= p < high or (b == bins - 1 and p == 1.0)]
        n = sum(w + lo for _, w, lo in inside)
        if n:
            predicted = sum(p * (w + lo) for p, w, lo in inside) / n
            calibration.append(Calibration(low, high, n, predicted, sum(w for _, w, _ in inside) / n))
    return WinEvaluation(deals, won, auc, brier, tuple(calibration))

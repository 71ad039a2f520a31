"""Sales reports computed in the store: win rate, deal size, sales cycle, velocity, funnel, time in stage.

Each report is a few ``records.aggregate`` group-bys (one ``GROUP BY`` on SQL databases, one
``$group`` on MongoDB) whose groups are pipelines, stages and currencies, never deals; the
few group rows are then combined with the pipelines' stage flags in Python:

- ``performance``: per pipeline, in one currency: open deals and their amount, won and
  lost deals, win rate, average won deal size, sales cycle length, pipeline velocity;
- ``funnel``: per stage of a pipeline, the deals that entered it, moved on from it to a
  later open or won stage, or were lost from it (from ``state_changes``);
- ``time_in_stage``: per stage, how long deals stayed in it before they left it (from the
  ``seconds_in_stage`` the history derives on every move).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from crmkit._errors import NotFound, ValidationError
from crmkit._validation import text_of
from crmkit.query import Expr, F
from crmkit.sales._model import Opportunity, OpportunityHistory, Pipeline, PipelineStage, stage_set
from crmkit.sales._money import round_to_currency
from crmkit.state_changes import StateChange

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["FunnelStep", "Performance", "StageTime", "funnel", "performance", "time_in_stage"]

_DAY = Decimal(86_400)


@attrs.frozen
class Performance:
    """One pipeline's deals of one currency: what is open, what closed, and how fast it turns into revenue.

    ``win_rate`` is won / (won + lost) deals; ``average_deal_size`` the mean amount of the
    won deals (rounded to the currency's minor unit); ``sales_cycle_days`` the mean days
    from a deal's creation to its move into a won stage; ``velocity`` the expected revenue
    per day, open deals x average deal size x win rate / sales cycle days (rounded to the
    currency). A measure is None when what it needs is missing (no closed deal, no win).
    """

    pipeline: str
    currency: str
    open_deals: int
    open_amount: Decimal
    won: int
    lost: int
    won_amount: Decimal
    win_rate: Decimal | None
    average_deal_size: Decimal | None
    sales_cycle_days: Decimal | None
    velocity: Decimal | None


@attrs.frozen
class FunnelStep:
    """One stage of a pipeline's funnel: the deals that entered it, moved on from it, or were lost from it.

    ``advanced`` counts moves from this stage to a later stage that is not lost (a deal
    counted once per such stage it moved to); ``conversion`` is advanced / entered.
    """

    stage: str
    entered: int
    advanced: int
    lost: int
    conversion: Decimal | None


@attrs.frozen
class StageTime:
    """How long deals stayed in a stage before they left it: how many stays ended, and their mean in days."""

    pipeline: str
    stage: str
    exits: int
    mean_days: Decimal


def _stages(crm: CRM, pipeline: str | None) -> dict[str, Pipeline]:
    where: Expr | None = None if pipeline is None else F("key") == text_of("pipeline", pipeline)
    return {p.key: p for p in crm.records(Pipeline).stream(where, order_by="key")}


def _flags(pipelines: Mapping[str, Pipeline], key: str, stage: str) -> PipelineStage | None:
    pipeline = pipelines.get(key)
    if pipeline is None:
        return None
    for s in pipeline.stages:
        if s.key == stage:
            return s
    return None


def _currency(currency: object) -> str:
    if not isinstance(currency, str) or not currency:
        raise ValidationError("currency", "must be an ISO 4217 currency code such as EUR", currency)
    return currency


def performance(crm: CRM, *, currency: str, pipeline: str | None = None) -> list[Performance]:
    """Per pipeline (of the stored ones, or only ``pipeline``): see ``Performance``."""
    currency = _currency(currency)
    pipelines = _stages(crm, pipeline)
    if not pipelines:
        return []
    keys = list(pipelines)
    deals = crm.records(Opportunity).aggregate(
        (F("currency") == currency) & F("pipeline").in_(keys),
        group_by=("pipeline", "stage"),
        count=True,
        sum="amount",
    )
    cycles = crm.records(OpportunityHistory).aggregate(
        (F("currency") == currency) & F("pipeline").in_(keys) & (F("seconds_open") != None),  # noqa: E711 - a query
        group_by=("pipeline", "stage"),
        count=True,
        sum="seconds_open",
    )
    zero = round_to_currency(Decimal(0), currency)
    tally = {k: _Tally(zero, zero) for k in keys}
    for row in deals:
        stage = _flags(pipelines, row["pipeline"], row["stage"])
        if stage is None:
            continue  # a stage no longer in the pipeline: the pipeline's rules keep this from happening
        t, n, amount = tally[row["pipeline"]], row.count or 0, row["sum(amount)"] or zero
        if not stage.closed:
            t.open, t.open_amount = t.open + n, t.open_amount + amount
        elif stage.won:
            t.won, t.won_amount = t.won + n, t.won_amount + amount
        else:
            t.lost += n
    for row in cycles:
        stage = _flags(pipelines, row["pipeline"], row["stage"])
        if stage is not None and stage.won:
            t = tally[row["pipeline"]]
            t.cycles, t.seconds = t.cycles + (row.count or 0), t.seconds + (row["sum(seconds_open)"] or 0)
    return [t.performance(key, currency) for key, t in tally.items()]


@attrs.define
class _Tally:
    open_amount: Decimal
    won_amount: Decimal
    open: int = 0
    won: int = 0
    lost: int = 0
    cycles: int = 0
    seconds: int = 0

    def performance(self, key: str, currency: str) -> Performance:
        won, lost = self.won, self.lost
        win_rate = Decimal(won) / Decimal(won + lost) if won + lost else None
        size = round_to_currency(self.won_amount / won, currency) if won else None
        cycle = Decimal(self.seconds) / self.cycles / _DAY if self.cycles else None
        velocity = None
        if win_rate is not None and size is not None and cycle:
            velocity = round_to_currency(self.open * size * win_rate / cycle, currency)
        return Performance(
            pipeline=key,
            currency=currency,
            open_deals=self.open,
            open_amount=self.open_amount,
            won=won,
            lost=lost,
            won_amount=self.won_amount,
            win_rate=win_rate,
            average_deal_size=size,
            sales_cycle_days=cycle,
            velocity=velocity,
        )


def funnel(crm: CRM, pipeline: str) -> list[FunnelStep]:
    """The stages of ``pipeline`` that are not lost, in order: see ``FunnelStep``."""
    found = _stages(crm, text_of("pipeline", pipeline))
    if not found:
        raise NotFound("pipeline", pipeline)
    stages = found[pipeline].stages
    order = {s.key: i for i, s in enumerate(stages)}
    lost_keys = {s.key for s in stages if s.closed and not s.won}
    changes = crm.records(StateChange)
    where = F("stage_set") == stage_set(pipeline)
    entered = {
        row["to_stage"]: row["count_distinct(record.id)"]
        for row in changes.aggregate(where, group_by="to_stage", count_distinct="record.id")
    }
    advanced: dict[str, int] = {}
    lost: dict[str, int] = {}
    moves = changes.aggregate(
        where & (F("from_stage") != None),  # noqa: E711 - a query
        group_by=("from_stage", "to_stage"),
        count_distinct="record.id",
    )
    for row in moves:
        source, target, n = row["from_stage"], row["to_stage"], row["count_distinct(record.id)"]
        if source not in order or target not in order:
            continue
        if target in lost_keys:
            lost[source] = lost.get(source, 0) + n
        elif order[target] > order[source]:
            advanced[source] = advanced.get(source, 0) + n
    return [
        _step(s.key, entered.get(s.key, 0), advanced.get(s.key, 0), lost.get(s.key, 0))
        for s in stages
        if s.key not in lost_keys
    ]


def _step(stage: str, entered: int, advanced: int, lost: int) -> FunnelStep:
    return FunnelStep(stage, entered, advanced, lost, Decimal(advanced) / Decimal(entered) if entered else None)


def time_in_stage(crm: CRM, pipeline: str | None = None) -> list[StageTime]:
    """Per (pipeline, stage) that deals have left: how many stays ended and their mean length in days."""
    where: Expr = F("seconds_in_stage") != None  # noqa: E711 - a query
    if pipeline is not None:
        where = where & (F("prev_pipeline") == text_of("pipeline", pipeline))
    rows = crm.records(OpportunityHistory).aggregate(
        where, group_by=("prev_pipeline", "prev_stage"), count=True, sum="seconds_in_stage"
    )
    out = []
    for row in rows:
        n = row.count or 0
        if n and row["prev_stage"] is not None:
            mean = Decimal(row["sum(seconds_in_stage)"]) / n / _DAY
            out.append(StageTime(row["prev_pipeline"], row["prev_stage"], n, mean))
    return out

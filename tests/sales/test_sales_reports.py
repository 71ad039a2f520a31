"""Sales reports and stage moves as generic state changes, on every backend.

The reports (``performance``, ``funnel``, ``time_in_stage``) are group-bys in the store; the
differential test drives random deals through random moves with a fake clock, keeps its
own account of what happened, and compares every report with what that account says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import F
from crmkit.sales import (
    FunnelStep,
    Lead,
    LeadStatus,
    Opportunity,
    OpportunityHistory,
    Pipeline,
    PipelineStage,
    StageTime,
    round_to_currency,
    stage_set,
)

UTC = dt.timezone.utc
DAY = Decimal(86_400)
PROPERTY = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("reports"))


START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def open_crm(url: str, clock: Clock) -> crmkit.CRM:
    return crmkit.connect(url, tenant=unique_name("reports"), clock=clock, actor="user:1")


PIPELINES = {
    "new": Pipeline(
        key="new",
        name="New business",
        stages=(
            PipelineStage("qualify", probability=Decimal("0.10")),
            PipelineStage("proposal", probability=Decimal("0.50")),
            PipelineStage("negotiation", probability=Decimal("0.80")),
            PipelineStage("won", probability=Decimal("1"), closed=True, won=True),
            PipelineStage("lost", probability=Decimal("0"), closed=True),
        ),
    ),
    "renewal": Pipeline(
        key="renewal",
        name="Renewals",
        stages=(
            PipelineStage("due", probability=Decimal("0.60")),
            PipelineStage("renewed", probability=Decimal("1"), closed=True, won=True),
            PipelineStage("churned", probability=Decimal("0"), closed=True),
        ),
    ),
}


def keys(pipeline: str) -> list[str]:
    return [s.key for s in PIPELINES[pipeline].stages]


def flags(pipeline: str, stage: str) -> PipelineStage:
    return PIPELINES[pipeline].stage(stage)


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    clock = Clock(START)
    with open_crm(url, clock) as crm:
        for p in PIPELINES.values():
            crm.pipelines.add(p)
        yield crm


def test_every_stage_move_is_a_generic_state_change(url: str) -> None:
    clock = Clock(START)
    with open_crm(url, clock) as crm:
        for p in PIPELINES.values():
            crm.pipelines.add(p)
        deal = crm.opportunities.add(Opportunity(name="A", pipeline="new", stage="qualify", amount=Decimal("100.00")))
        clock.now += dt.timedelta(days=2)
        crm.sales.move(deal.id, "proposal", reason="demo done")
        clock.now += dt.timedelta(days=1)
        crm.opportunities.update(attrs.evolve(crm.opportunities.get(deal.id), amount=Decimal("90.00")))  # no move
        clock.now += dt.timedelta(days=3)
        crm.sales.move(deal.id, "due", pipeline="renewal")
        changes = crm.state_changes.history(deal)
        assert [(c.stage_set, c.from_stage, c.to_stage, c.reason, c.actor) for c in changes] == [
            (stage_set("new"), None, "qualify", None, "user:1"),
            (stage_set("new"), "qualify", "proposal", "demo done", "user:1"),
            (stage_set("renewal"), None, "due", None, "user:1"),
        ]
        start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        assert [c.occurred_at for c in changes] == [start, start + dt.timedelta(days=2), start + dt.timedelta(days=6)]
        assert [c.to_stage for c in crm.state_changes.history(deal, stage_set="pipeline:renewal")] == ["due"]
        # crm.sales.history keeps its own rows, now with how long the deal sat in the stage it left
        rows = crm.sales.history(deal.id)
        assert [(r.prev_stage, r.stage, r.seconds_in_stage, r.seconds_open) for r in rows] == [
            ("qualify", "proposal", 2 * 86_400, 2 * 86_400),
            ("proposal", "proposal", None, None),
            ("proposal", "due", 4 * 86_400, 6 * 86_400),
        ]
        # a bulk import writes the entries too, in the same transaction as the deals
        crm.opportunities.add_many(Opportunity(name=f"b{i}", pipeline="renewal", stage="due") for i in range(3))
        assert crm.state_changes.count(F("stage_set") == stage_set("renewal")) == 4


def test_a_lead_is_disqualified_with_its_reason_and_a_converted_one_is_refused(crm: crmkit.CRM) -> None:
    lead = crm.leads.add(Lead(name="Ana"))
    done = crm.sales.disqualify(lead.id, "no budget")
    assert (done.status, done.disqualified_reason, done.version) == (LeadStatus.DISQUALIFIED, "no budget", 2)
    with pytest.raises(crmkit.ValidationError) as error:
        crm.sales.disqualify(lead.id, "  ")
    assert error.value.field == "reason"
    converted = crm.leads.get(crm.sales.convert(crm.leads.add(Lead(name="Bo")).id, idempotency_key="k").lead_id)
    with pytest.raises(crmkit.ConflictError):
        crm.sales.disqualify(converted.id, "too late")
    assert crm.leads.get(converted.id).status is LeadStatus.CONVERTED


# --------------------------------------------------------------------------- the differential test


@attrs.define
class Account:
    """What the test did, kept by the test: the reference every report is compared with."""

    deals: dict[Any, dict[str, Any]] = attrs.field(factory=dict)
    stays: list[tuple[str, str, int]] = attrs.field(factory=list)  # (pipeline, stage, seconds) of ended stays
    wins: list[tuple[str, str | None, int]] = attrs.field(factory=list)  # (pipeline, currency, seconds open)
    entered: set[tuple[str, str, Any]] = attrs.field(factory=set)  # (pipeline, stage, deal)
    moves: set[tuple[str, str, str, Any]] = attrs.field(factory=set)  # (pipeline, from, to, deal)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "move", "move", "move", "other", "amount"]),
        st.integers(0, 50),
        st.integers(0, 10),
        st.integers(60, 10 * 86_400),
    ),
    min_size=4,
    max_size=30,
)


def play(crm: crmkit.CRM, clock: Clock, actions: list[tuple[str, int, int, int]]) -> Account:
    account = Account()
    for kind, a, b, seconds in actions:
        clock.now += dt.timedelta(seconds=seconds)
        ids = sorted(account.deals, key=str)
        if kind == "add" or not ids:
            pipeline = "new" if a % 3 else "renewal"
            stage = keys(pipeline)[b % len(keys(pipeline))]
            currency = "EUR" if a % 2 else "USD"
            deal = crm.opportunities.add(
                Opportunity(
                    name=f"d{a}", pipeline=pipeline, stage=stage, amount=Decimal(100 + a * 7), currency=currency
                )
            )
            account.deals[deal.id] = {
                "pipeline": pipeline,
                "stage": stage,
                "since": clock.now,
                "created": clock.now,
                "amount": deal.amount,
                "currency": currency,
            }
            account.entered.add((pipeline, stage, deal.id))
            continue
        deal_id = ids[a % len(ids)]
        mine = account.deals[deal_id]
        if kind == "amount":
            current = crm.opportunities.get(deal_id)
            crm.opportunities.update(attrs.evolve(current, amount=Decimal(b * 10)))
            mine["amount"] = Decimal(b * 10)
            continue
        pipeline = mine["pipeline"] if kind == "move" else ("renewal" if mine["pipeline"] == "new" else "new")
        stage = keys(pipeline)[b % len(keys(pipeline))]
        if (pipeline, stage) == (mine["pipeline"], mine["stage"]):
            continue
        crm.sales.move(deal_id, stage, pipeline=pipeline, reason="test")
        account.stays.append((mine["pipeline"], mine["stage"], int((clock.now - mine["since"]).total_seconds())))
        if flags(pipeline, stage).won:
            account.wins.append((pipeline, mine["currency"], int((clock.now - mine["created"]).total_seconds())))
        account.entered.add((pipeline, stage, deal_id))
        if pipeline == mine["pipeline"]:
            account.moves.add((pipeline, mine["stage"], stage, deal_id))
        mine.update(pipeline=pipeline, stage=stage, since=clock.now)
    return account


def expected_performance(account: Account, pipeline: str, currency: str) -> dict[str, Any]:
    deals = [d for d in account.deals.values() if d["pipeline"] == pipeline and d["currency"] == currency]
    zero = round_to_currency(Decimal(0), currency)
    open_ = [d for d in deals if not flags(pipeline, d["stage"]).closed]
    won = [d for d in deals if flags(pipeline, d["stage"]).won]
    lost = [d for d in deals if flags(pipeline, d["stage"]).closed and not flags(pipeline, d["stage"]).won]
    win_rate = Decimal(len(won)) / Decimal(len(won) + len(lost)) if won or lost else None
    size = round_to_currency(sum((d["amount"] for d in won), zero) / len(won), currency) if won else None
    cycles = [s for p, c, s in account.wins if p == pipeline and c == currency]
    cycle = Decimal(sum(cycles)) / len(cycles) / DAY if cycles else None
    velocity = None
    if win_rate is not None and size is not None and cycle:
        velocity = round_to_currency(len(open_) * size * win_rate / cycle, currency)
    return {
        "pipeline": pipeline,
        "currency": currency,
        "open_deals": len(open_),
        "open_amount": sum((d["amount"] for d in open_), zero),
        "won": len(won),
        "lost": len(lost),
        "won_amount": sum((d["amount"] for d in won), zero),
        "win_rate": win_rate,
        "average_deal_size": size,
        "sales_cycle_days": cycle,
        "velocity": velocity,
    }


def expected_funnel(account: Account, pipeline: str) -> list[FunnelStep]:
    order = keys(pipeline)
    lost_keys = {k for k in order if flags(pipeline, k).closed and not flags(pipeline, k).won}
    steps = []
    for stage in order:
        if stage in lost_keys:
            continue
        entered = len({d for p, s, d in account.entered if (p, s) == (pipeline, stage)})
        forward = [(t, d) for p, f, t, d in account.moves if (p, f) == (pipeline, stage)]
        advanced = len({(t, d) for t, d in forward if t not in lost_keys and order.index(t) > order.index(stage)})
        lost = len({(t, d) for t, d in forward if t in lost_keys})
        steps.append(FunnelStep(stage, entered, advanced, lost, Decimal(advanced) / entered if entered else None))
    return steps


def expected_times(account: Account) -> list[StageTime]:
    groups: dict[tuple[str, str], list[int]] = {}
    for p, s, seconds in account.stays:
        groups.setdefault((p, s), []).append(seconds)
    return [StageTime(p, s, len(v), Decimal(sum(v)) / len(v) / DAY) for (p, s), v in sorted(groups.items())]


@PROPERTY
@given(actions=ACTIONS)
def test_reports_computed_in_the_store_equal_the_tests_own_account(url: str, actions: Any) -> None:
    clock = Clock(START)
    with open_crm(url, clock) as crm:
        for p in PIPELINES.values():
            crm.pipelines.add(p)
        account = play(crm, clock, actions)
        for currency in ("EUR", "USD"):
            got = [attrs.asdict(r) for r in crm.sales.performance(currency=currency)]
            assert got == [expected_performance(account, p, currency) for p in sorted(PIPELINES)]
            only = crm.sales.performance(currency=currency, pipeline="new")
            assert [attrs.asdict(r) for r in only] == [expected_performance(account, "new", currency)]
        for p in PIPELINES:
            assert crm.sales.funnel(p) == expected_funnel(account, p)
        assert crm.sales.time_in_stage() == expected_times(account)
        renewals = [t for t in expected_times(account) if t.pipeline == "renewal"]
        assert crm.sales.time_in_stage(pipeline="renewal") == renewals


def test_reports_read_groups_not_deals(crm: crmkit.CRM, monkeypatch: pytest.MonkeyPatch) -> None:
    clock_free = [crm.opportunities.add(Opportunity(name=f"d{i}", pipeline="new", stage="qualify")) for i in range(3)]
    crm.sales.move(clock_free[0].id, "won")
    from crmkit.services import records

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.spec.name in ("opportunities", "opportunity_history", "state_changes"):
            raise AssertionError(f"a report read {self.spec.name} row by row")
        return original(self, *args, **kwargs)

    original = records.Records.stream
    monkeypatch.setattr(records.Records, "stream", refuse)
    [new, renewal] = crm.sales.performance(currency="EUR")
    assert (new.open_deals, new.won, renewal.open_deals) == (0, 0, 0)  # the deals have no currency
    assert [s.entered for s in crm.sales.funnel("new")] == [3, 0, 0, 1]
    assert [(t.stage, t.exits) for t in crm.sales.time_in_stage()] == [("qualify", 1)]
    with pytest.raises(crmkit.ValidationError):
        crm.sales.performance(currency="")
    with pytest.raises(crmkit.NotFound):
        crm.sales.funnel("nope")
    assert crm.records(OpportunityHistory).count() == 1

"""The predictive win probability: counts in the store, evaluated on held-out deals, on every backend."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from tests.support.backends import BACKENDS, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit.sales import Opportunity, Pipeline, PipelineStage

UTC = dt.timezone.utc
WIN_CHANCE = {"referral": 0.8, "web": 0.35, "ads": 0.1}


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("predict"))


def closed_deals(rng: random.Random, n: int) -> list[Opportunity]:
    deals = []
    for i in range(n):
        source = rng.choice(list(WIN_CHANCE))
        won = rng.random() < WIN_CHANCE[source]
        deals.append(
            Opportunity(
                name=f"d{i}",
                pipeline="new",
                stage="won" if won else "lost",
                source=source,
                owner=rng.choice(["user:1", "user:2", "user:3"]),
                amount=Decimal(100),
                currency="EUR",
            )
        )
    return deals


def test_a_win_model_learnt_in_the_store_ranks_held_out_deals(url: str) -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=UTC)]
    rng = random.Random(3)
    with crmkit.connect(url, tenant=unique_name("predict"), clock=lambda: now[0]) as crm:
        crm.pipelines.add(
            Pipeline(
                key="new",
                name="New",
                stages=(
                    PipelineStage("qualify", probability=Decimal("0.2")),
                    PipelineStage("won", probability=Decimal("1"), closed=True, won=True),
                    PipelineStage("lost", probability=Decimal("0"), closed=True),
                ),
            )
        )
        first = closed_deals(rng, 150)
        crm.opportunities.add_many(first)
        crm.opportunities.add(Opportunity(name="open", pipeline="new", stage="qualify", source="ads"))  # not learnt
        now[0] = cutoff = dt.datetime(2026, 6, 1, tzinfo=UTC)
        later = closed_deals(rng, 150)
        crm.opportunities.add_many(later)

        model = crm.sales.win_model(fields=("source", "owner"), until=cutoff)
        assert (model.deals, model.won) == (150, sum(d.stage == "won" for d in first)) and model.usable
        for source in WIN_CHANCE:
            mine = [d for d in first if d.source == source]
            assert model.counts["source"][source] == (
                sum(d.stage == "won" for d in mine),
                sum(d.stage == "lost" for d in mine),
            )
        # the held-out deals, scored one by one here, and AUC by comparing every won/lost pair
        scores = [(model.score([d.source, d.owner]), d.stage == "won") for d in later]
        wins = [s for s, won in scores if won]
        losses = [s for s, won in scores if not won]
        pairs = sum(1.0 if w > lo else 0.5 if w == lo else 0.0 for w in wins for lo in losses)
        result = crm.sales.evaluate_win_model(model, since=cutoff)
        assert (result.deals, result.won) == (150, len(wins))
        assert result.auc == pytest.approx(pairs / (len(wins) * len(losses)))
        assert result.auc is not None and result.auc > 0.75  # the source carries the signal
        brier = sum((1 - s) ** 2 if won else s**2 for s, won in scores) / len(scores)
        assert result.brier == pytest.approx(brier)
        assert sum(c.deals for c in result.calibration) == 150
        for c in result.calibration:
            assert c.low <= c.predicted <= c.high
        referral = Opportunity(name="x", pipeline="new", stage="qualify", source="referral", owner="user:1")
        ads = Opportunity(name="y", pipeline="new", stage="qualify", source="ads", owner="user:1")
        p_referral, p_ads = model.probability(referral), model.probability(ads)
        assert p_referral is not None and p_ads is not None and p_referral > Decimal("0.5") > p_ads
        assert p_referral == Decimal(repr(model.score(["referral", "user:1"]))).quantize(Decimal("0.0001"))

        everything = crm.sales.win_model(until=cutoff)  # source, campaign, owner and pipeline
        assert everything.counts["pipeline"] == {"new": (model.won, 150 - model.won)}
        assert crm.sales.evaluate_win_model(everything, since=cutoff).deals == 150
        too_few = crm.sales.win_model(fields=("source",), until=cutoff, min_deals=1000)
        assert not too_few.usable and too_few.probability(ads) == ads.probability  # the stage default stays
        with pytest.raises(crmkit.ValidationError) as error:
            crm.sales.win_model(fields=("name",))
        assert error.value.field == "fields"
        with pytest.raises(crmkit.ValidationError):
            crm.sales.win_model(min_deals=0)

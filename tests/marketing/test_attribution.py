"""Attribution models: hand-computed fixtures for the rule models, and recovery of known channel
effects from 200,000 simulated journeys for the data-driven ones."""

from __future__ import annotations

import datetime as dt

import pytest

from crmkit import ValidationError
from crmkit.marketing.attribution import Journey, attribute, removal_effects, shapley_values
from crmkit.testing.journeys import JourneySimulator

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def at(days: float) -> dt.datetime:
    return T0 + days * DAY


# Two buyers and a non-buyer:
#   j1: web(0) email(4) direct(6) -> bought at 8
#   j2: social(0) email(7)        -> bought at 8
#   j3: email(1)                  -> no purchase
JOURNEYS = [
    Journey((("web", at(0)), ("email", at(4)), ("direct", at(6))), at(8)),
    Journey((("social", at(0)), ("email", at(7))), at(8)),
    Journey((("email", at(1)),), None),
]


def test_rule_models_equal_hand_computed_fixtures() -> None:
    assert attribute(JOURNEYS, "first_touch") == {"direct": 0.0, "email": 0.0, "social": 0.5, "web": 0.5}
    assert attribute(JOURNEYS, "last_touch") == {"direct": 0.5, "email": 0.5, "social": 0.0, "web": 0.0}
    # the last touch that is not direct: email in both
    assert attribute(JOURNEYS, "last_non_direct") == {"direct": 0.0, "email": 1.0, "social": 0.0, "web": 0.0}
    # linear: j1 gives 1/3 each, j2 1/2 each; over 2 purchases
    assert attribute(JOURNEYS, "linear") == pytest.approx(
        {"direct": 1 / 6, "email": (1 / 3 + 1 / 2) / 2, "social": 1 / 4, "web": 1 / 6}
    )
    # position 40/20/40: j1 web .4 email .2 direct .4; j2 (two touches) .5 each
    assert attribute(JOURNEYS, "position") == pytest.approx(
        {"direct": 0.2, "email": (0.2 + 0.5) / 2, "social": 0.25, "web": 0.2}
    )
    # time decay, half-life 2 days: j1 weights 2^-4, 2^-2, 2^-1; j2 weights 2^-4, 2^-0.5
    w1 = {"web": 2**-4, "email": 2**-2, "direct": 2**-1}
    w2 = {"social": 2**-4, "email": 2**-0.5}
    s1, s2 = sum(w1.values()), sum(w2.values())
    expected = {
        "direct": w1["direct"] / s1 / 2,
        "email": (w1["email"] / s1 + w2["email"] / s2) / 2,
        "social": w2["social"] / s2 / 2,
        "web": w1["web"] / s1 / 2,
    }
    assert attribute(JOURNEYS, "time_decay", half_life=2 * DAY) == pytest.approx(expected)


def test_touches_after_the_purchase_do_not_count_and_no_purchase_gives_zero_shares() -> None:
    late = [Journey((("email", at(1)), ("sms", at(9))), at(5))]
    assert attribute(late, "last_touch") == {"email": 1.0}
    assert attribute([Journey((("email", at(1)),), None)], "linear") == {"email": 0.0}
    with pytest.raises(ValidationError) as caught:
        attribute(late, "magic")
    assert caught.value.field == "model"


def test_shapley_values_of_a_hand_computed_game() -> None:
    # rates: none .1, {a} .3, {b} .2, {a,b} .6 -> v(a)=.2 v(b)=.1 v(ab)=.5
    # phi_a = 1/2 (.2) + 1/2 (.5 - .1) = .3; phi_b = 1/2 (.1) + 1/2 (.5 - .2) = .2
    exposure = {
        frozenset(): (100, 10),
        frozenset({"a"}): (100, 30),
        frozenset({"b"}): (100, 20),
        frozenset({"a", "b"}): (100, 60),
    }
    assert shapley_values(exposure) == pytest.approx({"a": 0.3, "b": 0.2})
    # random orders converge to the exact values; unseen sets take their best subset's value
    many = {frozenset({f"c{i}", f"c{i + 1}"}): (100, 10 + 3 * i) for i in range(6)} | {frozenset(): (100, 10)}
    exact = shapley_values(many)
    sampled = shapley_values(many, samples=5000, seed=1, exact_up_to=0)
    assert sampled == pytest.approx(exact, abs=0.005)
    assert sum(exact.values()) == pytest.approx(0.25 - 0.10)  # efficiency: the values add up to v(all channels)


def test_markov_removal_effects_of_a_hand_computed_chain() -> None:
    # start -> a (2), start -> b (2); a -> conversion (1), a -> b (1); b -> conversion (1), b -> null (2)
    # P(conv) = .5 (.5 + .5 * 1/3) + .5 (1/3) = 1/2; without a: .5 * 1/3 = 1/6; without b: .5 * .5 = 1/4
    counts = {
        ("(start)", "a"): 2,
        ("(start)", "b"): 2,
        ("a", "(conversion)"): 1,
        ("a", "b"): 1,
        ("b", "(conversion)"): 1,
        ("b", "(null)"): 2,
    }
    assert removal_effects(counts) == pytest.approx({"a": 1 - (1 / 6) / (1 / 2), "b": 1 - (1 / 4) / (1 / 2)})


def test_data_driven_models_recover_known_effects_where_last_touch_cannot() -> None:
    """200,000 simulated journeys: Shapley within .02 of the true Shapley shares, Markov within .02 of
    the process's removal effects, last touch more than .5 off the truth."""
    sim = JourneySimulator()
    journeys = list(sim.journeys(200_000, seed=7))
    truth = sim.true_shapley()
    shapley = attribute(journeys, "shapley")
    markov = attribute(journeys, "markov")
    last = attribute(journeys, "last_touch")
    assert max(abs(shapley[c] - truth[c]) for c in truth) <= 0.02
    removal = sim.true_removal_effects()
    assert max(abs(markov[c] - removal[c]) for c in removal) <= 0.02
    assert max(abs(last[c] - truth[c]) for c in truth) > 0.5
    # the test would fail if last touch were passed off as data-driven
    assert max(abs(last[c] - truth[c]) for c in truth) > 0.02

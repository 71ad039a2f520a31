"""NextPurchase on the seeded basket simulator: quality against the oracle and popularity, API, inputs."""

from __future__ import annotations

import collections
import datetime as dt
import random

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from crmkit import ValidationError  # noqa: E402
from crmkit.value.datasets import BasketSimulation, simulate_baskets  # noqa: E402
from crmkit.value.models import NotFittedError  # noqa: E402
from crmkit.value.recommend import DECAYS, EXPLORE_WEIGHTS, NextPurchase  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> BasketSimulation:
    return simulate_baskets(5000, 300, seed=0)


@pytest.fixture(scope="module")
def fitted(sim: BasketSimulation) -> NextPurchase:
    return NextPurchase().fit(sim.history)


# ---------------------------------------------------------------------- the simulator


def test_the_simulator_is_seeded_and_leaves_one_basket_out_per_customer() -> None:
    a = simulate_baskets(200, 40, seed=3)
    b = simulate_baskets(200, 40, seed=3)
    c = simulate_baskets(200, 40, seed=4)
    assert a.history == b.history and a.held_out == b.held_out
    assert a.history != c.history
    assert sorted(a.held_out) == list(range(200))
    per_customer = collections.Counter(customer for customer, _, _ in a.history)
    assert set(per_customer) == set(range(200))
    assert min(per_customer.values()) >= 4 and max(per_customer.values()) <= 24
    times = [t for _, t, _ in a.history]
    assert times == sorted(times)  # a time-ordered log, customers interleaved
    last_seen = {c: t for c, t, _ in a.history}
    assert all(last_seen[c] <= t for c, t, _ in a.last_baskets)  # the held-out basket is each customer's last
    for _, _, products in a.history:
        assert products and len(set(products)) == len(products)
        assert all(0 <= p < 40 for p in products)


def test_the_oracle_ranks_by_the_true_probabilities(sim: BasketSimulation) -> None:
    customers = list(range(50))
    scores = sim.oracle.scores(np.array(customers))
    assert np.all(scores >= 0)
    # Each pick yields one product, plus its complement with probability 0.3: a pick's expected
    # number of distinct products lies between 1 and 1.3.
    assert np.all((scores.sum(axis=1) > 0.999) & (scores.sum(axis=1) < 1.301))
    top = sim.oracle.recommend_many(customers, 5)
    for c in customers:
        assert [p for p, _ in top[c]] == list(np.argsort(-scores[c], kind="stable")[:5])
    new = sim.oracle.recommend_many(customers, 5, new_only=True)
    assert all(not ({p for p, _ in new[c]} & sim.bought_before(c)) for c in customers)


def test_recall_counts_the_share_of_each_held_out_basket_found() -> None:
    s = simulate_baskets(3, 10, seed=1)
    perfect = {c: [(p, 1.0) for p in basket] for c, basket in s.held_out.items()}
    assert s.recall(perfect) == 1.0
    assert s.recall({}) == 0.0
    half = {}
    for c, basket in s.held_out.items():
        products = sorted(basket)
        half[c] = products[: len(products) // 2]
    expected = sum(len(b) // 2 / len(b) for b in s.held_out.values()) / 3
    assert s.recall(half) == pytest.approx(expected)


# ---------------------------------------------------------------------- quality (leave the last basket out)


def test_recall_at_10_is_at_least_95_percent_of_the_oracles(sim: BasketSimulation, fitted: NextPurchase) -> None:
    customers = sorted(sim.held_out)
    ours = sim.recall(fitted.recommend_many(customers, 10))
    oracle = sim.recall(sim.oracle.recommend_many(customers, 10))
    assert oracle > 0.5
    assert ours >= 0.95 * oracle, (ours, oracle)


def popularity_rankings(sim: BasketSimulation) -> dict[str, list[int]]:
    """Popularity by baskets, by customers, and by baskets of the last 30 days of the history."""
    baskets: collections.Counter[int] = collections.Counter()
    buyers: dict[int, set[int]] = collections.defaultdict(set)
    recent: collections.Counter[int] = collections.Counter()
    end = max(t for _, t, _ in sim.history)
    for customer, t, products in sim.history:
        baskets.update(products)
        for p in products:
            buyers[p].add(customer)
        if t >= end - dt.timedelta(days=30):
            recent.update(products)
    return {  # ties: the lower product first
        "baskets": sorted(baskets, key=lambda p: (-baskets[p], p)),
        "customers": sorted(buyers, key=lambda p: (-len(buyers[p]), p)),
        "recent": sorted(recent, key=lambda p: (-recent[p], p)),
    }


def test_new_products_beat_the_best_popularity_ranking_by_ten_percent(
    sim: BasketSimulation, fitted: NextPurchase
) -> None:
    customers = sorted(sim.held_out)
    ours = sim.recall(fitted.recommend_many(customers, 10, new_only=True), new_only=True)
    best = 0.0
    for ranking in popularity_rankings(sim).values():
        recs = {}
        for c in customers:
            bought = sim.bought_before(c)
            recs[c] = [p for p in ranking if p not in bought][:10]
        best = max(best, sim.recall(recs, new_only=True))
    assert best > 0.15  # popularity is a real competitor here
    assert ours >= 1.10 * best, (ours, best)


def test_it_beats_personal_top_frequency(sim: BasketSimulation, fitted: NextPurchase) -> None:
    """The strong next-basket baseline: one's most frequent products, then the most popular."""
    counts: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for customer, _, products in sim.history:
        counts[customer].update(products)
    popular = popularity_rankings(sim)["baskets"]
    baseline = {}
    for c in sim.held_out:
        own = [p for p, _ in sorted(counts[c].items(), key=lambda kv: (-kv[1], kv[0]))][:10]
        baseline[c] = own + [p for p in popular if p not in own][: 10 - len(own)]
    customers = sorted(sim.held_out)
    assert sim.recall(fitted.recommend_many(customers, 10)) > sim.recall(baseline)


def test_held_out_baskets_never_reach_the_fit(sim: BasketSimulation, fitted: NextPurchase) -> None:
    """Shuffling whose held-out basket is whose ruins recall; the history alone makes the fit."""
    customers = sorted(sim.held_out)
    recs = fitted.recommend_many(customers, 10)
    real = sim.recall(recs)
    rng = random.Random(5)
    owners = customers[:]
    rng.shuffle(owners)
    swapped = BasketSimulation(
        sim.history,
        [(o, t, p) for (_, t, p), o in zip(sim.last_baskets, owners, strict=False)],
        sim.oracle,
        sim._bought,
    )
    assert swapped.recall(recs) < 0.75 * real
    again = NextPurchase().fit(list(sim.history))
    assert again.recommend_many(customers[:200], 10) == {c: recs[c] for c in customers[:200]}


def test_the_input_order_does_not_matter(sim: BasketSimulation, fitted: NextPurchase) -> None:
    history = list(sim.history)
    random.Random(2).shuffle(history)
    shuffled = NextPurchase().fit(history)
    customers = list(range(300))
    assert shuffled.params == fitted.params
    assert shuffled.recommend_many(customers, 10) == fitted.recommend_many(customers, 10)


def test_calibration_tries_the_grid_and_keeps_the_best(sim: BasketSimulation, fitted: NextPurchase) -> None:
    assert set(fitted.calibration) == {(d, w) for d in DECAYS for w in EXPLORE_WEIGHTS}
    best = max(fitted.calibration.values())
    assert fitted.calibration[(fitted.params["decay"], fitted.params["explore_weight"])] == best
    fixed = NextPurchase(decay=0.5, explore_weight=3.0).fit(sim.history[:5000])
    assert fixed.calibration == {} and fixed.params["decay"] == 0.5 and fixed.params["explore_weight"] == 3.0
    partly = NextPurchase(decay=0.7, calibration_customers=100).fit(sim.history)
    assert {d for d, _ in partly.calibration} == {0.7} and len(partly.calibration) == len(EXPLORE_WEIGHTS)
    none = NextPurchase(calibration_customers=0).fit(sim.history[:5000])
    assert none.calibration == {} and (none.params["decay"], none.params["explore_weight"]) == (DECAYS[0], 1.0)


# ---------------------------------------------------------------------- the ranking is exact


def brute_force(model: NextPurchase, baskets: list[tuple[str, float, tuple[str, ...]]]) -> dict[str, list[float]]:
    """The documented score of every product for every customer, computed densely in plain numpy."""
    params = model.params
    decay, weight, share_all = params["decay"], params["explore_weight"], params["repeat_share"]
    products = list(model.products)
    col = {p: i for i, p in enumerate(products)}
    by_customer: dict[str, list[tuple[float, set[int]]]] = collections.defaultdict(list)
    for c, t, ps in baskets:
        if ps:
            by_customer[c].append((t, {col[p] for p in ps}))
    all_baskets = [s for history in by_customer.values() for _, s in history]
    m = len(products)
    incidence = np.zeros((len(all_baskets), m))
    for i, s in enumerate(all_baskets):
        incidence[i, list(s)] = 1
    popularity = incidence.sum(axis=0) / incidence.sum()
    co = incidence.T @ incidence
    counts = np.diag(co).copy()
    cosine = co / np.sqrt(np.outer(counts, counts))
    np.fill_diagonal(cosine, 0)
    together = np.zeros((m, m))
    for i in range(m):
        order = np.argsort(-cosine[i], kind="stable")[: model.neighbours]
        order = order[cosine[i, order] > 0]
        together[i, order] = cosine[i, order] / cosine[i, order].sum() if len(order) else 0
    scores = {}
    for c, history in by_customer.items():
        history.sort(key=lambda x: x[0])
        n = len(history)
        repeat = np.zeros(m)
        total = 0.0
        for j, (_, s) in enumerate(history):
            w = decay ** (n - 1 - j)
            total += w
            repeat[list(s)] += w / len(s)
        repeat /= total
        lines = sum(len(s) for _, s in history)
        later = lines - len(history[0][1])
        repeats = lines - len(set().union(*(s for _, s in history)))
        a = (repeats + model.repeat_prior * share_all) / (later + model.repeat_prior)
        a = min(max(a, 1e-6), 1.0)
        p = model.popularity_share
        scores[c] = list(a * repeat + weight * (1 - a) * ((1 - p) * repeat @ together + p * popularity))
    return scores


@pytest.mark.parametrize("n_products", [12, 400])  # dense and sparse ranking paths
def test_the_sparse_ranking_equals_the_dense_formula(n_products: int) -> None:
    rng = random.Random(n_products)
    baskets = []
    for i in range(150):
        for j in range(rng.randint(1, 6)):
            size = rng.randint(1, 5)
            baskets.append((f"c{i}", float(j), tuple(f"p{rng.randrange(n_products)}" for _ in range(size))))
    model = NextPurchase(neighbours=4).fit(baskets)
    dense = brute_force(model, baskets)
    products = list(model.products)
    for new_only in (False, True):
        got = model.recommend_many(None, 8, new_only=new_only)
        for c, values in dense.items():
            bought = {p for cc, _, ps in baskets if cc == c for p in ps}
            expected = sorted(
                ((v, products[i]) for i, v in enumerate(values) if not (new_only and products[i] in bought)),
                key=lambda x: -x[0],
            )[:8]
            assert len(got[c]) == len(expected)
            got_scores = [s for _, s in got[c]]
            assert got_scores == pytest.approx([v for v, _ in expected], rel=1e-5, abs=1e-9)
            if not expected:  # bought every product: nothing new to offer
                continue
            cut = expected[-1][0]
            clear = {p for v, p in expected if v > cut * (1 + 1e-5) + 1e-9}
            assert clear <= {p for p, _ in got[c]}, (c, new_only)


# ---------------------------------------------------------------------- the API


def test_recommend_and_recommend_many_agree_and_are_best_first(fitted: NextPurchase) -> None:
    many = fitted.recommend_many([0, 1, 2], k=10)
    for c in (0, 1, 2):
        one = fitted.recommend(c, k=10)
        assert one == many[c]
        assert len(one) == 10 and len({p for p, _ in one}) == 10
        scores = [s for _, s in one]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert len(fitted.recommend(0, k=3)) == 3
    assert len(fitted.recommend_many(None, 2)) == 5000


def test_new_only_leaves_out_what_the_customer_bought(sim: BasketSimulation, fitted: NextPurchase) -> None:
    for c in range(20):
        new = fitted.recommend(c, 10, new_only=True)
        assert len(new) == 10 and not ({p for p, _ in new} & sim.bought_before(c))


def test_unknown_customers_get_the_most_popular_products(sim: BasketSimulation, fitted: NextPurchase) -> None:
    popular = popularity_rankings(sim)["baskets"][:5]
    out = fitted.recommend_many(["someone new", 0], 5)
    assert [p for p, _ in out["someone new"]] == popular
    assert out["someone new"] != out[0]


def test_any_hashables_dates_numbers_duplicates_and_empty_baskets() -> None:
    d = dt.date(2025, 3, 1)
    baskets = [
        (("acme", 1), d, ["tea", "tea", ("mug", "blue")]),  # a product twice in one basket counts once
        (("acme", 1), d + dt.timedelta(days=2), {"tea"}),
        (("acme", 1), d + dt.timedelta(days=3), []),  # ignored
        (frozenset({7}), d + dt.timedelta(days=1), ("coffee", "tea")),
        (None, d, ("coffee",)),
    ]
    model = NextPurchase().fit(baskets)
    assert set(model.customers) == {("acme", 1), frozenset({7}), None}
    assert set(model.products) == {"tea", ("mug", "blue"), "coffee"}
    top = model.recommend(("acme", 1), k=5)
    assert top[0][0] == "tea" and len(top) == 3
    numbers = NextPurchase().fit([(1, 5, ["a"]), (1, 2.5, ["b"]), (2, np.int64(3), ["a"])])
    assert numbers.recommend(1, 1)[0][0] == "a"  # the later basket counts more
    only_empty = [("x", d, ["a"]), ("y", d, [])]
    assert NextPurchase().fit(only_empty).customers == ("x",)


@pytest.mark.parametrize(
    ("baskets", "field", "row"),
    [
        ([("c", T0, ["a"]), ("c", T0)], "baskets", 1),
        ([("c", T0, ["a"]), ("c", T0, "ab")], "products", 1),
        ([("c", T0, ["a"]), ("c", T0, 5)], "products", 1),
        ([("c", T0, ["a"]), ("c", T0, [["unhashable"]])], "products", 1),
        ([("c", T0, ["a"]), (["c"], T0, ["a"])], "customer", 1),
        ([("c", T0, ["a"]), ("c", dt.datetime(2025, 1, 2), ["a"])], "occurred_at", 1),
        ([("c", T0, ["a"]), ("c", dt.date(2025, 1, 2), ["a"])], "occurred_at", 1),
        ([("c", dt.date(2025, 1, 2), ["a"]), ("c", T0, ["a"])], "occurred_at", 1),
        ([("c", 1.0, ["a"]), ("c", float("nan"), ["a"])], "occurred_at", 1),
        ([("c", 1.0, ["a"]), ("c", True, ["a"])], "occurred_at", 1),
        ([("c", "2025-01-01", ["a"])], "occurred_at", 0),
    ],
)
def test_bad_baskets_name_the_field_and_row(baskets: list[object], field: str, row: int) -> None:
    with pytest.raises(ValidationError) as info:
        NextPurchase().fit(baskets)  # type: ignore[arg-type]
    assert (info.value.field, info.value.row) == (field, row)


def test_bad_arguments_are_validation_errors(fitted: NextPurchase) -> None:
    for bad in ("abc", 5, None):
        with pytest.raises(ValidationError, match="baskets"):
            NextPurchase().fit(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="empty"):
        NextPurchase().fit([])
    with pytest.raises(ValidationError, match="no products"):
        NextPurchase().fit([("c", T0, [])])
    for kwargs in (
        {"decay": 0},
        {"decay": 1.5},
        {"explore_weight": 0},
        {"neighbours": 0},
        {"neighbours": 2.5},
        {"popularity_share": 1.0},
        {"repeat_prior": -1},
        {"calibration_customers": -1},
        {"seed": True},
    ):
        with pytest.raises(ValidationError) as info:
            NextPurchase(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == next(iter(kwargs))
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="k"):
            fitted.recommend(0, k=k)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="new_only"):
        fitted.recommend(0, new_only=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="customers"):
        fitted.recommend_many("abc")
    with pytest.raises(ValidationError) as info:
        fitted.recommend_many([0, [1]])
    assert (info.value.field, info.value.row) == ("customers", 1)
    with pytest.raises(NotFittedError):
        NextPurchase().recommend(0)
    with pytest.raises(NotFittedError):
        NextPurchase().params  # noqa: B018
    assert "not fitted" in repr(NextPurchase()) and "5000 customers" in repr(fitted)

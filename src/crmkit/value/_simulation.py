"""A seeded basket simulator with a known generating process and its oracle (needs numpy).

Reached as ``crmkit.value.datasets.simulate_baskets``. The process, per customer:

1. Products belong to ``categories`` latent categories (uniformly at random) and have
   Zipf popularity weights ``1 / rank ** zipf`` (ranks in random order); within its
   category a product is chosen in proportion to its weight. Every product has one
   complement, another product drawn by popularity from any category.
2. A customer has category preferences ``theta ~ Dirichlet(focus, ..., focus)`` (a small
   ``focus`` gives one or two favourite categories), a repeat propensity ``rho ~
   Beta(*repeat)`` and a number of baskets drawn uniformly from ``baskets`` (the
   history), plus one more basket: the held-out next basket.
3. A basket has ``1 + Poisson(basket_size - 1)`` picks. From the second basket on, a
   pick is a repeat with probability ``rho``: one of the customer's earlier baskets is
   chosen with weight ``habit_decay ** (number of baskets since)``, then one of its
   products uniformly (habits formed by what one bought, fading with time; cf. the
   recency-weighted re-consumption of Anderson et al. 2014). Otherwise the pick
   explores: a category from ``theta``, then a product by popularity within it. Each
   pick brings its complement along with probability ``complement``. A product picked
   twice is bought once.
4. The first basket falls on a uniform day of the year after ``start``; later ones
   follow at exponential gaps with mean ``mean_gap_days``.

The oracle knows every latent variable: its score of product ``j`` for a customer's next
basket is the probability that one pick yields ``j``, ``q(j) + complement * sum of q(i)
over products i whose complement is j``, with ``q = rho * h + (1 - rho) * theta . pi``
(``h`` the habit distribution of the history, ``pi`` the within-category popularity).
The chance that ``j`` is in the basket rises with it, so this is the process's own ranking.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from crmkit._errors import ValidationError

__all__ = ["BasketOracle", "BasketSimulation", "simulate_baskets"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

Basket = tuple[int, dt.datetime, tuple[int, ...]]

_DAY = dt.timedelta(days=1)


def simulate_baskets(
    customers: int = 5000,
    products: int = 300,
    *,
    seed: int = 0,
    categories: int = 10,
    baskets: tuple[int, int] = (4, 24),
    basket_size: float = 3.0,
    repeat: tuple[float, float] = (4.0, 4.0),
    habit_decay: float = 0.8,
    complement: float = 0.3,
    focus: float = 0.3,
    zipf: float = 0.9,
    mean_gap_days: float = 14.0,
    start: dt.date = dt.date(2025, 1, 1),
) -> BasketSimulation:
    """Simulate ``customers`` x ``products`` (see the module docstring); the same seed gives the same data.

    Customers are ``0 .. customers - 1`` and products ``0 .. products - 1``.
    """
    _whole("customers", customers, 1)
    _whole("products", products, 2)
    _whole("seed", seed, 0)
    _whole("categories", categories, 1)
    if (
        not isinstance(baskets, tuple)
        or len(baskets) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in baskets)
        or not 1 <= baskets[0] <= baskets[1]
    ):
        raise ValidationError("baskets", "must be (low, high) whole numbers with 1 <= low <= high", baskets)
    _number("basket_size", basket_size, 1.0)
    if not isinstance(repeat, tuple) or len(repeat) != 2:
        raise ValidationError("repeat", "must be the (a, b) of a beta distribution", repeat)
    for value in repeat:
        _number("repeat", value, 0.0, strict=True)
    _number("habit_decay", habit_decay, 0.0, 1.0, strict=True)
    _number("complement", complement, 0.0, 1.0)
    _number("focus", focus, 0.0, strict=True)
    _number("zipf", zipf, 0.0)
    _number("mean_gap_days", mean_gap_days, 0.0, strict=True)
    if not isinstance(start, dt.date) or isinstance(start, dt.datetime):
        raise ValidationError("start", "must be a date", start)
    return _Simulator(
        customers,
        products,
        seed,
        categories,
        baskets,
        basket_size,
        repeat,
        habit_decay,
        complement,
        focus,
        zipf,
        mean_gap_days,
        start,
    ).run()


class BasketSimulation:
    """Simulated baskets: ``history`` to fit on, ``held_out`` next baskets, and the ``oracle``."""

    def __init__(
        self,
        history: list[Basket],
        last: list[Basket],
        oracle: BasketOracle,
        history_sets: sp.csr_matrix,
    ) -> None:
        #: Every customer's baskets but the last, as ``(customer, occurred_at, products)``, in time order.
        self.history = history
        #: The held-out last basket of each customer, as ``(customer, occurred_at, products)``.
        self.last_baskets = last
        #: ``{customer: frozenset of products}`` of the held-out baskets.
        self.held_out = {c: frozenset(p) for c, _, p in last}
        #: Ranks by the true probabilities of the held-out baskets.
        self.oracle = oracle
        self._bought = history_sets

    def __repr__(self) -> str:
        return f"<BasketSimulation {len(self.held_out)} customers, {len(self.history)} history baskets>"

    def baskets(self) -> Iterator[Basket]:
        """History and held-out baskets together (everything that happened)."""
        yield from self.history
        yield from self.last_baskets

    def bought_before(self, customer: int) -> frozenset[int]:
        """The products ``customer`` bought in its history."""
        row = self._bought[customer]
        return frozenset(row.indices.tolist())

    def recall(self, recommendations: dict[Hashable, Any], *, new_only: bool = False) -> float:
        """Mean recall of the held-out baskets: share of each basket's products among the recommended.

        ``recommendations`` maps customers to products or ``(product, score)`` pairs (the
        output of ``recommend_many``). With ``new_only``, only held-out products the
        customer had not bought count, and customers without any are left out.
        """
        total, n = 0.0, 0
        for customer, target in self.held_out.items():
            if new_only:
                target = target - self.bought_before(customer)
            if not target:
                continue
            listed = recommendations.get(customer, ())
            chosen = {item[0] if isinstance(item, tuple) else item for item in listed}
            total += len(target & chosen) / len(target)
            n += 1
        return total / n if n else 0.0


class BasketOracle:
    """The generating process's own ranking of each customer's held-out basket."""

    def __init__(
        self,
        theta: FloatArray,
        rho: FloatArray,
        category: IntArray,
        within: FloatArray,
        complement_of: IntArray,
        complement: float,
        habits: sp.csr_matrix,
    ) -> None:
        self._theta = theta
        self._rho = rho
        self._category = category
        self._within = within
        self._complement = sp.csr_matrix(
            (np.full(len(complement_of), complement), (np.arange(len(complement_of)), complement_of)),
            shape=(len(complement_of), len(complement_of)),
        )
        self._habits = habits

    def scores(self, customers: IntArray) -> FloatArray:
        """Probability that one pick of each customer's next basket yields each product (rows x products)."""
        theta = self._theta[customers]
        rho = self._rho[customers][:, None]
        q = (1.0 - rho) * theta[:, self._category] * self._within[None, :]
        q += rho * self._habits[customers].toarray()
        scores: FloatArray = q + np.asarray(q @ self._complement)
        return scores

    def recommend_many(
        self, customers: Iterable[int], k: int = 10, *, new_only: bool = False
    ) -> dict[int, list[tuple[int, float]]]:
        """``{customer: [(product, probability per pick), ...]}``, best first."""
        wanted = np.asarray(list(customers), dtype=np.int64)
        out: dict[int, list[tuple[int, float]]] = {}
        for begin in range(0, len(wanted), 2000):
            part = wanted[begin : begin + 2000]
            scores = self.scores(part)
            if new_only:
                scores[self._habits[part].toarray() > 0] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best = np.take_along_axis(scores, order, axis=1)
            for c, items, values in zip(part.tolist(), order.tolist(), best.tolist(), strict=False):
                out[c] = [(i, v) for i, v in zip(items, values, strict=False) if v != -np.inf]
        return out


class _Simulator:
    def __init__(
        self,
        n: int,
        m: int,
        seed: int,
        categories: int,
        baskets: tuple[int, int],
        basket_size: float,
        repeat: tuple[float, float],
        habit_decay: float,
        complement: float,
        focus: float,
        zipf: float,
        mean_gap_days: float,
        start: dt.date,
    ) -> None:
        self.n, self.m = n, m
        self.rng = np.random.default_rng(seed)
        self.categories = categories
        self.baskets = baskets
        self.basket_size = basket_size
        self.repeat = repeat
        self.habit_decay = habit_decay
        self.complement = complement
        self.focus = focus
        self.zipf = zipf
        self.mean_gap_days = mean_gap_days
        self.start = dt.datetime(start.year, start.month, start.day, tzinfo=dt.timezone.utc)

    def run(self) -> BasketSimulation:
        rng, n, m, g = self.rng, self.n, self.m, self.categories
        category = rng.integers(0, g, m)
        weight = 1.0 / (1.0 + rng.permutation(m)) ** self.zipf
        category_weight = np.bincount(category, weights=weight, minlength=g)
        within = weight / category_weight[category]
        complement_of = rng.choice(m, size=m, p=weight / weight.sum())
        same = complement_of == np.arange(m)
        complement_of[same] = (complement_of[same] + 1) % m
        theta = rng.dirichlet(np.full(g, self.focus), size=n)
        rho = rng.beta(*self.repeat, size=n)
        history_count = rng.integers(self.baskets[0], self.baskets[1] + 1, n)
        # Products sorted by category, for drawing "a product by popularity within a category".
        by_category = np.argsort(category, kind="stable")
        first = np.searchsorted(category[by_category], np.arange(g))
        stop = np.append(first[1:], m)
        cumulative = np.cumsum(within[by_category])
        offset = np.concatenate([[0.0], cumulative])[first]
        theta_cumulative = np.cumsum(theta, axis=1)

        def explore(who: IntArray) -> IntArray:
            u = rng.random(len(who))
            cat = np.minimum((u[:, None] > theta_cumulative[who]).sum(axis=1), g - 1)
            position = np.searchsorted(cumulative, rng.random(len(who)) + offset[cat], side="right")
            return np.asarray(by_category[np.clip(position, first[cat], stop[cat] - 1)], dtype=np.int64)

        rounds = int(history_count.max()) + 1
        # Baskets are stored flat, round after round; (customer, round) -> where its products are.
        where = np.zeros((n, rounds), dtype=np.int64)
        size = np.zeros((n, rounds), dtype=np.int64)
        flat: list[IntArray] = []
        stored = 0
        day = rng.random(n) * 365.0
        out_customer: list[IntArray] = []
        out_day: list[FloatArray] = []
        out_round: list[IntArray] = []
        decay_weights = self.habit_decay ** np.arange(rounds)[::-1]
        for r in range(rounds):
            active = np.flatnonzero(history_count >= r)
            if r:
                day[active] += rng.exponential(self.mean_gap_days, len(active))
            picks = 1 + rng.poisson(self.basket_size - 1.0, len(active))
            who = np.repeat(active, picks)
            repeats = (rng.random(len(who)) < rho[who]) if r else np.zeros(len(who), dtype=bool)
            item = np.empty(len(who), dtype=np.int64)
            if r:
                w = np.cumsum(decay_weights[rounds - r :])  # weights of rounds 0..r-1
                past = np.minimum(np.searchsorted(w / w[-1], rng.random(int(repeats.sum())), side="right"), r - 1)
                rw = who[repeats]
                slot = (rng.random(len(rw)) * size[rw, past]).astype(np.int64)
                if len(flat) > 1:
                    flat = [np.concatenate(flat)]
                item[repeats] = flat[0][where[rw, past] + slot]
            item[~repeats] = explore(who[~repeats])
            brings = rng.random(len(who)) < self.complement
            who = np.concatenate([who, who[brings]])
            item = np.concatenate([item, complement_of[item[brings]]])
            order = np.lexsort((item, who))
            who, item = who[order], item[order]
            distinct = np.ones(len(who), dtype=bool)
            distinct[1:] = (who[1:] != who[:-1]) | (item[1:] != item[:-1])
            who, item = who[distinct], item[distinct]
            counts = np.bincount(who, minlength=n)[active]
            size[active, r] = counts
            where[active, r] = stored + np.cumsum(counts) - counts
            flat.append(item)
            stored += len(item)
            out_customer.append(active)
            out_day.append(day[active].copy())
            out_round.append(np.full(len(active), r))
        pool = np.concatenate(flat)
        customer = np.concatenate(out_customer)
        days = np.concatenate(out_day)
        rnd = np.concatenate(out_round)
        begin = where[customer, rnd]
        length = size[customer, rnd]
        held = rnd == history_count[customer]
        # Habit distribution before the held-out basket: rounds weighted by decay, shared by products.
        age = (history_count[customer] - 1 - rnd).astype(np.float64)
        basket_weight = np.where(held, 0.0, self.habit_decay ** np.maximum(age, 0.0))
        total = np.bincount(customer, weights=basket_weight, minlength=n)
        line_customer = np.repeat(customer, length)
        line_weight = np.repeat(basket_weight / length, length) / total[line_customer]
        habits = sp.csr_matrix((line_weight, (line_customer, pool[_ranges(begin, length)])), shape=(n, m))
        habits.sum_duplicates()
        habits.eliminate_zeros()
        oracle = BasketOracle(theta, rho, category, within, complement_of, self.complement, habits)
        bought = habits.copy()
        bought.data[:] = 1.0
        history, last = self._tuples(customer, days, pool, begin, length, held)
        return BasketSimulation(history, last, oracle, bought)

    def _tuples(
        self, customer: IntArray, days: FloatArray, pool: IntArray, begin: IntArray, length: IntArray, held: Any
    ) -> tuple[list[Basket], list[Basket]]:
        order = np.argsort(days, kind="stable")
        epoch = self.start.timestamp()
        seconds = (epoch + np.round(days[order] * 86_400.0)).tolist()
        times = list(map(dt.datetime.fromtimestamp, seconds, itertools.repeat(dt.timezone.utc)))
        products = pool.tolist()
        baskets = [
            tuple(products[b : b + n]) for b, n in zip(begin[order].tolist(), length[order].tolist(), strict=True)
        ]
        rows = list(zip(customer[order].tolist(), times, baskets, strict=True))
        last = held[order].tolist()
        history = list(itertools.compress(rows, (not h for h in last)))
        return history, list(itertools.compress(rows, last))


def _ranges(begin: IntArray, length: IntArray) -> IntArray:
    """Concatenated ``range(begin[i], begin[i] + length[i])``."""
    ends = np.cumsum(length)
    return np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - length - begin, length)


def _whole(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValidationError(name, f"must be a whole number >= {low}", value)


def _number(name: str, value: Any, low: float, high: float = float("inf"), *, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > low if strict else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if strict else f">= {low:g}"
        upper = "" if high == float("inf") else f" and <= {high:g}"
        raise ValidationError(name, f"must be a number {bound}{upper}", value)

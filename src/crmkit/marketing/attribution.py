"""Attribution: which channels (or campaigns) the purchases of a period are credited to.

A journey is one customer's touches (channel, moment) in order and, when the customer
bought, the moment of the purchase; touches after it are not part of the journey. The
models, all fed one journey at a time (memory grows with the channels, not the customers):

- rule models, credited over the buying journeys and normalised to shares:
  ``first_touch``, ``last_touch``, ``last_non_direct`` (the last touch that is not a
  ``direct`` one, as Google Analytics' cross-channel last click and Matomo's "last non
  direct" do), ``linear`` (equal parts), ``position`` (40% first, 40% last, 20% shared by
  the middle; one touch takes all, two take half each: GA4's PositionBased) and
  ``time_decay`` (a touch's weight halves with every ``half_life`` between it and the
  purchase);
- ``shapley``: the players are the channels; the value of a set S is the purchase rate of
  the customers exposed to exactly S minus the rate of those exposed to none (every
  customer of the period counts, touched or not, and that base rate is credited to no
  channel); a set nobody was exposed to takes the best value of its subsets. Shares are
  the Shapley values (Shapley 1953; applied to attribution by Dalessandro et al. 2012,
  "Causally motivated attribution for online advertising") normalised to sum to one:
  exact over every subset up to 12 channels, estimated from ``samples`` random orders
  beyond (Castro, Gómez and Tejada 2009);
- ``markov``: the first-order chain of touch sequences from a start state to conversion or
  null, non-buying journeys included; a channel's removal effect is the share of the
  chain's conversion probability lost when its state leads to null (Anderl et al. 2016,
  "Mapping the customer journey"); shares are the normalised removal effects.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from crmkit._errors import ValidationError

__all__ = ["MODELS", "Journey", "Tally", "attribute", "shapley_values"]

MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "position", "time_decay", "shapley", "markov")
_RULES = frozenset(MODELS) - {"shapley", "markov"}
EXACT_UP_TO = 12


@attrs.frozen
class Journey:
    """One customer's touches, oldest first, and the moment of the purchase (None: did not buy)."""

    touches: tuple[tuple[str, dt.datetime], ...] = ()
    converted_at: dt.datetime | None = None

    @property
    def converted(self) -> bool:
        return self.converted_at is not None


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValidationError("model", f"must be one of {', '.join(MODELS)}", model)
    return model


def _rule_credit(
    model: str, touches: Sequence[tuple[str, dt.datetime]], at: dt.datetime, half_life: float, direct: Collection[str]
) -> dict[str, float]:
    n = len(touches)
    credit: dict[str, float] = defaultdict(float)
    if model == "first_touch":
        credit[touches[0][0]] = 1.0
    elif model == "last_touch":
        credit[touches[-1][0]] = 1.0
    elif model == "last_non_direct":
        chosen = next((c for c, _ in reversed(touches) if c not in direct), touches[-1][0])
        credit[chosen] = 1.0
    elif model == "linear":
        for c, _ in touches:
            credit[c] += 1.0 / n
    elif model == "position":
        if n == 1:
            credit[touches[0][0]] = 1.0
        elif n == 2:
            credit[touches[0][0]] += 0.5
            credit[touches[1][0]] += 0.5
        else:
            credit[touches[0][0]] += 0.4
            credit[touches[-1][0]] += 0.4
            for c, _ in touches[1:-1]:
                credit[c] += 0.2 / (n - 2)
    else:  # time_decay
        weights = [(c, 0.5 ** ((at - t).total_seconds() / half_life)) for c, t in touches]
        total = sum(w for _, w in weights)
        for c, w in weights:
            credit[c] += w / total
    return credit


class Tally:
    """What the models need from the journeys, accumulated one journey at a time."""

    def __init__(
        self, model: str, *, half_life: dt.timedelta = dt.timedelta(days=7), direct: Collection[str] = ("direct",)
    ) -> None:
        self.model = _check_model(model)
        if not isinstance(half_life, dt.timedelta) or half_life <= dt.timedelta(0):
            raise ValidationError("half_life", "must be a positive timedelta", half_life)
        self._half_life = half_life.total_seconds()
        self._direct = frozenset(direct)
        self.credit: dict[str, float] = defaultdict(float)
        #: exposure set -> [customers, buyers]
        self.exposure: dict[frozenset[str], list[int]] = defaultdict(lambda: [0, 0])
        #: Markov: (from, to) -> count, "(start)", "(conversion)" and "(null)" included.
        self.transitions: Counter[tuple[str, str]] = Counter()
        self.journeys = 0
        self.conversions = 0
        #: Every channel touched in a journey: each gets a share, zero when it earned none.
        self.channels: set[str] = set()

    def add(self, journey: Journey) -> None:
        at = journey.converted_at
        touches = journey.touches if at is None else tuple(t for t in journey.touches if t[1] <= at)
        self.journeys += 1
        self.conversions += at is not None
        self.channels.update(c for c, _ in touches)
        model = self.model
        if model in _RULES:
            if at is not None and touches:
                for c, share in _rule_credit(model, touches, at, self._half_life, self._direct).items():
                    self.credit[c] += share
        elif model == "shapley":
            cell = self.exposure[frozenset(c for c, _ in touches)]
            cell[0] += 1
            cell[1] += at is not None
        elif touches:  # markov: journeys without touches say nothing of channels
            path = ["(start)", *(c for c, _ in touches), "(conversion)" if at is not None else "(null)"]
            self.transitions.update(itertools.pairwise(path))

    def add_empty(self, count: int) -> None:
        """Customers of the period with neither touches nor purchases (Shapley's base rate counts them)."""
        self.journeys += count
        if self.model == "shapley" and count:
            self.exposure[frozenset()][0] += count

    def shares(self, *, samples: int = 2000, seed: int = 0) -> dict[str, float]:
        if self.model in _RULES:
            raw = dict(self.credit)
        elif self.model == "shapley":
            raw = shapley_values(self.exposure, samples=samples, seed=seed)
        else:
            raw = removal_effects(self.transitions)
        raw = {c: raw.get(c, 0.0) for c in self.channels | set(raw)}
        total = sum(v for v in raw.values() if v > 0)
        if total <= 0:
            return {c: 0.0 for c in sorted(raw)}
        return {c: max(v, 0.0) / total for c, v in sorted(raw.items())}


def attribute(
    journeys: Iterable[Journey],
    model: str = "shapley",
    *,
    half_life: dt.timedelta = dt.timedelta(days=7),
    direct: Collection[str] = ("direct",),
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Each channel's share of the purchases under ``model`` (shares sum to one; no purchase: all zero)."""
    tally = Tally(model, half_life=half_life, direct=direct)
    for journey in journeys:
        tally.add(journey)
    return tally.shares(samples=samples, seed=seed)


def shapley_values(
    exposure: Mapping[frozenset[str], Sequence[int]],
    *,
    samples: int = 2000,
    seed: int = 0,
    exact_up_to: int = EXACT_UP_TO,
) -> dict[str, float]:
    """Shapley values of channels from (customers, buyers) per exposure set, against the unexposed base rate:
    exact up to ``exact_up_to`` channels, the mean over ``samples`` random orders beyond."""
    players = sorted({c for s in exposure for c in s})
    if not players:
        return {}
    index = {c: i for i, c in enumerate(players)}
    rates: dict[int, float] = {}
    for s, (n, b) in exposure.items():
        if n:
            rates[sum(1 << index[c] for c in s)] = b / n
    base = rates.get(0, 0.0)
    memo: dict[int, float] = {0: 0.0}

    def value(mask: int) -> float:
        found = memo.get(mask)
        if found is not None:
            return found
        if mask in rates:
            result = rates[mask] - base
        else:  # nobody saw exactly this set: the best of its subsets one channel smaller
            result = max(value(mask & ~(1 << i)) for i in range(len(players)) if mask >> i & 1)
        memo[mask] = result
        return result

    n = len(players)
    phi = [0.0] * n
    if n <= exact_up_to:
        weight = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
        for mask in range(1 << n):
            size = bin(mask).count("1")
            v = value(mask)
            for i in range(n):
                if not mask >> i & 1:
                    phi[i] += weight[size] * (value(mask | 1 << i) - v)
    else:
        rng = random.Random(seed)
        order = list(range(n))
        for _ in range(samples):
            rng.shuffle(order)
            mask, v = 0, 0.0
            for i in order:
                mask |= 1 << i
                nv = value(mask)
                phi[i] += nv - v
                v = nv
        phi = [p / samples for p in phi]
    return dict(zip(players, phi, strict=True))


def removal_effects(transitions: Mapping[tuple[str, str], int]) -> dict[str, float]:
    """Each channel's removal effect in the first-order chain of the counted transitions."""
    out_total: Counter[str] = Counter()
    for (a, _), k in transitions.items():
        out_total[a] += k
    channels = sorted({s for pair in transitions for s in pair} - {"(start)", "(conversion)", "(null)"})
    prob: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), k in transitions.items():
        prob[a].append((b, k / out_total[a]))

    def conversion(removed: str | None) -> float:
        x = {c: 0.0 for c in channels}
        for _ in range(10_000):
            delta = 0.0
            for c in channels:
                if c == removed:
                    continue
                new = sum(p * (1.0 if b == "(conversion)" else x.get(b, 0.0)) for b, p in prob[c])
                delta = max(delta, abs(new - x[c]))
                x[c] = new
            if delta < 1e-12:
                break
        return sum(p * (1.0 if b == "(conversion)" else x.get(b, 0.0)) for b, p in prob["(start)"])

    total = conversion(None)
    if total <= 0:
        return {c: 0.0 for c in channels}
    return {c: 1.0 - conversion(c) / total for c in channels}


def exposure_sets(channels: Sequence[str]) -> Iterable[frozenset[str]]:
    """Every subset of the channels, smallest first."""
    for k in range(len(channels) + 1):
        for combo in itertools.combinations(channels, k):
            yield frozenset(combo)

"""A seeded simulator of customer journeys with known channel effects, for testing attribution.

Each customer is exposed to each channel independently (``exposure``), always in the
channels' order, a day apart; the purchase probability of a customer exposed to the set S
is ``1 - (1 - base) * prod(1 - lift[c] for c in S)`` (each channel an independent chance to
convince). The process's true Shapley shares and removal effects are computed exactly from
those probabilities, so a model's shares on simulated journeys can be compared with them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections import Counter
from collections.abc import Iterator

import attrs

from crmkit.marketing.attribution import Journey, removal_effects, shapley_values

__all__ = ["JourneySimulator"]

_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@attrs.frozen
class JourneySimulator:
    """Journeys over ``channels`` with exposure rates, purchase lifts and a base rate."""

    channels: tuple[str, ...] = ("awareness", "email", "retargeting")
    exposure: tuple[float, ...] = (0.6, 0.5, 0.7)
    lift: tuple[float, ...] = (0.05, 0.03, 0.01)
    base: float = 0.01

    def probability(self, exposed: frozenset[str]) -> float:
        """The purchase probability of a customer exposed to exactly these channels."""
        keep = 1.0 - self.base
        for channel, lift in zip(self.channels, self.lift, strict=True):
            if channel in exposed:
                keep *= 1.0 - lift
        return 1.0 - keep

    def _sets(self) -> Iterator[tuple[frozenset[str], float]]:
        for k in range(len(self.channels) + 1):
            for combo in itertools.combinations(range(len(self.channels)), k):
                chance = math.prod(
                    self.exposure[i] if i in combo else 1 - self.exposure[i] for i in range(len(self.channels))
                )
                yield frozenset(self.channels[i] for i in combo), chance

    def journeys(self, count: int, *, seed: int = 0) -> Iterator[Journey]:
        """``count`` journeys, the same for a seed."""
        rng = random.Random(seed)
        days = [dt.timedelta(days=i) for i in range(len(self.channels) + 1)]
        for n in range(count):
            start = _START + dt.timedelta(minutes=n)
            touches = tuple(
                (c, start + days[i])
                for i, (c, e) in enumerate(zip(self.channels, self.exposure, strict=True))
                if rng.random() < e
            )
            exposed = frozenset(c for c, _ in touches)
            bought = start + days[-1] if rng.random() < self.probability(exposed) else None
            yield Journey(touches, bought)

    def true_shapley(self) -> dict[str, float]:
        """The normalised Shapley shares of the process (value: purchase probability above the base)."""
        exact = {s: (10**12, round(self.probability(s) * 10**12)) for s, _ in self._sets()}
        values = shapley_values(exact)
        total = sum(values.values())
        return {c: v / total for c, v in sorted(values.items())}

    def true_removal_effects(self) -> dict[str, float]:
        """The normalised removal effects of the process's own first-order chain: the transition
        probabilities its path distribution implies (every exposure set's path, weighted by its
        chance, ending in a purchase with that set's probability), without sampling."""
        scale = 10**12
        counts: Counter[tuple[str, str]] = Counter()
        for exposed, chance in self._sets():
            if not exposed:
                continue
            path = ["(start)", *(c for c in self.channels if c in exposed)]
            bought = chance * self.probability(exposed)
            for pair in itertools.pairwise(path):
                counts[pair] += round(chance * scale)
            counts[(path[-1], "(conversion)")] += round(bought * scale)
            counts[(path[-1], "(null)")] += round((chance - bought) * scale)
        effects = removal_effects(counts)
        total = sum(effects.values())
        return {c: v / total for c, v in sorted(effects.items())}

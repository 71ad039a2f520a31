"""Acquisition cohorts: which customers, acquired in which period, still buy ``k`` periods later.

A customer's cohort is the calendar period of its first purchase. For cohort ``c`` and
``k`` periods since acquisition (``k = 0`` is the acquisition period):

* ``active``: customers of the cohort with a purchase in period ``c + k``;
* retention rate = active / cohort size;
* churn rate (``k >= 1``) = the share of the customers active in period ``k - 1`` who did
  not buy in period ``k`` (None when nobody was active in ``k - 1``).

Only periods up to the observation end appear; refunds are not purchases.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from crmkit._errors import ValidationError
from crmkit.transactions import Transaction
from crmkit.value.periods import PERIOD_UNITS, PeriodUnit, boundary, check_unit, day_of, period_index, period_start

__all__ = ["CohortCell", "CohortTable", "cohort_retention"]


@attrs.frozen
class CohortCell:
    """One cohort in one period since acquisition."""

    cohort: dt.date
    period: int
    customers: int
    active: int
    retention_rate: float
    churn_rate: float | None


@attrs.frozen
class CohortTable(Sequence[CohortCell]):
    """Every (cohort, period since acquisition) cell, sorted by cohort then period."""

    cells: tuple[CohortCell, ...]
    unit: str
    observation_end: dt.date | None

    def __getitem__(self, index: int) -> CohortCell:  # type: ignore[override]
        return self.cells[index]

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[CohortCell]:
        return iter(self.cells)

    @property
    def cohorts(self) -> tuple[dt.date, ...]:
        """The first day of each acquisition period, oldest first."""
        return tuple(dict.fromkeys(c.cohort for c in self.cells))

    @property
    def last_period_complete(self) -> bool | None:
        """Whether the table's last period had ended by the observation end (None without one).

        A table observed to the 15th of a month holds half of that month: its retention
        there is lower because the period is not over, not because customers left.
        """
        if self.observation_end is None:
            return None
        end = self.observation_end
        return period_index(end + dt.timedelta(days=1), self.unit) != period_index(end, self.unit)

    def sizes(self) -> Mapping[dt.date, int]:
        """Customers acquired in each cohort."""
        return {c.cohort: c.customers for c in self.cells if c.period == 0}

    def retention(self, cohort: dt.date) -> tuple[float, ...]:
        """Retention rates of one cohort, period 0 first."""
        rates = tuple(c.retention_rate for c in self.cells if c.cohort == cohort)
        if not rates:
            raise ValidationError("cohort", "is not a cohort of this table", cohort)
        return rates

    def format(self, *, periods: int = 12) -> str:
        """A text table: one line per cohort, its size, then retention in percent per period."""
        if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
            raise ValidationError("periods", "must be a positive integer", periods)
        head = f"{'cohort':<10} {'size':>6} " + " ".join(f"{k:>4}" for k in range(periods))
        lines = [head]
        sizes = self.sizes()
        for cohort in self.cohorts:
            rates = self.retention(cohort)[:periods]
            size = sizes[cohort]
            lines.append(f"{cohort.isoformat():<10} {size:>6} " + " ".join(f"{r * 100:>3.0f}%" for r in rates))
        return "\n".join(lines)


class CohortCounter:
    """Builds a cohort table one customer at a time (bounded memory: counters per cell only)."""

    def __init__(self, unit: str, end: int | None) -> None:
        self.unit = unit
        self.end = end
        self.last_seen: int | None = None
        self.active: Counter[tuple[int, int]] = Counter()
        self.lost: Counter[tuple[int, int]] = Counter()

    def add(self, periods: set[int]) -> None:
        """Count one customer from the set of period numbers in which it bought."""
        if not periods:
            return
        cohort = min(periods)
        latest = max(periods)
        self.last_seen = latest if self.last_seen is None else max(self.last_seen, latest)
        for p in periods:
            self.active[(cohort, p - cohort)] += 1
            if p + 1 not in periods:
                self.lost[(cohort, p + 1 - cohort)] += 1

    def table(self, observation_end: dt.date | None) -> CohortTable:
        end = self.end if self.end is not None else self.last_seen
        cells = []
        for cohort in sorted({c for c, k in self.active if k == 0}):
            size = self.active[(cohort, 0)]
            for k in range(0, (end if end is not None else cohort) - cohort + 1):
                active = self.active[(cohort, k)]
                before = self.active[(cohort, k - 1)] if k else 0
                churn = self.lost[(cohort, k)] / before if k and before else None
                cells.append(CohortCell(period_start(cohort, self.unit), k, size, active, active / size, churn))
        return CohortTable(tuple(cells), self.unit, observation_end)


def cohort_retention(
    transactions: Iterable[Transaction],
    *,
    unit: PeriodUnit,
    observation_end: dt.date | dt.datetime | None = None,
) -> CohortTable:
    """The cohort retention table from any iterable of transactions.

    ``unit`` is day, week (Monday to Sunday), month, quarter or year. Transactions after
    ``observation_end`` are ignored; without it the table ends with the last purchase
    period seen. Memory grows with (customer, purchase period) pairs.
    """
    check_unit(unit, PERIOD_UNITS)
    end_day, until = (None, None) if observation_end is None else boundary(observation_end, "observation_end")
    if isinstance(transactions, (str, bytes)) or not isinstance(transactions, Iterable):
        raise ValidationError("transactions", "must be an iterable of crmkit.Transaction", transactions)
    periods: dict[uuid.UUID, set[int]] = {}
    for row, t in enumerate(transactions):
        if not isinstance(t, Transaction):
            raise ValidationError("transactions", "must hold crmkit.Transaction objects", t).at_row(row)
        if t.kind != "purchase" or (until is not None and t.occurred_at > until):
            continue
        periods.setdefault(t.customer_id, set()).add(period_index(day_of(t.occurred_at), unit))
    counter = CohortCounter(unit, None if end_day is None else period_index(end_day, unit))
    for customer_periods in periods.values():
        counter.add(customer_periods)
    return counter.table(end_day)

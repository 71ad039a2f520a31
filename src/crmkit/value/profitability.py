"""Customer profitability, acquisition-cost payback, and the whale curve of profit.

Per customer (all money in Decimal, costs supplied by the application):

* revenue = purchases - refunds;
* cost of goods: revenue x (1 - margin), or the sum of ``line_cost(line)`` over the line
  items (refunded lines give their cost back);
* cost to serve: a cost per interaction, per channel, or computed per interaction;
* acquisition cost: per acquired customer (one with a purchase), given as one amount, per
  customer, or computed from the customer id and the acquisition time (per channel, per
  cohort);
* contribution = revenue - cost of goods - cost to serve; profit = contribution - acquisition cost.

Payback: periods are counted from the acquisition period (period 1, that of the first
purchase). A customer's payback period is the first period at whose end the cumulative
contribution covers the acquisition cost; a cohort's, the first at whose end the cohort's
cumulative contribution covers the acquisition cost of all its customers. None when not
(yet) paid back by the observation end. Costs of interactions before the first purchase
count in period 1.

Money is in ``currency``: a transaction in another currency counts when ``rates``
converts it (its line costs too) and is left out otherwise; the acquisition (the first
purchase) is timing and counts purchases in every currency (see ``crmkit.value.currencies``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal

import attrs

from crmkit._errors import NotFound, ValidationError
from crmkit.interactions import Interaction
from crmkit.transactions import LineItem, Transaction
from crmkit.value.currencies import Rates, check_currency, check_rates, rate_for
from crmkit.value.historic import check_margin
from crmkit.value.periods import PERIOD_UNITS, PeriodUnit, boundary, check_unit, day_of, period_index, period_start

__all__ = [
    "AcquisitionCost",
    "CohortPayback",
    "CostToServe",
    "CustomerProfit",
    "Decile",
    "Profitability",
    "WhaleCurve",
    "profitability",
    "whale_curve",
]

_ZERO = Decimal(0)

#: One amount per interaction, an amount per channel, or a function of the interaction.
CostToServe = Decimal | int | Mapping[str, Decimal] | Callable[[Interaction], Decimal]
#: One amount per acquired customer, an amount per customer id, or a function of (customer id, acquired at).
AcquisitionCost = Decimal | int | Mapping[uuid.UUID, Decimal] | Callable[[uuid.UUID, dt.datetime], Decimal]


@attrs.frozen
class CustomerProfit:
    """What one customer brought in and cost, and when it paid back its acquisition cost."""

    customer_id: uuid.UUID
    acquired_at: dt.datetime | None
    cohort: dt.date | None
    purchases: int
    interactions: int
    revenue: Decimal
    cost_of_goods: Decimal
    cost_to_serve: Decimal
    acquisition_cost: Decimal
    payback_period: int | None

    @property
    def gross_margin(self) -> Decimal:
        """Revenue minus cost of goods."""
        return self.revenue - self.cost_of_goods

    @property
    def contribution(self) -> Decimal:
        """Gross margin minus cost to serve."""
        return self.gross_margin - self.cost_to_serve

    @property
    def profit(self) -> Decimal:
        """Contribution minus acquisition cost."""
        return self.contribution - self.acquisition_cost


@attrs.frozen
class CohortPayback:
    """An acquisition cohort's cumulative contribution per period and its payback period."""

    cohort: dt.date
    customers: int
    acquisition_cost: Decimal
    #: Cumulative contribution at the end of period 1, 2, ... up to the observation end.
    cumulative_contribution: tuple[Decimal, ...]
    payback_period: int | None
    #: Customers of the cohort that have individually paid back.
    paid_back: int


@attrs.frozen
class Decile:
    """A tenth of the customers ranked by profit (1 = the most profitable tenth)."""

    decile: int
    customers: int
    profit: Decimal
    cumulative_profit: Decimal
    cumulative_share: float


@attrs.frozen
class WhaleCurve:
    """Cumulative share of total profit against share of customers, most profitable first.

    The curve rises above 1 (100 %) when the unprofitable customers destroy part of the
    profit the best ones make; ``peak_share`` says how high, at ``peak_customer_share``.
    """

    total_profit: Decimal
    #: (customer share, cumulative profit share) after each customer, from (0, 0).
    points: tuple[tuple[float, float], ...]
    deciles: tuple[Decile, ...]
    peak_share: float
    peak_customer_share: float
    most_valuable: tuple[CustomerProfit, ...]
    unprofitable: tuple[CustomerProfit, ...]


@attrs.frozen
class Profitability(Sequence[CustomerProfit]):
    """Profit per customer (sorted by customer id) and payback per acquisition cohort."""

    customers: tuple[CustomerProfit, ...]
    cohorts: tuple[CohortPayback, ...]
    unit: str
    observation_end: dt.date | None

    def __getitem__(self, index: int) -> CustomerProfit:  # type: ignore[override]
        return self.customers[index]

    def __len__(self) -> int:
        return len(self.customers)

    def __iter__(self) -> Iterator[CustomerProfit]:
        return iter(self.customers)

    @property
    def total_profit(self) -> Decimal:
        return sum((c.profit for c in self.customers), _ZERO)

    def get(self, customer_id: uuid.UUID) -> CustomerProfit:
        """One customer's profit; NotFound if it had neither purchases nor interactions."""
        for c in self.customers:
            if c.customer_id == customer_id:
                return c
        raise NotFound("customer profit", customer_id)

    def cohort(self, cohort: dt.date) -> CohortPayback:
        """The payback of the cohort starting on that day."""
        for c in self.cohorts:
            if c.cohort == cohort:
                return c
        raise NotFound("cohort", cohort)

    def whale_curve(self, *, top: int = 10) -> WhaleCurve:
        """The whale curve of these customers (see ``whale_curve``)."""
        return whale_curve(self.customers, top=top)


def _amount(value: object, field: str, row: int | None = None) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)) or not Decimal(value).is_finite() or value < 0:
        err = ValidationError(field, "must be a non-negative Decimal (floats are not exact money)", value)
        raise err if row is None else err.at_row(row)
    return Decimal(value)


def _serve_cost(cost_to_serve: object) -> Callable[[Interaction, int], Decimal]:
    if isinstance(cost_to_serve, (Decimal, int)) and not isinstance(cost_to_serve, bool):
        each = _amount(cost_to_serve, "cost_to_serve")
        return lambda i, row: each
    if isinstance(cost_to_serve, Mapping):
        costs = {str(k): _amount(v, f"cost_to_serve[{k!r}]") for k, v in cost_to_serve.items()}

        def by_channel(i: Interaction, row: int) -> Decimal:
            if i.channel not in costs:
                raise ValidationError("cost_to_serve", f"has no cost for channel {str(i.channel)!r}", i).at_row(row)
            return costs[i.channel]

        return by_channel
    if callable(cost_to_serve):
        return lambda i, row: _amount(cost_to_serve(i), "cost_to_serve", row)
    raise ValidationError(
        "cost_to_serve", "must be a Decimal, a mapping of channel to Decimal, or a function", cost_to_serve
    )


def _acquisition_cost(acquisition_cost: object) -> Callable[[uuid.UUID, dt.datetime], Decimal]:
    if isinstance(acquisition_cost, (Decimal, int)) and not isinstance(acquisition_cost, bool):
        each = _amount(acquisition_cost, "acquisition_cost")
        return lambda c, at: each
    if isinstance(acquisition_cost, Mapping):
        costs = dict(acquisition_cost)

        def per_customer(c: uuid.UUID, at: dt.datetime) -> Decimal:
            if c not in costs:
                raise ValidationError("acquisition_cost", f"has no cost for customer {c}", None)
            return _amount(costs[c], f"acquisition_cost[{c}]")

        return per_customer
    if callable(acquisition_cost):
        return lambda c, at: _amount(acquisition_cost(c, at), f"acquisition_cost for customer {c}")
    raise ValidationError(
        "acquisition_cost", "must be a Decimal, a mapping of customer id to Decimal, or a function", acquisition_cost
    )


def _goods_cost(margin: object, line_cost: object) -> Callable[[Transaction, int], Decimal]:
    if (margin is None) == (line_cost is None):
        raise ValidationError("margin", "give exactly one of margin (a rate) or line_cost (a function)", margin)
    if margin is not None:
        share = 1 - check_margin(margin)
        return lambda t, row: t.amount * share
    if not callable(line_cost):
        raise ValidationError("line_cost", "must be a function of a LineItem returning a Decimal", line_cost)

    def by_lines(t: Transaction, row: int) -> Decimal:
        if not t.line_items:
            raise ValidationError("transactions", "has no line items for line_cost to cost", t).at_row(row)
        return sum((_line(line_cost, line, row) for line in t.line_items), _ZERO)

    return by_lines


def _line(line_cost: Callable[[LineItem], object], line: LineItem, row: int) -> Decimal:
    return _amount(line_cost(line), "line_cost", row)


@attrs.define
class Ledger:
    """One customer's money and activity, by period."""

    revenue: Decimal = _ZERO
    cost_of_goods: Decimal = _ZERO
    cost_to_serve: Decimal = _ZERO
    purchases: int = 0
    interactions: int = 0
    first: dt.datetime | None = None
    by_period: dict[int, Decimal] = attrs.field(factory=dict)

    def book(self, period: int, amount: Decimal) -> None:
        self.by_period[period] = self.by_period.get(period, _ZERO) + amount


class ProfitBook:
    """Turns transactions and interactions into ledgers, then ledgers into profits and cohorts."""

    def __init__(
        self,
        *,
        unit: object,
        margin: object,
        line_cost: object,
        cost_to_serve: object,
        acquisition_cost: object,
        currency: object,
        observation_end: object,
        rates: object = None,
    ) -> None:
        self.unit = check_unit(unit, PERIOD_UNITS)
        self.goods = _goods_cost(margin, line_cost)
        self.serve = _serve_cost(cost_to_serve)
        self.acquire = _acquisition_cost(acquisition_cost)
        self.currency: str | None = check_currency(currency)
        self.currency_given = currency is not None
        self.rate = rate_for(self.currency, check_rates(rates))
        self.end_day: dt.date | None = None
        self.until: dt.datetime | None = None
        if observation_end is not None:
            self.end_day, self.until = boundary(observation_end, "observation_end")
        self.last_seen: int | None = None
        self.profits: list[CustomerProfit] = []
        self.cohort_sizes: dict[int, int] = {}
        self.cohort_costs: dict[int, Decimal] = {}
        self.cohort_flows: dict[int, dict[int, Decimal]] = {}
        self.cohort_paid: dict[int, int] = {}

    def _period(self, moment: dt.datetime) -> int:
        p = period_index(day_of(moment), self.unit)
        self.last_seen = p if self.last_seen is None else max(self.last_seen, p)
        return p

    def add_transaction(self, ledger: Ledger, t: Transaction, row: int) -> bool:
        """Book a transaction; False if it is outside the observation or in another currency."""
        if self.until is not None and t.occurred_at > self.until:
            return False
        if self.currency is None:
            self.currency = t.currency
            self.rate = rate_for(t.currency, None)
        rate = self.rate(t.currency)
        if rate is None:
            if not self.currency_given:
                both = f"{self.currency} and {t.currency}"
                err = ValidationError("currency", f"transactions are in {both}: pass currency= (and rates=)", t)
                raise err.at_row(row)
            if t.kind == "purchase":  # not money in this currency, but still the customer's purchase
                ledger.first = t.occurred_at if ledger.first is None else min(ledger.first, t.occurred_at)
            return False
        sign = -1 if t.kind == "refund" else 1
        revenue, goods = sign * t.amount, sign * self.goods(t, row)
        if rate != 1:
            revenue, goods = revenue * rate, goods * rate
        ledger.revenue += revenue
        ledger.cost_of_goods += goods
        ledger.book(self._period(t.occurred_at), revenue - goods)
        if t.kind == "purchase":
            ledger.purchases += 1
            ledger.first = t.occurred_at if ledger.first is None else min(ledger.first, t.occurred_at)
        return True

    def add_interaction(self, ledger: Ledger, i: Interaction, row: int) -> bool:
        """Book an interaction's cost to serve; False if it is after the observation end."""
        if self.until is not None and i.occurred_at > self.until:
            return False
        cost = self.serve(i, row)
        ledger.cost_to_serve += cost
        ledger.interactions += 1
        ledger.book(self._period(i.occurred_at), -cost)
        return True

    def end(self) -> int | None:
        return period_index(self.end_day, self.unit) if self.end_day is not None else self.last_seen

    def close(self, customer_id: uuid.UUID, ledger: Ledger, end: int | None) -> None:
        """Work out one customer's profit and payback and add it to its cohort."""
        acquired = ledger.first
        cohort = payback = None
        cost = _ZERO
        if acquired is not None and end is not None:
            cohort = period_index(day_of(acquired), self.unit)
            cost = self.acquire(customer_id, acquired)
            flows = self.cohort_flows.setdefault(cohort, {})
            cumulative = _ZERO
            for k in range(end - cohort + 1):
                amount = ledger.by_period.get(cohort + k, _ZERO)
                if k == 0:  # interactions before the first purchase belong to the acquisition period
                    amount += sum((v for p, v in ledger.by_period.items() if p < cohort), _ZERO)
                cumulative += amount
                flows[k] = flows.get(k, _ZERO) + amount
                if payback is None and cumulative >= cost:
                    payback = k + 1
            self.cohort_sizes[cohort] = self.cohort_sizes.get(cohort, 0) + 1
            self.cohort_costs[cohort] = self.cohort_costs.get(cohort, _ZERO) + cost
            self.cohort_paid[cohort] = self.cohort_paid.get(cohort, 0) + (payback is not None)
        self.profits.append(
            CustomerProfit(
                customer_id=customer_id,
                acquired_at=acquired,
                cohort=None if cohort is None else period_start(cohort, self.unit),
                purchases=ledger.purchases,
                interactions=ledger.interactions,
                revenue=ledger.revenue,
                cost_of_goods=ledger.cost_of_goods,
                cost_to_serve=ledger.cost_to_serve,
                acquisition_cost=cost,
                payback_period=payback,
            )
        )

    def result(self) -> Profitability:
        cohorts = []
        for cohort in sorted(self.cohort_sizes):
            flows = self.cohort_flows[cohort]
            total_cost = self.cohort_costs[cohort]
            cumulative: list[Decimal] = []
            running = _ZERO
            payback = None
            for k in range(len(flows)):
                running += flows[k]
                cumulative.append(running)
                if payback is None and running >= total_cost:
                    payback = k + 1
            cohorts.append(
                CohortPayback(
                    cohort=period_start(cohort, self.unit),
                    customers=self.cohort_sizes[cohort],
                    acquisition_cost=total_cost,
                    cumulative_contribution=tuple(cumulative),
                    payback_period=payback,
                    paid_back=self.cohort_paid[cohort],
                )
            )
        customers = tuple(sorted(self.profits, key=lambda p: p.customer_id))
        return Profitability(customers, tuple(cohorts), self.unit, self.end_day)


def _iterable(items: object, field: str, kind: str) -> Iterable[object]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValidationError(field, f"must be an iterable of crmkit.{kind}", items)
    return items


def profitability(
    transactions: Iterable[Transaction],
    *,
    unit: PeriodUnit,
    margin: Decimal | None = None,
    line_cost: Callable[[LineItem], Decimal] | None = None,
    interactions: Iterable[Interaction] = (),
    cost_to_serve: CostToServe = 0,
    acquisition_cost: AcquisitionCost = 0,
    currency: str | None = None,
    observation_end: dt.date | dt.datetime | None = None,
    rates: Rates | None = None,
) -> Profitability:
    """Profit and payback per customer and cohort from transactions and interactions.

    Give exactly one of ``margin`` (the gross-margin rate, 0 to 1) or ``line_cost`` (cost
    of goods of one line item). ``unit`` (day, week, month, quarter, year) sets the payback
    periods and cohorts. Records after ``observation_end`` are ignored; without it the last
    period with a record ends the observation. See the module docstring for the formulas.
    """
    book = ProfitBook(
        unit=unit,
        margin=margin,
        line_cost=line_cost,
        cost_to_serve=cost_to_serve,
        acquisition_cost=acquisition_cost,
        currency=currency,
        observation_end=observation_end,
        rates=rates,
    )
    ledgers: dict[uuid.UUID, Ledger] = {}
    booked: set[uuid.UUID] = set()
    for row, t in enumerate(_iterable(transactions, "transactions", "Transaction")):
        if not isinstance(t, Transaction):
            raise ValidationError("transactions", "must hold crmkit.Transaction objects", t).at_row(row)
        if book.add_transaction(ledgers.setdefault(t.customer_id, Ledger()), t, row):
            booked.add(t.customer_id)
    for row, i in enumerate(_iterable(interactions, "interactions", "Interaction")):
        if not isinstance(i, Interaction):
            raise ValidationError("interactions", "must hold crmkit.Interaction objects", i).at_row(row)
        if book.add_interaction(ledgers.setdefault(i.customer_id, Ledger()), i, row):
            booked.add(i.customer_id)
    end = book.end()
    for customer_id, ledger in ledgers.items():
        if customer_id in booked:
            book.close(customer_id, ledger, end)
    return book.result()


def whale_curve(profits: Iterable[CustomerProfit], *, top: int = 10) -> WhaleCurve:
    """Rank customers by profit and accumulate: the whale curve, deciles, best and unprofitable customers.

    ``most_valuable`` holds the ``top`` most profitable customers; ``unprofitable`` every
    customer with a negative profit, the worst first. The total profit must be positive.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValidationError("top", "must be a non-negative integer", top)
    ranked = []
    for row, p in enumerate(_iterable(profits, "profits", "value.CustomerProfit")):
        if not isinstance(p, CustomerProfit):
            raise ValidationError("profits", "must hold CustomerProfit objects", p).at_row(row)
        ranked.append(p)
    ranked.sort(key=lambda p: (-p.profit, p.customer_id))
    total = sum((p.profit for p in ranked), _ZERO)
    if total <= 0:
        raise ValidationError("profits", "total profit is not positive, so shares of it mean nothing", total)
    n = len(ranked)
    points = [(0.0, 0.0)]
    running = _ZERO
    peak, peak_at = 0.0, 0.0
    decile_profit = [_ZERO] * 10
    decile_size = [0] * 10
    for i, p in enumerate(ranked):
        running += p.profit
        share = float(running / total)
        points.append(((i + 1) / n, share))
        if share > peak:
            peak, peak_at = share, (i + 1) / n
        d = (10 * i) // n
        decile_profit[d] += p.profit
        decile_size[d] += 1
    deciles = []
    cumulative = _ZERO
    for d in range(10):
        cumulative += decile_profit[d]
        deciles.append(Decile(d + 1, decile_size[d], decile_profit[d], cumulative, float(cumulative / total)))
    losers = tuple(sorted((p for p in ranked if p.profit < 0), key=lambda p: (p.profit, p.customer_id)))
    return WhaleCurve(
        total_profit=total,
        points=tuple(points),
        deciles=tuple(deciles),
        peak_share=peak,
        peak_customer_share=peak_at,
        most_valuable=tuple(ranked[:top]),
        unprofitable=losers,
    )

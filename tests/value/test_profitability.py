"""Customer profitability, acquisition-cost payback per customer and cohort, and the whale curve."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

import crmkit
from crmkit import Channel, Customer, Interaction, LineItem, Transaction
from crmkit.value import period_of, profitability, whale_curve

UTC = dt.timezone.utc
STEADY = [uuid.UUID(int=n) for n in (1, 2, 3)]  # acquired January 2023, buy every month
LATE = uuid.UUID(int=4)  # acquired January 2024: observed for one year only
WHALE = uuid.UUID(int=5)
DRAIN = uuid.UUID(int=6)  # buys little and calls a lot
END = dt.date(2024, 12, 31)


def month(year: int, m: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, m, day, 10, tzinfo=UTC)


def months(first_year: int, last_year: int):  # type: ignore[no-untyped-def]
    return [month(y, m) for y in range(first_year, last_year + 1) for m in range(1, 13)]


def purchase(customer: uuid.UUID, when: dt.datetime, amount: str, **kw: object) -> Transaction:
    return Transaction(customer_id=customer, occurred_at=when, amount=Decimal(amount), currency="EUR", **kw)  # type: ignore[arg-type]


def contact(customer: uuid.UUID, when: dt.datetime, channel: Channel = Channel.PHONE) -> Interaction:
    return Interaction(customer_id=customer, channel=channel, direction="outbound", occurred_at=when)


def sales() -> list[Transaction]:
    rows = [purchase(c, t, "40.00") for c in STEADY for t in months(2023, 2024)]
    rows += [purchase(LATE, t, "40.00") for t in months(2024, 2024)]
    rows += [purchase(WHALE, month(2023, 6), "2000.00"), purchase(WHALE, month(2024, 6), "3000.00")]
    rows += [purchase(DRAIN, month(2023, 2), "30.00"), purchase(DRAIN, month(2023, 3), "30.00", kind="refund")]
    return rows


def contacts() -> list[Interaction]:
    # onboarding: three calls and an e-mail in the first months of every new customer
    rows = [contact(c, month(2023, m, 20)) for c in STEADY for m in (1, 2, 3)]
    rows += [contact(c, month(2023, 1, 2), Channel.EMAIL) for c in STEADY]  # before the first purchase
    rows += [contact(LATE, month(2024, m, 20)) for m in (1, 2, 3)]
    rows += [contact(DRAIN, month(2023, m, 1)) for m in range(1, 13)]
    return rows


COSTS = {"phone": Decimal("15.00"), "email": Decimal("1.00")}


def test_new_customers_pay_back_only_in_their_second_year() -> None:
    """Reichheld and Sasser (1996): most new customers become profitable in their second year."""
    result = profitability(
        sales(), unit="year", margin=Decimal("0.25"), interactions=contacts(), cost_to_serve=COSTS,
        acquisition_cost=Decimal("150.00"), observation_end=END,
    )
    for customer in STEADY:
        p = result.get(customer)
        # year 1: 12 x 10 margin - 3 calls - 1 e-mail = 74 < 150; year 2 adds 120 -> 194
        assert (p.revenue, p.gross_margin) == (Decimal("960.00"), Decimal("240.0000"))
        assert p.cost_to_serve == Decimal("46.00")
        assert p.acquisition_cost == Decimal("150.00") and p.profit == Decimal("44.0000")
        assert p.payback_period == 2
        assert p.acquired_at == month(2023, 1) and p.cohort == dt.date(2023, 1, 1)
    assert result.get(LATE).payback_period is None  # only one year observed: not yet
    assert result.get(WHALE).payback_period == 1
    cohort_2023 = result.cohort(dt.date(2023, 1, 1))
    assert cohort_2023.customers == 5 and cohort_2023.acquisition_cost == Decimal(750)
    # year 1: 3 x 74 + the whale's 500 - the drain's 180 calls = 542 < 750; year 2 covers it
    assert cohort_2023.cumulative_contribution == (Decimal(542), Decimal(1652))
    assert cohort_2023.payback_period == 2
    assert result.cohort(dt.date(2024, 1, 1)).payback_period is None
    assert cohort_2023.paid_back == 4  # the three steady customers and the whale, not the drain


def test_monthly_payback_falls_in_months_13_to_24() -> None:
    result = profitability(
        [t for t in sales() if t.customer_id in STEADY], unit="month", margin=Decimal("0.25"),
        interactions=[i for i in contacts() if i.customer_id in STEADY], cost_to_serve=COSTS,
        acquisition_cost=Decimal("150.00"), observation_end=END,
    )
    assert {result.get(c).payback_period for c in STEADY} == {20}  # 10 per month - 46 >= 150 after 20 months
    cohort = result.cohort(dt.date(2023, 1, 1))
    assert cohort.payback_period == 20 and len(cohort.cumulative_contribution) == 24
    assert cohort.cumulative_contribution[0] == Decimal(3) * (10 - 15 - 1)
    assert all(13 <= (p.payback_period or 0) <= 24 for p in result)


def test_the_whale_curve_names_the_best_and_the_unprofitable() -> None:
    result = profitability(
        sales(), unit="year", margin=Decimal("0.25"), interactions=contacts(), cost_to_serve=COSTS,
        acquisition_cost=Decimal("150.00"), observation_end=END,
    )
    drain = result.get(DRAIN)
    assert drain.revenue == 0 and drain.cost_to_serve == Decimal(180) and drain.profit == Decimal(-330)
    curve = result.whale_curve(top=2)
    assert curve.most_valuable[0].customer_id == WHALE
    assert [p.customer_id for p in curve.unprofitable] == [DRAIN, LATE]  # worst first
    assert curve.total_profit == result.total_profit
    assert curve.points[0] == (0.0, 0.0) and curve.points[-1] == (1.0, pytest.approx(1.0))
    assert curve.peak_share > 1  # unprofitable customers destroy part of the profit
    assert curve.deciles[-1].cumulative_share == pytest.approx(1.0)
    assert sum(d.customers for d in curve.deciles) == len(result) == 6
    with pytest.raises(crmkit.ValidationError, match="not positive"):
        whale_curve([drain])


def test_line_costs_and_acquisition_cost_per_cohort() -> None:
    unit_cost = {"album": Decimal("7.50"), "single": Decimal("0.75")}
    album, single = LineItem("album", 1, Decimal(10)), LineItem("single", 1, Decimal(1))
    rows = [
        purchase(STEADY[0], month(2023, 1), "11.00", line_items=[album, single]),
        purchase(STEADY[1], month(2023, 2), "20.00", line_items=[LineItem("album", 2, Decimal(10))]),
    ]
    per_month = {dt.date(2023, 1, 1): Decimal(1), dt.date(2023, 2, 1): Decimal(20)}
    result = profitability(
        rows, unit="month", line_cost=lambda line: unit_cost[line.product] * line.quantity,
        acquisition_cost=lambda customer, acquired_at: per_month[period_of(acquired_at, "month")],
    )
    first, second = result.get(STEADY[0]), result.get(STEADY[1])
    assert first.cost_of_goods == Decimal("8.25") and first.acquisition_cost == 1 and first.payback_period == 1
    assert second.cost_of_goods == Decimal("15.00") and second.payback_period is None
    assert result.observation_end is None and len(result.cohorts) == 2
    with pytest.raises(crmkit.ValidationError) as info:
        profitability(rows, unit="month", line_cost=lambda line: 0.5)  # type: ignore[arg-type, return-value]
    assert (info.value.field, info.value.row) == ("line_cost", 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "margin"),  # neither margin nor line_cost
        ({"margin": Decimal("0.2"), "line_cost": lambda line: Decimal(0)}, "margin"),
        ({"margin": 0.2}, "margin"),
        ({"margin": Decimal("1.5")}, "margin"),
        ({"margin": Decimal("0.2"), "unit": "decade"}, "unit"),
        ({"margin": Decimal("0.2"), "cost_to_serve": {"phone": Decimal(1)}}, "cost_to_serve"),  # e-mail has no cost
        ({"margin": Decimal("0.2"), "cost_to_serve": "cheap"}, "cost_to_serve"),
        ({"margin": Decimal("0.2"), "acquisition_cost": Decimal(-1)}, "acquisition_cost"),
        ({"margin": Decimal("0.2"), "acquisition_cost": {}}, "acquisition_cost"),
        ({"line_cost": lambda line: Decimal(0)}, "transactions"),  # no line items to cost
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], field: str) -> None:
    kwargs = {"unit": "month", **kwargs}
    with pytest.raises(crmkit.ValidationError) as info:
        profitability(sales(), interactions=contacts(), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_rows_are_named() -> None:
    with pytest.raises(crmkit.ValidationError) as info:
        profitability([sales()[0], None], unit="month", margin=Decimal(1))  # type: ignore[list-item]
    assert (info.value.field, info.value.row) == ("transactions", 1)
    with pytest.raises(crmkit.ValidationError) as info:
        profitability([], unit="month", margin=Decimal(1), interactions=[contacts()[0], 5])  # type: ignore[list-item]
    assert (info.value.field, info.value.row) == ("interactions", 1)


def test_store_profitability_matches_the_iterable() -> None:
    kwargs = {
        "unit": "quarter", "margin": Decimal("0.25"), "cost_to_serve": COSTS,
        "acquisition_cost": Decimal("150.00"), "observation_end": END,
    }
    with crmkit.connect("memory://", clock=lambda: dt.datetime(2025, 1, 1, tzinfo=UTC)) as crm:
        for n in range(1, 8):  # customer 7 has neither purchases nor interactions
            crm.customers.add(Customer(kind="person", name=f"c{n}", id=uuid.UUID(int=n)))
        crm.transactions.add_many(sales())
        crm.interactions.add_many(contacts())
        stored = crm.value.profitability(**kwargs)  # type: ignore[arg-type]
        assert stored == profitability(sales(), interactions=contacts(), **kwargs)  # type: ignore[arg-type]
        assert len(stored) == 6
        by_clock = crm.value.profitability(unit="quarter", margin=Decimal("0.25"))
        assert by_clock.observation_end == dt.date(2025, 1, 1)

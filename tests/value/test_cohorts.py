"""Cohort retention tables and historic value (AOV, purchase frequency, historic CLV)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

import crmkit
from crmkit import Customer, Transaction
from crmkit.summaries import summarize
from crmkit.value import cohort_retention, historic_values, period_of, value_metrics
from crmkit.value.periods import period_index, period_start

UTC = dt.timezone.utc


def buy(n: int, day: dt.date, amount: str = "10.00", kind: str = "purchase") -> Transaction:
    return Transaction(customer_id=uuid.UUID(int=n), occurred_at=dt.datetime.combine(day, dt.time(8), UTC),
                       amount=Decimal(amount), currency="EUR", kind=kind)  # type: ignore[arg-type]


JAN, FEB, MAR, APR = (dt.date(2024, m, 10) for m in (1, 2, 3, 4))
HISTORY = [
    # January cohort: 1 buys every month, 2 in Jan and Mar, 3 only in Jan, 4 in Jan + refund in Feb
    buy(1, JAN), buy(1, FEB), buy(1, MAR), buy(1, APR),
    buy(2, JAN), buy(2, MAR), buy(2, JAN + dt.timedelta(days=1)),
    buy(3, JAN),
    buy(4, JAN), buy(4, FEB, kind="refund"),
    # February cohort
    buy(5, FEB), buy(5, MAR), buy(6, FEB),
]


def test_monthly_retention_and_churn_by_hand() -> None:
    table = cohort_retention(HISTORY, unit="month", observation_end=dt.date(2024, 3, 31))
    assert table.cohorts == (dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    assert table.sizes() == {dt.date(2024, 1, 1): 4, dt.date(2024, 2, 1): 2}
    jan = [c for c in table if c.cohort == dt.date(2024, 1, 1)]
    assert [(c.period, c.active) for c in jan] == [(0, 4), (1, 1), (2, 2)]  # April is after the end
    assert table.retention(dt.date(2024, 1, 1)) == (1.0, 0.25, 0.5)
    assert jan[0].churn_rate is None
    assert jan[1].churn_rate == 0.75  # 2, 3 and 4 did not buy in February
    assert jan[2].churn_rate == 0.0  # the one February buyer bought again in March
    feb = [c for c in table if c.cohort == dt.date(2024, 2, 1)]
    assert [(c.period, c.active, c.churn_rate) for c in feb] == [(0, 2, None), (1, 1, 0.5)]
    text = table.format(periods=3)
    assert text.splitlines()[1].split() == ["2024-01-01", "4", "100%", "25%", "50%"]


def test_without_an_end_the_table_stops_at_the_last_purchase() -> None:
    table = cohort_retention(HISTORY, unit="month")
    assert max(c.period for c in table if c.cohort == dt.date(2024, 1, 1)) == 3
    assert table.observation_end is None


def test_quarterly_and_weekly_cohorts() -> None:
    quarters = cohort_retention(HISTORY, unit="quarter")
    assert [(c.cohort, c.period, c.active) for c in quarters] == [
        (dt.date(2024, 1, 1), 0, 6),
        (dt.date(2024, 1, 1), 1, 1),
    ]
    weeks = cohort_retention(HISTORY, unit="week")
    assert weeks.cohorts[0] == dt.date(2024, 1, 8)  # the Monday of 10 January 2024


def test_periods_round_trip() -> None:
    day = dt.date(2023, 11, 29)
    for unit in ("day", "week", "month", "quarter", "year"):
        start = period_start(period_index(day, unit), unit)
        assert start <= day and period_index(start, unit) == period_index(day, unit)
        assert period_index(start - dt.timedelta(days=1), unit) == period_index(day, unit) - 1
    assert period_of(dt.datetime(2024, 3, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2))), "month") == dt.date(
        2024, 4, 1
    )  # the UTC day decides


def test_bad_cohort_input_is_named() -> None:
    with pytest.raises(crmkit.ValidationError) as info:
        cohort_retention(HISTORY, unit="fortnight")  # type: ignore[arg-type]
    assert info.value.field == "unit"
    with pytest.raises(crmkit.ValidationError) as info:
        cohort_retention([HISTORY[0], 3], unit="month")  # type: ignore[list-item]
    assert info.value.row == 1
    with pytest.raises(crmkit.ValidationError):
        cohort_retention(HISTORY, unit="month").retention(dt.date(1999, 1, 1))


def test_store_cohorts_match_the_iterable() -> None:
    with crmkit.connect("memory://") as crm:
        for n in range(1, 7):
            crm.customers.add(Customer(kind="person", name=f"c{n}", id=uuid.UUID(int=n)))
        crm.transactions.add_many(HISTORY)
        for unit in ("week", "month", "quarter"):
            for end in (None, dt.date(2024, 3, 31)):
                expected = cohort_retention(HISTORY, unit=unit, observation_end=end)  # type: ignore[arg-type]
                assert crm.value.cohorts(unit=unit, observation_end=end) == expected  # type: ignore[arg-type]


def test_historic_value_and_metrics() -> None:
    purchases = summarize(HISTORY)
    values = {v.customer_id.int: v for v in historic_values(purchases, margin=Decimal("0.4"))}
    one = values[1]
    assert (one.orders, one.revenue) == (4, Decimal("40.00"))
    assert (one.average_order_value, one.clv) == (Decimal("10"), Decimal("16"))
    assert values[4].revenue == Decimal(0)  # bought 10, refunded 10
    m = value_metrics(purchases, margin=Decimal("0.4"))
    assert (m.customers, m.orders, m.revenue) == (6, 12, Decimal("110.00"))
    assert m.purchase_frequency == 2
    assert m.average_order_value * m.purchase_frequency == m.customer_value
    assert m.historic_clv == m.customer_value * Decimal("0.4")
    with pytest.raises(crmkit.ValidationError) as info:
        value_metrics(purchases, margin=0.4)  # type: ignore[arg-type]
    assert info.value.field == "margin"


def test_store_historic_value() -> None:
    with crmkit.connect("memory://") as crm:
        for n in range(1, 7):
            crm.customers.add(Customer(kind="person", name=f"c{n}", id=uuid.UUID(int=n)))
        crm.transactions.add_many(HISTORY)
        assert crm.value.metrics() == value_metrics(summarize(HISTORY))
        until = dt.datetime(2024, 1, 31, tzinfo=UTC)
        assert crm.value.metrics(until=until).orders == 5  # four customers, one bought twice
        since = dt.datetime(2024, 2, 1, tzinfo=UTC)
        assert {v.customer_id.int for v in crm.value.historic(since=since)} == {1, 2, 5, 6}

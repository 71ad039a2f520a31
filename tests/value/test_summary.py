"""The repeat-purchase summary: hand-checked cases, the CDNOW reference, and store == iterable."""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from decimal import Decimal
from importlib import resources

import pytest

import crmkit
from crmkit import Customer, Transaction
from crmkit.value import Summary, customer_summary, summary_from_purchases
from crmkit.value.datasets import (
    CDNOW_CALIBRATION_END,
    CDNOW_OBSERVATION_END,
    cdnow_customer_id,
    cdnow_customers,
    cdnow_transactions,
)

UTC = dt.timezone.utc
A = uuid.UUID(int=1)
B = uuid.UUID(int=2)


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def buy(customer: uuid.UUID, day: str, amount: str, *, hour: int = 12, kind: str = "purchase", currency: str = "EUR"):
    return Transaction(customer_id=customer, occurred_at=at(day, hour), amount=Decimal(amount), currency=currency,
                       kind=kind)  # type: ignore[arg-type]


HISTORY = [
    buy(A, "2024-01-01", "10.00", hour=9),
    buy(A, "2024-01-01", "5.00", hour=18),  # same day: merged with the first purchase
    buy(A, "2024-01-15", "20.00"),
    buy(A, "2024-02-12", "40.00"),
    buy(A, "2024-02-13", "3.00", kind="refund"),  # refunds are not purchases
    buy(B, "2024-01-29", "7.00"),
    buy(B, "2024-04-01", "99.00"),  # after the observation end below
]


def test_week_summary_by_hand() -> None:
    s = customer_summary(HISTORY, unit="week", observation_end=dt.date(2024, 2, 26))
    assert [r.customer_id for r in s] == [A, B]
    a, b = s
    assert (a.frequency, a.recency, a.T, a.monetary_value) == (2, 6.0, 8.0, Decimal("30.00"))
    assert (b.frequency, b.recency, b.T, b.monetary_value) == (0, 0.0, 4.0, Decimal(0))
    assert s.frequency == (2, 0) and s.recency == (6.0, 0.0) and s.T == (8.0, 4.0)
    assert s.monetary_value == (Decimal("30.00"), Decimal(0))
    assert s.unit == "week" and s.observation_end == dt.date(2024, 2, 26) and s.currency == "EUR"
    assert s.duration_holdout is None and s.get(B) == b


def test_day_and_month_summaries_by_hand() -> None:
    days = customer_summary(HISTORY, unit="day", observation_end=dt.date(2024, 2, 26))
    assert (days[0].frequency, days[0].recency, days[0].T) == (2, 42.0, 56.0)
    months = customer_summary(HISTORY, unit="month", observation_end=dt.date(2024, 3, 31))
    a, b = months
    # January (15 + 20) and February (40): one repeat month worth 40
    assert (a.frequency, a.recency, a.T, a.monetary_value) == (1, 1.0, 2.0, Decimal("40.00"))
    assert (b.frequency, b.recency, b.T) == (0, 0.0, 2.0)


def test_holdout_split_by_hand() -> None:
    s = customer_summary(
        HISTORY, unit="week", calibration_end=dt.date(2024, 1, 15), observation_end=dt.date(2024, 4, 1)
    )
    assert s.customer_ids == (A,)  # B was acquired after the calibration end
    a = s[0]
    assert (a.frequency, a.recency, a.T, a.monetary_value) == (1, 2.0, 2.0, Decimal("20.00"))
    assert (a.frequency_holdout, a.monetary_value_holdout) == (1, Decimal("40.00"))
    assert s.duration_holdout == pytest.approx(11.0)
    assert s.frequency_holdout == (1,) and s.monetary_value_holdout == (Decimal("40.00"),)


def test_datetime_end_is_an_instant_and_a_date_end_is_the_whole_day() -> None:
    whole_day = customer_summary(HISTORY, unit="day", observation_end=dt.date(2024, 1, 1))
    morning = customer_summary(HISTORY, unit="day", observation_end=at("2024-01-01", 10))
    assert whole_day[0].monetary_value == 0 and whole_day.T == (0.0,)
    assert len(morning) == 1 and morning[0].frequency == 0


def test_the_unit_is_never_guessed() -> None:
    with pytest.raises(TypeError, match="unit"):
        customer_summary(HISTORY, observation_end=dt.date(2024, 2, 1))  # type: ignore[call-arg]
    with pytest.raises(crmkit.ValidationError, match="unit") as info:
        customer_summary(HISTORY, unit="fortnight", observation_end=dt.date(2024, 2, 1))  # type: ignore[arg-type]
    assert info.value.field == "unit"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"observation_end": dt.datetime(2024, 2, 1)}, "observation_end"),  # naive
        ({"observation_end": "2024-02-01"}, "observation_end"),
        ({"observation_end": dt.date(2024, 2, 1), "calibration_end": dt.date(2024, 3, 1)}, "calibration_end"),
        ({"observation_end": dt.date(2024, 2, 1), "currency": 978}, "currency"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(crmkit.ValidationError) as info:
        customer_summary(HISTORY, unit="week", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_bad_row_is_named() -> None:
    with pytest.raises(crmkit.ValidationError, match="row 1: transactions") as info:
        customer_summary([HISTORY[0], "not a transaction"], unit="week", observation_end=dt.date(2024, 2, 1))  # type: ignore[list-item]
    assert info.value.row == 1


def test_currencies_are_never_mixed() -> None:
    mixed = [*HISTORY, buy(B, "2024-01-30", "1.00", currency="USD")]
    with pytest.raises(crmkit.ValidationError, match="EUR, USD") as info:
        customer_summary(mixed, unit="week", observation_end=dt.date(2024, 2, 26))
    assert info.value.field == "currency"
    usd = customer_summary(mixed, unit="week", observation_end=dt.date(2024, 2, 26), currency="USD")
    assert usd.customer_ids == (B,) and usd.currency == "USD"


def test_rounded_rounds_half_up_for_reports() -> None:
    rows = [buy(A, "2024-01-01", "1.00"), buy(A, "2024-01-02", "1.00"), buy(A, "2024-01-03", "1.01")]
    s = customer_summary(rows, unit="week", observation_end=dt.date(2024, 1, 3)).rounded(2)
    assert s[0].monetary_value == Decimal("1.01")  # 1.005 rounds up
    assert s[0].recency == 0.29
    with pytest.raises(crmkit.ValidationError):
        s.rounded(-1)


def test_holdout_columns_need_a_split() -> None:
    s = customer_summary(HISTORY, unit="week", observation_end=dt.date(2024, 2, 26))
    with pytest.raises(crmkit.ValidationError, match="holdout"):
        s.frequency_holdout  # noqa: B018
    assert isinstance(s.repeaters(), Summary) and s.repeaters().customer_ids == (A,)


def test_month_summaries_need_the_transactions() -> None:
    with pytest.raises(crmkit.ValidationError, match="transactions"):
        summary_from_purchases([], unit="month", observation_end=dt.date(2024, 1, 1))


# ----------------------------------------------------------------------------- CDNOW


def _reference() -> dict[int, tuple[str, str, str, str]]:
    path = resources.files("crmkit") / "data" / "cdnow" / "cdnow_customers_summary_with_transactions.csv"
    with path.open(encoding="ascii") as f:
        return {int(r["ID"]): (r["x"], r["t_x"], r["T"], r["zbar"]) for r in csv.DictReader(f)}


def _as_reference(summary: Summary) -> dict[int, tuple[str, str, str, str]]:
    sample_of = {cdnow_customer_id(i): i for i in range(1, 2358)}
    rounded = summary.rounded(2)
    return {
        sample_of[r.customer_id]: (str(r.frequency), f"{r.recency:.2f}", f"{r.T:.2f}", str(r.monetary_value))
        for r in rounded
    }


def test_cdnow_summary_reproduces_the_reference_file_exactly() -> None:
    s = customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
    assert len(s) == 2357
    assert _as_reference(s) == _reference()


def test_cdnow_summary_through_a_memory_store_matches_the_reference_and_the_iterable() -> None:
    with crmkit.connect("memory://") as crm:
        crm.customers.add_many(cdnow_customers())
        crm.transactions.add_many(cdnow_transactions())
        stored = crm.value.summary(unit="week", observation_end=CDNOW_CALIBRATION_END)
        assert _as_reference(stored) == _reference()
        assert stored == customer_summary(cdnow_transactions(), unit="week", observation_end=CDNOW_CALIBRATION_END)
        for unit in ("day", "week", "month"):
            kwargs = {"unit": unit, "calibration_end": CDNOW_CALIBRATION_END, "observation_end": CDNOW_OBSERVATION_END}
            split = crm.value.summary(**kwargs)  # type: ignore[arg-type]
            assert split == customer_summary(cdnow_transactions(), **kwargs)  # type: ignore[arg-type]
        assert split.duration_holdout == 9.0  # October 1997 to June 1998
        assert sum(split.frequency_holdout) > 0
        some = [cdnow_customer_id(1), cdnow_customer_id(2)]
        few = crm.value.summary(unit="week", observation_end=CDNOW_CALIBRATION_END, customer_ids=some)
        assert few.customer_ids == tuple(sorted(some))
        for unit in ("week", "month"):
            none = crm.value.summary(unit=unit, observation_end=CDNOW_CALIBRATION_END, customer_ids=[])  # type: ignore[arg-type]
            assert len(none) == 0 and none.unit == unit


def test_store_summary_names_bad_arguments() -> None:
    with crmkit.connect("memory://") as crm:
        with pytest.raises(crmkit.ValidationError) as info:
            crm.value.summary(unit="year", observation_end=dt.date(2024, 1, 1))  # type: ignore[arg-type]
        assert info.value.field == "unit"
        with pytest.raises(crmkit.ValidationError) as info:
            crm.value.summary(unit="week", observation_end=dt.date(2024, 1, 1), customer_ids=["x"])  # type: ignore[list-item]
        assert info.value.field == "customer_ids"


def test_store_summary_of_a_few_customers_by_hand() -> None:
    with crmkit.connect("memory://") as crm:
        for cid in (A, B):
            crm.customers.add(Customer(kind="person", name=str(cid), id=cid))
        crm.transactions.add_many(HISTORY)
        for unit in ("day", "week", "month"):
            kwargs = {"unit": unit, "observation_end": dt.date(2024, 3, 31)}
            assert crm.value.summary(**kwargs) == customer_summary(HISTORY, **kwargs)  # type: ignore[arg-type]

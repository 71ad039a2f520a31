"""Several currencies: timing counts every purchase, money is in one currency (converted by the app's rates).

Regression tests for what a new user hit: a customer who bought once in EUR and once in RON
crashed ``evaluate_all`` through ``ProbabilityAliveRule``, and ``crm.value.probability_alive``
refused a multi-currency tenant.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

import crmkit
from crmkit import Customer, Stage, Transaction
from crmkit.summaries import summarize
from crmkit.value import (
    ProbabilityAliveRule,
    customer_summary,
    historic_values,
    profitability,
    rfm_scores,
    summary_from_purchases,
    value_metrics,
)
from crmkit.value.currencies import merge_purchases, rate_for

UTC = dt.timezone.utc
START = dt.datetime(2025, 3, 3, 12, tzinfo=UTC)
WITHOUT_EXAMPLE = ["vip_rules"]
RON_TO_EUR = Decimal("0.2")


def day(n: int, hour: int = 12) -> dt.datetime:
    return START.replace(hour=hour) + dt.timedelta(days=n)


def buy(customer: uuid.UUID, n: int, amount: str, currency: str, *, kind: str = "purchase", hour: int = 12) -> Any:
    return Transaction(customer_id=customer, occurred_at=day(n, hour), amount=Decimal(amount), currency=currency,
                       kind=kind)  # type: ignore[arg-type]


class Recording:
    """A stand-in model: records what it is asked and answers a fixed probability."""

    def __init__(self, p: float = 0.9) -> None:
        self.p = p
        self.calls: list[tuple[list[Any], list[Any], list[Any]]] = []

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> Any:
        batch = isinstance(frequency, list)
        rows = (list(frequency), list(recency), list(T)) if batch else ([frequency], [recency], [T])
        self.calls.append(rows)
        return [self.p] * len(rows[0]) if isinstance(frequency, list) else self.p


class Rates:
    """An application's rate table, supplied through the crmkit_exchange_rate hook."""

    def __init__(self, table: dict[tuple[str, str], Decimal]) -> None:
        self.table = table
        self.asked: list[tuple[str, str, dt.datetime]] = []

    @crmkit.hookimpl
    def crmkit_exchange_rate(self, from_currency: str, to_currency: str, at: dt.datetime) -> Decimal | None:
        self.asked.append((from_currency, to_currency, at))
        return self.table.get((from_currency, to_currency))


# --------------------------------------------------------------------------------- the reported crash
def test_evaluate_all_survives_a_customer_who_bought_in_eur_then_in_ron() -> None:
    model = Recording(0.1)  # below the threshold: the rule answers for the repeat buyer
    rule = ProbabilityAliveRule(model, unit="day", threshold=0.3)
    with crmkit.connect("memory://", plugins=[rule], clock=lambda: day(30), block=WITHOUT_EXAMPLE) as crm:
        tourist = crm.customers.add(Customer(kind="person", name="Ana"))
        crm.transactions.add(buy(tourist.id, 0, "10.00", "EUR"))
        crm.transactions.add(buy(tourist.id, 10, "50.00", "RON"))
        decisions = list(crm.lifecycle.evaluate_all())
        assert [d.error for d in decisions] == [None]
        assert (decisions[0].proposed, decisions[0].rule) == (Stage.AT_RISK, "value.probability_alive")
        # two purchase days across the currencies: one repeat, 10 days after the first, 30 days old
        assert model.calls[-1] == ([1], [10.0], [30.0])
        # the facts alone give the same answer (currencies merged without a query)
        facts = crm.lifecycle.facts(tourist.id)
        assert {p.currency for p in facts.purchases} == {"EUR", "RON"}
        bare = type(facts)(customer=facts.customer, now=facts.now, policy=facts.policy, purchases=facts.purchases)
        assert rule.score(bare) == pytest.approx(0.1)
        assert model.calls[-1] == ([1], [10.0], [30.0])


def test_probability_alive_of_a_multi_currency_tenant_needs_no_currency() -> None:
    model = Recording()
    with crmkit.connect("memory://", clock=lambda: day(40)) as crm:
        a = crm.customers.add(Customer(kind="person", name="a"))
        b = crm.customers.add(Customer(kind="person", name="b"))
        crm.transactions.add_many([
            buy(a.id, 0, "10.00", "EUR"),
            buy(a.id, 0, "30.00", "RON", hour=15),  # same day, other currency: still one purchase day
            buy(a.id, 5, "5.00", "EUR"),
            buy(a.id, 5, "9.00", "RON"),  # a shared day inside both currencies' spans
            buy(a.id, 20, "7.00", "RON"),
            buy(a.id, 21, "7.00", "EUR"),
            buy(b.id, 3, "100.00", "RON"),
        ])
        scores = crm.value.probability_alive(model, unit="day")
        assert scores == {a.id: 0.9, b.id: 0.9}
        frequency, recency, age = model.calls[-1]
        rows = dict(zip(sorted([a.id, b.id]), zip(frequency, recency, age, strict=True), strict=True))
        assert rows[a.id] == (3, 21.0, 40.0)  # days 0, 5, 20, 21 whatever the currency
        assert rows[b.id] == (0, 0.0, 37.0)
        with pytest.raises(crmkit.ValidationError, match="EUR, RON") as info:
            crm.value.summary(unit="day", observation_end=day(40))  # spend needs one currency
        assert info.value.field == "currency"


# ------------------------------------------------------------------------ summaries and conversion
MIXED = [
    ("a", 0, "10.00", "EUR"),
    ("a", 0, "50.00", "RON"),
    ("a", 7, "20.00", "EUR"),
    ("a", 14, "100.00", "RON"),
    ("b", 1, "40.00", "EUR"),
    ("b", 8, "60.00", "EUR"),
    ("c", 2, "500.00", "RON"),
    ("c", 9, "250.00", "RON"),
]
IDS = {"a": uuid.UUID(int=1), "b": uuid.UUID(int=2), "c": uuid.UUID(int=3)}


def mixed() -> list[Any]:
    return [buy(IDS[who], n, amount, cur) for who, n, amount, cur in MIXED]


def test_summary_timing_counts_every_currency_and_spend_is_per_currency_without_rates() -> None:
    s = customer_summary(mixed(), unit="day", observation_end=day(21).date(), currency="EUR")
    assert s.currency == "EUR"
    assert s.customer_ids == (IDS["a"], IDS["b"])  # c never paid in EUR: no spend to state
    a = s.get(IDS["a"])
    assert (a.frequency, a.recency, a.T) == (2, 14.0, 21.0)  # days 0, 7, 14 in either currency
    assert a.monetary_value == Decimal("10.00")  # EUR 20 over two repeat days; the RON is not converted


def test_summary_converts_with_rates_from_arguments_or_the_hook() -> None:
    end = day(21).date()
    s = customer_summary(mixed(), unit="day", observation_end=end, currency="EUR", rates={"RON": RON_TO_EUR})
    assert s.customer_ids == (IDS["a"], IDS["b"], IDS["c"])
    assert s.get(IDS["a"]).monetary_value == Decimal("20.00")  # (20 + 100 x 0.2) / 2
    assert s.get(IDS["c"]).monetary_value == Decimal("50.00")
    # from per-currency purchase summaries (what a store computes) the same numbers come out
    again = summary_from_purchases(summarize(mixed()), unit="day", observation_end=end, currency="EUR",
                                   rates={"RON": RON_TO_EUR})
    assert again == s
    rates = Rates({("RON", "EUR"): RON_TO_EUR})
    with crmkit.connect("memory://", plugins=[rates]) as crm:
        for cid in IDS.values():
            crm.customers.add(Customer(id=cid, kind="person", name=str(cid.int)))
        crm.transactions.add_many(mixed())
        for unit in ("day", "week", "month"):
            stored = crm.value.summary(unit=unit, observation_end=end, currency="EUR")  # type: ignore[arg-type]
            assert stored == customer_summary(mixed(), unit=unit, observation_end=end,  # type: ignore[arg-type]
                                              currency="EUR", rates={"RON": RON_TO_EUR})
        assert {(f, t) for f, t, _ in rates.asked} == {("RON", "EUR")}
        # one rate per calculation: the one at the end of the measured period
        assert {at for _, _, at in rates.asked} == {dt.datetime.combine(end, dt.time.max, UTC)}


def test_a_bad_rate_is_named() -> None:
    with pytest.raises(crmkit.ValidationError, match="RON to EUR") as info:
        customer_summary(mixed(), unit="day", observation_end=day(21).date(), currency="EUR", rates={"RON": 0.2})
    assert info.value.field == "rates"
    with crmkit.connect("memory://", plugins=[Rates({("RON", "EUR"): Decimal(-1)})]) as crm:
        for cid in IDS.values():
            crm.customers.add(Customer(id=cid, kind="person", name=str(cid.int)))
        crm.transactions.add_many(mixed())
        with pytest.raises(crmkit.ValidationError) as info:
            crm.value.rfm(as_of=day(30), currency="EUR")
        assert info.value.field == "crmkit_exchange_rate"


def test_rfm_historic_and_profitability_state_money_in_one_currency() -> None:
    as_of = day(30)
    purchases = summarize(mixed())
    with pytest.raises(crmkit.ValidationError, match="several currencies"):
        rfm_scores(purchases, as_of=as_of)
    plain = rfm_scores(purchases, as_of=as_of, currency="EUR")
    assert [r.customer_id for r in plain] == [IDS["a"], IDS["b"]]
    a = plain.get(IDS["a"])
    assert (a.frequency, a.monetary) == (3, Decimal("30.00"))  # three purchase days; EUR spend only
    converted = rfm_scores(purchases, as_of=as_of, currency="EUR", rates={"RON": RON_TO_EUR})
    assert converted.get(IDS["a"]).monetary == Decimal("60.00")
    assert converted.get(IDS["c"]).monetary == Decimal("150.00")

    values = {v.customer_id: v for v in historic_values(purchases, currency="EUR", rates={"RON": RON_TO_EUR})}
    assert (values[IDS["a"]].orders, values[IDS["a"]].revenue) == (4, Decimal("60.00"))
    assert values[IDS["a"]].currency == "EUR"
    metrics = value_metrics(purchases, currency="EUR")
    assert (metrics.customers, metrics.orders, metrics.revenue) == (2, 4, Decimal("130.00"))

    result = profitability(mixed(), unit="week", margin=Decimal("0.5"), currency="EUR", observation_end=day(21))
    late = [buy(IDS["b"], 0, "1.00", "RON"), *mixed()]  # b's first purchase is now in RON
    moved = profitability(late, unit="day", margin=Decimal("0.5"), currency="EUR", observation_end=day(21))
    assert moved.get(IDS["b"]).acquired_at == day(0)  # acquisition is timing: any currency
    assert result.get(IDS["a"]).revenue == Decimal("30.00")
    both = profitability(mixed(), unit="week", margin=Decimal("0.5"), currency="EUR", observation_end=day(21),
                         rates={"RON": RON_TO_EUR})
    assert both.get(IDS["a"]).revenue == Decimal("60.00") and both.get(IDS["a"]).cost_of_goods == Decimal("30.00")


def test_store_rfm_counts_purchase_days_across_currencies_exactly() -> None:
    with crmkit.connect("memory://", plugins=[Rates({("RON", "EUR"): RON_TO_EUR})]) as crm:
        c = crm.customers.add(Customer(kind="person", name="c"))
        crm.transactions.add_many([
            buy(c.id, 0, "1.00", "EUR"),
            buy(c.id, 3, "5.00", "RON"),
            buy(c.id, 3, "1.00", "EUR"),  # shared day inside both spans: the merged summaries cannot see it
            buy(c.id, 9, "1.00", "EUR"),
            buy(c.id, 10, "5.00", "RON"),
        ])
        scored = crm.value.rfm(as_of=day(30), currency="EUR").get(c.id)
        assert (scored.frequency, scored.monetary) == (4, Decimal("5.00"))
        # from the summaries alone the shared inner day is counted twice (documented bound)
        (merged,) = merge_purchases(crm.purchase_summaries([c.id]), currency="EUR", rate=rate_for("EUR", None))
        assert merged.purchase_days == 5


def test_summaries_must_be_grouped_by_customer() -> None:
    parts = summarize(mixed())
    shuffled = [parts[0], parts[-1], parts[1]]  # a's EUR, c's RON, a's RON
    with pytest.raises(crmkit.ValidationError, match="grouped by customer") as info:
        rfm_scores(shuffled, as_of=day(30), currency="EUR")
    assert info.value.row == 2

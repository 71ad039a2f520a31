"""RFM scores (quantiles with deterministic ties) and the named segments."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import uuid
from decimal import Decimal

import pytest

import crmkit
from crmkit import Customer, PurchaseSummary, Transaction
from crmkit.value import SEGMENTS, rfm_scores, rfm_segment

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 1, 1, tzinfo=UTC)


def summary(i: int, *, days_ago: int, purchase_days: int, total: str, refunds: str = "0") -> PurchaseSummary:
    last = NOW - dt.timedelta(days=days_ago)
    return PurchaseSummary(
        customer_id=uuid.UUID(int=i),
        currency="EUR",
        purchases=purchase_days,
        first_purchase_at=last - dt.timedelta(days=purchase_days),
        last_purchase_at=last,
        purchase_days=purchase_days,
        total=Decimal(total),
        first_day_total=Decimal(total) / purchase_days,
        refunds=Decimal(refunds),
    )


def test_ten_distinct_customers_fall_two_per_quintile() -> None:
    rows = [summary(i, days_ago=10 * i, purchase_days=i, total=f"{i}0.00") for i in range(1, 11)]
    table = rfm_scores(rows, as_of=NOW)
    assert [r.f for r in table] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [r.m for r in table] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [r.r for r in table] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # more recent is better
    assert table[0].recency_days == 10.0 and table[0].code == "511"
    assert table.get(uuid.UUID(int=10)).segment == "cant_lose"


def test_ties_share_a_score_whatever_the_input_order() -> None:
    rows = [summary(i, days_ago=5, purchase_days=1 if i <= 6 else 3, total="10.00") for i in range(1, 11)]
    expected = {r.customer_id: (r.r, r.f, r.m) for r in rfm_scores(rows, as_of=NOW)}
    assert {v[1] for k, v in expected.items() if k.int <= 6} == {1}  # six tied at one purchase day
    assert {v[1] for k, v in expected.items() if k.int > 6} == {4}  # 6 of 10 are below them
    assert {v[0] for v in expected.values()} == {1} and {v[2] for v in expected.values()} == {1}
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert {r.customer_id: (r.r, r.f, r.m) for r in rfm_scores(shuffled, as_of=NOW)} == expected


def test_monetary_is_net_of_refunds_and_bins_are_configurable() -> None:
    rows = [
        summary(1, days_ago=1, purchase_days=1, total="100", refunds="95"),
        summary(2, days_ago=1, purchase_days=1, total="10"),
    ]
    table = rfm_scores(rows, as_of=NOW, bins=3)
    assert table.get(uuid.UUID(int=1)).monetary == Decimal(5)
    assert (table.get(uuid.UUID(int=1)).m, table.get(uuid.UUID(int=2)).m) == (1, 2)
    assert table.bins == 3


def test_every_score_combination_has_exactly_one_named_segment() -> None:
    seen = {rfm_segment(r, f, m) for r, f, m in itertools.product(range(1, 6), repeat=3)}
    assert seen == set(SEGMENTS)
    assert rfm_segment(5, 5, 5) == "champions"
    assert rfm_segment(5, 5, 1) == "loyal"
    assert rfm_segment(5, 1, 1) == "new"
    assert rfm_segment(4, 1, 5) == "promising"
    assert rfm_segment(4, 2, 2) == "potential_loyalists"
    assert rfm_segment(3, 3, 3) == "need_attention"
    assert rfm_segment(3, 1, 1) == "about_to_sleep"
    assert rfm_segment(2, 3, 2) == "at_risk"
    assert rfm_segment(1, 5, 5) == "cant_lose"
    assert rfm_segment(2, 1, 1) == "hibernating"
    assert rfm_segment(1, 1, 1) == "lost"
    # other bin counts map onto the 1-5 scale
    assert rfm_segment(3, 3, 3, bins=3) == "champions" and rfm_segment(1, 1, 1, bins=3) == "lost"
    assert rfm_segment(10, 1, 1, bins=10) == "new"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: rfm_segment(0, 1, 1), "r"),
        (lambda: rfm_segment(1, 6, 1), "f"),
        (lambda: rfm_segment(1, 1, 1, bins=1), "bins"),
        (lambda: rfm_scores([], as_of=dt.datetime(2025, 1, 1)), "as_of"),
        (lambda: rfm_scores([object()], as_of=NOW), "purchases"),  # type: ignore[list-item]
        (lambda: rfm_scores([summary(1, days_ago=-1, purchase_days=1, total="1")], as_of=NOW), "as_of"),
    ],
)
def test_bad_input_is_named(call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(crmkit.ValidationError) as info:
        call()
    assert info.value.field == field


def test_table_views() -> None:
    rows = [summary(i, days_ago=10 * i, purchase_days=i, total=f"{i}0.00") for i in range(1, 11)]
    table = rfm_scores(rows, as_of=NOW)
    sizes = table.sizes()
    assert list(sizes) == list(SEGMENTS) and sum(sizes.values()) == 10
    assert len(table.segment("champions")) == sizes["champions"]
    with pytest.raises(crmkit.ValidationError):
        table.segment("vip")
    with pytest.raises(crmkit.NotFound):
        table.get(uuid.uuid4())


def test_store_rfm_uses_purchase_summaries_up_to_as_of() -> None:
    with crmkit.connect("memory://", clock=lambda: NOW) as crm:
        ids = []
        for i in range(1, 6):
            c = crm.customers.add(Customer(kind="person", name=f"c{i}"))
            ids.append(c.id)
            for d in range(i):
                crm.transactions.add(
                    Transaction(customer_id=c.id, occurred_at=NOW - dt.timedelta(days=30 * i - d),
                                amount=Decimal(10 * i), currency="EUR")
                )
        table = crm.value.rfm()
        assert table.as_of == NOW and len(table) == 5
        assert table.get(ids[0]).r == 5 and table.get(ids[4]).f == 5
        earlier = crm.value.rfm(as_of=NOW - dt.timedelta(days=100))
        assert {r.customer_id for r in earlier} == set(ids[3:])  # only those who had bought by then

"""Purchase summaries pushed down into one SQL aggregate equal the pure-Python reference exactly."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit import Customer, Transaction
from crmkit.crm import CRM
from crmkit.summaries import summarize

BASE = dt.datetime(2024, 2, 28, 22, tzinfo=dt.timezone.utc)  # around midnight and a leap day
ZONES = [dt.timezone.utc, dt.timezone(dt.timedelta(hours=-8)), dt.timezone(dt.timedelta(hours=5, minutes=45))]

moments = st.builds(
    lambda micros, zone: (BASE + dt.timedelta(microseconds=micros)).astimezone(zone),
    st.integers(min_value=-3 * 86_400_000_000, max_value=3 * 86_400_000_000)
    | st.sampled_from([0, -1, 1, 2 * 3_600_000_000, 2 * 3_600_000_000 - 1]),
    st.sampled_from(ZONES),
)
amounts = st.one_of(
    st.decimals(min_value=0, max_value=10**6, places=2),
    st.sampled_from(["0", "1.5", "1.50", "0.000001", "1E+2", "7.000", "999999999999999.999999", "12"]).map(Decimal),
)
history = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["EUR", "USD"]), st.sampled_from(["purchase", "purchase", "refund"]),
              moments, amounts),
    max_size=25,
)
windows = st.tuples(st.none() | moments, st.none() | moments)


def _fresh(crm: CRM) -> CRM:
    return CRM(crm.store, crm._host, "s-" + uuid.uuid4().hex[:12])


@given(rows=history, window=windows, subset=st.none() | st.sets(st.integers(0, 4)))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_summaries_equal_the_reference(crm: CRM, rows: list[Any], window: tuple[Any, Any],
                                       subset: set[int] | None) -> None:
    crm = _fresh(crm)
    people = [crm.customers.add(Customer(kind="person", name=f"c{i}")) for i in range(5)]
    stored = [
        Transaction(customer_id=people[who].id, currency=cur, kind=kind, occurred_at=when, amount=amount)
        for who, cur, kind, when, amount in rows
    ]
    crm.transactions.add_many(stored)
    since, until = window
    ids = None if subset is None else [people[i].id for i in sorted(subset)]
    wanted = list(crm.transactions.find()) if ids is None else [t for t in crm.transactions.find()
                                                                 if t.customer_id in set(ids)]
    expected = summarize(wanted, since=since, until=until)
    got = crm.purchase_summaries(ids, since=since, until=until)
    assert got == expected
    # exactly the same Decimals, scale included (1.50 + 1 is 2.50, as in Python)
    assert [(str(s.total), str(s.first_day_total), str(s.refunds)) for s in got] == [
        (str(s.total), str(s.first_day_total), str(s.refunds)) for s in expected
    ]


def test_summaries_are_one_query(crm: CRM, count_statements: Callable[[CRM], Any]) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    crm.transactions.add_many(
        Transaction(customer_id=ada.id, occurred_at=BASE + dt.timedelta(hours=7 * i), amount=Decimal(i), currency="EUR")
        for i in range(50)
    )
    with count_statements(crm) as seen:
        (summary,) = crm.purchase_summaries()
    assert len(seen.statements) == 1
    assert "GROUP BY" in seen.statements[0]
    assert summary.purchases == 50 and summary.total == sum(Decimal(i) for i in range(50))
    assert crm.purchase_summaries([]) == []

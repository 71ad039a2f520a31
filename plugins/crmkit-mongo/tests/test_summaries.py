"""Purchase summaries: one aggregation pipeline, equal to the pure-Python reference ``summarize``."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import monitoring

import crmkit
import crmkit.entities
from crmkit import Customer, Transaction
from crmkit.summaries import summarize

UTC = dt.timezone.utc
ZONES = [UTC, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-11, minutes=-30))]
# Times cluster around a few UTC midnights (pre-1970 included) so day boundaries are hit often.
MIDNIGHTS = [dt.datetime(y, m, d, tzinfo=UTC) for y, m, d in ((2024, 3, 1), (1969, 12, 31), (2024, 3, 2))]
times = st.builds(
    lambda base, offset, zone: (base + dt.timedelta(microseconds=offset)).astimezone(zone),
    st.sampled_from(MIDNIGHTS),
    st.one_of(st.integers(-3, 3), st.integers(-2 * 86_400_000_000, 2 * 86_400_000_000)),
    st.sampled_from(ZONES),
)
amounts = st.builds(lambda units, places: Decimal(units).scaleb(-places), st.integers(0, 10**15 - 1), st.integers(0, 6))
rows = st.lists(
    st.tuples(st.integers(0, 3), times, amounts, st.sampled_from(["EUR", "USD", "JPY"]),
              st.sampled_from(["purchase", "purchase", "refund"])),
    max_size=25,
)
bounds = st.one_of(st.none(), times)


class Commands(monitoring.CommandListener):
    """Counts the commands a client sends, by name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def watched(mongo_db_url):
    listener = Commands()
    with crmkit.connect(mongo_db_url, tenant="s-" + uuid.uuid4().hex[:8], event_listeners=[listener]) as crm:
        yield crm, listener


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, since=bounds, until=bounds, subset=st.one_of(st.none(), st.sets(st.integers(0, 4))))
def test_pipeline_equals_the_reference(mongo_db_url, rows, since, until, subset):
    with crmkit.connect(mongo_db_url, tenant="s-" + uuid.uuid4().hex[:10]) as crm:
        people = [crm.customers.add(Customer(kind="person", name=f"P{i}")) for i in range(4)]
        stored = []
        if rows:
            txs = [
                Transaction(customer_id=people[c].id, occurred_at=at, amount=amount, currency=cur, kind=kind)
                for c, at, amount, cur, kind in rows
            ]
            crm.transactions.add_many(txs)
            stored = list(crm.transactions.stream())
        ids = None
        if subset is not None:
            # index 4 is a customer id with no transactions at all
            ids = [people[i].id if i < 4 else uuid.uuid4() for i in sorted(subset)]
        got = crm.purchase_summaries(ids, since=since, until=until)
        wanted = set(ids) if ids is not None else None
        expected = summarize(
            [t for t in stored if wanted is None or t.customer_id in wanted], since=since, until=until
        )
        assert got == expected
        assert [(str(s.total), str(s.first_day_total), str(s.refunds)) for s in got] == [
            (str(s.total), str(s.first_day_total), str(s.refunds)) for s in expected
        ]


def test_one_aggregation_answers_for_every_customer(watched):
    crm, listener = watched
    people = [crm.customers.add(Customer(kind="person", name=f"P{i}")) for i in range(5)]
    crm.transactions.add_many(
        Transaction(customer_id=p.id, occurred_at=dt.datetime(2024, 1, d, tzinfo=UTC), amount=Decimal(d),
                    currency="EUR")
        for p in people
        for d in (1, 1, 2, 9)
    )
    listener.names.clear()
    summaries = crm.purchase_summaries()
    assert listener.names == ["aggregate"]
    assert [s.customer_id for s in summaries] == sorted(p.id for p in people)
    s = summaries[0]
    assert (s.purchases, s.purchase_days, s.total, s.first_day_total) == (4, 3, Decimal(13), Decimal(2))
    assert s.repeat_mean == Decimal("5.5")
    assert crm.purchase_summaries([]) == []
    assert crm.purchase_summaries([people[2].id, people[2].id]) == [summaries[2]]  # duplicates count once


def test_existing_ids_and_activity_push_down(watched):
    crm, listener = watched
    a = crm.customers.add(Customer(kind="person", name="A"))
    b = crm.customers.add(Customer(kind="person", name="B"))
    when = [dt.datetime(2023, 5, 1, 0, 0, 0, 7, tzinfo=UTC), dt.datetime(2023, 6, 1, 12, tzinfo=UTC)]
    crm.transactions.add_many(
        Transaction(customer_id=a.id, occurred_at=w, amount=Decimal(1), currency="USD") for w in when
    )
    customers, transactions = crm.store.repository(crmkit.entities.CUSTOMERS), crm.store.repository(
        crmkit.entities.TRANSACTIONS
    )
    listener.names.clear()
    assert customers.existing_ids(crm.tenant, [a.id, b.id, a.id]) == {a.id, b.id}
    assert listener.names == ["aggregate"]  # all there: one count, no ids sent back
    listener.names.clear()
    assert customers.existing_ids(crm.tenant, [a.id, b.id, uuid.uuid4()]) == {a.id, b.id}
    assert listener.names == ["aggregate", "find"]  # some missing: then the ids are fetched
    listener.names.clear()
    activity = transactions.activity(crm.tenant, [a.id, b.id])
    assert listener.names == ["aggregate"]
    assert set(activity) == {a.id}
    assert (activity[a.id].count, activity[a.id].first_at, activity[a.id].last_at) == (2, when[0], when[1])
    from crmkit.store import Repository

    assert Repository.activity(transactions, crm.tenant, [a.id, b.id]) == activity

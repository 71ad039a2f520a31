"""Relative time windows in segments: "bought in the last N days" counted back from the moment a
segment is evaluated, kept relative in the saved query, the same members on every backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import F, ValidationError
from crmkit.marketing import Campaign, Segment, facts
from crmkit.query import Ago, ago
from crmkit.schema import parse_condition

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("relative"))


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def crm(url: str, clock: Clock) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("rel"), clock=clock) as crm:
        yield crm


def test_a_saved_segment_for_the_last_90_days_follows_the_moment_it_is_evaluated(crm: crmkit.CRM, clock: Clock) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    bob = crm.customers.add(crmkit.Customer(kind="person", name="Bob"))
    crm.transactions.add(crmkit.Transaction(ada.id, NOW - 80 * DAY, Decimal("10"), "EUR"))
    crm.transactions.add(crmkit.Transaction(bob.id, NOW - 10 * DAY, Decimal("10"), "EUR"))
    recent = crm.segments.add(Segment(name="Bought in the last 90 days", where=facts.bought(since=90 * DAY)))

    stored = crm.segments.get(recent.id)  # read back: the saved query holds the relative window
    assert '"ago"' in str(stored.where)
    assert crm.segments.count(stored.id) == 2
    assert crm.segments.count(stored.id, at=NOW + 20 * DAY) == 1  # Ada's purchase is 100 days old by then
    assert list(crm.segments.members(stored.id, at=NOW + 20 * DAY)) == [bob.id]
    assert crm.segments.count(stored.id, at=NOW + 200 * DAY) == 0
    # the connection's clock is the default moment
    clock.now = NOW + 70 * DAY
    assert list(crm.segments.members(stored.id)) == [bob.id]
    clock.now = NOW

    # a combination keeps its dynamic parts relative
    lapsed = crm.segments.add(Segment(name="Bought before", where=facts.bought(until=ago(days=30))))
    both = crm.segments.combine("intersection", [recent.id, lapsed.id], name="Bought 30 to 90 days ago")
    assert list(crm.segments.members(both.id)) == [ada.id]
    assert list(crm.segments.members(both.id, at=NOW - 60 * DAY)) == []  # nobody bought before NOW - 90 days
    assert crm.segments.count(both.id, at=NOW + 25 * DAY) == 1  # Bob's purchase is 35 days old, Ada's 105

    # targeting resolves the segment at its at=
    camp = crm.campaigns.add(Campaign(name="Come back", channel="email"))
    audience = crm.marketing.target(camp.id, segment=recent.id, at=NOW + 20 * DAY)
    assert audience.added + sum(audience.excluded.values()) + audience.already == 1


def test_relative_instants_are_checked_and_keep_their_form() -> None:
    with pytest.raises(ValidationError) as raised:
        facts.bought(since=90)  # type: ignore[arg-type]
    assert raised.value.field == "since"
    with pytest.raises(ValidationError):
        Ago(90)  # type: ignore[arg-type]
    assert ago(days=90) == ago(dt.timedelta(days=90)) == Ago(90 * DAY)
    condition = (F("created_at") >= ago(hours=36, microseconds=5)) & facts.purchases(at_least=2, since=7 * DAY)
    segment = Segment(name="s", where=condition)
    assert parse_condition(str(segment.where)) == condition


def test_a_relative_instant_works_in_any_query_against_the_clock(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.transactions.add(crmkit.Transaction(ada.id, NOW - 3 * DAY, Decimal("10"), "EUR"))
    assert crm.transactions.count(F("occurred_at") >= ago(days=4)) == 1
    assert crm.transactions.count(F("occurred_at") >= ago(days=2)) == 0
    assert crm.customers.count(facts.bought(since=ago(days=4))) == 1


PROPERTY = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@PROPERTY
@given(
    buys=st.lists(st.lists(st.integers(-30, 200), max_size=4), min_size=1, max_size=6),
    since=st.integers(1, 120),
    until=st.none() | st.integers(0, 60),
    at_least=st.integers(1, 3),
    moments=st.lists(st.integers(-40, 120), min_size=1, max_size=4),
)
def test_relative_windows_give_the_members_the_stored_purchases_give_at_every_moment(
    url: str, buys: list[list[int]], since: int, until: int | None, at_least: int, moments: list[int]
) -> None:
    """Differential: a saved segment "at least k purchases in [at - since, at - until)" has, at each
    moment, the members worked out in Python from the purchases' days."""
    with crmkit.connect(url, tenant=unique_name("relp"), clock=Clock(NOW)) as crm:
        people = []
        for i, days in enumerate(buys):
            c = crm.customers.add(crmkit.Customer(kind="person", name=f"P{i}"))
            people.append((c.id, days))
            for d in days:
                crm.transactions.add(crmkit.Transaction(c.id, NOW - d * DAY, Decimal("1"), "EUR"))
        where = facts.purchases(at_least=at_least, since=since * DAY, until=None if until is None else until * DAY)
        segment = crm.segments.add(Segment(name="window", where=where))
        for shift in moments:
            at = NOW + shift * DAY
            expected = sorted(
                cid
                for cid, days in people
                if sum(
                    1
                    for d in days
                    if NOW - d * DAY >= at - since * DAY and (until is None or NOW - d * DAY < at - until * DAY)
                )
                >= at_least
            )
            assert list(crm.segments.members(segment.id, at=at)) == expected
            assert crm.segments.count(segment.id, at=at) == len(expected)

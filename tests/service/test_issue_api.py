"""The service API block of the issue, run verbatim on memory, SQLite, PostgreSQL and MongoDB.

The block is kept below character for character and executed with ``exec``; it names
``url`` and ``ada`` without defining them, so each store gets a database of its own (the
block's tenant ``acme`` is shared by other tests) holding the customer Ada. What the block
computed is then checked: its calendar answers, the hand-over, and the clocks.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.backends import BACKENDS
from tests.support.servers import create_database, drop_database, unique_name

import crmkit

BLOCK = """\
import datetime as dt
import crmkit
from crmkit import Channel, F
from crmkit.service import BusinessCalendar, Case, SLAPolicy

cal = BusinessCalendar(key="ro-office", timezone="Europe/Bucharest",
                       hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"},
                       holidays="RO", extra_holidays=(dt.date(2026, 12, 24),))
t = dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.timezone.utc)          # a Friday
cal.add(t, dt.timedelta(hours=1))      # next business time after 1 working hour
cal.diff(t, t + dt.timedelta(days=7))  # working time between two instants (a timedelta)
cal.is_within(t); cal.next_start(t)

with crmkit.connect(url, tenant="acme") as crm:
    crm.calendars.add(cal)
    crm.sla_policies.add(SLAPolicy(name="urgent", applies_to=F("priority") == "urgent",
        calendar="ro-office", targets={"first_response": dt.timedelta(hours=1),
                                       "resolution": dt.timedelta(hours=8)},
        pause_statuses=frozenset({"waiting_on_customer"})))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Invoice 8812 is wrong",
                              priority="urgent", channel=Channel.EMAIL, opened_at=t))
    crm.service.assign(case.id, "agent:7", reason="billing")           # a hand-over record
    crm.service.respond(case.id, at=t + dt.timedelta(minutes=40), by="agent:7")
    crm.service.set_status(case.id, "waiting_on_customer", at=t + dt.timedelta(hours=1))
    crm.service.set_status(case.id, "open", at=t + dt.timedelta(days=3))
    crm.service.resolve(case.id, at=t + dt.timedelta(days=4), resolution="credit note sent")
    for clock in crm.service.sla(case.id, now=t + dt.timedelta(days=5)):
        clock.target, clock.due_at, clock.elapsed, clock.paused, clock.remaining, clock.breached, clock.completed_at
"""

UTC = dt.timezone.utc


def _local(*parts: int) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(*parts, tzinfo=ZoneInfo("Europe/Bucharest")).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of its own: tenant ``acme`` in it is this test's alone."""
    name = unique_name("issue13")
    if request.param == "memory":
        yield f"memory://{name}"
    elif request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    elif request.param == "postgresql":
        url = create_database(request.getfixturevalue("postgres_url"), name)
        try:
            yield url
        finally:
            drop_database(url)
    else:
        parts = urllib.parse.urlsplit(request.getfixturevalue("mongo_url"))
        url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
        try:
            yield url
        finally:
            import pymongo

            with pymongo.MongoClient(url) as client:
                client.drop_database(name)


def test_the_issue_block_runs_verbatim(fresh_url: str) -> None:
    pytest.importorskip("holidays")
    with crmkit.connect(fresh_url, tenant="acme") as crm:
        ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    seen: list[tuple[Any, ...]] = []
    namespace: dict[str, Any] = {"url": fresh_url, "ada": ada}
    exec(compile(BLOCK, "<issue 13>", "exec"), namespace)
    t = namespace["t"]
    cal = namespace["cal"]
    assert t.weekday() == 4 and not cal.is_within(t)
    # Friday 16:30 in Bucharest is after hours; Mon 30 Nov and Tue 1 Dec are public holidays
    assert cal.next_start(t) == _local(2026, 12, 2, 9)
    assert cal.add(t, dt.timedelta(hours=1)) == _local(2026, 12, 2, 10)
    assert cal.diff(t, t + dt.timedelta(days=7)) == dt.timedelta(hours=22)  # Wed 8 h, Thu 8 h, Fri to 16:30 6 h
    case = namespace["case"]
    with crmkit.connect(fresh_url, tenant="acme") as crm:
        (handover,) = crm.service.handovers(case.id)
        assert (handover.from_owner, handover.to_owner, handover.reason) == (None, "agent:7", "billing")
        stored = crm.cases.get(case.id)
        assert (stored.status, stored.owner, stored.resolution) == ("resolved", "agent:7", "credit note sent")
        assert stored.first_response_at == t + dt.timedelta(minutes=40)
        for clock in crm.service.sla(case.id, now=t + dt.timedelta(days=5)):
            seen.append(
                (
                    clock.clock,
                    clock.target,
                    clock.due_at,
                    clock.elapsed,
                    clock.paused,
                    clock.remaining,
                    clock.breached,
                    clock.completed_at,
                )
            )
        # the kept clocks (sla_state, one row per clock) say the same as the history
        kept = [(c.clock, c.elapsed, c.paused, c.breached) for c in crm.service.sla_state(case.id, now=t + 5 * DAY)]
        assert kept == [(s[0], s[3], s[4], s[6]) for s in seen]
    last = namespace["clock"]  # the block's loop variable: its last clock
    assert (last.clock, last.completed_at) == ("resolution", t + 4 * DAY)
    zero = dt.timedelta(0)
    assert seen == [
        # responded at 17:10 Friday, after hours: no working time had passed; the hour left
        # would have run out at Wed 2 Dec 10:00
        ("first_response", HOUR, _local(2026, 12, 2, 10), zero, zero, HOUR, False, t + dt.timedelta(minutes=40)),
        # waiting on the customer from Friday 17:30 to Monday 16:30 (paused, after hours and a
        # holiday), resolved on Tuesday 1 Dec (a holiday): no working time counted at all
        ("resolution", 8 * HOUR, _local(2026, 12, 2, 18), zero, zero, 8 * HOUR, False, t + 4 * DAY),
    ]


HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

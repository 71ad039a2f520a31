"""Escalation on every store, with a clock the test moves: once per crossing, in business time, never while paused.

The application calls ``crm.service.escalate()`` from its scheduler; here the connection's
clock stands still until the test moves it, and a plugin receives each firing as an event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from tests.support.backends import Clock
from tests.support.servers import unique_name

import crmkit
from crmkit.events import Event
from crmkit.service import BusinessCalendar, Case, CaseEscalation, SLAPolicy

UTC = dt.timezone.utc
FRI = dt.datetime(2026, 11, 27, 15, tzinfo=UTC)  # a Friday; the office works 09:00-17:00 UTC on weekdays
MON = dt.datetime(2026, 11, 30, tzinfo=UTC)
H = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


class Pager:
    """A plugin that acts on escalations: it receives each one once its transaction commits."""

    def __init__(self) -> None:
        self.paged: list[tuple[uuid.UUID, str]] = []

    @crmkit.hookimpl
    def crmkit_after_commit(self, crm: crmkit.CRM, events: Sequence[Event]) -> None:
        self.paged += [
            (e.after.case_id, e.after.rule) for e in events if e.entity == "case_escalations" and e.before is None
        ]


@pytest.fixture
def desk(url: str) -> Iterator[tuple[Any, Clock, Pager]]:
    clock, pager = Clock(FRI), Pager()
    with crmkit.connect(url, tenant=unique_name("escalate"), plugins=[pager], clock=clock) as crm:
        yield crm, clock, pager


def test_rules_fire_once_per_crossing_in_business_time_and_never_while_paused(
    desk: tuple[crmkit.CRM, Clock, Pager],
) -> None:
    crm, clock, pager = desk
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.calendars.add(BusinessCalendar(key="office", timezone="UTC", hours={"mon-fri": "09:00-17:00"}))
    crm.sla_policies.add(
        SLAPolicy(
            name="std",
            calendar="office",
            targets={"resolution": 4 * H},
            pause_statuses=frozenset({"on_hold"}),
            escalations=(
                {"name": "stale", "status": "open", "after": 3 * H},
                {"name": "held", "status": "on_hold", "after": H},  # on hold pauses: it never fires
                {"name": "near", "clock": "resolution", "before_breach": H, "reassign_to": "agent:lead"},
            ),
        )
    )
    one = crm.cases.add(Case(customer_id=ada.id, subject="one", opened_at=FRI))
    two = crm.cases.add(Case(customer_id=ada.id, subject="two", opened_at=FRI))
    clock.now = FRI + H
    crm.service.set_status(two.id, "on_hold")  # Friday 16:00: two's clocks stop

    def fire(at: dt.datetime) -> set[tuple[uuid.UUID, str]]:
        clock.now = at
        return {(f.case_id, f.rule) for f in crm.service.escalate()}

    assert fire(dt.datetime(2026, 11, 28, 12, tzinfo=UTC)) == set()  # Saturday: no business time passes
    assert fire(MON + 10 * H - MINUTE) == set()
    # one has been open 3 business hours (Fri 15-17, Mon 9-10), and its resolution clock has 1 h left
    assert fire(MON + 10 * H) == {(one.id, "stale"), (one.id, "near")}
    assert fire(MON + 10 * H) == set() and fire(MON + 10 * H + MINUTE) == set()  # once per crossing
    assert crm.cases.get(one.id).owner == "agent:lead" and crm.cases.get(one.id).escalated
    assert [(h.to_owner, h.by, h.reason) for h in crm.service.handovers(one.id)] == [
        ("agent:lead", "escalation", "near")
    ]
    clock.now = MON + 10.5 * H
    crm.service.set_status(one.id, "pending")
    clock.now = MON + 11 * H
    crm.service.set_status(one.id, "open")  # a new entry into "open": a new crossing at 14:00
    assert fire(MON + 11.5 * H) == set()  # two is still on hold: paused, nothing fires for it
    clock.now = MON + 12 * H
    crm.service.set_status(two.id, "open")  # two ran 1 h on Friday: 2 h more and it is 1 h before its breach
    assert fire(MON + 13 * H) == set()
    assert fire(MON + 14 * H - MINUTE) == set()
    assert fire(MON + 14 * H) == {(one.id, "stale"), (two.id, "near")}
    assert fire(MON + 15 * H) == {(two.id, "stale")}
    assert fire(MON + 20 * H) == set()
    fired = [(e.case_id, e.rule) for e in crm.records(CaseEscalation).stream(order_by=("at", "rule"))]
    assert sorted(fired) == sorted(pager.paged) and len(fired) == 5
    assert all(rule != "held" for _, rule in fired)
    crossings = {e.crossing for e in crm.service.escalations(one.id) if e.rule == "stale"}
    assert crossings == {f"open@{FRI.isoformat()}", f"open@{(MON + 11 * H).isoformat()}"}

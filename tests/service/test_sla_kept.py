"""The clocks kept at every write equal the clocks recomputed from the history, on every backend.

Random status sequences go through ``crm.service``; after each step the rows it keeps
(``sla_clocks``), run on to later instants, are compared with ``crm.service.sla``, and the
counts of ``sla_summary`` (computed in the store) with the recomputed clocks.
"""

from __future__ import annotations

import datetime as dt
import random

import attrs
import pytest

import crmkit
from crmkit import F
from crmkit.service import BusinessCalendar, Case, CaseStatus, Queue, SLAPolicy, SLAState
from crmkit.service.service import CASE_STATUS

H = dt.timedelta(hours=1)
T = dt.datetime(2026, 3, 27, 7, 10, tzinfo=dt.timezone.utc)  # a Friday morning; summer time starts on Sunday


#: The random steps: statuses (two built-in pausing ones, a declared one), responses, messages,
#: resolutions and switches of priority (and so of policy).
STEPS = ("pending", "waiting_on_customer", "on_hold", "waiting_on_supplier", "open")
STEPS += ("respond", "receive", "resolve", "priority")


def _fields(clock: object) -> tuple[object, ...]:
    names = ("clock", "policy", "target", "started_at", "due_at", "elapsed", "paused", "remaining", "breached")
    return tuple(getattr(clock, n) for n in (*names, "breached_at", "completed_at", "is_paused"))


@pytest.mark.parametrize("seed", range(3))
def test_kept_clocks_equal_the_clocks_recomputed_from_history(crm: crmkit.CRM, seed: int) -> None:
    rng = random.Random(seed)
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.calendars.add(
        BusinessCalendar(key="k", timezone="Europe/Bucharest", hours={"mon-fri": "09:00-12:00,13:00-17:00"})
    )
    crm.sla_policies.add(
        SLAPolicy(
            name="std",
            calendar="k",
            targets={"first_response": 2 * H, "next_response": H, "resolution": 9 * H},
            pause_statuses=frozenset({"waiting_on_customer", "on_hold"}),
        )
    )
    # a second policy for urgent cases (every hour counts, its own pause status): switching
    # priority switches policy mid-case, and while both apply the earliest deadline wins
    crm.sla_policies.add(
        SLAPolicy(
            name="urgent",
            applies_to=F("priority") == "urgent",
            targets={"first_response": H, "resolution": 4 * H},
            pause_statuses=frozenset({"on_hold"}),
        )
    )
    crm.case_statuses.add(CaseStatus(name="waiting_on_supplier", pausing=True))  # pauses under both
    checked = 0
    for n in range(3):
        case = crm.cases.add(Case(customer_id=ada.id, subject=f"c{n}", opened_at=T))
        at = T
        for _ in range(rng.randrange(3, 9)):
            at += dt.timedelta(minutes=rng.randrange(1, 900), seconds=rng.randrange(60))
            what = rng.choice(STEPS)
            if what == "priority":
                current = crm.cases.get(case.id)
                urgent = "normal" if current.priority == "urgent" else "urgent"
                crm.service.update(attrs.evolve(current, priority=urgent), at=at)
            elif what == "respond":
                crm.service.respond(case.id, at=at, by="agent:1")
            elif what == "receive":
                crm.service.receive(case.id, at=at)
            elif what == "resolve":
                crm.service.resolve(case.id, at=at)
            else:
                crm.service.set_status(case.id, what, at=at)
            for later in (at, at + dt.timedelta(minutes=rng.randrange(1, 3000)), at + 200 * H):
                kept = [_fields(c) for c in crm.service.sla_state(case.id, now=later)]
                assert kept == [_fields(c) for c in crm.service.sla(case.id, now=later)]
                checked += 1
    assert checked >= 27
    assert crm.records(SLAState).count() == 3 * 3 or crm.records(SLAState).count() >= 6


def test_the_summary_counts_in_the_store_what_the_clocks_say(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(
        SLAPolicy(
            name="std",
            targets={"first_response": H, "resolution": 4 * H},
            pause_statuses=frozenset({"waiting_on_customer"}),
        )
    )
    cases = [crm.cases.add(Case(customer_id=ada.id, subject=f"c{n}", opened_at=T)) for n in range(4)]
    crm.service.respond(cases[0].id, at=T + H / 2)  # first response met
    crm.service.respond(cases[1].id, at=T + 2 * H)  # first response breached
    crm.service.set_status(cases[2].id, "waiting_on_customer", at=T + H / 4)  # paused in time
    crm.service.resolve(cases[3].id, at=T + H / 2)  # never responded: first response keeps running
    now = T + 3 * H
    summary = {s.key: s for s in crm.service.sla_summary(now=now)}
    first, resolution = summary[("std", "first_response")], summary[("std", "resolution")]
    expected = {"first_response": [0, 0, 0, 0], "resolution": [0, 0, 0, 0]}
    for case in cases:
        for clock in crm.service.sla(case.id, now=now):
            row = expected[clock.clock]
            row[0] += 1
            row[1] += clock.breached
            row[2] += clock.completed_at is not None
            row[3] += clock.is_paused
    assert [first.clocks, first.breached, first.completed, first.paused] == expected["first_response"]
    assert [resolution.clocks, resolution.breached, resolution.completed, resolution.paused] == expected["resolution"]
    assert (first.breached, first.completed, first.paused, first.running) == (2, 2, 1, 1)
    # the status moves are the case's generic state changes
    moves = crm.state_changes.history(cases[2], stage_set=CASE_STATUS)
    assert [(m.from_stage, m.to_stage, m.occurred_at) for m in moves] == [("open", "waiting_on_customer", T + H / 4)]
    assert crm.records(SLAState).count(F("case_id") == cases[2].id) == 2
    # a case stored by any API has its clocks kept from its opening: the summary counts it at once
    crm.cases.add(Case(customer_id=ada.id, subject="new", opened_at=T + 2 * H))
    later = {s.key: s for s in crm.service.sla_summary(now=T + 4 * H)}[("std", "first_response")]
    assert (later.clocks, later.breached, later.running) == (5, 3, 2)  # the new case breached at T + 3h
    assert crm.service.refresh() == 5
    # routing through a queue moves the case's clocks to the queue's group
    crm.records(Queue).add(Queue(name="billing", members=frozenset({"agent:1"})))
    crm.service.route(cases[3].id, "billing", at=T + 4 * H)
    by_queue = {s.key: s.clocks for s in crm.service.sla_summary(now=T + 4 * H, group_by=("queue",))}
    assert by_queue == {(None,): 8, ("billing",): 2}
    assert {s.key: s for s in crm.service.sla_summary(now=T + 4 * H)}[("std", "first_response")] == later

"""The service API of the issue, as written, on memory, SQLite, PostgreSQL and MongoDB."""

from __future__ import annotations

import datetime as dt
import uuid

import attrs
import pytest

import crmkit
from crmkit import Channel, F, schema
from crmkit.service import BusinessCalendar, Case, CaseEscalation, Queue, SLAPolicy

UTC = dt.timezone.utc
T = dt.datetime(2026, 11, 27, 14, 30, tzinfo=UTC)  # a Friday, 16:30 in Bucharest
H = dt.timedelta(hours=1)


def office() -> BusinessCalendar:
    return BusinessCalendar(
        key="ro-office",
        timezone="Europe/Bucharest",
        hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"},
        holidays="RO",
        extra_holidays=(dt.date(2026, 12, 24),),
    )


def test_the_issue_api(crm: crmkit.CRM) -> None:
    pytest.importorskip("holidays")
    cal = office()
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    stored_cal = crm.calendars.add(cal)
    assert crm.calendars.get(cal.id) == stored_cal and stored_cal.hours == cal.hours
    policy = crm.sla_policies.add(
        SLAPolicy(
            name="urgent",
            applies_to=F("priority") == "urgent",
            calendar="ro-office",
            targets={"first_response": dt.timedelta(hours=1), "resolution": dt.timedelta(hours=8)},
            pause_statuses=frozenset({"waiting_on_customer"}),
        )
    )
    back = crm.sla_policies.get(policy.id)
    assert back == policy and back.condition == (F("priority") == "urgent")
    assert crm.sla_policies.count(F("name") == "urgent") == 1
    case = crm.cases.add(
        Case(customer_id=ada.id, subject="Invoice 8812 is wrong", priority="urgent", channel=Channel.EMAIL, opened_at=T)
    )
    handover = crm.service.assign(case.id, "agent:7", reason="billing")
    assert (handover.from_owner, handover.to_owner, handover.reason) == (None, "agent:7", "billing")
    crm.service.respond(case.id, at=T + dt.timedelta(minutes=40), by="agent:7")
    crm.service.set_status(case.id, "waiting_on_customer", at=T + dt.timedelta(hours=1))
    crm.service.set_status(case.id, "open", at=T + dt.timedelta(days=3))
    crm.service.resolve(case.id, at=T + dt.timedelta(days=4), resolution="credit note sent")
    clocks = {c.clock: c for c in crm.service.sla(case.id, now=T + dt.timedelta(days=5))}
    assert set(clocks) == {"first_response", "resolution"}
    first, resolution = clocks["first_response"], clocks["resolution"]
    # opened after hours on Friday: the 40 minutes before the response hold no working time
    assert first.completed_at == T + dt.timedelta(minutes=40) and first.elapsed == dt.timedelta(0)
    assert not first.breached and first.remaining == H
    # the resolution clock was paused from Friday 17:30 (after hours) to Monday 16:30 (a holiday,
    # St Andrew): no working time at all is counted; then Mon 30 Nov and Tue 1 Dec are holidays too,
    # so the case was resolved at Tue 16:30 with no working time spent
    assert resolution.completed_at == T + dt.timedelta(days=4)
    assert resolution.elapsed == resolution.paused == dt.timedelta(0)
    assert resolution.target == dt.timedelta(hours=8) and not resolution.breached
    assert crm.cases.get(case.id).status == "resolved"
    assert [h.to_owner for h in crm.service.handovers(case.id)] == ["agent:7"]


def test_pauses_stop_every_clock_and_a_status_change_is_no_response(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(
        SLAPolicy(
            name="all",
            targets={"first_response": 2 * H, "resolution": 10 * H},
            pause_statuses=frozenset({"waiting_on_customer", "on_hold"}),
        )
    )
    case = crm.cases.add(Case(customer_id=ada.id, subject="Help", opened_at=T))
    crm.service.set_status(case.id, "pending", at=T + H)  # not a response
    crm.service.set_status(case.id, "waiting_on_customer", at=T + 90 * dt.timedelta(minutes=1))
    crm.service.set_status(case.id, "on_hold", at=T + 5 * H)  # pending <-> on hold: no double count
    crm.service.set_status(case.id, "open", at=T + 7 * H)
    clocks = {c.clock: c for c in crm.service.sla(case.id, now=T + 8 * H)}
    first = clocks["first_response"]
    assert first.completed_at is None and first.paused == dt.timedelta(hours=5.5)
    assert first.elapsed == 8 * H and first.running == dt.timedelta(hours=2.5)
    assert first.breached and first.breached_at == T + 7.5 * H
    assert first.pauses == ((T + 1.5 * H, T + 7 * H),)
    crm.service.respond(case.id, at=T + 9 * H, by="agent:1")
    first = next(c for c in crm.service.sla(case.id, now=T + 10 * H) if c.clock == "first_response")
    assert first.breached and first.completed_at == T + 9 * H  # the breach stays


def test_switching_policy_keeps_time_counted_and_paused(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(
        SLAPolicy(
            name="normal",
            applies_to=F("priority") == "normal",
            targets={"resolution": 20 * H},
            pause_statuses=frozenset({"waiting_on_customer"}),
        )
    )
    crm.sla_policies.add(
        SLAPolicy(
            name="high",
            applies_to=F("priority") == "high",
            targets={"resolution": 6 * H},
            pause_statuses=frozenset({"waiting_on_customer"}),
        )
    )
    case = crm.cases.add(Case(customer_id=ada.id, subject="Help", opened_at=T))
    crm.service.set_status(case.id, "waiting_on_customer", at=T + 2 * H)
    crm.service.set_status(case.id, "open", at=T + 5 * H)
    crm.service.update(attrs.evolve(crm.cases.get(case.id), priority="high"), at=T + 6 * H)
    clock = crm.service.sla(case.id, now=T + 8 * H)[0]
    assert clock.policy == "high" and clock.target == 6 * H
    # 2 h counted and 3 h paused under "normal", then 3 h under "high"
    assert (clock.elapsed, clock.paused, clock.running) == (8 * H, 3 * H, 5 * H)
    assert clock.remaining == H and clock.due_at == T + 9 * H and not clock.breached


def test_the_earliest_deadline_wins(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(SLAPolicy(name="slow", targets={"first_response": 4 * H}))
    crm.sla_policies.add(SLAPolicy(name="fast", applies_to=F("channel") == "email", targets={"first_response": H}))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Help", opened_at=T, channel=Channel.EMAIL))
    (clock,) = crm.service.sla(case.id, now=T + dt.timedelta(minutes=10))
    assert clock.policy == "fast" and clock.due_at == T + H


def test_routing_escalation_and_reports_of_handovers(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(
        SLAPolicy(
            name="std",
            targets={"resolution": 4 * H},
            pause_statuses=frozenset({"waiting_on_customer"}),
            escalations=(
                {"name": "stuck", "status": "open", "after": 2 * H, "reassign_to": "agent:lead"},
                {"name": "near", "clock": "resolution", "before_breach": H},
            ),
        )
    )
    crm.records(Queue).add(Queue(name="billing", members=frozenset({"agent:1", "agent:2", "agent:3"})))
    cases = [crm.cases.add(Case(customer_id=ada.id, subject=f"c{i}", opened_at=T)) for i in range(7)]
    owners = [crm.service.route(c.id, "billing", at=T).to_owner for c in cases]
    assert sorted(owners.count(m) for m in ("agent:1", "agent:2", "agent:3")) == [2, 2, 3]
    crm.service.set_status(cases[0].id, "waiting_on_customer", at=T + H)
    assert crm.service.escalate(T + H) == []
    fired = crm.service.escalate(T + 3 * H + dt.timedelta(minutes=1))
    assert sorted({f.rule for f in fired}) == ["near", "stuck"] and len(fired) == 12  # not the paused case
    assert crm.service.escalate(T + 3 * H + dt.timedelta(minutes=2)) == []  # once per crossing
    assert crm.records(CaseEscalation).count(F("case_id") == cases[0].id) == 0
    assert crm.cases.get(cases[1].id).owner == "agent:lead" and crm.cases.get(cases[1].id).escalated
    assert [h.reason for h in crm.service.handovers(cases[1].id)] == [None, "stuck"]
    # a new entry into "open" is a new crossing
    crm.service.set_status(cases[0].id, "open", at=T + 4 * H)
    again = crm.service.escalate(T + 6 * H + dt.timedelta(minutes=1))
    assert {(f.case_id, f.rule) for f in again} >= {(cases[0].id, "stuck")}


def test_a_stored_condition_survives_every_backend(crm: crmkit.CRM) -> None:
    from decimal import Decimal

    where = (
        (F("priority").in_(["urgent", "high"]) | ~(F("subject").contains("x")))
        & (F("opened_at") >= T)
        & (F("customer_id") != uuid.UUID(int=7))
        & (F("attributes.amount") > Decimal("1.50"))
        & (F("type") == None)  # noqa: E711
    )
    policy = crm.sla_policies.add(SLAPolicy(name="p", applies_to=where, targets={"resolution": H}))
    assert schema.parse_condition(crm.sla_policies.get(policy.id).applies_to) == where
    with pytest.raises(crmkit.ValidationError) as error:
        SLAPolicy(name="q", applies_to=object(), targets={"resolution": H})  # type: ignore[arg-type]
    assert error.value.field == "applies_to"


def test_a_case_interactions_are_responses_and_appear_in_the_timeline(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    bob = crm.customers.add(crmkit.Customer(kind="person", name="Bob"))
    crm.sla_policies.add(SLAPolicy(name="std", targets={"first_response": H, "next_response": H}))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Help", opened_at=T))
    mail = crmkit.Interaction(
        customer_id=ada.id,
        channel=Channel.EMAIL,
        direction="outbound",
        occurred_at=T + H / 2,
        subject="We are on it",
        participants={"agent:7"},
    )
    crm.service.log(case.id, mail)
    reply = attrs.evolve(mail, id=uuid.uuid4(), direction="inbound", occurred_at=T + 2 * H, subject="Still broken")
    crm.service.log(case.id, reply)
    with pytest.raises(crmkit.ValidationError) as error:
        crm.service.log(case.id, attrs.evolve(mail, customer_id=bob.id))
    assert error.value.field == "customer_id"
    linked = crm.service.interactions(case.id)
    assert [i.direction for i in linked] == ["outbound", "inbound"]
    assert {e.record.id for e in crm.timeline(ada.id)} >= {i.id for i in linked}
    clocks = {c.clock: c for c in crm.service.sla(case.id, now=T + 4 * H)}
    assert clocks["first_response"].completed_at == T + H / 2 and clocks["first_response"].completed_at is not None
    nxt = clocks["next_response"]
    assert nxt.started_at == T + 2 * H and nxt.completed_at is None and nxt.breached and nxt.breached_at == T + 3 * H


def test_reports_are_computed_in_the_store(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(SLAPolicy(name="std", targets={"first_response": H, "resolution": 4 * H}))
    crm.records(Queue).add(Queue(name="billing", members=frozenset({"agent:1"})))
    made = []
    for i, (priority, respond_after) in enumerate([("high", 30), ("high", 90), ("normal", 20), ("normal", 200)]):
        case = crm.cases.add(Case(customer_id=ada.id, subject=f"c{i}", opened_at=T, priority=priority))
        crm.service.route(case.id, "billing", at=T)
        crm.service.respond(case.id, at=T + dt.timedelta(minutes=respond_after), by="agent:1")
        made.append(case)
    crm.service.resolve(made[0].id, at=T + 2 * H)
    crm.service.resolve(made[1].id, at=T + 5 * H)
    opened = crm.service.open_cases(("queue", "priority"), age="day")
    assert [(r.key, r.count) for r in opened] == [
        (("billing", "normal", T.date()), 2),
    ]
    rates = {(a.clock, a.met, a.breached) for a in crm.service.sla_attainment(period="month")}
    assert rates == {("first_response", 2, 2), ("resolution", 1, 1)}
    times = crm.service.response_times(("clock",))
    first = times.get("first_response")
    assert first is not None and first.count == 4
    assert first["mean(running_seconds)"] == (30 + 90 + 20 + 200) * 60 // 4
    assert first["max(running_seconds)"] == 200 * 60


@pytest.mark.parametrize("seed", range(3))
def test_stored_outcomes_equal_the_clocks_recomputed_from_history(crm: crmkit.CRM, seed: int) -> None:
    import random

    from crmkit.service import SLAOutcome

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
    for n in range(4):
        case = crm.cases.add(Case(customer_id=ada.id, subject=f"c{n}", opened_at=T))
        at = T
        for _ in range(rng.randrange(3, 9)):
            at += dt.timedelta(minutes=rng.randrange(1, 900))
            what = rng.choice(["pending", "waiting_on_customer", "on_hold", "open", "respond", "receive"])
            if what == "respond":
                crm.service.respond(case.id, at=at, by="agent:1")
            elif what == "receive":
                crm.service.receive(case.id, at=at)
            else:
                crm.service.set_status(case.id, what, at=at)
        at += dt.timedelta(minutes=rng.randrange(1, 900))
        crm.service.resolve(case.id, at=at)
        stored = {(o.clock, o.started_at): o for o in crm.records(SLAOutcome).stream(F("case_id") == case.id)}
        clocks = {c.clock: c for c in crm.service.sla(case.id, now=at + 100 * H)}
        for name in ("first_response", "resolution"):
            clock = clocks[name]
            if clock.completed_at is None:
                assert (name, clock.started_at) not in stored
                continue
            outcome = stored[(name, clock.started_at)]
            assert outcome.running_seconds == int(clock.running.total_seconds())
            assert outcome.paused_seconds == int(clock.paused.total_seconds())
            assert outcome.outcome == ("breached" if clock.breached else "met")

"""Case statuses: custom ones declared as pausing or not, and reopening, on every store."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

import crmkit
from crmkit import ConflictError, F, ValidationError
from crmkit.service import STATUSES, Case, CaseEvent, CaseStatus, SLAOutcome, SLAPolicy

H = dt.timedelta(hours=1)
T = dt.datetime(2026, 11, 27, 8, tzinfo=dt.timezone.utc)


def _fields(clock: object) -> tuple[object, ...]:
    names = ("clock", "policy", "target", "started_at", "due_at", "elapsed", "paused", "remaining", "breached")
    return tuple(getattr(clock, n) for n in (*names, "breached_at", "completed_at", "is_paused"))


def test_custom_statuses_are_declared_pausing_or_not(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    # the policy lists no pause status of its own: the declaration alone pauses
    crm.sla_policies.add(SLAPolicy(name="std", targets={"first_response": 4 * H, "resolution": 10 * H}))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Parts", opened_at=T))
    with pytest.raises(ValidationError) as error:
        crm.service.set_status(case.id, "waiting_on_supplier", at=T + H)
    assert error.value.field == "status"
    assert crm.cases.get(case.id).status == "open"  # nothing half-written
    assert crm.records(CaseEvent).count((F("case_id") == case.id) & (F("kind") == "status")) == 0
    crm.case_statuses.add(CaseStatus(name="waiting_on_supplier", pausing=True, label="Waiting on a supplier"))
    crm.case_statuses.add(CaseStatus(name="escalated_to_billing"))
    assert crm.service.statuses() == {
        **dict.fromkeys(STATUSES, False),
        "waiting_on_supplier": True,
        "escalated_to_billing": False,
    }
    crm.service.set_status(case.id, "waiting_on_supplier", at=T + H)
    crm.service.set_status(case.id, "escalated_to_billing", at=T + 3 * H)
    clocks = {c.clock: c for c in crm.service.sla(case.id, now=T + 4 * H)}
    for clock in clocks.values():  # every clock, first response included, stood still for two hours
        assert (clock.elapsed, clock.paused, clock.running) == (4 * H, 2 * H, 2 * H)
        assert clock.pauses == ((T + H, T + 3 * H),) and not clock.is_paused
    assert clocks["first_response"].due_at == T + 6 * H
    crm.service.set_status(case.id, "waiting_on_supplier", at=T + 5 * H)
    now = T + 9 * H
    paused = {c.clock: c for c in crm.service.sla(case.id, now=now)}
    assert all(c.is_paused and c.due_at is None and c.running == 3 * H for c in paused.values())
    # the clocks kept at each write say the same
    assert [_fields(c) for c in crm.service.sla_state(case.id, now=now)] == [
        _fields(c) for c in crm.service.sla(case.id, now=now)
    ]
    summary = {s.key: s for s in crm.service.sla_summary(now=now)}
    assert summary[("std", "first_response")].paused == 1


def test_a_status_declaration_is_checked(crm: crmkit.CRM) -> None:
    for name in ("resolved", "closed"):
        with pytest.raises(ValidationError) as error:
            CaseStatus(name=name, pausing=True)
        assert error.value.field == "pausing"
    with pytest.raises(ValidationError) as error:
        CaseStatus(name="not an identifier")
    assert error.value.field == "name"
    crm.case_statuses.add(CaseStatus(name="on_hold", pausing=True))  # a built-in one made pausing everywhere
    with pytest.raises(ConflictError):
        crm.case_statuses.add(CaseStatus(name="on_hold"))
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(SLAPolicy(name="std", targets={"resolution": 10 * H}))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Hold", opened_at=T))
    crm.service.set_status(case.id, "on_hold", at=T + H)
    (clock,) = crm.service.sla(case.id, now=T + 3 * H)
    assert clock.paused == 2 * H and clock.is_paused
    # a status changes only through the desk, which keeps the history the clocks come from
    with pytest.raises(ValidationError) as error:
        crm.service.update(attrs.evolve(crm.cases.get(case.id), status="open", priority="high"))
    assert error.value.field == "status"
    assert crm.cases.get(case.id).priority == "normal"


def test_reopening_does_not_restart_the_first_resolution(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.sla_policies.add(SLAPolicy(name="std", targets={"resolution": 4 * H}))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Again", opened_at=T))
    crm.service.resolve(case.id, at=T + 3 * H, resolution="fixed")
    crm.service.set_status(case.id, "open", at=T + 5 * H)  # the customer says it is not fixed
    assert crm.cases.get(case.id).status == "open"
    assert [e.kind for e in crm.service.history(case.id) if e.kind != "policy"] == ["resolved", "reopened"]
    (clock,) = crm.service.sla(case.id, now=T + 20 * H)
    assert clock.completed_at == T + 3 * H and clock.running == 3 * H and not clock.breached
    crm.service.resolve(case.id, at=T + 30 * H, resolution="fixed for good")
    (clock,) = crm.service.sla(case.id, now=T + 40 * H)
    assert clock.completed_at == T + 3 * H and not clock.breached
    assert crm.cases.get(case.id).resolved_at == T + 3 * H
    (outcome,) = crm.records(SLAOutcome).stream(F("case_id") == case.id)
    assert (outcome.clock, outcome.outcome, outcome.running_seconds) == ("resolution", "met", 3 * 3600)
    assert [_fields(c) for c in crm.service.sla_state(case.id, now=T + 40 * H)] == [
        _fields(c) for c in crm.service.sla(case.id, now=T + 40 * H)
    ]


def test_a_case_holds_every_field_of_the_issue(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    parent = crm.cases.add(Case(customer_id=ada.id, subject="Outage", opened_at=T, owner="queue:network"))
    child = crm.cases.add(
        Case(
            customer_id=ada.id,
            subject="No internet at the shop",
            description="Since this morning",
            channel=crmkit.Channel.PHONE,
            priority="high",
            type="incident",
            owner="agent:7",
            queue="network",
            team="field",
            parent_id=parent.id,
            opened_at=T + H,
        )
    )
    back = crm.cases.get(child.id)
    assert back == child and back.status == "open" and back.channel == "phone"
    assert crm.cases.count((F("parent_id") == parent.id) & (F("owner") == "agent:7") & (F("type") == "incident")) == 1
    crm.cases.delete(parent.id)  # the children stay, without their parent
    assert crm.cases.get(child.id).parent_id is None

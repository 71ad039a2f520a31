"""Teams as records: unique names, members that routing draws on, team names checked by the desk."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

import crmkit
from crmkit import ConflictError, NotFound, ValidationError
from crmkit.service import Case, Queue, Team

T = dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.timezone.utc)


def test_a_team_is_a_stored_record_with_a_unique_name(crm: crmkit.CRM) -> None:
    team = crm.teams.add(
        Team(name="billing", members=frozenset({"agent:1", "agent:2"}), calendar="ro-office", lead="agent:1")
    )
    assert crm.teams.get(team.id) == team
    assert crm.service.team_members("billing") == frozenset({"agent:1", "agent:2"})
    assert crm.service.team("billing").lead == "agent:1"
    with pytest.raises(ConflictError):
        crm.teams.add(Team(name="billing"))
    with pytest.raises(NotFound):
        crm.service.team_members("nobody")


def test_a_queue_without_members_routes_to_its_teams_members(crm: crmkit.CRM) -> None:
    crm.teams.add(Team(name="billing", members=frozenset({"agent:1", "agent:2"})))
    crm.records(Queue).add(Queue(name="refunds", members=frozenset(), team="billing"))
    crm.records(Queue).add(Queue(name="calm", members=frozenset(), team="billing", strategy="least_busy"))
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    owners = []
    for i in range(4):
        case = crm.cases.add(Case(customer_id=ada.id, subject=f"refund {i}", opened_at=T))
        owners.append(crm.service.route(case.id, "refunds").to_owner)
        assert crm.cases.get(case.id).team == "billing"
    assert sorted(owners) == ["agent:1", "agent:1", "agent:2", "agent:2"]
    case = crm.cases.add(Case(customer_id=ada.id, subject="calm", opened_at=T))
    assert crm.service.route(case.id, "calm").to_owner in {"agent:1", "agent:2"}


def test_unknown_team_names_are_refused_once_teams_are_stored(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.records(Queue).add(Queue(name="sales", members=frozenset({"agent:9"}), team="nordics"))
    case = crm.cases.add(Case(customer_id=ada.id, subject="free label", opened_at=T))
    # no team stored yet: team names are free labels
    assert crm.service.route(case.id, "sales").to_owner == "agent:9"
    assert crm.service.update(attrs.evolve(crm.cases.get(case.id), team="anything")).team == "anything"
    crm.teams.add(Team(name="billing", members=frozenset({"agent:1"})))
    with pytest.raises(ValidationError) as refused:
        crm.service.route(case.id, "sales")
    assert refused.value.field == "team"
    with pytest.raises(ValidationError) as refused:
        crm.service.update(attrs.evolve(crm.cases.get(case.id), team="nordic"))
    assert refused.value.field == "team"
    assert crm.cases.get(case.id).team == "anything"  # nothing half-written
    assert crm.service.update(attrs.evolve(crm.cases.get(case.id), team="billing")).team == "billing"

"""Service: cases, business calendars, SLA clocks that pause, assignment, hand-over and escalation.

::

    from crmkit.service import BusinessCalendar, Case, SLAPolicy

    crm.calendars.add(BusinessCalendar(key="ro-office", timezone="Europe/Bucharest",
                                       hours={"mon-fri": "09:00-17:00"}, holidays="RO"))
    crm.sla_policies.add(SLAPolicy(name="urgent", applies_to=F("priority") == "urgent",
                                   calendar="ro-office", targets={"first_response": dt.timedelta(hours=1)},
                                   pause_statuses=frozenset({"waiting_on_customer"})))
    case = crm.cases.add(Case(customer_id=ada.id, subject="Invoice", priority="urgent", opened_at=t))
    crm.service.respond(case.id, at=t + dt.timedelta(minutes=40), by="agent:7")
    crm.service.sla(case.id)

The aggregates (``calendars``, ``sla_policies``, ``cases``, ``service_queues``, ``teams``,
``case_assignments``, ``case_events``, ``case_escalations``, ``sla_outcomes``, ``sla_clocks``,
``case_statuses``)
are crmkit's own and stored by every backend; ``crm.service`` is the desk (see ``crmkit.service.service``).
"""

from crmkit.service.calendar import BusinessCalendar, Holiday
from crmkit.service.model import (
    CLOCKS,
    CLOSED_STATUSES,
    STATUSES,
    Case,
    CaseAssignment,
    CaseEscalation,
    CaseEvent,
    CaseStatus,
    Escalation,
    Queue,
    SLAOutcome,
    SLAPolicy,
    SLAState,
    Target,
    Team,
)
from crmkit.service.sla import SLAClock

#: The aggregates of the service feature, registered by crmkit itself.
AGGREGATES: tuple[type, ...] = (
    BusinessCalendar,
    SLAPolicy,
    Queue,
    Team,
    Case,
    CaseAssignment,
    CaseEvent,
    CaseEscalation,
    SLAOutcome,
    SLAState,
    CaseStatus,
)

__all__ = [
    "AGGREGATES",
    "CLOCKS",
    "CLOSED_STATUSES",
    "STATUSES",
    "BusinessCalendar",
    "Case",
    "CaseAssignment",
    "CaseEscalation",
    "CaseEvent",
    "CaseStatus",
    "Escalation",
    "Holiday",
    "Queue",
    "SLAClock",
    "SLAOutcome",
    "SLAPolicy",
    "SLAState",
    "Target",
    "Team",
]

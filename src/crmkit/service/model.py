"""The aggregates of the service feature: cases, SLA policies, queues, teams, hand-overs, case history, escalations.

Each is declared once with ``crmkit.schema``; every backend stores it with no code of its own.
The SLA clocks are not stored: they are derived from a case's history (``case_events``) and
the policies, whenever they are asked for.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit.query import Expr

__all__ = [
    "CLOCKS",
    "CLOSED_STATUSES",
    "STATUSES",
    "Case",
    "CaseAssignment",
    "CaseEscalation",
    "CaseEvent",
    "CaseStatus",
    "Escalation",
    "Queue",
    "SLAOutcome",
    "SLAPolicy",
    "SLAState",
    "Target",
    "Team",
]

#: The statuses every case may take; custom ones are declared as ``CaseStatus`` records. A status
#: pauses the clocks when its declaration says so (under every policy) or a policy lists it
#: in ``pause_statuses`` (under that policy).
STATUSES: tuple[str, ...] = ("open", "pending", "waiting_on_customer", "on_hold", "resolved", "closed")
#: Statuses in which a case is done: its resolution clock has stopped.
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "closed"})
#: The clocks a policy may set targets for.
CLOCKS: tuple[str, ...] = ("first_response", "next_response", "resolution")


def _status(value: Any) -> Any:
    from crmkit._validation import check_identifier

    if isinstance(value, str):
        check_identifier("status", value)
    return value


def _plain_text(value: Any) -> Any:
    return str.__str__(value) if isinstance(value, str) else value


@schema.aggregate(
    "cases",
    label="case",
    time_field="opened_at",
    indexes=[("customer_id", "opened_at"), ("status", "priority"), ("owner", "status"), ("queue", "status")],
)
class Case(schema.Record):
    """A customer's matter, taken in on a channel and tracked until it is closed."""

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    subject: str = schema.text(sortable=True, personal="free_text")
    opened_at: dt.datetime = schema.instant(sortable=True, personal=False)
    description: str | None = schema.text(default=None, blank=True, personal="free_text")
    channel: str | None = schema.text(default=None, convert=_plain_text, personal=False)
    priority: str = schema.text(default="normal", sortable=True, personal=False)
    type: str | None = schema.text(default=None, sortable=True, personal=False)
    status: str = schema.text(default="open", sortable=True, convert=_status, personal=False)
    #: Who holds the case: a staff member (``agent:7``) or a queue (``queue:billing``).
    owner: str | None = schema.text(default=None, sortable=True, personal=False)
    #: The queue the case was routed through, if any.
    queue: str | None = schema.text(default=None, sortable=True, personal=False)
    team: str | None = schema.text(default=None, sortable=True, personal=False)
    skills: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    parent_id: uuid.UUID | None = schema.ref("cases", on_delete="set_null", default=None, personal=False)
    first_response_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    resolved_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    resolution: str | None = schema.text(default=None, personal="free_text")
    escalated: bool = schema.boolean(default=False, personal=False)
    attributes: Mapping[str, object] = schema.attributes(personal="free_text")

    #: The test kit draws statuses from these (a status is an identifier; random text is not).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"status": (*STATUSES, "escalated_to_billing")}


@schema.aggregate("case_statuses", label="case status", unique=[("name",)])
class CaseStatus(schema.Record):
    """A status cases may take, declared as pausing the SLA clocks or not.

    The built-in statuses (``STATUSES``) need no declaration; any other status must be
    declared before ``crm.service.set_status`` moves a case to it. A pausing status stops
    every clock of a case under every policy (a policy's ``pause_statuses`` adds pausing
    statuses of its own); a built-in status may be declared too, to make it pausing
    everywhere. ``resolved`` and ``closed`` end a case and cannot pause it.
    """

    name: str = schema.text(sortable=True, convert=_status, personal=False)
    pausing: bool = schema.boolean(default=False, personal=False)
    label: str | None = schema.text(default=None, personal=False)

    #: The test kit draws names from these (a status is an identifier; random text is not; the
    #: name is a unique key, so there are many).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "name": ("on_hold", "escalated_to_billing", *(f"custom_{i}" for i in range(1000)))
    }

    def __attrs_post_init__(self) -> None:
        if self.pausing and self.name in CLOSED_STATUSES:
            raise ValidationError("pausing", f"{self.name} ends a case; it cannot pause its clocks", self.pausing)


@schema.value_object
class Target:
    """A clock's target under a policy, in business time (seconds)."""

    clock: str = schema.text(personal=False)
    seconds: int = schema.integer(personal=False)


@schema.value_object
class Escalation:
    """A rule that escalates a case once per crossing of a threshold, in business time.

    ``after_seconds`` with ``status``: after that long in the status (each entry into the
    status is a new crossing); ``before_breach_seconds`` with ``clock``: that long before the
    clock's target is reached. An escalation never fires while the case is paused.
    """

    name: str = schema.text(personal=False)
    status: str | None = schema.text(default=None, personal=False)
    after_seconds: int | None = schema.integer(default=None, personal=False)
    clock: str | None = schema.text(default=None, personal=False)
    before_breach_seconds: int | None = schema.integer(default=None, personal=False)
    reassign_to: str | None = schema.text(default=None, personal=False)


def _seconds(value: Any, field: str) -> int:
    if isinstance(value, dt.timedelta):
        if value <= dt.timedelta(0) or value.microseconds:
            raise ValidationError(field, "must be a positive number of whole seconds", value)
        return int(value.total_seconds())
    return value  # type: ignore[no-any-return]


def _targets(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = []
        for clock, duration in value.items():
            if clock not in CLOCKS:
                raise ValidationError("targets", f"clocks are {', '.join(CLOCKS)}", clock)
            out.append(Target(clock=clock, seconds=_seconds(duration, "targets")))
        return tuple(sorted(out, key=lambda t: CLOCKS.index(t.clock)))
    return value


def _escalations(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        out = []
        for item in value:
            if isinstance(item, Mapping):
                item = dict(item)
                for key in ("after", "before_breach"):
                    if key in item:
                        item[f"{key}_seconds"] = _seconds(item.pop(key), "escalations")
                item = Escalation(**item)
            if isinstance(item, Escalation):
                by_time = item.after_seconds is not None
                by_breach = item.before_breach_seconds is not None
                if by_time == by_breach:
                    raise ValidationError(
                        "escalations", "a rule has either after (with a status) or before_breach", item
                    )
                if by_breach and item.clock not in CLOCKS:
                    raise ValidationError("escalations", f"before_breach names a clock: {', '.join(CLOCKS)}", item)
            out.append(item)
        return tuple(out)
    return value


@schema.aggregate("sla_policies", label="SLA policy", unique=[("name",)])
class SLAPolicy(schema.Record):
    """Service-level targets for the cases a condition selects, on a business calendar.

    ``applies_to`` is a query on cases (kept as its text; ``policy.condition`` reads it);
    ``calendar`` is the key of a stored ``BusinessCalendar`` (None: every hour counts);
    ``targets`` maps clocks to durations; a case in one of ``pause_statuses`` stops every
    clock. ``escalations`` lists escalation rules (mappings with ``name``, ``status`` and
    ``after``, or ``clock`` and ``before_breach``).
    """

    name: str = schema.text(sortable=True, personal=False)
    targets: tuple[Target, ...] = schema.many(Target, convert=_targets, personal=False)
    applies_to: str = schema.condition(default="true", personal=False)
    calendar: str | None = schema.text(default=None, personal=False)
    pause_statuses: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    escalations: tuple[Escalation, ...] = schema.many(Escalation, default=(), convert=_escalations, personal=False)

    #: Valid values the test kit draws: stored conditions and escalation rules (random ones are refused).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "applies_to": (
            "true",
            '{"field":"priority","op":"==","value":"urgent"}',
            '{"and":[{"field":"priority","op":"==","value":"high"},{"field":"channel","op":"==","value":"email"}]}',
        ),
        "escalations": (
            (),
            (Escalation(name="stuck", status="open", after_seconds=3600),),
            (Escalation(name="near", clock="resolution", before_breach_seconds=600, reassign_to="agent:lead"),),
        ),
    }

    @property
    def condition(self) -> Expr:
        """The query on cases this policy applies to."""
        return schema.parse_condition(self.applies_to)

    def target(self, clock: str) -> dt.timedelta | None:
        """The target of a clock, or None when the policy sets none."""
        for target in self.targets:
            if target.clock == clock:
                return dt.timedelta(seconds=target.seconds)
        return None


@schema.aggregate("service_queues", label="queue", unique=[("name",)])
class Queue(schema.Record):
    """A queue of staff members that cases are routed through, with its assignment strategy.

    ``skills`` maps a member to the skills they have (``agent:7=billing``), used by the
    ``skills`` strategy; ``cursor`` is the round-robin position, kept by the store.
    """

    name: str = schema.text(sortable=True, personal=False)
    members: frozenset[str] = schema.text_set(personal=False)
    strategy: str = schema.text(default="round_robin", personal=False)
    team: str | None = schema.text(default=None, personal=False)
    calendar: str | None = schema.text(default=None, personal=False)
    skills: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    cursor: int = schema.integer(default=0, personal=False)

    def skills_of(self, member: str) -> frozenset[str]:
        """The skills listed for a member."""
        return frozenset(s.split("=", 1)[1] for s in self.skills if s.split("=", 1)[0] == member)


@schema.aggregate("teams", label="team", unique=[("name",)])
class Team(schema.Record):
    """A team of staff members with its working calendar and, optionally, its lead.

    ``calendar`` is the key of a stored ``BusinessCalendar``. Once a team is stored, a queue's
    or case's ``team`` given to ``crm.service`` must name one; a queue with no members of its
    own routes to its team's members.
    """

    name: str = schema.text(sortable=True, personal=False)
    members: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    calendar: str | None = schema.text(default=None, personal=False)
    lead: str | None = schema.text(default=None, personal=False)


@schema.aggregate("case_assignments", label="hand-over", time_field="at", indexes=[("case_id", "at")])
class CaseAssignment(schema.Record):
    """A change of a case's owner: from whom, to whom, by whom, when and why."""

    case_id: uuid.UUID = schema.ref("cases", on_delete="cascade", personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    to_owner: str = schema.text(sortable=True, personal=False)
    from_owner: str | None = schema.text(default=None, sortable=True, personal=False)
    by: str | None = schema.text(default=None, personal=False)
    reason: str | None = schema.text(default=None, personal="free_text")
    strategy: str | None = schema.text(default=None, personal=False)


@schema.aggregate("case_events", label="case event", time_field="at", indexes=[("case_id", "at")])
class CaseEvent(schema.Record):
    """One step of a case's history, from which its SLA clocks are derived.

    ``kind``: ``opened``, ``status`` (to ``status``), ``response`` (outbound, by staff),
    ``message`` (inbound, from the customer), ``resolved``, ``reopened``, ``policy``.
    ``seq`` orders events at the same instant.
    """

    case_id: uuid.UUID = schema.ref("cases", on_delete="cascade", personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    seq: int = schema.integer(sortable=True, personal=False)
    kind: str = schema.text(sortable=True, personal=False)
    status: str | None = schema.text(default=None, personal=False)
    by: str | None = schema.text(default=None, personal="identity")
    note: str | None = schema.text(default=None, blank=True, personal="free_text")


@schema.aggregate(
    "case_escalations",
    label="escalation",
    time_field="at",
    unique=[("case_id", "rule", "crossing")],
    indexes=[("case_id", "at")],
)
class CaseEscalation(schema.Record):
    """An escalation rule fired for a case, once per crossing (the unique key keeps it once)."""

    case_id: uuid.UUID = schema.ref("cases", on_delete="cascade", personal=False)
    rule: str = schema.text(sortable=True, personal=False)
    crossing: str = schema.text(personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    policy: str = schema.text(personal=False)
    reassigned_to: str | None = schema.text(default=None, personal=False)


@schema.aggregate(
    "sla_outcomes",
    label="SLA outcome",
    time_field="completed_at",
    unique=[("case_id", "clock", "started_at")],
    indexes=[("policy", "completed_at"), ("case_id", "clock")],
)
class SLAOutcome(schema.Record):
    """How a clock ended, stored when it completes: the rows SLA reports are computed from in the store.

    Business times are whole seconds; ``outcome`` is ``met`` or ``breached``; the case's
    priority, queue and team are copied for grouping.
    """

    case_id: uuid.UUID = schema.ref("cases", on_delete="cascade", personal=False)
    clock: str = schema.text(sortable=True, personal=False)
    policy: str = schema.text(sortable=True, personal=False)
    started_at: dt.datetime = schema.instant(sortable=True, personal=False)
    completed_at: dt.datetime = schema.instant(sortable=True, personal=False)
    outcome: str = schema.text(sortable=True, personal=False)
    target_seconds: int = schema.integer(personal=False)
    running_seconds: int = schema.integer(sortable=True, personal=False)
    paused_seconds: int = schema.integer(personal=False)
    priority: str | None = schema.text(default=None, sortable=True, personal=False)
    queue: str | None = schema.text(default=None, sortable=True, personal=False)
    team: str | None = schema.text(default=None, sortable=True, personal=False)


@schema.aggregate(
    "sla_clocks",
    label="SLA clock",
    time_field="as_of",
    unique=[("case_id", "clock")],
    indexes=[("policy", "clock"), ("breach_after",)],
)
class SLAState(schema.Record):
    """A case's clock as of its latest event, kept by ``crm.service`` at every write.

    Between two events a clock only runs on (or stays paused, or stays completed), so the
    state at any later instant follows from this row alone: ``crm.service.sla_state`` reads
    it for one case, ``crm.service.sla_summary`` counts breached, running, paused and
    completed clocks at an instant in the store. ``breach_after`` is the instant after
    which a running clock is breached (None: it is not running); business times are whole
    microseconds (the target in seconds); the case's priority, queue and team are copied for grouping.
    """

    case_id: uuid.UUID = schema.ref("cases", on_delete="cascade", personal=False)
    clock: str = schema.text(sortable=True, personal=False)
    policy: str = schema.text(sortable=True, personal=False)
    as_of: dt.datetime = schema.instant(sortable=True, personal=False)
    started_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    target_seconds: int = schema.integer(personal=False)
    elapsed_us: int = schema.integer(personal=False)
    paused_us: int = schema.integer(personal=False)
    is_paused: bool = schema.boolean(default=False, personal=False)
    due_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    breach_after: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    breached_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    completed_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    priority: str | None = schema.text(default=None, sortable=True, personal=False)
    queue: str | None = schema.text(default=None, sortable=True, personal=False)
    team: str | None = schema.text(default=None, sortable=True, personal=False)

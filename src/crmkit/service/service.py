"""``crm.service``: assignment and hand-over, status changes, responses, SLA clocks and escalation.

Every write goes through one transaction and leaves a record: a ``CaseAssignment`` per
change of owner, a ``CaseEvent`` per step of the case's life, a ``CaseEscalation`` per rule
fired. The SLA clocks are computed from that history on demand (``sla``, ``sla_all``).
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, NotFound, ValidationError
from crmkit._validation import check_identifier, utc
from crmkit.aggregation import Aggregation
from crmkit.interactions import Interaction
from crmkit.query import ALL, F, In, evaluate
from crmkit.service.calendar import BusinessCalendar, engine
from crmkit.service.model import (
    CLOSED_STATUSES,
    STATUSES,
    Case,
    CaseAssignment,
    CaseEscalation,
    CaseEvent,
    CaseStatus,
    Queue,
    SLAOutcome,
    SLAPolicy,
    SLAState,
    Team,
)
from crmkit.service.sla import SLAClock, clocks, kept, running_on

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["BUILTIN_STRATEGIES", "CASE_STATUS", "Service", "SLASummary"]

#: The stage set of a case's status in ``crm.state_changes``.
CASE_STATUS = "case_status"

#: A strategy picks the member of a queue who gets a case: ``strategy(crm, queue, case) -> member``.
Strategy = Callable[["CRM", Queue, Case], str]

_BATCH = 1000
#: How many times ``route`` tries a pick that lost a race for a queue's turn.
_ROUTE_ATTEMPTS = 100
#: The fields of a kept clock that a recomputation rewrites.
_KEPT = frozenset(
    [
        "policy",
        "as_of",
        "started_at",
        "target_seconds",
        "elapsed_us",
        "paused_us",
        "is_paused",
        "due_at",
        "breach_after",
        "breached_at",
        "completed_at",
        "priority",
        "queue",
        "team",
    ]
)


def _open(crm: CRM) -> Any:
    return ~F("status").in_(sorted(CLOSED_STATUSES))


def _load(crm: CRM, member: str) -> int:
    return crm.records(Case).count(_open(crm) & (F("owner") == member))


def members_of(crm: CRM, queue: Queue) -> frozenset[str]:
    """The queue's members; a queue with none of its own draws from its stored team's members."""
    if queue.members or not queue.team:
        return queue.members
    found = crm.records(Team).find(F("name") == queue.team, limit=1)
    return found.items[0].members if found.items else frozenset()


def round_robin(crm: CRM, queue: Queue, case: Case) -> str:
    """Members in turn; the queue's cursor is kept by the store, so no member gets two more than another.

    The turn is taken with the queue record's version: a concurrent turn makes the update a
    ``ConflictError``, and ``crm.service.route`` tries the pick again.
    """
    members = sorted(members_of(crm, queue))
    if not members:
        raise ValidationError("queue", f"{queue.name} has no members to take turns", queue.name)
    crm.records(Queue).update(attrs.evolve(queue, cursor=queue.cursor + 1))
    return members[queue.cursor % len(members)]


def least_busy(crm: CRM, queue: Queue, case: Case) -> str:
    """The member with the fewest open cases (counted in the store); ties go by name."""
    return _least_busy(crm, sorted(members_of(crm, queue)), queue)


def _least_busy(crm: CRM, members: Sequence[str], queue: Queue) -> str:
    if not members:
        raise ValidationError("queue", f"{queue.name} has no eligible member for this case", queue.name)
    return min(members, key=lambda m: (_load(crm, m), m))


def by_skills(crm: CRM, queue: Queue, case: Case) -> str:
    """The least busy member who has every skill the case asks for."""
    eligible = [m for m in sorted(members_of(crm, queue)) if case.skills <= queue.skills_of(m)]
    return _least_busy(crm, eligible, queue)


BUILTIN_STRATEGIES: Mapping[str, Strategy] = {
    "round_robin": round_robin,
    "least_busy": least_busy,
    "skills": by_skills,
}


def stored_policies(crm: Any) -> dict[str, SLAPolicy]:
    """The stored policies by name, each pausing in the statuses declared pausing too (``CaseStatus``)."""
    pausing = frozenset(s.name for s in crm.records(CaseStatus).stream(F("pausing") == True))  # noqa: E712
    found: dict[str, SLAPolicy] = {}
    for policy in crm.records(SLAPolicy).stream():
        if not pausing <= policy.pause_statuses:
            policy = attrs.evolve(policy, pause_statuses=policy.pause_statuses | pausing)
        found[policy.name] = policy
    return found


def _conditions(policies: Mapping[str, SLAPolicy]) -> list[tuple[str, Any]]:
    """Each policy's name and parsed condition, in name order (parsed once for many cases)."""
    return [(name, policies[name].condition) for name in sorted(policies)]


@attrs.frozen
class Attainment:
    """How often a policy's clock was met in a period (``sla_attainment``)."""

    policy: str
    clock: str
    period: dt.date
    met: int
    breached: int
    rate: float


@attrs.frozen
class SLASummary:
    """The clocks of one group at an instant (``sla_summary``): how many, and how many are in each state."""

    key: tuple[Any, ...]
    clocks: int
    breached: int
    completed: int
    paused: int

    @property
    def running(self) -> int:
        """Clocks still counting (neither completed nor paused)."""
        return self.clocks - self.completed - self.paused


class Service:
    """The service desk of one connection (``crm.service``)."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self.strategies: dict[str, Strategy] = dict(BUILTIN_STRATEGIES)
        self.strategies.update(crm._host.assignment_strategies())

    # ------------------------------------------------------------------ reading

    @property
    def _cases(self) -> Any:
        return self._crm.records(Case)

    def _case(self, case_id: uuid.UUID) -> Case:
        if isinstance(case_id, Case):
            case_id = case_id.id
        return self._cases.get(case_id)  # type: ignore[no-any-return]

    def team(self, name: str) -> Team:
        """The stored team of that name (``NotFound`` when there is none)."""
        found = self._crm.records(Team).find(F("name") == name, limit=1)
        if not found.items:
            raise NotFound("teams", name)
        team: Team = found.items[0]
        return team

    def team_members(self, name: str) -> frozenset[str]:
        """The members of the stored team of that name (``NotFound`` when there is none)."""
        return self.team(name).members

    def _check_team(self, name: str | None) -> None:
        """Once any team is stored, a team given to the desk must name one (labels are free before)."""
        if name is None:
            return
        teams = self._crm.records(Team)
        if teams.count(F("name") == name) == 0 and teams.count(ALL) > 0:
            raise ValidationError("team", "names no stored team", name)

    def history(self, case_id: uuid.UUID) -> list[CaseEvent]:
        """The case's history, in order."""
        return list(self._crm.records(CaseEvent).stream(F("case_id") == case_id, order_by=("at", "seq")))

    def handovers(self, case_id: uuid.UUID) -> list[CaseAssignment]:
        """Every change of the case's owner, in order."""
        return list(self._crm.records(CaseAssignment).stream(F("case_id") == case_id, order_by=("at", "id")))

    def escalations(self, case_id: uuid.UUID) -> list[CaseEscalation]:
        """The escalation rules fired for the case, in order."""
        return list(self._crm.records(CaseEscalation).stream(F("case_id") == case_id, order_by=("at", "id")))

    def policies(self) -> dict[str, SLAPolicy]:
        """The stored policies by name; a status declared pausing (``CaseStatus``) is in each one's pause statuses."""
        return stored_policies(self._crm)

    def statuses(self) -> dict[str, bool]:
        """Every status a case may take, built-in or declared, and whether it pauses every policy's clocks."""
        found = dict.fromkeys(STATUSES, False)
        found.update({s.name: s.pausing for s in self._crm.records(CaseStatus).stream()})
        return found

    def calendars(self) -> dict[str, BusinessCalendar]:
        return {c.key: c for c in self._crm.records(BusinessCalendar).stream()}

    def matching(self, case: Case, policies: Iterable[SLAPolicy] | None = None) -> tuple[str, ...]:
        """The names of the policies whose ``applies_to`` selects the case now."""
        spec = self._crm.schema.spec(Case)
        found = policies if policies is not None else self.policies().values()
        return tuple(sorted(p.name for p in found if evaluate(p.condition, spec, case)))

    def sla(self, case_id: uuid.UUID, *, now: dt.datetime | None = None) -> list[SLAClock]:
        """The SLA clocks of a case at ``now`` (default: the CRM's clock)."""
        case = self._case(case_id)
        at = self._now(now)
        policies = self.policies()
        return clocks(
            case, self.history(case.id), policies, self.matching(case, policies.values()), self.calendars(), at
        )

    def sla_all(self, where: Any = None, *, now: dt.datetime | None = None) -> Iterator[tuple[Case, list[SLAClock]]]:
        """The clocks of every case ``where`` selects, in order of case id.

        Two streams read in one pass each, merged on the case id: the cases ``where``
        selects, and the history of every case (both ordered by case id in the store).
        """
        at = self._now(now)
        policies, calendars = self.policies(), self.calendars()
        spec = self._crm.schema.spec(Case)
        conditions = _conditions(policies)
        for case, history in self._histories(where):
            applying = tuple(name for name, condition in conditions if evaluate(condition, spec, case))
            yield case, clocks(case, history, policies, applying, calendars, at)

    def _histories(self, where: Any) -> Iterator[tuple[Case, list[CaseEvent]]]:
        """Each case ``where`` selects with its history: two streams ordered by case id, merged."""
        events = iter(self._crm.records(CaseEvent).stream(order_by=("case_id", "at", "seq"), batch_size=10 * _BATCH))
        pending = next(events, None)
        for case in self._cases.stream(where, order_by=("id",), batch_size=_BATCH):
            while pending is not None and pending.case_id < case.id:
                pending = next(events, None)
            history: list[CaseEvent] = []
            while pending is not None and pending.case_id == case.id:
                history.append(pending)
                pending = next(events, None)
            yield case, history

    def sla_state(self, case_id: uuid.UUID, *, now: dt.datetime | None = None) -> list[SLAClock]:
        """The case's clocks at ``now`` from the rows kept at its latest event (``sla_clocks``).

        Equal to ``sla`` (recomputed from the history), without the pause intervals; before
        the latest event it falls back to ``sla``.
        """
        at = self._now(now)
        rows = list(self._crm.records(SLAState).stream(F("case_id") == case_id, order_by=("clock",)))
        if not rows or any(at < row.as_of for row in rows):
            return self.sla(case_id, now=at)
        policies, engines = self.policies(), self._engines()
        order = {name: i for i, name in enumerate(("first_response", "next_response", "resolution"))}
        rows.sort(key=lambda r: order.get(r.clock, 99))
        return [running_on(row, self._engine_of(policies.get(row.policy), engines), at) for row in rows]

    def sla_summary(
        self, *, now: dt.datetime | None = None, group_by: Sequence[str] = ("policy", "clock"), where: Any = None
    ) -> list[SLASummary]:
        """Kept clocks counted in the store at ``now`` by ``group_by``: all, breached, completed, paused.

        A clock is breached at ``now`` when its breach was recorded or it runs past its
        ``breach_after``; four group-by counts in the store, no row is read.
        """
        at = self._now(now)
        records = self._crm.records(SLAState)
        keys = tuple(group_by)

        def counts(extra: Any) -> dict[tuple[Any, ...], int]:
            condition = extra if where is None else (where & extra if extra is not None else where)
            return {tuple(r.key): r.count or 0 for r in records.aggregate(condition, group_by=keys, count=True)}

        total = counts(None)
        breached = counts((F("breached_at") != None) | (F("breach_after") < at))  # noqa: E711
        completed = counts(F("completed_at") != None)  # noqa: E711
        paused = counts((F("is_paused") == True) & F("completed_at").is_null())  # noqa: E712
        return [
            SLASummary(
                key=k, clocks=n, breached=breached.get(k, 0), completed=completed.get(k, 0), paused=paused.get(k, 0)
            )
            for k, n in sorted(total.items(), key=lambda item: tuple(str(v) for v in item[0]))
        ]

    def refresh(self, where: Any = None) -> int:
        """Recompute the kept clocks of the cases ``where`` selects from their history; return how many cases.

        For cases stored without ``crm.service`` (imports) and after a policy or calendar
        changed; the writes of ``crm.service`` keep the rows of the case they touch. One
        transaction; nothing refers to kept rows, so they are replaced in bulk (all of them,
        or those of each batch of cases ``where`` selects).
        """
        policies, calendars = self.policies(), self.calendars()
        engines = self._engines(calendars)
        spec = self._crm.schema.spec(Case)
        conditions = _conditions(policies)
        records = self._crm.records(SLAState)
        repository = self._crm.store.repository(self._crm.schema.spec(SLAState))
        tenant = self._crm.tenant
        batch: list[SLAState] = []
        ids: list[uuid.UUID] = []
        done = 0

        def flush() -> None:
            if where is not None:
                repository.delete_where(tenant, In("case_id", tuple(ids)))
            records.add_many(batch)
            batch.clear()
            ids.clear()

        with self._crm.transaction():
            if where is None:
                repository.delete_where(tenant, ALL)
            for case, history in self._histories(where):
                applying = tuple(name for name, condition in conditions if evaluate(condition, spec, case))
                as_of = max([case.opened_at, *(e.at for e in history)])
                for clock in clocks(case, history, policies, applying, calendars, as_of):
                    batch.append(kept(case, clock, as_of, self._engine_of(policies.get(clock.policy), engines)))
                ids.append(case.id)
                done += 1
                if len(ids) >= _BATCH:
                    flush()
            if ids:
                flush()
        return done

    @staticmethod
    def opening_rows(crm: Any, cases: Sequence[Case]) -> list[SLAState]:
        """The kept clocks of new cases as of their opening (no history yet)."""
        policies = stored_policies(crm)
        calendars = {c.key: c for c in crm.records(BusinessCalendar).stream()}
        engines = {key: engine(cal) for key, cal in calendars.items()}
        spec = crm.schema.spec(Case)
        conditions = _conditions(policies)
        rows: list[SLAState] = []
        for case in cases:
            applying = tuple(name for name, condition in conditions if evaluate(condition, spec, case))
            for clock in clocks(case, (), policies, applying, calendars, case.opened_at):
                rows.append(kept(case, clock, case.opened_at, Service._engine_of(policies.get(clock.policy), engines)))
        return rows

    def _engines(self, calendars: Mapping[str, BusinessCalendar] | None = None) -> dict[str, Any]:
        found = self.calendars() if calendars is None else calendars
        return {key: engine(cal) for key, cal in found.items()}

    @staticmethod
    def _engine_of(policy: SLAPolicy | None, engines: Mapping[str, Any]) -> Any:
        return engines.get(policy.calendar) if policy is not None and policy.calendar else None

    def _keep(self, case: Case) -> None:
        """Store the case's clocks as of its latest event (in the caller's transaction)."""
        history = self.history(case.id)
        as_of = max([case.opened_at, *(e.at for e in history)])
        policies, calendars = self.policies(), self.calendars()
        engines = self._engines(calendars)
        state = clocks(case, history, policies, self.matching(case, policies.values()), calendars, as_of)
        records = self._crm.records(SLAState)
        old = {row.clock: row for row in records.stream(F("case_id") == case.id)}
        for clock in state:
            row = kept(case, clock, as_of, self._engine_of(policies.get(clock.policy), engines))
            before = old.pop(clock.clock, None)
            if before is None:
                records.add(row)
            else:
                fields = {a.name: getattr(row, a.name) for a in attrs.fields(SLAState) if a.name in _KEPT}
                records.update(attrs.evolve(before, **fields))
        for row in old.values():
            records.delete(row.id)

    # ------------------------------------------------------------------ writing

    def _now(self, at: dt.datetime | None, field: str = "at") -> dt.datetime:
        return self._crm.now() if at is None else utc(at, field)

    def _by(self, by: str | None) -> str | None:
        return by if by is not None else self._crm.actor

    def _record(self, case: Case, kind: str, at: dt.datetime, **fields: Any) -> CaseEvent:
        """Add a history event (after the policy check, which may add one itself)."""
        events = self._crm.records(CaseEvent)
        seq = events.count(F("case_id") == case.id)
        return events.add(CaseEvent(case_id=case.id, at=at, seq=seq, kind=kind, **fields))

    def _track_policies(self, case: Case, at: dt.datetime) -> None:
        """Record the policies that apply when they change (first time: from the opening on)."""
        events = self._crm.records(CaseEvent)
        last = events.find((F("case_id") == case.id) & (F("kind") == "policy"), order_by=("-at", "-seq"), limit=1)
        now = self.matching(case)
        if not last.items:
            self._record(case, "policy", case.opened_at, note=",".join(now))
        elif tuple(n for n in (last.items[0].note or "").split(",") if n) != now:
            self._record(case, "policy", max(at, last.items[0].at), note=",".join(now))

    def update(self, case: Case, *, at: dt.datetime | None = None) -> Case:
        """Store changed case fields (priority, type...); a change of the policies that apply is recorded at ``at``."""
        when = self._now(at)
        with self._crm.transaction():
            before = self._case(case.id)
            if case.status != before.status:
                raise ValidationError(
                    "status", "changes with crm.service.set_status or resolve (they keep the history)", case.status
                )
            if case.team != before.team:
                self._check_team(case.team)
            self._track_policies(before, when)
            stored: Case = self._cases.update(case)
            self._track_policies(stored, when)
            self._keep(stored)
        return stored

    def assign(
        self,
        case_id: uuid.UUID,
        to: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        at: dt.datetime | None = None,
        strategy: str | None = None,
    ) -> CaseAssignment:
        """Hand the case to ``to`` (a staff member or a queue): the owner changes and a hand-over is recorded."""
        if not isinstance(to, str) or not to.strip():
            raise ValidationError("to", "names the new owner (agent:7, queue:billing)", to)
        when = self._now(at)
        with self._crm.transaction():
            case = self._case(case_id)
            self._track_policies(case, when)
            handover = self._crm.records(CaseAssignment).add(
                CaseAssignment(
                    case_id=case.id,
                    at=when,
                    from_owner=case.owner,
                    to_owner=to,
                    by=self._by(by),
                    reason=reason,
                    strategy=strategy,
                )
            )
            self._cases.update(attrs.evolve(case, owner=to))
        return handover

    def route(
        self,
        case_id: uuid.UUID,
        queue: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        at: dt.datetime | None = None,
    ) -> CaseAssignment:
        """Give the case to a member of ``queue``, picked by the queue's strategy.

        The pick (for round robin: the queue's turn) is made in a short transaction of its
        own, tried again when a concurrent desk took the same turn (``ConflictError``), and
        the hand-over in a second one: like a database sequence, a turn taken by a routing
        that then fails is skipped. Called inside a transaction of the caller's, both happen
        in it, and a conflict is raised (it has spoilt that transaction).
        """
        nested = self._crm._in_transaction()
        attempts = 1 if nested else _ROUTE_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                with self._crm.transaction():
                    q, case, member = self._pick(case_id, queue)
                break
            except ConflictError:
                if attempt == attempts:
                    raise
                time.sleep(random.uniform(0, 0.001 * attempt))  # let the winner commit
        with self._crm.transaction():
            case = self._case(case.id)
            if case.queue != q.name or case.team != q.team:
                case = self._cases.update(attrs.evolve(case, queue=q.name, team=q.team or case.team))
                self._keep(case)  # the kept clocks carry the queue and team reports group by
            return self.assign(case.id, member, by=by, reason=reason, at=at, strategy=q.strategy)

    def _pick(self, case_id: uuid.UUID, queue: str) -> tuple[Queue, Case, str]:
        """The queue, the case and the member the queue's strategy picks for it."""
        found = self._crm.records(Queue).find(F("name") == queue, limit=1)
        if not found.items:
            raise NotFound("service_queues", queue)
        q: Queue = found.items[0]
        self._check_team(q.team)
        strategy = self.strategies.get(q.strategy)
        if strategy is None:
            raise ValidationError(
                "strategy", f"is not an assignment strategy ({', '.join(self.strategies)})", q.strategy
            )
        case = self._case(case_id)
        return q, case, strategy(self._crm, q, case)

    def respond(
        self, case_id: uuid.UUID, *, at: dt.datetime | None = None, by: str | None = None, note: str | None = None
    ) -> CaseEvent:
        """An outbound response to the customer: completes first response and the pending next response."""
        when = self._now(at)
        with self._crm.transaction():
            case = self._case(case_id)
            self._track_policies(case, when)
            event = self._record(case, "response", when, by=self._by(by), note=note)
            if case.first_response_at is None or when < case.first_response_at:
                case = self._cases.update(attrs.evolve(case, first_response_at=when))
            self._store_outcomes(case, when, ("first_response", "next_response"))
            self._keep(case)
        return event

    def log(self, case_id: uuid.UUID, interaction: Interaction, *, by: str | None = None) -> Interaction:
        """Store an interaction of the case's customer, linked to the case (``attributes["case_id"]``).

        It is the customer's interaction like any other (it appears in their timeline); an
        outbound one is a response to the case, an inbound one a message from the customer.
        """
        case = self._case(case_id)
        if interaction.customer_id != case.customer_id:
            raise ValidationError("customer_id", "must be the case's customer", interaction.customer_id)
        linked = attrs.evolve(interaction, attributes={**interaction.attributes, "case_id": str(case.id)})
        who = by if by is not None else (min(interaction.participants) if interaction.participants else None)
        with self._crm.transaction():
            stored = self._crm.interactions.add(linked)
            if interaction.direction == "outbound":
                self.respond(case.id, at=interaction.occurred_at, by=who, note=interaction.subject)
            else:
                self.receive(case.id, at=interaction.occurred_at, by=who, note=interaction.subject)
        return stored

    def interactions(self, case_id: uuid.UUID) -> list[Interaction]:
        """The interactions linked to the case, in time order."""
        where = F("attributes.case_id") == str(case_id)
        return list(self._crm.interactions.stream(where))

    def receive(
        self, case_id: uuid.UUID, *, at: dt.datetime | None = None, by: str | None = None, note: str | None = None
    ) -> CaseEvent:
        """An inbound message from the customer: starts the next-response clock after a response."""
        when = self._now(at)
        with self._crm.transaction():
            case = self._case(case_id)
            self._track_policies(case, when)
            event = self._record(case, "message", when, by=by, note=note)
            self._keep(case)
            return event

    def set_status(
        self, case_id: uuid.UUID, status: str, *, at: dt.datetime | None = None, by: str | None = None
    ) -> Case:
        """Change the case's status (a pause status stops its clocks); never a response."""
        check_identifier("status", status)
        if status in CLOSED_STATUSES and status == "resolved":
            raise ValidationError(
                "status", "resolve a case with crm.service.resolve (it records the resolution)", status
            )
        if status not in STATUSES and not self._crm.records(CaseStatus).count(F("name") == status):
            raise ValidationError(
                "status", "is neither built in nor declared (crm.case_statuses.add(CaseStatus(name=...)))", status
            )
        when = self._now(at)
        with self._crm.transaction():
            case = self._case(case_id)
            self._track_policies(case, when)
            kind = "reopened" if case.status in CLOSED_STATUSES and status not in CLOSED_STATUSES else "status"
            self._record(case, kind, when, status=status, by=self._by(by))
            self._crm.state_changes.record_change(
                case, stage_set=CASE_STATUS, from_stage=case.status, to_stage=status, at=when
            )
            stored: Case = self._cases.update(attrs.evolve(case, status=status))
            self._keep(stored)
            return stored

    def resolve(
        self, case_id: uuid.UUID, *, at: dt.datetime | None = None, resolution: str | None = None, by: str | None = None
    ) -> Case:
        """Resolve the case: the resolution clock stops at its first resolution (reopening does not restart it)."""
        when = self._now(at)
        with self._crm.transaction():
            case = self._case(case_id)
            self._track_policies(case, when)
            self._record(case, "resolved", when, status="resolved", by=self._by(by), note=resolution)
            self._crm.state_changes.record_change(
                case, stage_set=CASE_STATUS, from_stage=case.status, to_stage="resolved", at=when, reason=resolution
            )
            first = case.resolved_at if case.resolved_at is not None and case.resolved_at <= when else when
            stored: Case = self._cases.update(
                attrs.evolve(case, status="resolved", resolved_at=first, resolution=resolution)
            )
            self._store_outcomes(stored, when, ("resolution",))
            self._keep(stored)
            return stored

    def _store_outcomes(self, case: Case, at: dt.datetime, names: Sequence[str]) -> None:
        """Keep how the clocks that completed at ``at`` ended (once per run of a clock)."""
        outcomes = self._crm.records(SLAOutcome)
        for clock in self.sla(case.id, now=at):
            if clock.clock not in names or clock.completed_at != at or clock.started_at is None:
                continue
            key = (F("case_id") == case.id) & (F("clock") == clock.clock) & (F("started_at") == clock.started_at)
            if outcomes.count(key):
                continue
            outcomes.add(
                SLAOutcome(
                    case_id=case.id,
                    clock=clock.clock,
                    policy=clock.policy,
                    started_at=clock.started_at,
                    completed_at=at,
                    outcome="breached" if clock.breached else "met",
                    target_seconds=int(clock.target.total_seconds()),
                    running_seconds=int(clock.running.total_seconds()),
                    paused_seconds=int(clock.paused.total_seconds()),
                    priority=case.priority,
                    queue=case.queue,
                    team=case.team,
                )
            )

    # ------------------------------------------------------------------ reports (computed in the store)

    def open_cases(self, group_by: Sequence[str] = ("queue", "priority"), *, age: str | None = "week") -> Aggregation:
        """Open cases counted by ``group_by`` and by the ``age`` bucket of their opening (day, week, month...)."""
        fields = (*group_by, f"{age}(opened_at)") if age else tuple(group_by)
        return self._cases.aggregate(_open(self._crm), group_by=fields, count=True)  # type: ignore[no-any-return]

    def sla_attainment(self, *, period: str = "month", where: Any = None) -> list[Attainment]:
        """Clocks met and breached per policy, clock and period of completion, with the rate met."""
        report = self._crm.records(SLAOutcome).aggregate(
            where, group_by=("policy", "clock", f"{period}(completed_at)", "outcome"), count=True
        )
        found: dict[tuple[Any, ...], list[int]] = {}
        for row in report:
            counts = found.setdefault(tuple(row.key[:3]), [0, 0])
            counts[0 if row.key[3] == "met" else 1] += row.count or 0
        return [
            Attainment(policy=k[0], clock=k[1], period=k[2], met=met, breached=breached, rate=met / (met + breached))
            for k, (met, breached) in found.items()
        ]

    def response_times(self, group_by: Sequence[str] = ("clock", "policy"), *, where: Any = None) -> Aggregation:
        """Mean, min and max business time to each clock's completion (whole seconds), counted in the store."""
        return self._crm.records(SLAOutcome).aggregate(
            where,
            group_by=tuple(group_by),
            count=True,
            mean="running_seconds",
            min="running_seconds",
            max="running_seconds",
        )

    # ------------------------------------------------------------------ escalation

    def escalate(self, now: dt.datetime | None = None) -> list[CaseEscalation]:
        """Fire the escalation rules due at ``now`` for open cases, each once per crossing.

        The app calls it from its scheduler. A rule fires when its threshold has been crossed
        (business time in a status, or time left before a breach), never while the case is
        paused; the unique key (case, rule, crossing) keeps it at once. Each firing is a
        ``CaseEscalation`` record, whose event plugins receive (``crmkit_after_commit``).
        """
        at = self._now(now)
        policies = self.policies()
        calendars = self.calendars()
        if not any(p.escalations for p in policies.values()):
            return []
        fired: list[CaseEscalation] = []
        escalations = self._crm.records(CaseEscalation)
        for case, state in self.sla_all(_open(self._crm), now=at):
            if any(c.is_paused for c in state):
                continue
            applying = {c.policy for c in state} or set(self.matching(case, policies.values()))
            history: list[CaseEvent] | None = None
            for name in sorted(applying):
                policy = policies.get(name)
                if policy is None:
                    continue
                for rule in policy.escalations:
                    crossing: str | None = None
                    if rule.before_breach_seconds is not None:
                        clock = next((c for c in state if c.clock == rule.clock and c.policy == name), None)
                        if clock is None or clock.completed_at is not None or clock.started_at is None:
                            continue
                        if clock.remaining <= dt.timedelta(seconds=rule.before_breach_seconds):
                            crossing = f"{rule.clock}@{clock.started_at.isoformat()}"
                    elif rule.after_seconds is not None:
                        if rule.status is not None and case.status != rule.status:
                            continue
                        if case.status in policy.pause_statuses:
                            continue
                        if history is None:
                            history = self.history(case.id)
                        entered = next(
                            (e for e in reversed(history) if e.status is not None and e.kind != "policy"),
                            None,
                        )
                        since = entered.at if entered is not None else case.opened_at
                        cal = calendars.get(policy.calendar) if policy.calendar else None
                        spent = cal.diff(since, at) if cal is not None else at - since
                        if spent >= dt.timedelta(seconds=rule.after_seconds):
                            crossing = f"{case.status}@{since.isoformat()}"
                    if crossing is None:
                        continue
                    key = (F("case_id") == case.id) & (F("rule") == rule.name) & (F("crossing") == crossing)
                    if escalations.count(key):
                        continue
                    try:
                        with self._crm.transaction():
                            record = escalations.add(
                                CaseEscalation(
                                    case_id=case.id,
                                    rule=rule.name,
                                    crossing=crossing,
                                    at=at,
                                    policy=name,
                                    reassigned_to=rule.reassign_to,
                                )
                            )
                            current = self._case(case.id)
                            self._cases.update(attrs.evolve(current, escalated=True))
                            if rule.reassign_to:
                                self.assign(case.id, rule.reassign_to, by="escalation", reason=rule.name, at=at)
                    except ConflictError:
                        continue  # fired meanwhile by another scheduler run: once is enough
                    fired.append(record)
        return fired

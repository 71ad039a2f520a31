"""SLA clocks, derived from a case's history and its policies.

A clock (first response, next response, resolution) runs from its start until it is
completed, in business time of the policy's calendar, and stops while the case is in one of
the policy's pause statuses: ``elapsed - paused`` is the sum of its running intervals.

* First response starts when the case is opened and completes at the first *outbound
  response*; a change of status never completes it.
* Next response starts at a customer's message that follows a response (or the first
  response) and completes at the next response; the latest cycle is reported, and a breach
  of any cycle stays.
* Resolution starts when the case is opened and completes at its first resolution;
  reopening does not restart it.

A breach stays recorded once it happened, whatever comes later. When the policies that
apply change mid-case (a ``policy`` event in the history), the time counted and paused so
far is kept: each stretch of time is counted with the calendar and pause statuses of the
policy in force then. When several policies apply, the one with the earliest deadline wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from crmkit.service.calendar import BusinessCalendar, engine
from crmkit.service.model import CLOCKS, Case, CaseEvent, SLAPolicy, SLAState

__all__ = ["Segment", "SLAClock", "clocks", "segments", "kept", "running_on"]

_ZERO = dt.timedelta(0)


@attrs.frozen
class SLAClock:
    """The state of one clock of a case at ``now``, under the policy that wins."""

    clock: str
    policy: str
    target: dt.timedelta
    started_at: dt.datetime | None
    #: When the target is (or was) reached; None while the clock is paused or not started.
    due_at: dt.datetime | None
    #: Business time since the clock started (to its completion, or to now).
    elapsed: dt.timedelta
    #: The part of ``elapsed`` spent in pause statuses.
    paused: dt.timedelta
    #: ``target - (elapsed - paused)``: negative once the target is passed.
    remaining: dt.timedelta
    breached: bool
    breached_at: dt.datetime | None
    completed_at: dt.datetime | None
    #: Whether the clock is stopped by a pause status at ``now``.
    is_paused: bool
    #: The pause intervals ``(start, end)`` within the clock (end None: still paused).
    pauses: tuple[tuple[dt.datetime, dt.datetime | None], ...] = ()

    @property
    def running(self) -> dt.timedelta:
        """``elapsed - paused``: the business time the clock has counted."""
        return self.elapsed - self.paused


@attrs.frozen
class Segment:
    """A stretch of a case's life with one status and one set of applicable policies."""

    start: dt.datetime
    end: dt.datetime
    status: str
    policies: tuple[str, ...]


def segments(case: Case, events: Sequence[CaseEvent], policies: Iterable[str], now: dt.datetime) -> list[Segment]:
    """The case's life from opening to ``now`` cut at every change of status or of policies."""
    status = "open"
    applying = tuple(sorted(policies))
    marks: list[tuple[dt.datetime, str, tuple[str, ...]]] = []
    for event in events:
        if event.kind in ("opened", "status", "resolved", "reopened") and event.status:
            status = event.status
        if event.kind == "policy":
            applying = tuple(sorted(n for n in (event.note or "").split(",") if n))
        marks.append((max(event.at, case.opened_at), status, applying))
    out: list[Segment] = []
    start, current = case.opened_at, "open"
    current_policies = marks[0][2] if marks and marks[0][0] <= case.opened_at else tuple(sorted(policies))
    for at, new_status, new_policies in marks:
        if at > start:
            out.append(Segment(start, min(at, now), current, current_policies))
            start = at
        current, current_policies = new_status, new_policies
    if now > start:
        out.append(Segment(start, now, current, current_policies))
    found = [s for s in out if s.end > s.start]
    if start == now:  # a change at ``now`` is in force at ``now``: an empty last stretch says so
        found.append(Segment(now, now, current, current_policies))
    return found


def _windows(case: Case, events: Sequence[CaseEvent], clock: str) -> list[tuple[dt.datetime, dt.datetime | None]]:
    """The (start, completion) of each run of a clock, in order."""
    if clock == "first_response":
        done = next((e.at for e in events if e.kind == "response"), None)
        return [(case.opened_at, done)]
    if clock == "resolution":
        done = next((e.at for e in events if e.kind == "resolved"), None)
        return [(case.opened_at, done)]
    runs: list[tuple[dt.datetime, dt.datetime | None]] = []
    responded = False
    open_since: dt.datetime | None = None
    for event in events:
        if event.kind == "response":
            if open_since is not None:
                runs.append((open_since, event.at))
                open_since = None
            responded = True
        elif event.kind == "message" and responded and open_since is None:
            open_since = event.at
    if open_since is not None:
        runs.append((open_since, None))
    return runs


class _Measure:
    """One run of a clock measured under a final policy."""

    def __init__(
        self,
        clock: str,
        final: SLAPolicy,
        chosen: Mapping[str, SLAPolicy],
        calendars: Mapping[str, Any],
        positions: dict[tuple[int, dt.datetime], Any],
    ) -> None:
        self.positions = positions
        self.clock = clock
        self.final = final
        self.chosen = chosen
        self.calendars = calendars

    def policy_of(self, segment: Segment) -> SLAPolicy:
        if self.final.name in segment.policies:
            return self.final
        for name in segment.policies:
            found = self.chosen.get(name)
            if found is not None and found.target(self.clock) is not None:
                return found
        return self.final

    def calendar(self, policy: SLAPolicy) -> Any:
        return self.calendars.get(policy.calendar) if policy.calendar else None

    def span(self, policy: SLAPolicy, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        cal = self.calendar(policy)
        if cal is None:
            return b - a
        return self.position(cal, b) - self.position(cal, a)  # type: ignore[no-any-return]

    def position(self, cal: Any, at: dt.datetime) -> Any:
        key = (id(cal), at)
        found = self.positions.get(key)
        if found is None:
            found = self.positions[key] = cal.position(at)
        return found

    def plus(self, policy: SLAPolicy, a: dt.datetime, d: dt.timedelta) -> dt.datetime:
        cal = self.calendar(policy)
        return cal.add(a, d) if cal is not None else a + d

    def run(self, parts: Sequence[Segment], start: dt.datetime, stop: dt.datetime | None, now: dt.datetime) -> SLAClock:
        end = min(stop, now) if stop is not None else now
        elapsed = paused = running = _ZERO
        breached_at: dt.datetime | None = None
        pauses: list[list[dt.datetime | None]] = []
        last_policy = self.final
        is_paused = False
        for segment in parts:
            a, b = max(segment.start, start), min(segment.end, end)
            if a >= b:
                continue
            policy = last_policy = self.policy_of(segment)
            length = self.span(policy, a, b)
            elapsed += length
            is_paused = segment.status in policy.pause_statuses
            if is_paused:
                paused += length
                if pauses and pauses[-1][1] == a:
                    pauses[-1][1] = b
                else:
                    pauses.append([a, b])
                continue
            target = policy.target(self.clock)
            if breached_at is None and target is not None:
                if running > target:
                    breached_at = a  # a policy with a tighter target took over after it was passed
                elif running + length > target:
                    breached_at = self.plus(policy, a, target - running)
            running += length
        if stop is None or stop > now:
            still = next((s for s in reversed(parts) if s.start <= now <= s.end), None)
            is_paused = still is not None and still.status in self.policy_of(still).pause_statuses
        else:
            is_paused = False
        target = self.final.target(self.clock) or _ZERO
        remaining = target - running
        completed = stop if stop is not None and stop <= now else None
        if breached_at is not None:
            due: dt.datetime | None = breached_at
        elif completed is not None:
            due = self.plus(last_policy, completed, max(remaining, _ZERO))
        elif is_paused:
            due = None
        else:
            due = self.plus(last_policy, now, max(remaining, _ZERO))
        pause_list = tuple((p[0], None if (p[1] == now and is_paused) else p[1]) for p in pauses)
        return SLAClock(
            clock=self.clock,
            policy=self.final.name,
            target=target,
            started_at=start,
            due_at=due,
            elapsed=elapsed,
            paused=paused,
            remaining=remaining,
            breached=breached_at is not None,
            breached_at=breached_at,
            completed_at=completed,
            is_paused=is_paused,
            pauses=pause_list,  # type: ignore[arg-type]
        )


def clocks(
    case: Case,
    events: Sequence[CaseEvent],
    policies: Mapping[str, SLAPolicy],
    applying: Iterable[str],
    calendars: Mapping[str, BusinessCalendar],
    now: dt.datetime,
) -> list[SLAClock]:
    """The clocks of a case at ``now``: one per clock some applicable policy sets a target for.

    ``events`` is the case's history in order; ``applying`` names the policies that apply
    now (used when the history records none); ``policies`` holds every policy by name.
    """
    engines = {key: engine(cal) for key, cal in calendars.items()}
    positions: dict[tuple[int, dt.datetime], Any] = {}  # working time before each instant, per calendar
    ordered = sorted(events, key=lambda e: (e.at, e.seq))
    parts = segments(case, ordered, applying, now)
    current = parts[-1].policies if parts else tuple(sorted(applying))
    out: list[SLAClock] = []
    for clock in CLOCKS:
        candidates = [policies[n] for n in current if n in policies and policies[n].target(clock) is not None]
        if not candidates:
            continue
        runs = _windows(case, ordered, clock)
        best: SLAClock | None = None
        for policy in candidates:
            measure = _Measure(clock, policy, policies, engines, positions)
            if not runs:
                state = SLAClock(
                    clock=clock,
                    policy=policy.name,
                    target=policy.target(clock) or _ZERO,
                    started_at=None,
                    due_at=None,
                    elapsed=_ZERO,
                    paused=_ZERO,
                    remaining=policy.target(clock) or _ZERO,
                    breached=False,
                    breached_at=None,
                    completed_at=None,
                    is_paused=False,
                )
            else:
                measured = [measure.run(parts, a, b, now) for a, b in runs if a <= now]
                if not measured:
                    continue
                state = measured[-1]
                # a breach of any cycle stays, and the first one is the clock's breach
                first_breach = next((m.breached_at for m in measured if m.breached), None)
                if first_breach is not None and state.breached_at != first_breach:
                    state = attrs.evolve(state, breached=True, breached_at=first_breach)
            if best is None or _deadline(state) < _deadline(best):
                best = state
        if best is not None:
            out.append(best)
    return out


def _deadline(clock: SLAClock) -> dt.datetime:
    return clock.due_at if clock.due_at is not None else dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def _whole(d: dt.timedelta) -> int:
    return int(d.total_seconds())


def _micros(d: dt.timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def kept(case: Case, clock: SLAClock, as_of: dt.datetime, calendar: Any) -> SLAState:
    """The row that keeps a clock computed at ``as_of`` (the case's latest event).

    ``calendar`` is the working-time engine of the clock's policy (None: every hour counts).
    A running clock that is not yet breached gets ``breach_after``: its due instant, or the
    next working instant when it is due at the end of a working window (the target reached
    exactly is no breach until the clock runs on).
    """
    running = clock.started_at is not None and clock.completed_at is None and not clock.is_paused
    breach_after = None
    if running and not clock.breached and clock.due_at is not None:
        due = clock.due_at
        breach_after = due if calendar is None or calendar.is_within(due) else calendar.next_start(due)
    return SLAState(
        external_id=f"{case.id}/{clock.clock}",
        case_id=case.id,
        clock=clock.clock,
        policy=clock.policy,
        as_of=as_of,
        started_at=clock.started_at,
        target_seconds=_whole(clock.target),
        elapsed_us=_micros(clock.elapsed),
        paused_us=_micros(clock.paused),
        is_paused=clock.is_paused,
        due_at=clock.due_at,
        breach_after=breach_after,
        breached_at=clock.breached_at,
        completed_at=clock.completed_at,
        priority=case.priority,
        queue=case.queue,
        team=case.team,
    )


def running_on(row: SLAState, calendar: Any, now: dt.datetime) -> SLAClock:
    """The clock a kept row stands for at ``now`` (not before ``row.as_of``): no event came since,
    so it ran on, stayed paused or stayed completed. ``pauses`` are not kept (``crm.service.sla`` has them)."""
    elapsed = dt.timedelta(microseconds=row.elapsed_us)
    paused = dt.timedelta(microseconds=row.paused_us)
    target = dt.timedelta(seconds=row.target_seconds)
    breached_at = row.breached_at
    due = row.due_at
    if row.started_at is not None and row.completed_at is None and now > row.as_of:
        more = calendar.diff(row.as_of, now) if calendar is not None else now - row.as_of
        elapsed += more
        if row.is_paused:
            paused += more
        elif breached_at is None and row.breach_after is not None and now > row.breach_after:
            breached_at = row.due_at
    if breached_at is not None:
        due = breached_at
    elif row.completed_at is None and not row.is_paused and due is not None and row.started_at is not None:
        due = max(due, now)  # reached exactly, not yet passed: due now, as when computed at ``now``
    running = elapsed - paused
    return SLAClock(
        clock=row.clock,
        policy=row.policy,
        target=target,
        started_at=row.started_at,
        due_at=due,
        elapsed=elapsed,
        paused=paused,
        remaining=target - running,
        breached=breached_at is not None,
        breached_at=breached_at,
        completed_at=row.completed_at,
        is_paused=row.is_paused and row.completed_at is None,
    )

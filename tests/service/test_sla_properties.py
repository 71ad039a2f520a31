"""SLA clocks for random status sequences: running time, pauses, responses, breaches, prefixes."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.service import BusinessCalendar, Case, CaseEvent, SLAPolicy
from crmkit.service.sla import clocks

UTC = dt.timezone.utc
T = dt.datetime(2026, 3, 23, 6, tzinfo=UTC)  # a Monday, 08:00 in Bucharest (summer time starts on the 29th)
PAUSES = frozenset({"waiting_on_customer", "on_hold"})
CAL = BusinessCalendar(
    key="office", timezone="Europe/Bucharest", hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"}
)
POLICY = SLAPolicy(
    name="std",
    calendar="office",
    targets={
        "first_response": dt.timedelta(hours=3),
        "next_response": dt.timedelta(hours=2),
        "resolution": dt.timedelta(hours=20),
    },
    pause_statuses=PAUSES,
)
CASE = Case(customer_id=uuid.UUID(int=1), subject="s", opened_at=T)

steps = st.lists(
    st.tuples(
        st.integers(1, 36 * 60),  # minutes after the previous step
        st.sampled_from(["open", "pending", "waiting_on_customer", "on_hold", "response", "message", "resolved"]),
    ),
    max_size=12,
)


def history(draw_steps: list[tuple[int, str]]) -> list[CaseEvent]:
    at, out = T, []
    for i, (minutes, what) in enumerate(draw_steps):
        at += dt.timedelta(minutes=minutes)
        if what in ("response", "message"):
            out.append(CaseEvent(case_id=CASE.id, at=at, seq=i, kind=what))
        elif what == "resolved":
            out.append(CaseEvent(case_id=CASE.id, at=at, seq=i, kind="resolved", status="resolved"))
        else:
            out.append(CaseEvent(case_id=CASE.id, at=at, seq=i, kind="status", status=what))
    return out


def state(events: list[CaseEvent], now: dt.datetime) -> dict[str, object]:
    return {c.clock: c for c in clocks(CASE, events, {"std": POLICY}, ("std",), {"office": CAL}, now)}


def running_intervals(events: list[CaseEvent], start: dt.datetime, stop: dt.datetime) -> dt.timedelta:
    """The reference: business time of the stretches spent in a status that does not pause."""
    total, status, since = dt.timedelta(0), "open", T
    for event in [*events, CaseEvent(case_id=CASE.id, at=stop, seq=99, kind="end")]:
        a, b = max(since, start), min(event.at, stop)
        if a < b and status not in PAUSES:
            total += CAL.diff(a, b)
        if event.status:
            status = event.status
        since = event.at
    return total


@settings(max_examples=150, deadline=None)
@given(steps=steps, tail=st.integers(0, 48 * 60))
def test_elapsed_minus_paused_is_the_sum_of_running_intervals(steps: list[tuple[int, str]], tail: int) -> None:
    events = history(steps)
    now = (events[-1].at if events else T) + dt.timedelta(minutes=tail)
    found = state(events, now)
    for name in ("first_response", "resolution"):
        clock = found[name]
        kind = "response" if name == "first_response" else "resolved"
        done = next((e.at for e in events if e.kind == kind), None)
        stop = min(done, now) if done else now
        assert clock.elapsed - clock.paused == running_intervals(events, T, stop)  # type: ignore[attr-defined]
        assert clock.elapsed == CAL.diff(T, stop)  # type: ignore[attr-defined]
        assert clock.completed_at == done  # type: ignore[attr-defined]
        assert clock.remaining == clock.target - clock.running  # type: ignore[attr-defined]
        assert clock.breached == (clock.running > clock.target)  # type: ignore[attr-defined]
        if clock.breached:  # type: ignore[attr-defined]
            assert running_intervals(events, T, clock.breached_at) == clock.target  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(steps=steps, tail=st.integers(0, 48 * 60))
def test_a_status_change_never_completes_first_response(steps: list[tuple[int, str]], tail: int) -> None:
    events = [e for e in history(steps) if e.kind != "response"]
    now = (events[-1].at if events else T) + dt.timedelta(minutes=tail)
    assert state(events, now)["first_response"].completed_at is None  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(steps=steps, tail=st.integers(0, 48 * 60))
def test_the_clock_at_any_time_depends_only_on_the_history_so_far(steps: list[tuple[int, str]], tail: int) -> None:
    """Computed step by step, as each event arrives, the clocks equal those recomputed from all of it."""
    events = history(steps)
    end = (events[-1].at if events else T) + dt.timedelta(minutes=tail)
    for i in range(len(events) + 1):
        at = events[i].at if i < len(events) else end
        earlier = state(events[:i], at)
        full = state(events, at)
        for name in ("first_response", "resolution"):
            a, b = earlier[name], full[name]
            assert (a.elapsed, a.paused, a.breached, a.breached_at) == (b.elapsed, b.paused, b.breached, b.breached_at)  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(steps=steps, extra=st.integers(1, 72 * 60))
def test_a_breach_stays_and_time_never_runs_back(steps: list[tuple[int, str]], extra: int) -> None:
    events = history(steps)
    now = (events[-1].at if events else T) + dt.timedelta(minutes=1)
    later = now + dt.timedelta(minutes=extra)
    for name in ("first_response", "next_response", "resolution"):
        if name not in state(events, now):
            continue
        a, b = state(events, now)[name], state(events, later)[name]
        assert b.elapsed >= a.elapsed and b.paused >= a.paused and b.running >= a.running  # type: ignore[attr-defined]
        if a.breached:  # type: ignore[attr-defined]
            assert b.breached and b.breached_at == a.breached_at  # type: ignore[attr-defined]

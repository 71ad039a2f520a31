"""SLA state of many cases: kept clocks counted in the store, and the clocks recomputed from history.

    python benchmarks/bench_service.py                          # 100,000 cases, SQLite and memory://
    python benchmarks/bench_service.py --cases 10000 --url sqlite:///crm.db

Each case has a status history of four to six events (a response, a pause and a resume,
sometimes a customer message and a second response, a resolution for most), on a business
calendar with lunch breaks and Romanian public holidays given as extra days. The histories
are imported with ``add_many`` (not through ``crm.service``), so the kept clocks are first
recomputed from them (``crm.service.refresh``, timed); then the SLA state of every case at
an instant is counted in the store (``crm.service.sla_summary``, timed, best of three).

Peers: for the summary on SQLite, the same four counts written by hand as one SQL query on
the same table; for the business time, the ``businesstimedelta`` package (the calendar's
test oracle) on the spans of a sample of cases. Both agree with crmkit; ratios are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best_of  # noqa: E402

import crmkit  # noqa: E402
from crmkit.service import BusinessCalendar, Case, CaseEvent, SLAPolicy  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2026, 1, 5, 7, tzinfo=UTC)
HOLIDAYS = (
    dt.date(2026, 1, 1),
    dt.date(2026, 1, 2),
    dt.date(2026, 1, 6),
    dt.date(2026, 1, 7),
    dt.date(2026, 1, 24),
    dt.date(2026, 12, 25),
)


def calendar() -> BusinessCalendar:
    return BusinessCalendar(
        key="office",
        timezone="Europe/Bucharest",
        hours={"mon-thu": "09:00-13:00,14:00-18:00", "fri": "09:00-15:00"},
        extra_holidays=HOLIDAYS,
    )


def generate(crm: crmkit.CRM, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
    crm.calendars.add(calendar())
    for name, hours in (("urgent", 8), ("normal", 40)):
        crm.sla_policies.add(
            SLAPolicy(
                name=name,
                applies_to=crmkit.F("priority") == name,
                calendar="office",
                targets={
                    "first_response": dt.timedelta(hours=hours / 8),
                    "next_response": dt.timedelta(hours=hours / 4),
                    "resolution": dt.timedelta(hours=hours),
                },
                pause_statuses=frozenset({"waiting_on_customer", "on_hold"}),
            )
        )
    cases: list[Case] = []
    events: list[CaseEvent] = []
    for i in range(n):
        opened = START + dt.timedelta(minutes=rng.randrange(60 * 24 * 60))
        case = Case(
            customer_id=ada.id, subject=f"case {i}", opened_at=opened, priority=rng.choice(["urgent", "normal"])
        )
        cases.append(case)
        at = opened

        steps = [("response", None), ("status", "waiting_on_customer"), ("status", "open")]
        if rng.random() < 0.5:
            steps += [("message", None), ("response", None)]
        if rng.random() < 0.8:
            steps.append(("resolved", "resolved"))
        for seq, (kind, status) in enumerate(steps):
            at += dt.timedelta(minutes=rng.randrange(5, 60 * 30))
            events.append(CaseEvent(case_id=case.id, at=at, seq=seq, kind=kind, status=status))
    crm.cases.add_many(cases)
    crm.records(CaseEvent).add_many(events)


def peer_sample(crm: crmkit.CRM, sample: int, now: dt.datetime) -> None:
    try:
        import businesstimedelta as btd
        import pytz
    except ImportError:
        print("peer: businesstimedelta is not installed (pip install businesstimedelta)")
        return
    tz = pytz.timezone("Europe/Bucharest")
    rules = btd.Rules(
        [
            btd.WorkDayRule(start_time=dt.time(9), end_time=dt.time(13), working_days=[0, 1, 2, 3], tz=tz),
            btd.WorkDayRule(start_time=dt.time(14), end_time=dt.time(18), working_days=[0, 1, 2, 3], tz=tz),
            btd.WorkDayRule(start_time=dt.time(9), end_time=dt.time(15), working_days=[4], tz=tz),
            btd.HolidayRule(list(HOLIDAYS), tz=tz),
        ]
    )
    cal = calendar()
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for case in crm.cases.find(limit=sample):
        marks = [case.opened_at, *(e.at for e in crm.service.history(case.id)), now]
        spans += [(a, b) for a, b in itertools.pairwise(marks) if a < b]
    began = time.perf_counter()
    mine = [cal.diff(a, b) for a, b in spans]
    crmkit_s = time.perf_counter() - began
    began = time.perf_counter()
    theirs = [rules.difference(a, b).timedelta for a, b in spans]
    peer_s = time.perf_counter() - began
    assert mine == theirs, "the calendar disagrees with businesstimedelta"
    print(
        f"  business-time differences for {len(spans):,} spans of {sample:,} cases: crmkit {crmkit_s * 1000:.1f} ms, "
        f"businesstimedelta {peer_s * 1000:.1f} ms, ratio {crmkit_s / peer_s:.3f}x (same results)"
    )


def by_hand(path: str, now: dt.datetime) -> Any:
    """The summary's four counts as one hand-written SQLite query on the kept clocks."""
    import sqlite3

    micros = int((now - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    connection = sqlite3.connect(path)
    sql = (
        "SELECT policy, clock, count(*), total(breached_at IS NOT NULL OR breach_after < ?),"
        " total(completed_at IS NOT NULL), total(is_paused AND completed_at IS NULL)"
        " FROM sla_clocks WHERE tenant = ? GROUP BY 1, 2 ORDER BY 1, 2"
    )

    def run() -> list[tuple[Any, ...]]:
        return [tuple(row) for row in connection.execute(sql, (micros, "bench"))]

    return run


def run(url: str, n: int) -> None:
    with crmkit.connect(url, tenant="bench") as crm:
        began = time.perf_counter()
        generate(crm, n)
        print(f"{url.split(':')[0]}: stored {n:,} cases and their histories in {time.perf_counter() - began:.1f} s")
        now = START + dt.timedelta(days=70)
        began = time.perf_counter()
        refreshed = crm.service.refresh()
        print(f"  clocks of {refreshed:,} cases recomputed from history and kept: {time.perf_counter() - began:.1f} s")
        sides: dict[str, Any] = {"crmkit": lambda: crm.service.sla_summary(now=now)}
        if url.startswith("sqlite:///"):
            sides["by hand"] = by_hand(url[len("sqlite:///") :], now)
        timings = best_of(5, sides)  # the two sides take turns, so that machine noise hits them alike
        took, summary = timings["crmkit"]
        clocks = sum(s.clocks for s in summary)
        breached = sum(s.breached for s in summary)
        print(f"  SLA state of {n:,} cases ({clocks:,} clocks, {breached:,} breached) in the store: {took:.3f} s")
        if "by hand" in timings:
            hand_took, rows = timings["by hand"]
            mine = [(*s.key, s.clocks, s.breached, s.completed, s.paused) for s in summary]
            assert mine == rows, (mine, rows)
            print(f"  the same counts by hand in one SQL query: {hand_took:.3f} s, ratio {took / hand_took:.2f}x")
        print(f"  load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        sample = list(crm.cases.find(limit=200).items)
        for case in sample:  # the kept state equals the clocks recomputed from history
            kept = [(c.clock, c.elapsed, c.paused, c.breached) for c in crm.service.sla_state(case.id, now=now)]
            assert kept == [(c.clock, c.elapsed, c.paused, c.breached) for c in crm.service.sla(case.id, now=now)]
        peer_sample(crm, min(n, 200), now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--url", action="append", help="store URL (default: SQLite in a temporary folder, memory://)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for url in args.url or [f"sqlite:///{Path(folder) / 'service.db'}", "memory://bench-service"]:
            run(url, args.cases)


if __name__ == "__main__":
    main()

"""SLA state of many cases: ``crm.service.sla_all`` over 100,000 cases and their histories.

    python benchmarks/bench_service.py                          # 100,000 cases, SQLite and memory://
    python benchmarks/bench_service.py --cases 10000 --url sqlite:///crm.db

Each case has a status history of four to six events (a response, a pause and a resume,
sometimes a customer message and a second response, a resolution for most), on a business
calendar with lunch breaks and Romanian public holidays given as extra days. The timed part
reads every case and its history from the store and derives its three clocks.

The peer is the ``businesstimedelta`` package (the test oracle of the calendar): the same
business-time differences the clocks need, computed with it for a sample of cases, against
crmkit's calendar for the same sample; the ratio is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


def run(url: str, n: int) -> None:
    with crmkit.connect(url, tenant="bench") as crm:
        began = time.perf_counter()
        generate(crm, n)
        print(f"{url.split(':')[0]}: stored {n:,} cases and their histories in {time.perf_counter() - began:.1f} s")
        now = START + dt.timedelta(days=70)
        began = time.perf_counter()
        counted = breached = 0
        for _case, clocks in crm.service.sla_all(now=now):
            counted += 1
            breached += any(c.breached for c in clocks)
        took = time.perf_counter() - began
        each = took / counted * 1e6
        print(f"  SLA state of {counted:,} cases: {took:.1f} s ({each:.0f} us a case), {breached:,} breached")
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

"""Record-level access: reads under ``OwnerPolicy`` against the same reads unfiltered, in one run.

    python benchmarks/bench_access.py                       # SQLite, 100,000 customers, 50 owners
    python benchmarks/bench_access.py --customers 20000 --owners 10 --url postgresql+psycopg://...

The store holds ``--customers`` customers spread over ``--owners`` owners and one
interaction per customer. Each read runs unfiltered (the peer: what the same connection
costs without a policy) and as one owner under ``OwnerPolicy`` (best of ``--runs``): a
count of customers (``owner IN (...)``), a count of interactions (a semi-join to the
owner's customers), a group-by report and a first page. The filtered reads answer from
the store's indexes; none reads the other owners' rows into Python, so they hold a
fraction of the rows and should cost about what the unfiltered ones do, or less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit.access import OwnerPolicy  # noqa: E402
from crmkit.customers import Customer  # noqa: E402
from crmkit.interactions import Interaction  # noqa: E402

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def best(runs: int, call: Callable[[], Any]) -> tuple[float, Any]:
    call()  # the first call builds and caches the statements
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", default=None, help="default: a new SQLite file")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/access.db"
    tenant = f"bench-access-{time.time_ns()}"
    n = args.customers
    options: dict[str, Any] = {"tenant": tenant, "clock": lambda: NOW, "audit": False, "event_feed": False}
    with crmkit.connect(url, **options) as admin:
        start = time.perf_counter()
        admin.customers.add_many(
            Customer(kind="person", name=f"C{i}", owner=f"user:{i % args.owners}", external_id=f"c{i}")
            for i in range(n)
        )
        ids = [c.id for c in admin.customers.scan()]
        admin.interactions.add_many(
            Interaction(customer_id=c, channel="email", direction="inbound", occurred_at=NOW) for c in ids
        )
        print(f"{n:,} customers and interactions, {args.owners} owners, stored in {time.perf_counter() - start:.1f} s")
    reads: dict[str, Callable[[crmkit.CRM], Any]] = {
        "count customers": lambda crm: crm.customers.count(),
        "count interactions": lambda crm: crm.interactions.count(),
        "report interactions by channel": lambda crm: crm.interactions.aggregate(group_by="channel", count=True),
        "first page of 50 customers": lambda crm: len(crm.customers.find(limit=50)),
    }
    with (
        crmkit.connect(url, **options) as everything,
        crmkit.connect(url, **options, actor="user:7", plugins=[OwnerPolicy()]) as owner,
    ):
        print("| read | unfiltered | OwnerPolicy | ratio |")
        print("| --- | --- | --- | --- |")
        for name, read in reads.items():
            plain, _ = best(args.runs, lambda read=read: read(everything))
            guarded, _ = best(args.runs, lambda read=read: read(owner))
            print(f"| {name} | {plain * 1000:.1f} ms | {guarded * 1000:.1f} ms | {guarded / plain:.2f} |")
        assert owner.customers.count() == len(range(7, n, args.owners)) == owner.interactions.count()


if __name__ == "__main__":
    main()

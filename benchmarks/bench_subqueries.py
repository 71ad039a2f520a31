"""MongoDB sub-queries read first or looked up: the two plans and a peer taking turns in one run.

    python benchmarks/bench_subqueries.py                                  # 20,000 customers, 100,000 for access
    python benchmarks/bench_subqueries.py --customers 20000 --access-customers 100000 --owners 50 --runs 3

MongoDB runs each sub-query of a condition (``F(f).in_(Select(...))``, ``among``) either by
reading its values first and putting them in ``$in`` (when it has at most
``crmkit_mongo._semijoin.READ_FIRST`` records) or by a ``$lookup`` per document. This runs
the same work with the choice (``READ_FIRST`` as shipped) and with every sub-query looked up
(``READ_FIRST = None``, what MongoDB did before the choice), beside a peer, in alternating
rounds on one private server:

- **target**: ``crm.marketing.target`` of bench_marketing's segment (``vip`` and ``RO``, its
  consents and block list) on a fresh campaign each time, against bench_marketing's
  hand-written pipeline and ``insert_many``;
- **access**: bench_access's reads as one owner under ``OwnerPolicy`` (the interactions'
  ones are a semi-join to the owner's customers, ``F("customer_id").among(...)``), against
  the same reads unfiltered.

Medians of the times, of the rounds' ratios to the peer and of the server's CPU time ratios
are printed, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import server_cpu, take_turns  # noqa: E402
from bench_marketing import NOW, TENANT, load, mongo_hand_target  # noqa: E402

import crmkit  # noqa: E402
from crmkit import F  # noqa: E402
from crmkit.access import OwnerPolicy  # noqa: E402
from crmkit.customers import Customer  # noqa: E402
from crmkit.interactions import Interaction  # noqa: E402
from crmkit.marketing import Campaign, Segment  # noqa: E402

LOOKUP = "every sub-query looked up"
CHOSEN = "read first or looked up"


def planned(read_first: int | None, call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` run with ``READ_FIRST`` set to ``read_first`` (None: every sub-query a ``$lookup``)."""
    from crmkit_mongo import _semijoin

    def run() -> Any:
        shipped = _semijoin.READ_FIRST
        _semijoin.READ_FIRST = read_first
        try:
            return call()
        finally:
            _semijoin.READ_FIRST = shipped

    return run


def summary(label: str, times: dict[str, list[float]], peer: str) -> None:
    """One line per plan: median time, median ratio to ``peer`` and median server-CPU ratio to it."""
    for plan in (LOOKUP, CHOSEN):
        ratio = statistics.median(m / p for m, p in zip(times[plan], times[peer], strict=True))
        cpu = statistics.median(
            m / max(p, 0.01) for m, p in zip(times[f"{plan} cpu"], times[f"{peer} cpu"], strict=True)
        )
        print(
            f"{label}, {plan}: median {statistics.median(times[plan]) * 1000:.0f} ms against "
            f"{statistics.median(times[peer]) * 1000:.0f} ms, median ratio {ratio:.2f}x, server CPU ratio {cpu:.2f}x "
            f"({len(times[plan])} rounds)",
            flush=True,
        )


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def target(url: str, n: int, runs: int, cpu: Callable[[], float]) -> None:
    from crmkit_mongo import _semijoin
    from pymongo import MongoClient

    began = time.perf_counter()
    load(url, n, True)
    print(f"target: {n:,} customers with consents and block list stored in {time.perf_counter() - began:.0f} s")
    db: Any = MongoClient(url).get_default_database()
    made = iter(range(10_000))
    with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW) as crm:
        segment = crm.segments.add(
            Segment(name="RO VIPs", where=F("tags").contains("vip") & (F("attributes.country") == "RO"))
        )

        def crmkit_target() -> int:
            camp = crm.campaigns.add(Campaign(name=f"crmkit {next(made)}", channel="email"))
            return crm.marketing.target(camp.id, segment=segment.id, at=NOW).added

        def hand_target() -> int:
            return mongo_hand_target(db, crm.campaigns.add(Campaign(name=f"hand {next(made)}", channel="email")))

        sides = {
            LOOKUP: planned(None, crmkit_target),
            CHOSEN: planned(_semijoin.READ_FIRST, crmkit_target),
            "hand": hand_target,
        }
        times, results = take_turns(runs, sides, cpu)
    assert results[LOOKUP] == results[CHOSEN] == results["hand"], results
    print(f"target, {results['hand']:,} members added; {load_average()}")
    summary("target", times, "hand")


def access(url: str, n: int, owners: int, runs: int, cpu: Callable[[], float]) -> None:
    from crmkit_mongo import _semijoin

    tenant = f"bench-access-{time.time_ns()}"
    options: dict[str, Any] = {"tenant": tenant, "clock": lambda: NOW, "audit": False, "event_feed": False}
    with crmkit.connect(url, **options) as admin:
        began = time.perf_counter()
        admin.customers.add_many(
            (Customer(kind="person", name=f"C{i}", owner=f"user:{i % owners}", external_id=f"c{i}") for i in range(n)),
            batch_size=1_000,
        )
        ids = [c.id for c in admin.customers.scan()]
        admin.interactions.add_many(
            (Interaction(customer_id=c, channel="email", direction="inbound", occurred_at=NOW) for c in ids),
            batch_size=1_000,
        )
        took = time.perf_counter() - began
        print(f"access: {n:,} customers and interactions, {owners} owners, stored in {took:.0f} s")
    reads: dict[str, Callable[[crmkit.CRM], Any]] = {
        "count interactions": lambda crm: crm.interactions.count(),
        "report interactions by channel": lambda crm: crm.interactions.aggregate(group_by="channel", count=True),
        "first page of 50 interactions": lambda crm: len(crm.interactions.find(limit=50)),
    }
    with (
        crmkit.connect(url, **options) as everything,
        crmkit.connect(url, **options, actor="user:7", plugins=[OwnerPolicy()]) as owner,
    ):
        for name, read in reads.items():
            sides = {
                "unfiltered": lambda read=read: read(everything),
                LOOKUP: planned(None, lambda read=read: read(owner)),
                CHOSEN: planned(_semijoin.READ_FIRST, lambda read=read: read(owner)),
            }
            times, results = take_turns(runs, sides, cpu)
            assert results[LOOKUP] == results[CHOSEN], (name, results)
            summary(f"access, {name}", times, "unfiltered")
        assert owner.interactions.count() == len(range(7, n, owners))
    print(f"access: {load_average()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000, help="customers of the targeting benchmark")
    parser.add_argument("--access-customers", type=int, default=100_000, help="customers of the access benchmark")
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from bench_mongo import database_url
    from tests.support.servers import start_mongo

    mongo = start_mongo()
    try:
        cpu = server_cpu(mongo.members[0].pid)
        print(f"MongoDB, {load_average()}", flush=True)
        target(database_url(mongo.url, "bench_subqueries"), args.customers, args.runs, cpu)
        access(database_url(mongo.url, "bench_subqueries_access"), args.access_customers, args.owners, args.runs, cpu)
    finally:
        mongo.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""MongoDB backend benchmarks: crmkit against hand-written pymongo on the same server.

    python benchmarks/bench_mongo.py                    # 1,000,000 transactions (a few minutes)
    python benchmarks/bench_mongo.py --transactions 100000 --customers 2000   # quicker

Starts a private single-node replica set (``tests.support.servers.start_mongo``) unless
``--url`` or ``$CRMKIT_MONGO_URL`` names a server, and prints three comparisons:

1. ingest: ``crm.transactions.add_many`` from a generator (idempotent by external_id, a
   transaction per batch of 1,000) against plain ``insert_many(ordered=False)`` batches of
   the same documents into a collection with the same indexes. Goal: at least 0.6x the
   raw throughput.
2. summaries: ``crm.purchase_summaries()`` for every customer against a hand-written
   pipeline (``$sort`` by day, then ``$first`` for the first day's total), and against
   crmkit's own stages run through plain pymongo (raw documents, no domain objects: the
   cost of crmkit itself). Goal: at most 1.3x the hand-written time.
3. customer 360: a customer, its last 20 interactions and last 20 transactions, p50 and
   p99 latency, crmkit against the same three pymongo queries, the two taking turns customer
   by customer. Goal: p50 at most 3x pymongo's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit import Customer, F, Interaction, Transaction  # noqa: E402
from crmkit._ids import new_id  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2022, 1, 1, tzinfo=UTC)
BATCH = 1000


def database_url(url: str, database: str) -> str:
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    query = path.partition("?")[2]
    if "?" in authority:
        authority, _, query = authority.partition("?")
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


Row = tuple[Any, dt.datetime, Decimal, str, str, str]


def source_rows(customer_ids: list[Any], n: int, seed: int) -> Iterator[Row]:
    """The shared input of both ingest paths: (customer, time, amount, currency, kind, external id)."""
    rng = random.Random(seed)
    for i in range(n):
        yield (
            customer_ids[i % len(customer_ids)],
            START + dt.timedelta(seconds=rng.randrange(3 * 365 * 86400), microseconds=rng.randrange(1_000_000)),
            Decimal(rng.randrange(100, 50_000)) / 100,
            "EUR" if rng.random() < 0.9 else "USD",
            "refund" if rng.random() < 0.05 else "purchase",
            f"tx-{seed}-{i}",
        )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def bench_ingest(url: str, customers: int, transactions: int, segment: int) -> tuple[float, float, Any, list[Any]]:
    """Ingest into two databases, alternating crmkit and raw segments so machine noise hits both alike."""
    from bson import Int64
    from crmkit_mongo._documents import decimal128, micros

    crm = crmkit.connect(database_url(url, "bench_crmkit"), tenant="bench")
    people = crm.customers.add_many(
        Customer(kind="person", name=f"Customer {i}", external_id=f"c-{i}") for i in range(customers)
    )
    assert people.added == customers
    ids = [c.id for c in crm.customers.stream()]
    # The raw side: the same documents and indexes (a crmkit store creates them), plain insert_many.
    raw_store = crmkit.connect(database_url(url, "bench_raw"), tenant="bench")
    raw = raw_store.store.db["transactions"]  # type: ignore[attr-defined]

    building = [0.0]

    def crmkit_ingest(seed: int, n: int) -> None:
        def records() -> Iterator[Transaction]:
            # Time spent making domain objects from source rows, to show where the time goes.
            rows = source_rows(ids, n, seed)
            while True:
                began = time.perf_counter()
                row = next(rows, None)
                if row is None:
                    return
                c, t, a, cur, k, e = row
                record = Transaction(customer_id=c, occurred_at=t, amount=a, currency=cur, kind=k, external_id=e)
                building[0] += time.perf_counter() - began
                yield record

        result = crm.transactions.add_many(records(), batch_size=BATCH)
        assert result.added == n, result

    def raw_ingest(seed: int, n: int) -> None:
        batch: list[dict[str, Any]] = []
        now = Int64(micros(dt.datetime.now(UTC)))
        for c, t, a, cur, k, e in source_rows(ids, n, seed):
            batch.append(
                {"tenant": "bench", "id": new_id(), "customer_id": c, "occurred_at": micros(t),
                 "amount": decimal128(a), "currency": cur, "kind": k, "external_id": e,
                 "created_at": now, "updated_at": now, "version": 1}
            )
            if len(batch) == BATCH:
                raw.insert_many(batch, ordered=False)
                batch = []
                now = Int64(micros(dt.datetime.now(UTC)))
        if batch:
            raw.insert_many(batch, ordered=False)

    crmkit_seconds = raw_seconds = 0.0
    for seed, first in enumerate(range(0, transactions, segment)):
        n = min(segment, transactions - first)
        sides = [(crmkit_ingest, "crmkit"), (raw_ingest, "raw")]
        for fn, side in sides if seed % 2 == 0 else reversed(sides):
            seconds, _ = timed(lambda fn=fn, seed=seed, n=n: fn(seed, n))
            if side == "crmkit":
                crmkit_seconds += seconds
            else:
                raw_seconds += seconds
    raw_store.close()
    print(f"ingest   (crmkit time spent building Transaction objects from rows: {building[0]:.1f} s)")
    return crmkit_seconds, raw_seconds, crm, ids


def hand_written_summary(collection: Any) -> list[dict[str, Any]]:
    """What a developer would write for the same numbers, returning plain documents."""
    day = 86_400_000_000
    purchase = {"$eq": ["$kind", "purchase"]}
    pipeline = [
        {"$match": {"tenant": "bench"}},
        {"$group": {
            "_id": {"customer": "$customer_id", "currency": "$currency",
                    "day": {"$cond": [purchase, {"$subtract": ["$occurred_at", {"$mod": ["$occurred_at", day]}]},
                                      None]}},
            "n": {"$sum": {"$cond": [purchase, 1, 0]}},
            "total": {"$sum": {"$cond": [purchase, "$amount", 0]}},
            "refunds": {"$sum": {"$cond": [purchase, 0, "$amount"]}},
            "first": {"$min": {"$cond": [purchase, "$occurred_at", None]}},
            "last": {"$max": {"$cond": [purchase, "$occurred_at", None]}},
        }},
        {"$sort": {"_id.day": 1}},
        {"$group": {
            "_id": {"customer": "$_id.customer", "currency": "$_id.currency"},
            "purchases": {"$sum": "$n"},
            "days": {"$sum": {"$cond": [{"$gt": ["$n", 0]}, 1, 0]}},
            "total": {"$sum": "$total"},
            "refunds": {"$sum": "$refunds"},
            "first": {"$min": "$first"},
            "last": {"$max": "$last"},
            "first_day_total": {"$first": {"$cond": [{"$gt": ["$n", 0]}, "$total", None]}},
        }},
        {"$match": {"purchases": {"$gt": 0}}},
        {"$sort": {"_id.customer": 1, "_id.currency": 1}},
    ]
    return list(collection.aggregate(pipeline, allowDiskUse=True))


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    results = [timed(fn) for _ in range(runs)]
    return min(r[0] for r in results), results[-1][1]


def bench_summaries(crm: Any) -> dict[str, float]:
    from crmkit_mongo._summaries import summary_pipeline

    collection = crm.store.db["transactions"]
    hand_written_summary(collection)  # warm the cache for every contender
    crmkit_seconds, summaries = best_of(3, crm.purchase_summaries)
    raw_seconds, rows = best_of(3, lambda: hand_written_summary(collection))
    same_seconds, same = best_of(
        3, lambda: list(collection.aggregate(summary_pipeline("bench", None, None, None), allowDiskUse=True))
    )
    assert len(summaries) == len(rows) == len(same), (len(summaries), len(rows), len(same))
    return {"crmkit": crmkit_seconds, "hand": raw_seconds, "same": same_seconds, "groups": len(summaries)}


def bench_customer_360(crm: Any, ids: list[Any], interactions_per_customer: int, samples: int) -> dict[str, float]:
    crm.interactions.add_many(
        Interaction(customer_id=c, channel="email", direction="inbound" if j % 2 else "outbound",
                    occurred_at=START + dt.timedelta(days=j, microseconds=k), subject=f"Hello {j}")
        for k, c in enumerate(ids)
        for j in range(interactions_per_customer)
    )
    db = crm.store.db
    rng = random.Random(7)
    picks = [rng.choice(ids) for _ in range(samples)]

    def crmkit_view(cid: Any) -> int:
        crm.customers.get(cid)
        where = F("customer_id") == cid
        a = crm.interactions.find(where, order_by="-occurred_at", limit=20)
        b = crm.transactions.find(where, order_by="-occurred_at", limit=20)
        return len(a) + len(b)

    def raw_view(cid: Any) -> int:
        db["customers"].find_one({"tenant": "bench", "id": cid})
        q = {"tenant": "bench", "customer_id": cid}
        order = [("occurred_at", -1), ("id", 1)]
        a = list(db["interactions"].find(q, sort=order, limit=20))
        b = list(db["transactions"].find(q, sort=order, limit=20))
        return len(a) + len(b)

    views = (("crmkit", crmkit_view), ("raw", raw_view))
    for _, view in views:
        for cid in picks[:50]:
            view(cid)  # warm up
    # The two sides take turns, customer by customer, so that background load hits both alike.
    latencies: dict[str, list[float]] = {"crmkit": [], "raw": []}
    for i, cid in enumerate(picks):
        for name, view in views if i % 2 == 0 else views[::-1]:
            began = time.perf_counter()
            assert view(cid) > 0
            latencies[name].append((time.perf_counter() - began) * 1000)
    out: dict[str, float] = {}
    for name, times in latencies.items():
        times.sort()
        out[f"{name}_p50"] = statistics.median(times)
        out[f"{name}_p99"] = times[int(len(times) * 0.99) - 1]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("CRMKIT_MONGO_URL"), help="a server (else one is started)")
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--interactions-per-customer", type=int, default=20)
    parser.add_argument("--segment", type=int, default=50_000, help="rows per alternating ingest segment")
    parser.add_argument("--samples", type=int, default=2000, help="customer-360 reads to time")
    args = parser.parse_args()

    server = None
    url = args.url
    if not url:
        from tests.support.servers import start_mongo

        server = start_mongo()
        url = server.url
    try:
        from pymongo import MongoClient

        with MongoClient(url) as client:
            version = client.server_info()["version"]
            for name in ("bench_crmkit", "bench_raw"):
                client.drop_database(name)
        print(f"MongoDB {version}, {args.transactions:,} transactions over {args.customers:,} customers")

        crmkit_s, raw_s, crm, ids = bench_ingest(url, args.customers, args.transactions, args.segment)
        print(f"ingest   crmkit add_many     {args.transactions / crmkit_s:>10,.0f} rows/s  ({crmkit_s:.1f} s)")
        print(f"ingest   raw insert_many     {args.transactions / raw_s:>10,.0f} rows/s  ({raw_s:.1f} s)")
        print(f"ingest   ratio crmkit/raw    {raw_s / crmkit_s:>10.2f}x   (goal >= 0.6x)")

        times = bench_summaries(crm)
        print(f"summary  crmkit              {times['crmkit'] * 1000:>10.0f} ms     ({times['groups']:,.0f} summaries)")
        print(f"summary  hand-written        {times['hand'] * 1000:>10.0f} ms     ($sort + $first, raw documents)")
        print(f"summary  same stages, raw    {times['same'] * 1000:>10.0f} ms     (crmkit's pipeline, no objects)")
        print(f"summary  ratio crmkit/hand   {times['crmkit'] / times['hand']:>10.2f}x   (goal <= 1.3x)")
        print(f"summary  ratio crmkit/same   {times['crmkit'] / times['same']:>10.2f}x   (crmkit's own overhead)")

        one = ids[len(ids) // 2]
        single = sorted(timed(lambda: crm.purchase_summaries([one]))[0] * 1000 for _ in range(200))
        print(f"summary  one customer p50    {statistics.median(single):>10.2f} ms")

        latency = bench_customer_360(crm, ids, args.interactions_per_customer, args.samples)
        print(f"360      crmkit p50 / p99    {latency['crmkit_p50']:>10.2f} / {latency['crmkit_p99']:.2f} ms")
        print(f"360      raw    p50 / p99    {latency['raw_p50']:>10.2f} / {latency['raw_p99']:.2f} ms")
        print(f"360      ratio crmkit/raw p50{latency['crmkit_p50'] / latency['raw_p50']:>10.2f}x   (goal <= 3x)")
        crm.close()
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

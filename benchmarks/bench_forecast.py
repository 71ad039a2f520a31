"""The sales forecast (``crm.sales.forecast``) against a hand-written GROUP BY in the same run.

    python benchmarks/bench_forecast.py                                # 1,000,000 deals on SQLite
    python benchmarks/bench_forecast.py --backend postgresql --deals 1000000
    python benchmarks/bench_forecast.py --backend mongodb --deals 1000000
    python benchmarks/bench_forecast.py --backend mongodb --deals 1000000 --copy-from 20000

The deals are added with ``crm.opportunities.add_many`` (so each keeps its derived
``expected_revenue``), in two currencies, with close dates over three years and every
forecast category. Then ``crm.sales.forecast(by="month", currency="EUR")`` and the query a
developer writes by hand for the same numbers (exact sums: the integer millionths of
SQLite's money text, ``numeric`` on PostgreSQL, ``Decimal128`` on MongoDB, whose
hand-written form is one ``$match`` and ``$group`` pipeline) take turns, ``--runs`` rounds
of one each. Printed: the best and the median time of each, and the median of the rounds'
ratios (each round's two runs are next to each other in time, so a machine shared with
other work loads them alike). PostgreSQL and MongoDB are private servers started for the
run (``tests.support.servers``). Goal: at most 1.3x the hand-written time.

On MongoDB the server's own CPU time for each run is printed too (read from ``/proc``
around it): on a machine shared with other work it varies far less than the wall time.
``--copy-from N`` (MongoDB) adds only N deals through crmkit and copies their stored
documents, each with a new id, up to ``--deals``: the same documents, loaded in minutes
rather than the better part of an hour.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from _timing import server_cpu, take_turns  # noqa: E402

import crmkit  # noqa: E402
from crmkit.sales import ForecastCategory, Opportunity  # noqa: E402

TENANT = "bench"
MILLIONTHS = "CAST(substr({0}, 2, 15) || substr({0}, 18, 6) AS INTEGER)"
SQLITE = (
    "SELECT date(close_date, 'start of month'), forecast, count(*), "
    f"sum({MILLIONTHS.format('amount')}), sum({MILLIONTHS.format('expected_revenue')}) "
    "FROM opportunities WHERE tenant = ? AND currency = 'EUR' GROUP BY 1, 2"
)
POSTGRES = (
    "SELECT date_trunc('month', close_date)::date, forecast, count(*), sum(amount), sum(expected_revenue) "
    "FROM opportunities WHERE tenant = %s AND currency = 'EUR' GROUP BY 1, 2"
)
#: The hand-written MongoDB pipeline: close dates are BSON dates at UTC midnight, money Decimal128.
MONGO = [
    {"$match": {"tenant": TENANT, "currency": "EUR"}},
    {
        "$group": {
            "_id": {"m": {"$dateTrunc": {"date": "$close_date", "unit": "month"}}, "f": "$forecast"},
            "n": {"$sum": 1},
            "a": {"$sum": "$amount"},
            "w": {"$sum": "$expected_revenue"},
        }
    },
]
PROBABILITIES = [Decimal(p) for p in ("0.10", "0.25", "0.50", "0.80", "1", "0")]


def deals(n: int) -> Iterator[Opportunity]:
    rng = random.Random(12)
    start = dt.date(2026, 1, 1)
    categories = list(ForecastCategory)
    for i in range(n):
        yield Opportunity(
            name=f"deal {i}",
            pipeline="new",
            stage="qualify",
            amount=Decimal(rng.randrange(100, 10_000_000)) / 100,
            currency="EUR" if i % 4 else "USD",
            probability=rng.choice(PROBABILITIES),
            forecast=rng.choice(categories),
            close_date=start + dt.timedelta(days=rng.randrange(3 * 365)),
        )


def copy_documents(url: str, n: int) -> None:
    """Copy the stored deals, each with a new id, until ``n`` are stored."""
    import uuid

    from bson import Binary
    from pymongo import MongoClient

    collection: Any = MongoClient(url).get_default_database()["opportunities"]
    stored = list(collection.find({"tenant": TENANT}, {"_id": 0}))
    have = len(stored)
    while have < n:
        batch = [{**doc, "id": Binary.from_uuid(uuid.uuid4())} for doc in stored[: n - have]]
        collection.insert_many(batch, ordered=False)
        have += len(batch)


def run(label: str, url: str, n: int, runs: int, *, copy_from: int | None = None, server: int | None = None) -> None:
    with crmkit.connect(url, tenant=TENANT) as crm:
        began = time.perf_counter()
        # a MongoDB transaction must fit in the server's cache: the test server's is small (each deal
        # also writes a state change, an audit entry and its share of the event feed)
        added = n if copy_from is None else min(copy_from, n)
        crm.opportunities.add_many(deals(added), batch_size=1_000 if url.startswith("mongodb") else 20_000)
        if added < n:
            copy_documents(url, n)
        loaded = time.perf_counter() - began
        hand = mongo_hand(url) if url.startswith("mongodb") else sql_hand(url)

        times, results = take_turns(
            runs,
            {"crmkit": lambda: crm.sales.forecast(by="month", currency="EUR"), "hand": hand},
            None if server is None else server_cpu(server),
        )
        rows, raw = results["crmkit"], results["hand"]
        assert len(rows) == len(raw), (len(rows), len(raw))
        assert sum(r.count for r in rows) == sum(r["n"] if isinstance(r, dict) else r[2] for r in raw)
        mine, theirs = times["crmkit"], times["hand"]
        ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
        print(
            f"{label:<18} {n:,} deals (added in {loaded:.0f} s), {runs} rounds   "
            f"forecast best {min(mine) * 1000:.0f} ms, median {statistics.median(mine) * 1000:.0f} ms   "
            f"hand-written best {min(theirs) * 1000:.0f} ms, median {statistics.median(theirs) * 1000:.0f} ms   "
            f"median ratio {ratio:.2f}x   ({len(rows)} rows; goal <= 1.3x)"
        )
        print("  rounds' ratios: " + " ".join(f"{m / t:.2f}" for m, t in zip(mine, theirs, strict=True)))
        if server is not None:
            mine, theirs = times["crmkit cpu"], times["hand cpu"]
            ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
            print(
                f"  server CPU: forecast median {statistics.median(mine):.2f} s, hand-written median "
                f"{statistics.median(theirs):.2f} s, median ratio {ratio:.2f}x   rounds' ratios: "
                + " ".join(f"{m / t:.2f}" for m, t in zip(mine, theirs, strict=True))
            )


def sql_hand(url: str) -> Callable[[], list[Any]]:
    engine = sa.create_engine(url)
    sql = SQLITE if url.startswith("sqlite") else POSTGRES
    if not url.startswith("sqlite"):
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE opportunities")
            conn.commit()

    def hand() -> list[Any]:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql(sql, (TENANT,)))

    return hand


def mongo_hand(url: str) -> Callable[[], list[Any]]:
    from pymongo import MongoClient

    client: Any = MongoClient(url)
    collection = client.get_default_database()["opportunities"]
    return lambda: list(collection.aggregate(MONGO, allowDiskUse=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "mongodb"), default="sqlite")
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--copy-from", type=int, default=None, help="MongoDB: add this many, copy the rest")
    args = parser.parse_args()
    if args.backend == "sqlite":
        import sqlite3

        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            run(f"SQLite {sqlite3.sqlite_version}", f"sqlite:///{folder}/crm.db", args.deals, args.runs)
    elif args.backend == "mongodb":
        from bench_mongo import database_url
        from pymongo import MongoClient
        from tests.support.servers import start_mongo

        mongo = start_mongo()
        try:
            version = MongoClient(mongo.url).server_info()["version"]
            url = database_url(mongo.url, "bench_forecast")
            pid = mongo.members[0].pid
            run(f"MongoDB {version}", url, args.deals, args.runs, copy_from=args.copy_from, server=pid)
        finally:
            mongo.stop()
    else:
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            run("PostgreSQL", create_database(server.url, "bench_forecast"), args.deals, args.runs)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The sales forecast (``crm.sales.forecast``) against a hand-written GROUP BY in the same run.

    python benchmarks/bench_forecast.py                                # 1,000,000 deals on SQLite
    python benchmarks/bench_forecast.py --backend postgresql --deals 1000000
    python benchmarks/bench_forecast.py --backend mongodb --deals 1000000

The deals are added with ``crm.opportunities.add_many`` (so each keeps its derived
``expected_revenue``), in two currencies, with close dates over three years and every
forecast category. Then ``crm.sales.forecast(by="month", currency="EUR")`` and the query a
developer writes by hand for the same numbers (exact sums: the integer millionths of
SQLite's money text, ``numeric`` on PostgreSQL, ``Decimal128`` on MongoDB, whose
hand-written form is one ``$match`` and ``$group`` pipeline) take turns, best of ``--runs``.
PostgreSQL and MongoDB are private servers started for the run (``tests.support.servers``).
Goal: at most 1.3x the hand-written time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from _timing import best_of, show, stopwatch  # noqa: E402

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


def run(label: str, url: str, n: int, runs: int) -> None:
    with crmkit.connect(url, tenant=TENANT) as crm:
        with stopwatch() as loaded:
            # a MongoDB transaction must fit in the server's cache: the test server's is small
            crm.opportunities.add_many(deals(n), batch_size=5_000 if url.startswith("mongodb") else 20_000)
        hand = mongo_hand(url) if url.startswith("mongodb") else sql_hand(url)

        best = best_of(runs, {"crmkit": lambda: crm.sales.forecast(by="month", currency="EUR"), "hand": hand})
        (mine, rows), (theirs, raw) = best["crmkit"], best["hand"]
        assert len(rows) == len(raw), (len(rows), len(raw))
        assert sum(r.count for r in rows) == sum(r["n"] if isinstance(r, dict) else r[2] for r in raw)
        show(
            f"{label:<18} {n:,} deals (added in {loaded.wall:.0f} s)",
            f"forecast {mine * 1000:>7.0f} ms",
            f"hand-written {theirs * 1000:>7.0f} ms",
            f"ratio {mine / theirs:.2f}x",
            f"({len(rows)} rows; goal <= 1.3x)",
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
    parser.add_argument("--runs", type=int, default=3)
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
            run(f"MongoDB {version}", database_url(mongo.url, "bench_forecast"), args.deals, args.runs)
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

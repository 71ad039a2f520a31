"""What the audit trail and the event feed cost a bulk import: ``add_many`` with them on and off, same run.

    python benchmarks/bench_audit.py                                  # SQLite and memory, 20,000 customers
    python benchmarks/bench_audit.py --stores sqlite postgresql mongodb --customers 50000 --transactions 100000

Each store is opened four times per round, in turn: with neither (``audit=False,
event_feed=False``), the audit trail only, the event feed only, and both (the default).
Customers (every field audited: one entry per creation, holding its audited fields) and
then transactions are imported with ``add_many`` at its default batch size into a fresh
tenant; the best of ``--rounds`` rounds is kept, and each configuration's time is printed
against the run with neither, so machine noise hits all four alike. Two clocks: the wall
clock, and the CPU time of this process, which on a shared machine is the steadier
measure for the stores that run inside it (memory, SQLite; a PostgreSQL server's own work
shows only on the wall clock). The F4 goal of the reference models is at most 20% more
time for the audit trail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit import Customer, Transaction  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2022, 1, 1, tzinfo=UTC)
CONFIGS = {
    "neither": {"audit": False, "event_feed": False},
    "audit": {"audit": True, "event_feed": False},
    "feed": {"audit": False, "event_feed": True},
    "both": {"audit": True, "event_feed": True},
}


def _customers(n: int, run: str) -> list[Customer]:
    return [
        Customer(
            name=f"Customer {i}",
            kind="person",
            external_id=f"{run}-c{i}",
            tags=frozenset({"imported"}),
            attributes={"tier": i % 3},
        )
        for i in range(n)
    ]


Times = tuple[float, float, float, float]  # customers wall, transactions wall, customers CPU, transactions CPU


def _import(
    url: str, config: dict[str, bool], tenant: str, customers: int, transactions: int, batch_size: int = 10_000
) -> Times:
    people = _customers(customers, tenant)
    with crmkit.connect(url, tenant=tenant, actor="bench", **config) as crm:  # type: ignore[arg-type]
        crm.migrate()
        started, started_cpu = time.perf_counter(), time.process_time()
        crm.customers.add_many(people, batch_size=batch_size)
        middle, middle_cpu = time.perf_counter(), time.process_time()
        crm.transactions.add_many(
            (
                Transaction(
                    customer_id=people[i % customers].id,
                    occurred_at=START + dt.timedelta(minutes=i),
                    amount=Decimal(i % 500) + Decimal("0.99"),
                    currency="EUR",
                    external_id=f"t{i}",
                )
                for i in range(transactions)
            ),
            batch_size=batch_size,
        )
        ended, ended_cpu = time.perf_counter(), time.process_time()
    return middle - started, ended - middle, middle_cpu - started_cpu, ended_cpu - middle_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--stores", nargs="+", default=["sqlite", "memory"], choices=["memory", "sqlite", "postgresql", "mongodb"]
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="add_many's (a small MongoDB server's cache holds less)"
    )
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--mongo-url", default=None)
    args = parser.parse_args()
    with TemporaryDirectory() as folder:
        for store in args.stores:
            server = None
            if store == "memory":
                url = "memory://"
            elif store == "sqlite":
                url = f"sqlite:///{folder}/bench.db"
            elif store == "mongodb":
                if args.mongo_url:
                    url = args.mongo_url
                else:
                    from tests.support.servers import start_mongo

                    server = start_mongo()
                    url = server.url
            elif args.postgres_url:
                url = args.postgres_url
            else:
                from tests.support.servers import start_postgres

                server = start_postgres()
                url = server.url
            try:
                best: dict[str, Times] = {}
                for round in range(args.rounds):
                    for name, config in CONFIGS.items():
                        times = _import(
                            url, config, f"r{round}_{name}", args.customers, args.transactions, args.batch_size
                        )
                        had = best.get(name, (float("inf"),) * 4)
                        best[name] = (
                            min(had[0], times[0]),
                            min(had[1], times[1]),
                            min(had[2], times[2]),
                            min(had[3], times[3]),
                        )
            finally:
                if server is not None:
                    server.stop()
            base = best["neither"]
            print(
                f"\n{store}: {args.customers:,} customers, {args.transactions:,} transactions,"
                f" batches of {args.batch_size:,}, best of {args.rounds}"
            )
            print(
                f"{'kept':<8} {'customers/s':>12} {'wall':>7} {'CPU':>7}"
                f" {'transactions/s':>15} {'wall':>7} {'CPU':>7}   (time vs neither)"
            )
            for name, (customers, transactions, customers_cpu, transactions_cpu) in best.items():
                print(
                    f"{name:<8} {args.customers / customers:>12,.0f} {customers / base[0]:>6.2f}x"
                    f" {customers_cpu / base[2]:>6.2f}x {args.transactions / transactions:>15,.0f}"
                    f" {transactions / base[1]:>6.2f}x {transactions_cpu / base[3]:>6.2f}x"
                )


if __name__ == "__main__":
    main()

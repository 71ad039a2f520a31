"""``upsert_many`` against the raw driver's upsert, in the same run: a sync from another system.

    python benchmarks/bench_upsert.py                                  # 1,000,000 rows on SQLite
    python benchmarks/bench_upsert.py --backend postgresql --rows 1000000
    python benchmarks/bench_upsert.py --backend mongodb --rows 1000000

Two passes over the same rows (transactions, matched by ``external_id``): the first into an
empty store (every row new), the second with every tenth amount changed (the rest
unchanged). crmkit runs ``crm.transactions.upsert_many(rows, key="external_id")``; the raw
side writes the same rows, in exactly the form crmkit stores them, with the driver's own
upsert: ``INSERT ... ON CONFLICT (tenant, external_id) DO UPDATE`` (sqlite3, psycopg) or
``bulk_write`` of ``ReplaceOne(upsert=True)`` (pymongo), in batches of the same size. The
raw side knows nothing: it rewrites unchanged rows and keeps no versions or events.
Goal (issue 15): crmkit at least 0.5x the raw speed, i.e. at most 2x its time. The CPU time
of this process is printed too: the machine these run on is shared. crmkit keeps its audit
trail and event feed by default (every added and changed row is journalled);
``--no-audit`` connects without them, which is closer to what the raw side does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import show, timed  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, Transaction  # noqa: E402
from crmkit._ids import new_id  # noqa: E402

UTC = dt.timezone.utc
TENANT = "bench"
BATCH = 10_000
Row = tuple[uuid.UUID, uuid.UUID, dt.datetime, Decimal, str]  # id, customer, occurred_at, amount, external_id


def make_rows(customers: list[uuid.UUID], n: int) -> list[Row]:
    rng = random.Random(5)
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    return [
        (
            new_id(),
            customers[rng.randrange(len(customers))],
            start + dt.timedelta(seconds=rng.randrange(10**7)),
            Decimal(rng.randrange(100, 100_000)) / 100,
            f"erp-{i}",
        )
        for i in range(n)
    ]


def changed(rows: list[Row]) -> list[Row]:
    """Every tenth amount one cent higher."""
    return [(i, c, t, a + Decimal("0.01") if k % 10 == 0 else a, e) for k, (i, c, t, a, e) in enumerate(rows)]


def records(rows: list[Row]) -> Iterator[Transaction]:
    for _, c, t, a, e in rows:
        yield Transaction(customer_id=c, occurred_at=t, amount=a, currency="EUR", kind="purchase", external_id=e)


def batches(rows: list[Row]) -> Iterator[list[Row]]:
    for k in range(0, len(rows), BATCH):
        yield rows[k : k + BATCH]


def sqlite_raw(path: str) -> Callable[[list[Row]], None]:
    import sqlite3

    from crmkit_sqlalchemy._encoding import money_text
    from crmkit_sqlalchemy._types import micros_of

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO transactions (tenant, id, customer_id, occurred_at, amount, currency, kind, line_items, "
        "attributes, external_id, created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, 'EUR', 'purchase', "
        "'[]', '{}', ?, ?, ?, 1) ON CONFLICT (tenant, external_id) DO UPDATE SET customer_id = excluded.customer_id, "
        "occurred_at = excluded.occurred_at, amount = excluded.amount, updated_at = excluded.updated_at, "
        "version = transactions.version + 1"
    )

    def upsert(rows: list[Row]) -> None:
        stamp = micros_of(dt.datetime.now(UTC))
        for batch in batches(rows):
            conn.execute("BEGIN")
            conn.executemany(
                sql, ((TENANT, i.hex, c.hex, micros_of(t), money_text(a), e, stamp, stamp) for i, c, t, a, e in batch)
            )
            conn.execute("COMMIT")

    return upsert


def postgres_raw(url: str) -> Callable[[list[Row]], None]:
    import psycopg
    from tests.support.servers import libpq_params

    conn = psycopg.connect(**libpq_params(url))
    sql = (
        "INSERT INTO transactions (tenant, id, customer_id, occurred_at, amount, currency, kind, line_items, "
        "attributes, external_id, created_at, updated_at, version) VALUES (%s, %s, %s, %s, %s, 'EUR', 'purchase', "
        "'[]', '{}', %s, %s, %s, 1) ON CONFLICT (tenant, external_id) DO UPDATE SET customer_id = "
        "excluded.customer_id, occurred_at = excluded.occurred_at, amount = excluded.amount, "
        "updated_at = excluded.updated_at, version = transactions.version + 1"
    )

    def upsert(rows: list[Row]) -> None:
        now = dt.datetime.now(UTC)
        for batch in batches(rows):
            with conn.cursor() as cursor:
                cursor.executemany(sql, [(TENANT, i, c, t, a, e, now, now) for i, c, t, a, e in batch])
            conn.commit()

    return upsert


def mongo_raw(crm: Any, collection: Any) -> Callable[[list[Row]], None]:
    from pymongo import ReplaceOne

    encode = crm.store.repository(crm.transactions.spec)._docs

    def upsert(rows: list[Row]) -> None:
        now = dt.datetime.now(UTC)
        for batch in batches(rows):
            found = [
                Transaction(
                    id=i, customer_id=c, occurred_at=t, amount=a, currency="EUR", kind="purchase", external_id=e,
                    created_at=now, updated_at=now, version=1,
                )
                for i, c, t, a, e in batch
            ]  # fmt: skip
            docs = encode(TENANT, found)
            collection.bulk_write(
                [ReplaceOne({"tenant": TENANT, "external_id": d["external_id"]}, d, upsert=True) for d in docs],
                ordered=False,
            )

    return upsert


def run(
    label: str,
    url: str,
    raw_url: str,
    n: int,
    raw: Callable[[crmkit.CRM], Callable[[list[Row]], None]],
    audit: bool = True,
) -> None:
    with (
        crmkit.connect(url, tenant=TENANT, audit=audit, event_feed=audit) as crm,
        crmkit.connect(raw_url, tenant=TENANT) as raw_crm,
    ):
        people = crm.customers.add_many(Customer(kind="person", name=f"c{i}") for i in range(1000))
        assert people.added == 1000
        customers = [c.id for c in crm.customers.stream()]
        first = make_rows(customers, n)
        second = changed(first)
        upsert_raw = raw(raw_crm)
        for name, rows, expect in (("all new", first, (n, 0, 0)), ("10% changed", second, (0, -(-n // 10), None))):
            mine, mine_cpu, result = timed(
                lambda rows=rows: crm.transactions.upsert_many(records(rows), key="external_id", batch_size=BATCH)
            )
            assert (result.added, result.updated) == expect[:2], result
            theirs, theirs_cpu, _ = timed(lambda rows=rows: upsert_raw(rows))
            show(
                f"{label:<18} {n:,} rows, {name:<12}{'' if audit else ' (no audit trail)'}",
                f"crmkit {mine:>7.1f} s (CPU {mine_cpu:>6.1f} s)",
                f"raw {theirs:>7.1f} s (CPU {theirs_cpu:>6.1f} s)",
                f"crmkit's speed {theirs / mine:.2f}x the raw driver's",
                f"(CPU {theirs_cpu / mine_cpu:.2f}x; goal >= 0.5x)",
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "mongodb"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--no-audit", action="store_true", help="connect with audit=False, event_feed=False (no trail is written)"
    )
    args = parser.parse_args()
    audit = not args.no_audit
    if args.backend == "sqlite":
        import sqlite3

        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            raw_path = f"{folder}/raw.db"
            run(
                f"SQLite {sqlite3.sqlite_version}",
                f"sqlite:///{folder}/crm.db",
                f"sqlite:///{raw_path}",
                args.rows,
                lambda _crm: sqlite_raw(raw_path),
                audit,
            )
    elif args.backend == "postgresql":
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            raw_url = create_database(server.url, "bench_upsert_raw")
            run("PostgreSQL", create_database(server.url, "bench_upsert"), raw_url, args.rows,
                lambda _crm: postgres_raw(raw_url), audit)  # fmt: skip
        finally:
            server.stop()
    else:
        from bench_mongo import database_url
        from pymongo import MongoClient
        from tests.support.servers import start_mongo

        mongo = start_mongo()
        try:
            raw_url = database_url(mongo.url, "bench_upsert_raw")
            collection = MongoClient(mongo.url)["bench_upsert_raw"]["transactions"]
            run("MongoDB", database_url(mongo.url, "bench_upsert"), raw_url, args.rows,
                lambda crm: mongo_raw(crm, collection), audit)  # fmt: skip
        finally:
            mongo.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

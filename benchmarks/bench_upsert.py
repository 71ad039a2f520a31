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
Each round starts from fresh stores; in each pass the two sides take turns, the one going
first alternating from round to round, and the medians (and the median of the rounds'
ratios) are printed (``--rounds``). Goal (issue 15): crmkit at least 0.5x the raw speed,
i.e. at most 2x its time. The CPU time of this process is printed too (the machine these
run on is shared), and on PostgreSQL and MongoDB the database server's (every process of
the server), and the load average when the run ends. crmkit keeps its audit
trail and event feed by default (every added and changed row is journalled);
``--no-audit`` connects without them, which is closer to what the raw side does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
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

from _timing import server_cpu, show, timed  # noqa: E402

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


Side = Callable[[list[Row]], Any]


def server_tree_cpu(pid: int) -> Callable[[], float]:
    """The CPU seconds a database server has used so far: process ``pid``, its live children and those it reaped.

    A PostgreSQL server forks a process per connection; a child's time moves into its
    parent's account of reaped children when it ends, so the sum never goes back.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    own = server_cpu(pid)

    def reaped(proc: int) -> float:
        fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / ticks

    def used() -> float:
        total = own() + reaped(pid)
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            try:
                total += server_cpu(int(child))()
            except (FileNotFoundError, ProcessLookupError):  # ended meanwhile: counted as reaped next time
                pass
        return total

    return used


def run(
    label: str,
    stores: Callable[[int], tuple[str, str]],
    n: int,
    raw: Callable[[crmkit.CRM, str], Side],
    audit: bool = True,
    rounds: int = 1,
    server: Callable[[], float] | None = None,
) -> None:
    """``rounds`` rounds, each into fresh stores (``stores(round)``: crmkit's URL and the raw side's).

    In a round each pass (all new, then 10% changed) is run by both sides, one after the
    other, the side going first alternating from round to round; printed: each round's
    times, then the medians and the median of the rounds' ratios.
    """
    customer_ids: list[uuid.UUID] = []
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    served: dict[tuple[str, str], list[float]] = {}  # the database server's CPU seconds per side and pass
    passes = ("all new", "10% changed")
    for r in range(rounds):
        url, raw_url = stores(r)
        with (
            crmkit.connect(url, tenant=TENANT, audit=audit, event_feed=audit) as crm,
            crmkit.connect(raw_url, tenant=TENANT) as raw_crm,
        ):
            if not customer_ids:
                people = crm.customers.add_many(Customer(kind="person", name=f"c{i}") for i in range(1000))
                assert people.added == 1000
                customer_ids = [c.id for c in crm.customers.stream()]
                first = make_rows(customer_ids, n)
                second = changed(first)
            else:  # the same customers in every round's store
                crm.customers.add_many(Customer(kind="person", name=f"c{i}", id=c) for i, c in enumerate(customer_ids))
            upsert_raw = raw(raw_crm, raw_url)
            for name, rows, expect in zip(passes, (first, second), ((n, 0), (0, -(-n // 10))), strict=True):

                def mine(rows: list[Row] = rows, expect: tuple[int, int] = expect) -> None:
                    result = crm.transactions.upsert_many(records(rows), key="external_id", batch_size=BATCH)
                    assert (result.added, result.updated) == expect, result

                sides: list[tuple[str, Side]] = [("crmkit", lambda _rows: mine()), ("raw", upsert_raw)]
                for side, fn in sides if r % 2 == 0 else sides[::-1]:
                    began = server() if server is not None else 0.0
                    wall, cpu, _ = timed(lambda fn=fn, rows=rows: fn(rows))
                    times.setdefault((side, name), []).append((wall, cpu))
                    extra = ""
                    if server is not None:
                        served.setdefault((side, name), []).append(server() - began)
                        extra = f" (server CPU {served[(side, name)][-1]:>6.1f} s)"
                    show(f"round {r + 1}", f"{name:<12}", f"{side:<6} {wall:>7.1f} s (CPU {cpu:>6.1f} s){extra}")
    for name in passes:
        mine_t, theirs_t = times[("crmkit", name)], times[("raw", name)]
        ratio = statistics.median(t[0] / m[0] for m, t in zip(mine_t, theirs_t, strict=True))
        cpu_ratio = statistics.median(t[1] / m[1] for m, t in zip(mine_t, theirs_t, strict=True))
        (mine_wall, mine_cpu), (raw_wall, raw_cpu) = (
            (statistics.median(w for w, _ in side), statistics.median(c for _, c in side))
            for side in (mine_t, theirs_t)
        )
        show(
            f"{label:<18} {n:,} rows, {name:<12}{'' if audit else ' (no audit trail)'}",
            f"crmkit {mine_wall:>7.1f} s (CPU {mine_cpu:>6.1f} s)",
            f"raw {raw_wall:>7.1f} s (CPU {raw_cpu:>6.1f} s)",
            f"crmkit's speed {ratio:.2f}x the raw driver's",
            f"(CPU {cpu_ratio:.2f}x; goal >= 0.5x; medians of {rounds} round{'s' if rounds > 1 else ''})",
        )
        if server is not None:
            mine_s, raw_s = served[("crmkit", name)], served[("raw", name)]
            show(
                f"{'':<18} server CPU: crmkit {statistics.median(mine_s):>7.1f} s",
                f"raw {statistics.median(raw_s):>7.1f} s",
                f"ratio {statistics.median(t / m for m, t in zip(mine_s, raw_s, strict=True) if m):.2f}x",
            )
    show("load average (1, 5, 15 min) at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "mongodb"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1, help="rounds into fresh stores, sides alternating")
    parser.add_argument(
        "--no-audit", action="store_true", help="connect with audit=False, event_feed=False (no trail is written)"
    )
    args = parser.parse_args()
    audit = not args.no_audit
    if args.backend == "sqlite":
        import sqlite3

        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:

            def files(r: int) -> tuple[str, str]:
                for old in Path(folder).iterdir():  # the last round's databases
                    old.unlink()
                return f"sqlite:///{folder}/crm{r}.db", f"sqlite:///{folder}/raw{r}.db"

            run(f"SQLite {sqlite3.sqlite_version}", files, args.rows,
                lambda _crm, raw_url: sqlite_raw(raw_url.removeprefix("sqlite:///")), audit, args.rounds)  # fmt: skip
    elif args.backend == "postgresql":
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:

            def databases(_r: int) -> tuple[str, str]:
                return create_database(server.url, "bench_upsert"), create_database(server.url, "bench_upsert_raw")

            run("PostgreSQL", databases, args.rows, lambda _crm, raw_url: postgres_raw(raw_url), audit, args.rounds,
                server_tree_cpu(server.pid))  # fmt: skip
        finally:
            server.stop()
    else:
        from bench_mongo import database_url
        from pymongo import MongoClient
        from tests.support.servers import start_mongo

        mongo = start_mongo()
        try:
            client: Any = MongoClient(mongo.url)

            def mongo_databases(_r: int) -> tuple[str, str]:
                client.drop_database("bench_upsert")
                client.drop_database("bench_upsert_raw")
                return database_url(mongo.url, "bench_upsert"), database_url(mongo.url, "bench_upsert_raw")

            raw_of = lambda crm, _url: mongo_raw(crm, client["bench_upsert_raw"]["transactions"])  # noqa: E731
            run("MongoDB", mongo_databases, args.rows, raw_of, audit, args.rounds, server_tree_cpu(mongo.pids[0]))
        finally:
            mongo.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""SQL backend benchmarks: crmkit on SQLite and PostgreSQL against the raw driver on the same database.

    python benchmarks/bench_sql.py                                  # 1,000,000 transactions, both databases
    python benchmarks/bench_sql.py --dialect sqlite --transactions 100000 --customers 10000   # quicker

PostgreSQL is a private server started for the run (``tests.support.servers.start_postgres``)
unless ``--postgres-url`` or ``$CRMKIT_POSTGRES_URL`` names one. Each section prints crmkit
and its peer from the same run:

1. ingest: ``crm.transactions.add_many`` from a generator (validated domain objects,
   reference checks, idempotent by external_id, one transaction per batch of its default size)
   against the driver's fastest path for the same rows in the same stored form
   (``sqlite3`` ``executemany`` in one transaction; psycopg ``COPY``). Segments of the two
   alternate so that machine noise hits both alike. Also shown: the storage layer alone
   (``Repository.insert_new`` with records built beforehand) and the peak growth of the
   process's memory while crmkit ingests. Goals: at least 0.5x the raw throughput,
   memory growth under 200 MB.
2. summaries: ``crm.purchase_summaries()`` for every customer against a hand-written
   ``GROUP BY`` returning plain tuples, and against fetching the rows into Python
   (crmkit's own fallback: stream the transactions, summarise in Python). Goal: at most
   1.3x the hand-written time.
3. customer 360: a customer, its last 20 interactions and last 20 transactions; p50 and
   p99 latency of crmkit against the same three statements through the driver, the two
   taking turns customer by customer. Goal: p50 at most 3x the driver's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit_sqlalchemy  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, F, Interaction, Transaction  # noqa: E402
from crmkit._ids import new_id  # noqa: E402
from crmkit.entities import INTERACTIONS, TRANSACTIONS  # noqa: E402
from crmkit.services.activity import Transactions  # noqa: E402
from crmkit.store import iter_batches  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2022, 1, 1, tzinfo=UTC)
BATCH = Transactions.add_many.__kwdefaults__["batch_size"]  # what an application gets by default
TENANT = "bench"

Row = tuple[uuid.UUID, dt.datetime, Decimal, str, str, str]


def source_rows(customer_ids: list[uuid.UUID], n: int, seed: int) -> Iterator[Row]:
    """The shared input of every ingest path: (customer, time, amount, currency, kind, external id)."""
    rng = random.Random(seed)
    for i in range(n):
        yield (
            customer_ids[rng.randrange(len(customer_ids))],
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


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    results = [timed(fn) for _ in range(runs)]
    return min(r[0] for r in results), results[-1][1]


class PeakMemory:
    """Samples the resident memory of this process while a block runs; ``growth`` is peak minus start, bytes."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


# --------------------------------------------------------------------------- the raw side


class RawLoader:
    """The driver's fastest path, writing rows in exactly the form crmkit stores them."""

    def __init__(self, url: str) -> None:
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            import sqlite3

            self.conn: Any = sqlite3.connect(sa.engine.make_url(url).database, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA cache_size=-65536")  # the same page cache as crmkit's connections
            page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
            self.conn.execute(f"PRAGMA wal_autocheckpoint={64 * 2**20 // page_size}")  # and checkpoint size
        else:
            import psycopg
            from tests.support.servers import libpq_params

            self.conn = psycopg.connect(**libpq_params(url))

    def load(self, rows: Iterator[Row]) -> None:
        now = dt.datetime.now(UTC)
        columns = ("tenant, id, customer_id, occurred_at, amount, currency, kind, line_items, attributes, "
                   "external_id, created_at, updated_at, version")
        if self.dialect == "sqlite":
            from crmkit_sqlalchemy._encoding import money_text
            from crmkit_sqlalchemy._types import micros_of

            stamp = micros_of(now)
            self.conn.execute("BEGIN")
            self.conn.executemany(
                f"INSERT INTO transactions ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((TENANT, new_id().hex, c.hex, micros_of(t), money_text(a), cur, k, "[]", "{}", e, stamp, stamp, 1)
                 for c, t, a, cur, k, e in rows),
            )
            self.conn.execute("COMMIT")
            return
        with self.conn.cursor() as cursor, cursor.copy(f"COPY transactions ({columns}) FROM STDIN") as copy:
            for c, t, a, cur, k, e in rows:
                copy.write_row((TENANT, new_id(), c, t, a, cur, k, "[]", "{}", e, now, now, 1))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- 1. ingest


def raw_load(url: str, ids: list[uuid.UUID], n: int, seed: int) -> None:
    """The raw side runs in a child process, so that its page cache is not counted as crmkit's memory."""
    import multiprocessing

    def child() -> None:
        loader = RawLoader(url)
        loader.load(source_rows(ids, n, seed))
        loader.close()
        os._exit(0)  # skip finalizers: they would close connections inherited from the parent

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join()
    assert process.exitcode == 0, process.exitcode


def domain_cost(ids: list[uuid.UUID], n: int) -> float:
    """Seconds to build n validated Transactions and stamp them as add_many does, storing nothing."""
    from crmkit.services.records import _stamped

    now = dt.datetime.now(UTC)
    source, _ = timed(lambda: sum(1 for _ in source_rows(ids, n, 7)))
    began = time.perf_counter()
    for c, t, a, cur, k, e in source_rows(ids, n, 7):
        _stamped(Transaction(customer_id=c, occurred_at=t, amount=a, currency=cur, kind=k, external_id=e), now)
    return time.perf_counter() - began - source  # the source rows themselves are the same on both sides


def bench_ingest(urls: dict[str, str], customers: int, transactions: int, segment: int) -> dict[str, Any]:
    crm = crmkit.connect(urls["crmkit"], tenant=TENANT)
    added = crm.customers.add_many(Customer(kind="person", name=f"Customer {i}") for i in range(customers))
    assert added.added == customers
    ids = [c.id for c in crm.customers.stream(order_by="id")]
    crmkit_sqlalchemy.upgrade(urls["raw"])

    def crmkit_ingest(seed: int, n: int) -> None:
        records = (
            Transaction(customer_id=c, occurred_at=t, amount=a, currency=cur, kind=k, external_id=e)
            for c, t, a, cur, k, e in source_rows(ids, n, seed)
        )
        result = crm.transactions.add_many(records, batch_size=BATCH)
        assert result.added == n, result

    out = {"crmkit": 0.0, "raw": 0.0, "memory": 0}
    with PeakMemory() as memory:
        for seed, first in enumerate(range(0, transactions, segment)):
            n = min(segment, transactions - first)
            sides: list[tuple[str, Callable[[], None]]] = [
                ("crmkit", lambda seed=seed, n=n: crmkit_ingest(seed, n)),  # type: ignore[misc]
                ("raw", lambda seed=seed, n=n: raw_load(urls["raw"], ids, n, seed + 10_000)),  # type: ignore[misc]
            ]
            for side, fn in sides if seed % 2 == 0 else reversed(sides):
                seconds, _ = timed(fn)
                out[side] += seconds
    out["memory"] = memory.growth
    # the same rows again: nothing is added
    again, result = timed(lambda: crm.transactions.add_many(
        (Transaction(customer_id=c, occurred_at=t, amount=a, currency=cur, kind=k, external_id=e)
         for c, t, a, cur, k, e in source_rows(ids, min(segment, transactions), 0)), batch_size=BATCH))
    assert result.added == 0
    out["again"] = (min(segment, transactions), again)
    out["crm"], out["ids"] = crm, ids
    return out


def bench_storage_layer(url: str, ids: list[uuid.UUID], n: int) -> float:
    """Repository.insert_new alone, into an empty database: records are built (and stamped, as the core
    does) outside the clock."""
    crm = crmkit.connect(url, tenant=TENANT)
    repo = crm.store.repository(TRANSACTIONS)
    now = dt.datetime.now(UTC)
    seconds = 0.0
    for batch in iter_batches(source_rows(ids, n, 99_999), BATCH):
        records = [
            Transaction(customer_id=c, occurred_at=t, amount=a, currency=cur, kind=k, external_id=e,
                        created_at=now, updated_at=now, version=1)
            for c, t, a, cur, k, e in batch
        ]
        began = time.perf_counter()
        repo.insert_new(TENANT, records)
        seconds += time.perf_counter() - began
    crm.close()
    return seconds


# --------------------------------------------------------------------------- 2. summaries


_PG_SAME = """
    SELECT customer_id, currency,
           count(*) FILTER (WHERE kind = 'purchase'),
           min(occurred_at) FILTER (WHERE kind = 'purchase'),
           max(occurred_at) FILTER (WHERE kind = 'purchase'),
           count(DISTINCT day) FILTER (WHERE kind = 'purchase'),
           sum(amount) FILTER (WHERE kind = 'purchase'),
           sum(amount) FILTER (WHERE kind = 'purchase' AND day = first_day),
           sum(amount) FILTER (WHERE kind = 'refund')
    FROM (SELECT customer_id, currency, kind, occurred_at, amount, (occurred_at AT TIME ZONE 'UTC')::date AS day,
                 min((occurred_at AT TIME ZONE 'UTC')::date) FILTER (WHERE kind = 'purchase')
                     OVER (PARTITION BY customer_id, currency) AS first_day
          FROM transactions WHERE tenant = 'bench') AS t
    GROUP BY customer_id, currency
    HAVING count(*) FILTER (WHERE kind = 'purchase') > 0
    ORDER BY customer_id, currency"""

_PG_SIMPLE = """
    SELECT customer_id, currency,
           count(*) FILTER (WHERE kind = 'purchase'),
           min(occurred_at) FILTER (WHERE kind = 'purchase'),
           max(occurred_at) FILTER (WHERE kind = 'purchase'),
           count(DISTINCT (occurred_at AT TIME ZONE 'UTC')::date) FILTER (WHERE kind = 'purchase'),
           sum(amount) FILTER (WHERE kind = 'purchase'),
           sum(amount) FILTER (WHERE kind = 'refund')
    FROM transactions WHERE tenant = 'bench'
    GROUP BY customer_id, currency
    HAVING count(*) FILTER (WHERE kind = 'purchase') > 0
    ORDER BY customer_id, currency"""

# On SQLite the stored forms are crmkit's: integer microseconds, money as a sortable text key.
_SQLITE_DAY = "(occurred_at + 62135596800000000) / 86400000000"
_SQLITE_UNITS = "CAST(substr(amount, 2, 15) AS INTEGER)"
_SQLITE_MICROS = "CAST(substr(amount, 18, 6) AS INTEGER)"

_SQLITE_SAME = f"""
    SELECT customer_id, currency,
           sum(kind = 'purchase'),
           min(CASE WHEN kind = 'purchase' THEN occurred_at END),
           max(CASE WHEN kind = 'purchase' THEN occurred_at END),
           count(DISTINCT CASE WHEN kind = 'purchase' THEN day END),
           sum(CASE WHEN kind = 'purchase' THEN {_SQLITE_UNITS} END),
           sum(CASE WHEN kind = 'purchase' THEN {_SQLITE_MICROS} END),
           sum(CASE WHEN kind = 'purchase' AND day = first_day THEN {_SQLITE_UNITS} END),
           sum(CASE WHEN kind = 'purchase' AND day = first_day THEN {_SQLITE_MICROS} END),
           sum(CASE WHEN kind = 'refund' THEN {_SQLITE_UNITS} END),
           sum(CASE WHEN kind = 'refund' THEN {_SQLITE_MICROS} END)
    FROM (SELECT customer_id, currency, kind, occurred_at, amount, {_SQLITE_DAY} AS day,
                 min(CASE WHEN kind = 'purchase' THEN {_SQLITE_DAY} END)
                     OVER (PARTITION BY customer_id, currency) AS first_day
          FROM transactions WHERE tenant = 'bench')
    GROUP BY customer_id, currency
    HAVING sum(kind = 'purchase') > 0
    ORDER BY customer_id, currency"""

_SQLITE_SIMPLE = f"""
    SELECT customer_id, currency,
           sum(kind = 'purchase'),
           min(CASE WHEN kind = 'purchase' THEN occurred_at END),
           max(CASE WHEN kind = 'purchase' THEN occurred_at END),
           count(DISTINCT CASE WHEN kind = 'purchase' THEN {_SQLITE_DAY} END),
           sum(CASE WHEN kind = 'purchase' THEN {_SQLITE_UNITS} END),
           sum(CASE WHEN kind = 'purchase' THEN {_SQLITE_MICROS} END),
           sum(CASE WHEN kind = 'refund' THEN {_SQLITE_UNITS} END),
           sum(CASE WHEN kind = 'refund' THEN {_SQLITE_MICROS} END)
    FROM transactions WHERE tenant = 'bench'
    GROUP BY customer_id, currency
    HAVING sum(kind = 'purchase') > 0
    ORDER BY customer_id, currency"""


def hand_written_summary(engine: sa.Engine, *, first_day_total: bool = True) -> list[Any]:
    """The SQL a developer would write by hand for the summaries, returning plain tuples.

    With ``first_day_total`` it computes the same numbers as crmkit (a window function finds
    each group's first purchase day); without, it is the plain GROUP BY lower bound.
    """
    pg = engine.dialect.name == "postgresql"
    sql = (_PG_SAME if first_day_total else _PG_SIMPLE) if pg else (_SQLITE_SAME if first_day_total else _SQLITE_SIMPLE)
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql).all()


def bench_summaries(crm: Any, fallback: bool) -> dict[str, float]:
    from crmkit._builtin import crmkit_purchase_summaries as python_fallback

    engine = crm.store.engine
    hand_written_summary(engine)  # warm the cache for every contender
    out: dict[str, float] = {}
    out["crmkit"], summaries = best_of(3, crm.purchase_summaries)
    out["hand"], rows = best_of(3, lambda: hand_written_summary(engine))
    out["simple"], plain = best_of(3, lambda: hand_written_summary(engine, first_day_total=False))
    assert len(summaries) == len(rows) == len(plain), (len(summaries), len(rows), len(plain))
    out["groups"] = len(summaries)
    if fallback:
        out["python"], slow = timed(lambda: list(python_fallback(crm.store, TENANT, None, None, None)))
        assert slow == summaries
    return out


# --------------------------------------------------------------------------- 3. customer 360


def bench_customer_360(crm: Any, ids: list[uuid.UUID], interactions: int, samples: int) -> dict[str, float]:
    repo = crm.store.repository(INTERACTIONS)
    rng = random.Random(7)
    now = dt.datetime.now(UTC)
    for batch in iter_batches(iter(range(interactions)), 5000):
        repo.insert_new(TENANT, [
            Interaction(customer_id=ids[rng.randrange(len(ids))], channel="email",
                        direction="inbound" if j % 2 else "outbound",
                        occurred_at=START + dt.timedelta(seconds=rng.randrange(3 * 365 * 86400)),
                        subject=f"Hello {j}", created_at=now, updated_at=now, version=1)
            for j in batch
        ])
    picks = [rng.choice(ids) for _ in range(samples)]
    engine: sa.Engine = crm.store.engine
    pg = engine.dialect.name == "postgresql"
    mark = "%s" if pg else "?"
    raw_conn = engine.raw_connection()
    if pg:
        raw_conn.driver_connection.autocommit = True  # type: ignore[union-attr]

    def crmkit_view(cid: uuid.UUID) -> int:
        crm.customers.get(cid)
        where = F("customer_id") == cid
        a = crm.interactions.find(where, order_by="-occurred_at", limit=20)
        b = crm.transactions.find(where, order_by="-occurred_at", limit=20)
        return len(a) + len(b) + 1

    def raw_view(cid: uuid.UUID) -> int:
        key = cid if pg else cid.hex
        cursor = raw_conn.cursor()
        cursor.execute(f"SELECT * FROM customers WHERE tenant = {mark} AND id = {mark}", (TENANT, key))
        found = len(cursor.fetchall())
        for table in ("interactions", "transactions"):
            cursor.execute(
                f"SELECT * FROM {table} WHERE tenant = {mark} AND customer_id = {mark} "
                f"ORDER BY occurred_at DESC, id LIMIT 20",
                (TENANT, key),
            )
            found += len(cursor.fetchall())
        cursor.close()
        return found

    views = (("crmkit", crmkit_view), ("raw", raw_view))
    for _, view in views:
        for cid in picks[:100]:
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
    raw_conn.close()
    return out


# --------------------------------------------------------------------------- main


def run(dialect: str, urls: dict[str, str], args: argparse.Namespace) -> None:
    print(f"\n== {dialect}: {args.transactions:,} transactions over {args.customers:,} customers")
    ingest = bench_ingest(urls, args.customers, args.transactions, args.segment)
    crm, ids = ingest["crm"], ingest["ids"]
    n = args.transactions
    print(f"ingest   crmkit add_many      {n / ingest['crmkit']:>10,.0f} rows/s  ({ingest['crmkit']:.1f} s)")
    print(f"ingest   raw driver           {n / ingest['raw']:>10,.0f} rows/s  ({ingest['raw']:.1f} s)"
          f"  ({'executemany' if dialect.startswith('SQLite') else 'COPY'})")
    print(f"ingest   ratio crmkit/raw     {ingest['raw'] / ingest['crmkit']:>10.2f}x   (goal >= 0.5x)")
    print(f"ingest   memory growth        {ingest['memory'] / 2**20:>10.0f} MB     (goal < 200 MB)")
    rows, again = ingest["again"]
    print(f"ingest   same rows again      {rows / again:>10,.0f} rows/s  (all skipped)")
    sample = min(n, 100_000)
    cost = domain_cost(ids, sample) / sample
    print(f"ingest   of which domain work {cost * 1e6:>10.0f} us/row  (building and stamping validated Transactions, "
          f"{cost * n / ingest['crmkit']:.0%} of crmkit's time)")
    layer_rows = min(n, 200_000)
    layer = bench_storage_layer(urls["layer"], ids, layer_rows)
    print(f"ingest   storage layer only   {layer_rows / layer:>10,.0f} rows/s  "
          f"(Repository.insert_new of {layer_rows:,} rows built beforehand, empty database)")

    times = bench_summaries(crm, fallback=not args.no_fallback)
    print(f"summary  crmkit               {times['crmkit'] * 1000:>10.0f} ms     ({times['groups']:,.0f} summaries)")
    print(f"summary  hand-written SQL     {times['hand'] * 1000:>10.0f} ms     (same numbers, plain tuples)")
    print(f"summary  ratio crmkit/hand    {times['crmkit'] / times['hand']:>10.2f}x   (goal <= 1.3x)")
    print(f"summary  plain GROUP BY       {times['simple'] * 1000:>10.0f} ms     (lower bound: no first-day total)")
    if "python" in times:
        print(f"summary  rows into Python     {times['python'] * 1000:>10.0f} ms     (stream + summarize)")
    one = ids[len(ids) // 2]
    single = sorted(timed(lambda: crm.purchase_summaries([one]))[0] * 1000 for _ in range(200))
    print(f"summary  one customer p50     {statistics.median(single):>10.2f} ms")

    latency = bench_customer_360(crm, ids, args.interactions, args.samples)
    print(f"360      crmkit p50 / p99     {latency['crmkit_p50']:>10.2f} / {latency['crmkit_p99']:.2f} ms")
    print(f"360      raw    p50 / p99     {latency['raw_p50']:>10.2f} / {latency['raw_p99']:.2f} ms")
    print(f"360      ratio crmkit/raw p50 {latency['crmkit_p50'] / latency['raw_p50']:>10.2f}x   (goal <= 3x)")
    crm.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("CRMKIT_POSTGRES_URL"),
                        help="a PostgreSQL server (else one is started for the run)")
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=300_000)
    parser.add_argument("--segment", type=int, default=100_000, help="rows per alternating ingest segment")
    parser.add_argument("--samples", type=int, default=2000, help="customer-360 reads to time")
    parser.add_argument("--no-fallback", action="store_true", help="skip the slow rows-into-Python summary")
    args = parser.parse_args()

    import tempfile

    if args.dialect in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            run("SQLite " + __import__("sqlite3").sqlite_version,
                {side: f"sqlite:///{folder}/{side}.db" for side in ("crmkit", "raw", "layer")}, args)
    if args.dialect in ("postgresql", "both"):
        from tests.support.servers import create_database, drop_database, start_postgres

        server = None
        url = args.postgres_url
        if not url:
            server = start_postgres()
            url = server.url
        try:
            urls = {side: create_database(url, f"bench_{side}") for side in ("crmkit", "raw", "layer")}
            with sa.create_engine(urls["raw"]).connect() as conn:
                version = conn.exec_driver_sql("SHOW server_version").scalar()
            run(f"PostgreSQL {version}", urls, args)
            for u in urls.values():
                drop_database(u)
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Type-ahead search: ``F("name").startswith(prefix, fold=True)`` against a hand-written query, same run.

    python benchmarks/bench_search.py                                    # 100,000 customers, SQLite and PostgreSQL
    python benchmarks/bench_search.py --backend sqlite --customers 20000  # quicker

Customers get names as a reseller's CRM holds them (Romanian, German, Polish, Spanish,
Persian and Arabic first and last names, written with and without their accents, some
upper case, some "LAST, First"), added with ``crm.customers.add_many``. Then what a
type-ahead box asks as someone types a name: three to six letters of a stored name's
folded form (``crmkit.search.fold``), typed in any case and with or without accents
(then, apart, the one or two letters boxes usually wait past, which match thousands):
the first 10 matches in crmkit's default order (by id), through crmkit and through the
statement a developer would write against the same table by hand
(``WHERE tenant = ? AND name_folded >= ? AND name_folded < ? ORDER BY id LIMIT 10``,
with the folding done in Python as crmkit does it), the two taking turns prefix by
prefix. Also timed: ``F("name").matches(...)`` of a whole stored name (two words, any
order), which the word index serves (the words table on SQLite, a GIN index on
PostgreSQL). PostgreSQL is a private server started for the run (``tests.support.servers``).
Goal: a type-ahead query's p50 under 5 ms on SQLite and PostgreSQL at 100,000 customers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, F  # noqa: E402
from crmkit.search import fold, prefix_end  # noqa: E402

TENANT = "bench"

FIRST = (
    "Ștefan", "Ştefan", "Stefan", "Ana", "Ioana", "Mihai", "Andrei", "Elena", "Maria", "Ionuț", "Răzvan",
    "Jürgen", "Günter", "Łukasz", "Małgorzata", "José", "María", "Zoë", "Søren", "Ægir", "Björn",
    "علي", "علی", "مريم", "مریم", "كاوه", "کاوه", "زهرا", "محمد", "فاطمه",
)  # fmt: skip
LAST = (
    "Popescu", "Ionescu", "Popa", "Pop", "Dumitrescu", "Stănescu", "Țurcanu", "Constantinescu", "Munteanu",
    "Müller", "Schröder", "Groß", "Wiśniewski", "Kowalczyk", "Núñez", "García", "Peña", "Øster",
    "كريمي", "کریمی", "رضايي", "رضایی", "حسيني", "حسینی", "موسوی", "جعفري",
)  # fmt: skip
#: Syllables of made-up family names, so that 100,000 customers hold tens of thousands of names.
SYLLABLES = (
    "pă", "po", "pes", "cu", "ște", "ion", "mü", "ler", "kow", "ski", "za", "de", "ri", "mo", "ța", "bră",
    "ne", "vo", "gar", "cí", "an", "del", "ro", "şa", "lu", "mi", "tr", "ber", "ka", "ro", "ză", "fi",
)  # fmt: skip


def names(n: int, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed)
    for i in range(n):
        first = rng.choice(FIRST)
        if rng.random() < 0.2:
            last = rng.choice(LAST)
        else:
            last = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        shape = rng.random()
        if shape < 0.15:
            yield f"{last.upper()}, {first}"
        elif shape < 0.25:
            yield f"{first} {last} {i % 97}"
        else:
            yield f"{first} {last}"


def prefixes(stored: list[str], count: int, sizes: tuple[int, int], seed: int = 11) -> list[str]:
    """What people type: the first letters of a stored name, upper or lower case, accents or not."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        name = rng.choice(stored)
        typed = fold(name)[: rng.randint(*sizes)].rstrip() or "a"
        out.append(typed.upper() if rng.random() < 0.3 else typed)
    return out


def load(url: str, n: int) -> list[str]:
    stored = list(names(n))
    with crmkit.connect(url, tenant=TENANT) as crm:
        crm.customers.add_many(Customer(kind="person", name=name) for name in stored)
    return stored


def hand_written(url: str) -> tuple[Callable[[str], list[Any]], Callable[[], None]]:
    """The type-ahead statement by hand: the same table, the same index, the same folding."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    pg = url.startswith("postgresql")
    mark = "%s" if pg else "?"
    columns = "id, kind, name, stage, owner, external_id, tags, emails, phones, addresses, handles, attributes"
    sql = (
        f"SELECT {columns}, created_at, updated_at, version FROM customers WHERE tenant = {mark} "
        f"AND name_folded >= {mark} AND name_folded < {mark} ORDER BY id LIMIT 10"
    )
    dbapi = conn.connection.driver_connection
    assert dbapi is not None

    def run(typed: str) -> list[Any]:
        low = fold(typed)
        cursor = dbapi.cursor()
        cursor.execute(sql, (TENANT, low, prefix_end(low)))
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def close() -> None:
        conn.close()
        engine.dispose()

    return run, close


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def compare(label: str, url: str, stored: list[str], queries: int) -> None:
    hand, close = hand_written(url)
    with crmkit.connect(url, tenant=TENANT) as crm:
        for sizes in ((3, 6), (1, 2)):
            typed = prefixes(stored, queries, sizes)
            ours: list[float] = []
            theirs: list[float] = []
            for prefix in typed[:20]:  # warm both paths (statement caches, the pages of the index)
                crm.customers.find(F("name").startswith(prefix, fold=True), limit=10)
                hand(prefix)
            for prefix in typed:
                start = time.perf_counter()
                page = crm.customers.find(F("name").startswith(prefix, fold=True), limit=10)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                rows = hand(prefix)
                theirs.append(time.perf_counter() - start)
                assert [c.id.hex for c in page] == [getattr(r[0], "hex", r[0]).replace("-", "") for r in rows], prefix
            p50, p50h = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
            p99, p99h = percentile(ours, 0.99) * 1000, percentile(theirs, 0.99) * 1000
            print(
                f"{label:<18} {sizes[0]}-{sizes[1]} letters  crmkit p50 {p50:6.2f} ms p99 {p99:6.2f} ms   "
                f"hand-written p50 {p50h:6.2f} ms p99 {p99h:6.2f} ms   ratio {p50 / p50h:5.2f}x   goal p50 < 5 ms"
            )
        rng = random.Random(3)
        whole: list[float] = []
        for _ in range(min(queries, 200)):
            name = rng.choice(stored).split()
            query = " ".join(reversed(name[:2]))
            start = time.perf_counter()
            crm.customers.find(F("name").matches(query), limit=10)
            whole.append(time.perf_counter() - start)
    close()
    print(
        f"{label:<18} matches       crmkit p50 {statistics.median(whole) * 1000:6.2f} ms "
        f"p99 {percentile(whole, 0.99) * 1000:6.2f} ms   ({len(whole)} queries of two words of a stored name)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()
    print(f"{args.customers:,} customers; {args.queries:,} type-ahead queries, crmkit and hand-written taking turns")
    if args.backend in ("sqlite", "all"):
        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            url = f"sqlite:///{folder}/crm.db"
            stored = load(url, args.customers)
            compare(f"SQLite {__import__('sqlite3').sqlite_version}", url, stored, args.queries)
    if args.backend in ("postgresql", "all"):
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            url = create_database(server.url, "bench_search")
            stored = load(url, args.customers)
            with sa.create_engine(url).connect() as conn:
                conn.exec_driver_sql("ANALYZE customers")
                conn.commit()
                version = conn.exec_driver_sql("SHOW server_version").scalar()
            compare(f"PostgreSQL {version}", url, stored, args.queries)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

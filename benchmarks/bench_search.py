"""Type-ahead search: ``F("name").startswith(prefix, fold=True)`` against a hand-written query, same run.

    python benchmarks/bench_search.py                                    # 100,000 customers, SQLite and PostgreSQL
    python benchmarks/bench_search.py --backend sqlite --customers 20000  # quicker

Customers get names as a reseller's CRM holds them (Romanian, German, Polish, Spanish,
Persian and Arabic first and last names, written with and without their accents, some
upper case, some "LAST, First"), added with ``crm.customers.add_many``. Then what a
type-ahead box asks as someone types a name: three to six letters of a stored name's
folded form (``crmkit.search.fold``), typed in any case and with or without accents
(then, apart, the one or two letters boxes usually wait past, which match thousands): the
first 10 matches in crmkit's default order (by id), through crmkit and through the statement
a developer would write against the same table by hand (the page's ids from the index on
(tenant, name_folded, id), ``... name_folded >= ? AND name_folded < ? ORDER BY id LIMIT
10``, then those rows; the folding done in Python as crmkit does it), the two taking turns
prefix by prefix. Also timed: ``F("name").matches(...)`` of a whole stored name (two words,
any order), which the word index serves (the words table on SQLite, a GIN index on
PostgreSQL). PostgreSQL is a private server started for the run (``tests.support.servers``).
Goal: a type-ahead query's p50 under 5 ms on SQLite and PostgreSQL at 100,000 customers.

The customers also have one or two e-mail addresses, which are searched through the
search terms (``crmkit.search_terms``): ``F("emails").startswith(typed, fold=True)``
against the hand-written semi-join on the same tables and index. Then what searching
costs writes: ``add_many`` of as many records of two declared aggregates alike but for
``search=True`` on their two text fields, and of customers with e-mails with and without
their search terms (``connect(search_emails=False)``), taking turns (``--rounds``,
medians; wall and this process's CPU).
"""

from __future__ import annotations

import argparse
import itertools
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
from benchmarks._timing import show, stopwatch, take_turns  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, F, schema  # noqa: E402
from crmkit.customers import EmailAddress  # noqa: E402
from crmkit.hookspecs import hookimpl  # noqa: E402
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


DOMAINS = ("example.ro", "firma.de", "gmail.com", "yahoo.com", "poczta.pl", "correo.es", "mail.ir")


def addresses(name: str, i: int) -> tuple[EmailAddress, ...]:
    """One or two addresses made from the name, as people have them (dots, digits, accents kept sometimes)."""
    parts = fold(name).split() or ["x"]
    local = ".".join(parts[:2]) if i % 3 else f"{parts[0][:1]}{parts[-1]}{i % 100}"
    first = EmailAddress(f"{local}@{DOMAINS[i % len(DOMAINS)]}")
    if i % 4:
        return (first,)
    return (first, EmailAddress(f"{parts[-1]}.{i}@{DOMAINS[(i + 3) % len(DOMAINS)]}"))


def customers(stored: list[str]) -> Iterator[Customer]:
    return (Customer(kind="person", name=name, emails=addresses(name, i)) for i, name in enumerate(stored))


def load(url: str, n: int) -> list[str]:
    stored = list(names(n))
    with crmkit.connect(url, tenant=TENANT) as crm:
        crm.customers.add_many(customers(stored))
    return stored


def hand_written(url: str) -> tuple[Callable[[str], list[Any]], Callable[[], None]]:
    """The type-ahead statement by hand: the same table, the same index, the same folding."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    pg = url.startswith("postgresql")
    mark = "%s" if pg else "?"
    columns = "id, kind, name, stage, owner, external_id, tags, emails, phones, addresses, handles, attributes"
    # the page's ids from the (tenant, name_folded, id) index alone, then those rows: a short
    # prefix matches thousands, and reading each matching row to sort them is what made a
    # plain "... ORDER BY id LIMIT 10" take milliseconds on PostgreSQL
    sql = (
        f"SELECT {columns}, created_at, updated_at, version FROM customers WHERE tenant = {mark} AND id IN "
        f"(SELECT id FROM customers WHERE tenant = {mark} AND name_folded >= {mark} AND name_folded < {mark} "
        f"ORDER BY id LIMIT 10) ORDER BY id"
    )
    dbapi = conn.connection.driver_connection
    assert dbapi is not None

    def run(typed: str) -> list[Any]:
        low = fold(typed)
        cursor = dbapi.cursor()
        cursor.execute(sql, (TENANT, TENANT, low, prefix_end(low)))
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def close() -> None:
        conn.close()
        engine.dispose()

    return run, close


def hand_written_emails(url: str) -> tuple[Callable[[str], list[Any]], Callable[[], None]]:
    """E-mail type-ahead by hand: the customers whose id is among the search terms' in the folded range."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    pg = url.startswith("postgresql")
    mark = "%s" if pg else "?"
    columns = "id, kind, name, stage, owner, external_id, tags, emails, phones, addresses, handles, attributes"
    # the terms' (tenant, term, field, record) index answers the sub-query alone; SQLite walks its
    # ids in order and reads just the page's rows, PostgreSQL is told to pick the page's ids first
    terms = (
        f"SELECT record_id FROM search_terms WHERE tenant = {mark} AND record_aggregate = 'customers' "
        f"AND field = 'emails' AND term >= {mark} AND term < {mark}"
    )
    if pg:
        terms = f"SELECT id FROM customers WHERE tenant = {mark} AND id IN ({terms}) ORDER BY id LIMIT 10"
    sql = (
        f"SELECT {columns}, created_at, updated_at, version FROM customers WHERE tenant = {mark} AND id IN "
        f"({terms}) ORDER BY id LIMIT 10"
    )
    dbapi = conn.connection.driver_connection
    assert dbapi is not None

    def run(typed: str) -> list[Any]:
        low = fold(typed)
        cursor = dbapi.cursor()
        tenants = (TENANT,) * (3 if pg else 2)
        cursor.execute(sql, (*tenants, low, prefix_end(low)))
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def close() -> None:
        conn.close()
        engine.dispose()

    return run, close


def compare_emails(label: str, url: str, stored: list[str], queries: int) -> None:
    """``F("emails").startswith(typed, fold=True)`` against the hand-written semi-join, taking turns."""
    hand, close = hand_written_emails(url)
    rng = random.Random(5)
    typed = []
    for _ in range(queries):
        i = rng.randrange(len(stored))
        address = rng.choice(addresses(stored[i], i)).address
        text = address[: rng.randint(3, 8)]
        typed.append(text.upper() if rng.random() < 0.3 else text)
    ours: list[float] = []
    theirs: list[float] = []
    with crmkit.connect(url, tenant=TENANT) as crm:
        for prefix in typed[:20]:
            crm.customers.find(F("emails").startswith(prefix, fold=True), limit=10)
            hand(prefix)
        for prefix in typed:
            start = time.perf_counter()
            page = crm.customers.find(F("emails").startswith(prefix, fold=True), limit=10)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            rows = hand(prefix)
            theirs.append(time.perf_counter() - start)
            assert [c.id.hex for c in page] == [getattr(r[0], "hex", r[0]).replace("-", "") for r in rows], prefix
    close()
    p50, p50h = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    p99, p99h = percentile(ours, 0.99) * 1000, percentile(theirs, 0.99) * 1000
    print(
        f"{label:<18} e-mails 3-8   crmkit p50 {p50:6.2f} ms p99 {p99:6.2f} ms   "
        f"hand-written p50 {p50h:6.2f} ms p99 {p99h:6.2f} ms   ratio {p50 / p50h:5.2f}x   goal p50 < 5 ms"
    )


@schema.aggregate("bench_plain_contacts")
class PlainContact(schema.Record):
    """Two text fields, not searched."""

    name: str = schema.text(personal="identity")
    email: str = schema.text(personal="contact")


@schema.aggregate("bench_searched_contacts")
class SearchedContact(schema.Record):
    """The same two text fields, declared searchable: a folded form and a word index each."""

    name: str = schema.text(personal="identity", search=True)
    email: str = schema.text(personal="contact", search=True)


class Contacts:
    @hookimpl
    def crmkit_aggregates(self) -> list[type]:
        return [PlainContact, SearchedContact]


def write_cost(label: str, url: str, n: int, rounds: int) -> None:
    """``add_many`` of ``n`` records with and without search fields (and customers with and without their
    e-mails' search terms), each into a fresh tenant, taking turns (``take_turns``); medians of ``rounds``."""
    stored = list(names(n))
    emails = [addresses(name, i)[0].address for i, name in enumerate(stored)]
    cpu: dict[str, list[float]] = {}
    fresh = itertools.count()

    def importer(key: str) -> Callable[[], None]:
        def run() -> None:
            options: dict[str, Any] = {"plugins": [Contacts()], "audit": False, "event_feed": False}
            options["search_emails"] = key != "customers, no terms"
            with crmkit.connect(url, tenant=f"w{next(fresh)}", **options) as crm, stopwatch() as took:
                if key == "plain":
                    crm.records(PlainContact).add_many(
                        PlainContact(name=a, email=e) for a, e in zip(stored, emails, strict=True)
                    )
                elif key == "searched":
                    crm.records(SearchedContact).add_many(
                        SearchedContact(name=a, email=e) for a, e in zip(stored, emails, strict=True)
                    )
                else:  # with search_emails=False for "no terms"
                    crm.customers.add_many(customers(stored))
            cpu.setdefault(key, []).append(took.cpu)

        return run

    keys = ("plain", "searched", "customers, no terms", "customers, terms")
    times, _ = take_turns(rounds, {key: importer(key) for key in keys})
    wall = {key: statistics.median(times[key]) for key in keys}
    for plain, searched in ((keys[0], keys[1]), (keys[2], keys[3])):
        mine, theirs = statistics.median(cpu[searched]), statistics.median(cpu[plain])
        show(
            f"{label:<18} add_many {n:,} (median of {rounds})",
            f"{plain:<20} {wall[plain]:7.2f} s (CPU {theirs:6.2f} s)",
            f"{searched:<17} {wall[searched]:7.2f} s (CPU {mine:6.2f} s)",
            f"ratio {wall[searched] / wall[plain]:5.2f}x (CPU {mine / theirs:5.2f}x)",
        )


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
    parser.add_argument("--writes", type=int, default=None, help="records per write-cost import (default: --customers)")
    parser.add_argument("--rounds", type=int, default=3, help="write-cost rounds (median of)")
    parser.add_argument("--skip-writes", action="store_true")
    args = parser.parse_args()
    writes = args.writes or args.customers
    print(f"{args.customers:,} customers; {args.queries:,} type-ahead queries, crmkit and hand-written taking turns")
    if args.backend in ("sqlite", "all"):
        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            url = f"sqlite:///{folder}/crm.db"
            stored = load(url, args.customers)
            label = f"SQLite {__import__('sqlite3').sqlite_version}"
            compare(label, url, stored, args.queries)
            compare_emails(label, url, stored, args.queries)
            if not args.skip_writes:
                write_cost(label, url, writes, args.rounds)
    if args.backend in ("postgresql", "all"):
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            url = create_database(server.url, "bench_search")
            stored = load(url, args.customers)
            with sa.create_engine(url).connect() as conn:
                conn.exec_driver_sql("ANALYZE customers")
                conn.exec_driver_sql("ANALYZE search_terms")
                conn.commit()
                version = conn.exec_driver_sql("SHOW server_version").scalar()
            compare(f"PostgreSQL {version}", url, stored, args.queries)
            compare_emails(f"PostgreSQL {version}", url, stored, args.queries)
            if not args.skip_writes:
                write_cost(f"PostgreSQL {version}", url, writes, args.rounds)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

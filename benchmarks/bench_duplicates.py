"""``crm.identity.duplicates()`` over a store of customers: time, and precision and recall of the pairs.

    python benchmarks/bench_duplicates.py                          # 100,000 customers on SQLite
    python benchmarks/bench_duplicates.py --backend postgresql --customers 100000

The customers are made up: names from syllables, an e-mail, a phone and an address each;
``--share`` of them (5% by default) get a second record the way duplicates arise: the
e-mail typed in other case, the phone in national form, or the name with its words in
another order, diacritics or a typo, at the same address. They are added with
``crm.customers.add_many``; then ``crm.identity.duplicates(min_probability=0.9)`` runs,
with blocking in the store, ``--rounds`` times (3 by default; the medians are printed).
The issue's goal: 100,000 customers in under a minute. The CPU time of this
(single-threaded) process, and of the database server (PostgreSQL's backends included), are
printed beside the wall time, with the load average: on a machine shared with other work
the wall time is roughly the CPU time times the load over the number of CPUs, and the CPU
times are the better estimate of what an idle machine takes.
PostgreSQL and MongoDB are private servers started for the run (``tests.support.servers``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import server_cpu, show, stopwatch, timed  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer  # noqa: E402
from crmkit.customers import EmailAddress, Phone, PostalAddress  # noqa: E402

SYLLABLES = ["ma", "ri", "an", "io", "ne", "sco", "pe", "tru", "la", "vi", "ce", "du", "mi", "ra", "ta", "lu"]
GIVEN = ["Ana", "Maria", "Ion", "Ștefan", "Elena", "Mihai", "Andrei", "Ioana", "Gheorghe", "Cristina", "Radu"]


def surname(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize() + "escu"


def typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def customers(n: int, share: float, seed: int) -> Iterator[tuple[Customer, int | None]]:
    """Customers, each with the index of the customer it duplicates (None for an original)."""
    rng = random.Random(seed)
    made = 0
    while made < n:
        given, family = rng.choice(GIVEN), surname(rng)
        number = f"07{rng.randrange(10**8):08d}"
        street = f"Strada {surname(rng)} {rng.randint(1, 200)}"
        postcode = f"{rng.randrange(10**6):06d}"
        email = f"{given.lower()}.{family.lower()}{rng.randrange(1000)}@example.ro".replace("ș", "s")
        original = Customer(
            kind="person",
            name=f"{given} {family}",
            emails=[EmailAddress(email)],
            phones=[Phone(f"+40{number[1:]}")],
            addresses=[PostalAddress(lines=(street,), postal_code=postcode, city="Cluj", country="RO")],
        )
        first = made
        yield original, None
        made += 1
        if made < n and rng.random() < share:
            way = rng.randrange(3)
            if way == 0:  # the same person typed again, e-mail in other case
                dup = Customer(kind="person", name=f"{given.upper()} {family}", emails=[EmailAddress(email.title())])
            elif way == 1:  # the phone in national form, a typo in the name
                dup = Customer(kind="person", name=f"{given} {typo(rng, family)}", phones=[Phone(number)])
            else:  # words in another order, without diacritics, at the same address
                plain = given.replace("Ș", "S")
                dup = Customer(kind="person", name=f"{family} {plain}", addresses=original.addresses)
            yield dup, first
            made += 1


def run(label: str, url: str, n: int, share: float, rounds: int, server: Callable[[], float] | None = None) -> None:
    truth: set[tuple[int, int]] = set()
    rows: list[Customer] = []
    for i, (customer, of) in enumerate(customers(n, share, seed=7)):
        rows.append(customer)
        if of is not None:
            truth.add((of, i))
    walls: list[float] = []
    cpus: list[float] = []
    servers: list[float] = []
    loads: list[float] = []
    with crmkit.connect(url, tenant="bench") as crm:
        crm.identity.region = "RO"
        with stopwatch() as loaded:
            crm.customers.add_many(rows, batch_size=5_000)
        index = {c.id: i for i, c in enumerate(rows)}
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            before = server() if server is not None else 0.0
            took, cpu, groups = timed(lambda: list(crm.identity.duplicates(min_probability=0.9)))
            walls.append(took)
            cpus.append(cpu)
            servers.append(server() - before if server is not None else 0.0)
    found = set()
    for group in groups:
        members = sorted(index[c] for c in group.customer_ids)
        found.update((a, b) for x, a in enumerate(members) for b in members[x + 1 :])
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    show(
        f"{label:<16} {n:,} customers ({len(truth):,} true pairs; added in {loaded.wall:.0f} s)",
        f"duplicates() median of {rounds}: {statistics.median(walls):.1f} s wall "
        f"(rounds {', '.join(f'{w:.0f}' for w in walls)})",
        f"Python's CPU {statistics.median(cpus):.1f} s",
        f"server's CPU {statistics.median(servers):.1f} s" if server is not None else "no server",
        f"load average {min(loads):.0f}-{max(loads):.0f}",
        f"{len(found):,} pairs",
        f"precision {precision:.4f}",
        f"recall {recall:.4f}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("memory", "sqlite", "postgresql", "mongodb"), default="sqlite")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.backend == "memory":
        run("memory", "memory://", args.customers, args.share, args.rounds)
    elif args.backend == "sqlite":
        import sqlite3

        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
            run(
                f"SQLite {sqlite3.sqlite_version}",
                f"sqlite:///{folder}/crm.db",
                args.customers,
                args.share,
                args.rounds,
            )
    elif args.backend == "mongodb":
        from bench_mongo import database_url
        from tests.support.servers import start_mongo

        mongo = start_mongo()
        try:
            url = database_url(mongo.url, "bench_duplicates")
            run("MongoDB", url, args.customers, args.share, args.rounds, server_cpu(mongo.pids[0]))
        finally:
            mongo.stop()
    else:
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            url = create_database(server.url, "bench_duplicates")
            run("PostgreSQL", url, args.customers, args.share, args.rounds, server_cpu(server.pid))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

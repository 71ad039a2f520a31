"""Export and erase one person among many: the time must not grow with the store.

    python benchmarks/bench_privacy.py                        # SQLite, 2,000 then 20,000 customers
    python benchmarks/bench_privacy.py --sizes 5000 50000

Each customer gets three interactions, two transactions and a stage change (the identity
keys of their e-mail address come with them). For each size the store is filled with
``add_many``, then ``crm.privacy.export`` and ``crm.privacy.erase(dry_run=True)`` run for
one person, best of ``--runs``, and one real erase. The walk queries every reference to
each aggregate it reaches with a filter, so the times should stay flat as the store grows
tenfold; a table scan per reference would grow with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit.customers import Customer, EmailAddress  # noqa: E402
from crmkit.interactions import Interaction  # noqa: E402
from crmkit.transactions import Transaction  # noqa: E402

UTC = dt.timezone.utc
START = dt.datetime(2025, 1, 1, tzinfo=UTC)


def customers(n: int) -> Iterator[Customer]:
    for i in range(n):
        yield Customer(kind="person", name=f"Person {i}", emails=(EmailAddress(f"p{i}@example.org"),))


def fill(crm: crmkit.CRM, n: int) -> list[Any]:
    crm.customers.add_many(customers(n))
    people = list(crm.customers.scan())
    crm.interactions.add_many(
        Interaction(
            customer_id=c.id,
            channel="email",
            direction="inbound",
            occurred_at=START + dt.timedelta(hours=k),
            summary=f"note {k} about {c.name}",
        )
        for c in people
        for k in range(3)
    )
    crm.transactions.add_many(
        Transaction(customer_id=c.id, occurred_at=START, amount=Decimal("10.00") + k, currency="EUR")
        for c in people
        for k in range(2)
    )
    return people


def best(runs: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| customers | rows | fill | export | erase (dry run) | erase |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        with (
            tempfile.TemporaryDirectory() as tmp,
            crmkit.connect(f"sqlite:///{Path(tmp) / 'crm.db'}", tenant="bench", actor="user:dpo") as crm,
        ):
            print(measure(crm, size, args.runs))


def measure(crm: crmkit.CRM, size: int, runs: int) -> str:
    """Fill the store, then time export, the dry run and the erase for one person: a table row."""
    began = time.perf_counter()
    people = fill(crm, size)
    person = people[len(people) // 2].id
    crm.lifecycle.move(person, "customer", reason="first order")
    filled = time.perf_counter() - began
    rows = sum(crm.records(name).count() for name in crm.schema)
    export = best(runs, lambda: crm.privacy.export(person))
    plan = best(runs, lambda: crm.privacy.erase(person, dry_run=True))
    began = time.perf_counter()
    report = crm.privacy.erase(person)
    erase = time.perf_counter() - began
    assert len(report.records) == 6, report.records  # customer, 3 interactions, key, stage change
    return (
        f"| {size:,} | {rows:,} | {filled:.1f} s | {export * 1000:.1f} ms "
        f"| {plan * 1000:.1f} ms | {erase * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()

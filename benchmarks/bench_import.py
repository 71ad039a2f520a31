"""``crmkit import`` against the hand-written loop it replaces, in the same run.

    python benchmarks/bench_import.py                        # 100,000 customers into SQLite
    python benchmarks/bench_import.py --customers 20000 --backend postgresql

A CSV of customers (external id, name, kind, one or two e-mail addresses, tags, a date-time
in a declared time zone and a decimal with a comma) is imported twice into fresh tenants:
by ``crmkit.transfer.import_file`` with a TOML mapping (what ``crmkit import`` runs, the
progress bar off), and by the loop a developer writes by hand: ``csv.DictReader``, the
same conversions in plain Python, ``crm.customers.upsert_many`` in batches of 1,000.
Then the import runs again over the stored rows (all unchanged: what a resumed or
repeated import costs). Goal: the command within 1.3x of the hand-written loop.
PostgreSQL is a private server started for the run (``tests.support.servers``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import tempfile
import time
import zoneinfo
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crmkit  # noqa: E402
from crmkit import transfer  # noqa: E402

MAPPING = """
aggregate = "customers"
timezone = "Europe/Bucharest"
[columns]
no = "external_id"
name = "name"
kind = "kind"
email = { field = "emails.address", separator = ";" }
tags = { field = "tags", separator = ";" }
since = { field = "attributes.since", type = "datetime", format = "%d.%m.%Y %H:%M" }
revenue = { field = "attributes.revenue", type = "decimal", decimal = "," }
"""
ZONE = zoneinfo.ZoneInfo("Europe/Bucharest")


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        out = csv.writer(file)
        out.writerow(["no", "name", "kind", "email", "tags", "since", "revenue"])
        for i in range(n):
            emails = f"c{i}@example.com" + (f";c{i}@work.example" if i % 3 == 0 else "")
            out.writerow([f"C{i}", f"Customer {i}", "person" if i % 5 else "organization", emails,
                          "vip;ro" if i % 7 == 0 else "ro", f"{1 + i % 28:02d}.0{1 + i % 9}.2024 10:{i % 60:02d}",
                          f"{i % 10000},{i % 100:02d}"])


def by_hand(crm: crmkit.CRM, path: Path) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file):
                since = dt.datetime.strptime(row["since"], "%d.%m.%Y %H:%M").replace(tzinfo=ZONE)
                yield {
                    "external_id": row["no"],
                    "name": row["name"],
                    "kind": row["kind"],
                    "emails": [{"address": a} for a in row["email"].split(";") if a],
                    "tags": [t for t in row["tags"].split(";") if t],
                    "attributes": {"since": since, "revenue": Decimal(row["revenue"].replace(",", "."))},
                }

    result = crm.customers.upsert_many(rows(), on_error="report")
    assert not result.failed


def timed(label: str, work: Any) -> float:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    print(f"  {label:<44}{seconds:>8.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-import-") as folder:
        data, mapping_path = Path(folder) / "customers.csv", Path(folder) / "customers.toml"
        write_csv(data, args.customers)
        mapping_path.write_text(MAPPING, encoding="utf-8")
        if args.backend == "sqlite":
            url = f"sqlite:///{Path(folder) / 'crm.db'}"
            server = None
        else:
            from tests.support.servers import start_postgres

            server = start_postgres()
            url = server.url
        try:
            print(f"{args.customers:,} customers from CSV into {args.backend}")
            with crmkit.connect(url, tenant="hand") as crm:
                hand = timed("hand-written loop with upsert_many", lambda: by_hand(crm, data))
            with crmkit.connect(url, tenant="cli") as crm:
                mapping = transfer.Mapping.load(mapping_path, transfer.aggregate_spec(crm, "customers"))

                def command() -> None:
                    summary = transfer.import_file(crm, data, mapping, rejects=Path(folder) / "rejects.csv")
                    assert summary.added == args.customers and summary.rejected == 0, summary

                ours = timed("crmkit import (transfer.import_file)", command)

                def again() -> None:
                    summary = transfer.import_file(crm, data, mapping, rejects=Path(folder) / "rejects.csv")
                    assert summary.unchanged == args.customers, summary

                rerun = timed("crmkit import again (all rows unchanged)", again)
                assert crm.customers.count() == args.customers
            print(f"  ratio crmkit import / hand-written: {ours / hand:.2f}x "
                  f"({args.customers / ours:,.0f} rows/s; a rerun {args.customers / rerun:,.0f} rows/s)")
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()

"""``crmkit import``, ``export`` and ``stats``: in-process on SQLite, PostgreSQL and MongoDB, and as a subprocess."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import crmkit
from crmkit import F
from crmkit.cli import main

ROOT = Path(__file__).resolve().parents[2]

CUSTOMERS = """\
No,Full name,Kind,E-mail,Phone,Tags,Since,Revenue
C1,Ana Popescu,person,ana@example.ro;ana.p@example.ro,+40 721 000 111,vip;ro,05.01.2024 10:30,"1.234,50"
C2,Bad Mail,person,not-an-email,,,05.01.2024 10:30,"12,00"
C3,,person,,,,,
C4,Bogdan SRL,organization,,,b2b,31.02.2024 10:00,"3,10"
C5,Eve,person,eve@example.com,,,06.01.2024 11:00,abc
C6,"Ştefan
Ionescu",person,stefan@example.ro,,ro,07.01.2024 09:00,"99,90"
"""

MAPPING = """\
aggregate = "customers"
timezone = "Europe/Bucharest"

[columns]
No = "external_id"
"Full name" = "name"
Kind = "kind"
"E-mail" = { field = "emails.address", separator = ";", values = { label = "work" } }
Phone = "phones.number"
Tags = { field = "tags", separator = ";" }
Since = { field = "attributes.since", type = "datetime", format = "%d.%m.%Y %H:%M" }
Revenue = { field = "attributes.revenue", type = "decimal", decimal = ",", thousands = "." }
"""

SALES = """\
customer,when,amount,currency,ref
C1,2024-02-01 12:00,"10,50",EUR,S1
C1,2024-02-03 12:00,"7,25",EUR,S2
C9,2024-02-03 12:00,"1,00",EUR,S3
C6,2024-03-01 08:15,"120,00",RON,S4
"""

SALES_MAPPING = """\
aggregate = "transactions"

[columns]
ref = "external_id"
customer = { field = "customer_id", lookup = "external_id" }
when = { field = "occurred_at", format = "%Y-%m-%d %H:%M", timezone = "Europe/Bucharest" }
amount = { field = "amount", decimal = "," }
currency = "currency"
"""


@pytest.fixture(params=["sqlite", "postgresql", "mongodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL; each test has its own tenant on the session's servers."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    elif request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
    else:
        yield request.getfixturevalue("mongo_url")


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_maps_converts_rejects_and_is_idempotent(store: str, tmp_path: Path) -> None:
    tenant = "t-" + uuid.uuid4().hex[:10]
    data = write(tmp_path, "customers.csv", CUSTOMERS)
    mapping = write(tmp_path, "customers.toml", MAPPING)
    args = ("import", str(data), "--url", store, "--tenant", tenant, "--mapping", str(mapping), "--no-progress")
    code, out = run(*args)
    assert code == 0
    assert out.splitlines()[0].startswith("6 rows read: 2 added, 0 updated, 0 unchanged, 4 rejected")
    rejects = rejects_of(tmp_path / "customers.csv.rejects.csv")  # beside the input by default
    assert [(r["line"], r["field"]) for r in rejects] == [
        ("3", "emails[0].email"),  # refused by the customer's own check, in the store's batch
        ("4", "name"),
        ("5", "attributes.since"),  # 31 February
        ("6", "attributes.revenue"),
    ]
    assert rejects[1]["reason"] == "is required (empty or not mapped)"
    assert rejects[3]["value"] == "abc" and "not a number" in rejects[3]["reason"]
    with crmkit.connect(store, tenant=tenant) as crm:
        ana = crm.customers.get_by_external_id("C1")
        assert ana.name == "Ana Popescu" and ana.tags == {"vip", "ro"}
        assert [(e.address, e.label) for e in ana.emails] == [("ana@example.ro", "work"), ("ana.p@example.ro", "work")]
        assert [p.number for p in ana.phones] == ["+40 721 000 111"]
        assert ana.attributes["revenue"] == Decimal("1234.50")
        assert ana.attributes["since"] == dt.datetime(2024, 1, 5, 8, 30, tzinfo=dt.timezone.utc)  # EET is UTC+2
        stefan = crm.customers.get_by_external_id("C6")
        assert stefan.name == "Ştefan\nIonescu"  # a quoted cell over two lines: line 7 starts the record
        assert crm.customers.count() == 2
    # Run again: nothing new, nothing changed; a fixed row is added.
    code, out = run(*args)
    assert out.startswith("6 rows read: 0 added, 0 updated, 2 unchanged, 4 rejected")
    write(tmp_path, "customers.csv", CUSTOMERS.replace("C3,,person", "C3,Carla,person"))
    code, out = run(*args)
    assert out.startswith("6 rows read: 1 added, 0 updated, 2 unchanged, 3 rejected")

    sales = write(tmp_path, "sales.csv", SALES)
    rejects_path = tmp_path / "out" / "sales-rejects.csv"
    rejects_path.parent.mkdir()
    code, out = run(
        "import",
        str(sales),
        "--url",
        store,
        "--tenant",
        tenant,
        "--mapping",
        str(write(tmp_path, "sales.toml", SALES_MAPPING)),
        "--rejects",
        str(rejects_path),
        "--no-progress",
    )
    assert code == 0 and out.startswith("4 rows read: 3 added")
    assert [(r["line"], r["field"], r["value"]) for r in rejects_of(rejects_path)] == [("4", "customer_id", "C9")]
    with crmkit.connect(store, tenant=tenant) as crm:
        ana = crm.customers.get_by_external_id("C1")
        bought = crm.transactions.find(F("customer_id") == ana.id, order_by="occurred_at")
        assert [t.amount for t in bought] == [Decimal("10.50"), Decimal("7.25")]
        assert bought[0].occurred_at == dt.datetime(2024, 2, 1, 10, 0, tzinfo=dt.timezone.utc)

    # Export what is stored, filtered, and import it into another tenant without a mapping.
    exported = tmp_path / "vip.csv"
    code, _ = run(
        "export", "customers", "--url", store, "--tenant", tenant, "--where", "tags~ro", "--out", str(exported)
    )
    assert code == 0
    with exported.open(encoding="utf-8", newline="") as file:
        assert sorted(r["external_id"] for r in csv.DictReader(file)) == ["C1", "C6"]
    other = tenant + "-copy"
    code, out = run("import", str(exported), "--url", store, "--tenant", other, "--no-progress")
    assert code == 0 and out.startswith("2 rows read: 2 added"), out
    with crmkit.connect(store, tenant=tenant) as crm, crmkit.connect(store, tenant=other) as copy:
        for key in ("C1", "C6"):
            a, b = crm.customers.get_by_external_id(key), copy.customers.get_by_external_id(key)
            assert (a.name, a.tags, a.emails, a.phones, a.kind) == (b.name, b.tags, b.emails, b.phones, b.kind)

    code, out = run("stats", "--url", store, "--tenant", tenant, "--tenant", other)
    line = next(x for x in out.splitlines() if x.startswith("customers "))
    assert line.split()[1:] == ["3", "2"]
    line = next(x for x in out.splitlines() if x.startswith("transactions "))
    assert line.split()[1:] == ["3", "0"]


def test_dry_run_writes_nothing_and_jsonl_and_parquet_read_the_same(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    rows = [
        {
            "external_id": "J1",
            "kind": "person",
            "name": "Jo",
            "tags": ["a", "b"],
            "attributes": {"score": 3},
            "created_at": "2024-01-01T00:00:00+00:00",
        },
        {"external_id": "J2", "kind": "robot", "name": "R2"},
        {"external_id": "J3", "kind": "organization", "name": "Acme", "emails": [{"address": "hi@acme.test"}]},
    ]
    data = tmp_path / "people.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")
    code, out = run("import", str(data), "--url", url, "--tenant", "t", "--dry-run", "--no-progress")
    assert code == 0 and out.startswith("4 rows read: 2 would be imported, 2 rejected")
    assert [(r["line"], r["field"]) for r in rejects_of(tmp_path / "people.jsonl.rejects.csv")] == [
        ("2", "kind"),
        ("4", "row"),
    ]
    with crmkit.connect(url, tenant="t") as crm:
        assert crm.customers.count() == 0
    code, out = run("import", str(data), "--url", url, "--tenant", "t", "--no-progress")
    assert out.startswith("4 rows read: 2 added")
    with crmkit.connect(url, tenant="t") as crm:
        jo = crm.customers.get_by_external_id("J1")
        assert jo.tags == {"a", "b"} and jo.attributes["score"] == 3
        assert crm.customers.get_by_external_id("J3").emails[0].address == "hi@acme.test"

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"external_id": ["P1", "P2"], "kind": ["person", "person"], "name": ["Pat", None]})
    pq.write_table(table, tmp_path / "people.parquet")
    code, out = run("import", str(tmp_path / "people.parquet"), "--url", url, "--tenant", "t", "--no-progress")
    assert out.startswith("2 rows read: 1 added, 0 updated, 0 unchanged, 1 rejected")
    assert [(r["line"], r["field"]) for r in rejects_of(tmp_path / "people.parquet.rejects.csv")] == [("2", "name")]


def test_export_jsonl_with_filters(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    with crmkit.connect(url, tenant="t") as crm:
        for n in range(5):
            crm.customers.add(
                crmkit.Customer(kind="person", name=f"P{n}", external_id=f"E{n}", tags={"vip"} if n % 2 else set())
            )
    code, out = run(
        "export",
        "customers",
        "--url",
        url,
        "--tenant",
        "t",
        "--format",
        "jsonl",
        "--where",
        "tags~vip",
        "--where",
        "name>P1",
    )
    assert code == 0
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["P3"]
    code, out = run("export", "customers", "--url", url, "--tenant", "t", "--limit", "2")
    assert len(out.splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "missing.csv", "--url", "memory://", "--tenant", "t"], "crmkit import: error: file: not found"),
        (
            ["import", "{data}", "--url", "nosuch://x", "--tenant", "t"],
            "no installed plugin opens URLs of scheme 'nosuch'",
        ),
        (["import", "{data}", "--url", "memory://", "--tenant", "t", "--mapping", "{bad}"], "is not valid TOML"),
        (
            ["import", "{data}", "--url", "memory://", "--tenant", "t", "--mapping", "{wrong}"],
            "mapping column 'x': names no field of customers",
        ),
        (
            ["import", "{data}", "--url", "memory://", "--tenant", "t", "--aggregate", "nope"],
            "aggregate: is not declared",
        ),
        (["import", "{data}", "--url", "memory://", "--tenant", "t"], "mapping: maps no column to external_id"),
        (
            ["export", "customers", "--url", "memory://", "--tenant", "t", "--where", "shoe=1"],
            "names no queryable field",
        ),
        (
            ["import", "{keyed}", "--url", "memory://", "--tenant", "t", "--rejects", "/nonexistent-dir/r.csv"],
            "No such file or directory",
        ),
    ],
)
def test_errors_are_one_line_and_a_nonzero_status(args: list[str], message: str, tmp_path: Path) -> None:
    files = {
        "data": write(tmp_path, "c.csv", "name,kind\nA,person\n"),
        "keyed": write(tmp_path, "k.csv", "external_id,name,kind\nK1,A,person\n"),
        "bad": write(tmp_path, "bad.toml", "columns = [\n"),
        "wrong": write(tmp_path, "wrong.toml", '[columns]\nx = "nosuch"\n'),
    }
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "crmkit.cli", *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("importing ")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in lines[0]


def test_a_killed_import_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    """Kill the import process mid-way, run it again: the rows committed are unchanged, the rest added."""
    total = 30_000
    data = tmp_path / "many.csv"
    with data.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["external_id", "kind", "name", "tags"])
        writer.writerows([f"K{n}", "person", f"Person {n}", "a;b"] for n in range(total))
    db = tmp_path / "crm.db"
    url = f"sqlite:///{db.as_posix()}"
    with crmkit.connect(url, tenant="t") as crm:  # create the schema before the import starts
        assert crm.customers.count() == 0
    command = [
        sys.executable,
        "-m",
        "crmkit.cli",
        "import",
        str(data),
        "--url",
        url,
        "--tenant",
        "t",
        "--batch-size",
        "500",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        with crmkit.connect(url, tenant="t") as crm:
            while stored < 2_000 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
                stored = crm.customers.count()
        assert process.poll() is None, "the import finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with crmkit.connect(url, tenant="t") as crm:
        before = crm.customers.count()
    assert 0 < before < total and before % 500 == 0  # whole batches, nothing half-written
    done = subprocess.run([*command, "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = f"{total:,} rows read: {total - before:,} added, 0 updated, {before:,} unchanged, 0 rejected"
    assert done.stdout.startswith(expected), done.stdout
    with crmkit.connect(url, tenant="t") as crm:
        assert crm.customers.count() == total


def test_progress_bar_shows_rate_and_eta(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    data = write(tmp_path, "c.csv", "external_id,kind,name\n" + "".join(f"X{n},person,N{n}\n" for n in range(50)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "crmkit.cli",
            "import",
            str(data),
            "--url",
            "memory://",
            "--tenant",
            "t",
            "--batch-size",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rows/s" in done.stderr and "ETA" in done.stderr and "100%" in done.stderr
    assert done.stdout.startswith("50 rows read: 50 added")


def test_the_demo_names_installed_plugins_active_in_every_connection(tmp_path: Path) -> None:
    from tests.support.examples import example_installed

    with example_installed(tmp_path):
        code, out = run("demo", "--url", "memory://")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("installed plugins active in every connection: "))
    assert "vip_rules (crmkit-example-vip-rules)" in line


def test_a_row_that_does_not_fit_the_header_is_rejected_not_guessed(tmp_path: Path) -> None:
    data = write(
        tmp_path, "c.csv", "external_id,kind,name\nA1,person,Ann\nA2,person\nA3,person,Al,extra\nA4,person,Ed\n"
    )
    code, out = run("import", str(data), "--url", "memory://", "--tenant", "t", "--no-progress")
    assert code == 0 and out.startswith("4 rows read: 2 added, 0 updated, 0 unchanged, 2 rejected")
    assert [(r["line"], r["field"], r["reason"]) for r in rejects_of(tmp_path / "c.csv.rejects.csv")] == [
        ("3", "row", "has 2 cells where the header has 3"),
        ("4", "row", "has 4 cells where the header has 3"),
    ]


def test_any_declared_aggregate_imports_by_its_field_names(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    data = write(
        tmp_path,
        "leads.csv",
        "external_id,name,company,source,score,status\n"
        "L1,Ioana Popescu,Fabrica SRL,web,42,open\n"
        "L2,Dan,,fair,many,open\n"
        "L3,Maria,Atelier,web,7,frozen\n",
    )
    code, out = run("import", str(data), "--aggregate", "leads", "--url", url, "--tenant", "t", "--no-progress")
    assert code == 0 and out.startswith("3 rows read: 1 added, 0 updated, 0 unchanged, 2 rejected"), out
    assert [(r["line"], r["field"]) for r in rejects_of(tmp_path / "leads.csv.rejects.csv")] == [
        ("3", "score"),
        ("4", "status"),
    ]
    with crmkit.connect(url, tenant="t") as crm:
        lead = crm.leads.get_by_external_id("L1")
        assert (lead.company, lead.score, lead.status.value) == ("Fabrica SRL", 42, "open")
    code, out = run("export", "leads", "--url", url, "--tenant", "t", "--where", "score>=40")
    assert [r["name"] for r in csv.DictReader(io.StringIO(out))] == ["Ioana Popescu"]

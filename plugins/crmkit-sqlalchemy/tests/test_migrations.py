"""The shipped Alembic migrations: they build exactly the table metadata, and stores create or refuse."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

import attrs
import crmkit_sqlalchemy
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from crmkit_sqlalchemy.__main__ import main
from crmkit_sqlalchemy._migrate import HEAD, alembic_config, current_revision, diff
from crmkit_sqlalchemy._schema import TABLES, VERSION_TABLE

import crmkit
from crmkit import BackendError, Customer
from crmkit._host import PluginHost


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_head_constant_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_migrations_from_empty_to_head_match_the_metadata(empty_url: str) -> None:
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert set(sa.inspect(conn).get_table_names()) == {*TABLES, VERSION_TABLE}
            assert diff(conn) == []
    finally:
        engine.dispose()


def test_connect_creates_the_schema_without_drift(empty_url: str) -> None:
    with crmkit.connect(empty_url, tenant="acme") as crm:
        crm.customers.add(Customer(kind="person", name="Ada"))
        declared = list(crm.schema.derived.values())  # installed plugins' aggregates have tables too
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert diff(conn, declared) == []
    finally:
        engine.dispose()


def test_drift_is_detected(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    crmkit_sqlalchemy.upgrade(url)
    installed = list(PluginHost().schema().derived.values())  # upgrade made their tables too
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_customers_tenant_stage")
        with engine.connect() as conn:
            assert [d[0] for d in diff(conn, installed)] == ["add_index"]
    finally:
        engine.dispose()


def test_refusing_to_upgrade(empty_url: str) -> None:
    with pytest.raises(BackendError, match=r"has no crmkit tables.*python -m crmkit_sqlalchemy upgrade"):
        crmkit.connect(empty_url, upgrade=False)
    assert crmkit_sqlalchemy.current(empty_url) is None
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    assert crmkit_sqlalchemy.current(empty_url) == HEAD
    with crmkit.connect(empty_url, upgrade=False) as crm:
        assert crm.customers.count() == 0


def test_command_line(new_database: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database("sqlite")
    assert main(["current", url]) == 0
    assert capsys.readouterr().out.strip() == "no crmkit schema"
    refused = main(["upgrade", "mysql://u:secret@h/db"])
    err = capsys.readouterr().err
    assert refused == 1 and "supported" in err and "secret" not in err
    done = subprocess.run([sys.executable, "-m", "crmkit_sqlalchemy", "upgrade", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"revision {HEAD}" in done.stdout
    assert main(["current", url]) == 0
    assert capsys.readouterr().out.strip() == HEAD


def test_tables_of_someone_else_are_not_touched(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE customers (name TEXT)")
    finally:
        engine.dispose()
    with pytest.raises(BackendError, match="refusing to touch them"):
        crmkit.connect(url)


def test_many_processes_opening_a_new_database_at_once(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        try:
            start.wait()
            crmkit.connect(url, tenant="acme").close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert crmkit_sqlalchemy.current(url) == HEAD


def test_upgrading_0001_keeps_relationships_and_enforces_their_keys(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers, relationships

    from crmkit import BulkResult, ConflictError, Relationship

    now = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    people = [Customer(kind="person", name=n, created_at=now, updated_at=now, version=1) for n in ("Ada", "Bob")]
    a, b = (p.id for p in people)
    edges = [
        Relationship(source_id=a, target_id=b, kind="reports_to", created_at=now, updated_at=now, version=1),
        Relationship(
            source_id=b,
            target_id=a,
            kind="partner_of",
            role="co-founder",
            since=dt.date(2019, 2, 3),
            attributes={"met": "at work"},
            created_at=now,
            updated_at=now,
            version=2,
        ),
    ]
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            for table, records in ((customers, people), (relationships, edges)):
                rows = [{"tenant": "acme", **CONVERTERS[table.name].to_row(r)} for r in records]
                if table is relationships:  # 0001 has no such column
                    rows = [{k: v for k, v in row.items() if k != "external_id"} for row in rows]
                conn.execute(table.insert(), rows)
        with engine.connect() as conn:
            assert current_revision(conn) == "0001"
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        assert sorted(crm.relationships.find(), key=lambda r: r.kind) == sorted(edges, key=lambda r: r.kind)
        assert [crm.customers.get(p.id) for p in people] == people
        with pytest.raises(ConflictError):
            crm.relationships.add(Relationship(source_id=a, target_id=b, kind="reports_to"))
        again = [attrs.evolve(e, id=uuid.uuid4(), created_at=None, updated_at=None, version=0) for e in edges]
        assert crm.relationships.add_many(again) == BulkResult(0, 2)
        crm.relationships.add(Relationship(source_id=a, target_id=b, kind="referred_by", external_id="r-1"))
        with pytest.raises(ConflictError, match="external_id"):
            crm.relationships.add(Relationship(source_id=b, target_id=a, kind="referred_by", external_id="r-1"))
        assert crm.relationships.count() == 3
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, list(crm.schema.derived.values())) == []
    finally:
        engine.dispose()

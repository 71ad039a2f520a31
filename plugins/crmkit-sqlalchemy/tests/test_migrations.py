"""The shipped Alembic migrations: they build exactly the table metadata, and stores create or refuse."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

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
        declared = list(crm.schema.declared.values())  # installed plugins' aggregates have tables too
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
    installed = list(PluginHost().schema().declared.values())  # upgrade made their tables too
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

"""Which URLs open a store, which are refused and how, and what errors say about the server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from crmkit_sqlalchemy import SqlStore
from sqlalchemy.engine import make_url

import crmkit
from crmkit import BackendError, Customer, PluginError


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    with crmkit.connect("sqlite://", tenant="acme") as crm:
        assert isinstance(crm.store, SqlStore)
        assert not crm.store.capabilities.persistent
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(crm.customers.count()))
        worker.start()
        worker.join()
        assert seen == [1]
        assert crm.customers.get(ada.id) == ada


def test_sqlite_file_keeps_data_between_connections(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/crm.db"
    with crmkit.connect(url, tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        assert crm.store.capabilities.persistent
    with crmkit.connect(url, tenant="acme") as crm:
        assert crm.customers.get(ada.id) == ada
    with crmkit.connect(url.replace("sqlite://", "sqlite+pysqlite://"), tenant="other") as crm:
        assert crm.customers.count() == 0  # tenants never see each other


def test_postgresql_url_forms(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    assert url.startswith("postgresql+psycopg://")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with crmkit.connect(plain, tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        assert crm.store.url.startswith("postgresql+psycopg://")
    with crmkit.connect(url, tenant="acme") as crm:
        assert crm.customers.get(ada.id) == ada


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql+asyncpg://u:pw@localhost/db", ["asyncpg", "postgresql+psycopg://"]),
        ("postgresql+psycopg2://u:pw@localhost/db", ["psycopg2", "postgresql+psycopg://"]),
        ("sqlite+aiosqlite:///crm.db", ["aiosqlite", "sqlite:///"]),
        ("mysql://u:pw@localhost/db", ["mysql", "sqlite://", "postgresql+psycopg://"]),
        ("mssql+pyodbc://u:pw@dsn", ["mssql", "postgresql+psycopg://"]),
        ("postgresql+psycopg://u:pw@localhost", ["must name a database"]),
    ],
)
def test_unsupported_sql_urls_are_refused_naming_what_works(url: str, words: list[str]) -> None:
    with pytest.raises(PluginError) as caught:
        crmkit.connect(url)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert "pw" not in message.replace("psycopg", "")


def test_other_schemes_are_left_to_other_plugins() -> None:
    with pytest.raises(PluginError, match="no installed plugin opens URLs of scheme 'nosuch'"):
        crmkit.connect("nosuch://x")


def test_schemes_are_listed() -> None:
    mine = [p for p in crmkit.plugins() if p.distribution == "crmkit-sqlalchemy"]
    assert len(mine) == 1
    assert {"sqlite", "postgresql", "postgresql+psycopg"} <= set(mine[0].schemes)


def test_options_are_checked() -> None:
    with pytest.raises(PluginError, match=r"pool_sise.*known: .*pool_size"):
        crmkit.connect("sqlite://", pool_sise=3)
    with pytest.raises(PluginError, match="upgrade must be bool"):
        crmkit.connect("sqlite://", upgrade="yes")
    with pytest.raises(PluginError, match="pool_size must be at least 1"):
        crmkit.connect("sqlite://", pool_size=0)
    with crmkit.connect("sqlite://", echo=False, busy_timeout=2.5) as crm:
        assert crm.customers.count() == 0


def test_unreachable_server_is_a_backend_error_naming_the_host_not_the_password() -> None:
    with pytest.raises(BackendError) as caught:
        crmkit.connect("postgresql+psycopg://crm:Sup3rSecret@127.0.0.1:1/crm", connect_timeout=2)
    message = str(caught.value)
    assert "127.0.0.1:1/crm" in message
    assert "Sup3rSecret" not in message
    assert "Sup3rSecret" not in repr(caught.value.__cause__)


def test_store_url_hides_the_password(new_database: Callable[[str], str]) -> None:
    url = make_url(new_database("postgresql")).set(password="not-needed")
    with crmkit.connect(url.render_as_string(hide_password=False), tenant="acme") as crm:
        assert "not-needed" not in crm.store.url
        assert "***" in crm.store.url
        assert "not-needed" not in repr(crm)


def test_unopenable_sqlite_file_is_a_backend_error(tmp_path: object) -> None:
    with pytest.raises(BackendError, match="SQLite database"):
        crmkit.connect(f"sqlite:///{tmp_path}/no/such/folder/crm.db")


def test_sqlite_files_get_the_pragmas_the_options_ask_for(tmp_path: object) -> None:
    def pragmas(**options: object) -> dict[str, object]:
        names = ("journal_mode", "synchronous", "busy_timeout", "cache_size", "foreign_keys",
                 "wal_autocheckpoint", "page_size")
        with (
            crmkit.connect(f"sqlite:///{tmp_path}/crm.db", **options) as crm,  # type: ignore[arg-type]
            crm.store.engine.connect() as conn,  # type: ignore[attr-defined]
        ):
            return {n: conn.exec_driver_sql(f"PRAGMA {n}").scalar() for n in names}

    default = pragmas()
    assert default["journal_mode"] == "wal" and default["synchronous"] == 1 and default["foreign_keys"] == 1
    assert default["busy_timeout"] == 30_000 and default["cache_size"] == -64 * 1024
    assert default["wal_autocheckpoint"] == 64 * 2**20 // default["page_size"]  # type: ignore[operator]
    tuned = pragmas(busy_timeout=2.5, cache_mb=8, checkpoint_mb=4)
    assert tuned["busy_timeout"] == 2500 and tuned["cache_size"] == -8 * 1024
    assert tuned["wal_autocheckpoint"] == 4 * 2**20 // tuned["page_size"]  # type: ignore[operator]
    with pytest.raises(PluginError, match="checkpoint_mb must be at least 1"):
        crmkit.connect("sqlite://", checkpoint_mb=0)

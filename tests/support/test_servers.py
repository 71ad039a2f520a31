"""The test servers are real, reachable, isolated, and gone after stop()."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psycopg
import pytest
from pymongo import MongoClient, WriteConcern
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.support.servers import (
    HOST,
    ServerStartError,
    create_database,
    drop_database,
    libpq_params,
    process_alive,
    start_mongo,
    start_mongo_replica_set,
    start_postgres,
    unique_name,
)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def test_postgres_url_is_a_psycopg3_sqlalchemy_url(postgres_url):
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.database
    if not os.environ.get("CRMKIT_POSTGRES_URL"):
        assert url.host == HOST


def test_postgres_is_version_16_and_stores_rows(postgres_url):
    with psycopg.connect(**libpq_params(postgres_url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        assert version.startswith("16"), version
        table = unique_name("people")
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute(f"INSERT INTO {table} (name) VALUES (%s), (%s)", ("Ada", "Grace"))
        rows = conn.execute(f"SELECT name FROM {table} ORDER BY id").fetchall()
        assert rows == [("Ada",), ("Grace",)]
        conn.rollback()
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None


def test_postgres_works_through_sqlalchemy(postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert engine.dialect.driver == "psycopg"
            assert conn.execute(text("SELECT 40 + 2")).scalar_one() == 42
    finally:
        engine.dispose()


def test_create_database_gives_isolated_empty_databases(postgres_url):
    first = create_database(postgres_url, unique_name("iso_a"))
    second = create_database(postgres_url, unique_name("iso_b"))
    try:
        assert make_url(first).database != make_url(second).database
        with psycopg.connect(**libpq_params(first)) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(**libpq_params(second)) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone()[0] is None
        # creating it again yields an empty database, even with a client attached
        holder = psycopg.connect(**libpq_params(first))
        try:
            again = create_database(postgres_url, make_url(first).database)
        finally:
            holder.close()
        with psycopg.connect(**libpq_params(again)) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone()[0] is None
    finally:
        drop_database(first)
        drop_database(second)
    with psycopg.connect(**libpq_params(postgres_url)) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert make_url(first).database not in names


def test_postgres_server_lifecycle_and_privileges():
    server = start_postgres()
    try:
        assert server.startup_seconds < 10, f"PostgreSQL took {server.startup_seconds:.2f}s to start"
        assert process_alive(server.pid)
        if os.geteuid() == 0:
            assert _uid_of(server.pid) != 0, "postgres must not run as root"
        with psycopg.connect(**libpq_params(server.url)) as conn:
            assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")
            assert conn.execute("SELECT inet_server_port()").fetchone()[0] == server.port
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while process_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(server.pid)
    assert not server.directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**{**libpq_params(server.url), "connect_timeout": 2})


def test_postgres_that_cannot_start_fails_loudly():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        with pytest.raises(ServerStartError, match="already in use"):
            start_postgres(port=taken.getsockname()[1])


# --------------------------------------------------------------------------
# MongoDB
# --------------------------------------------------------------------------


def test_mongo_multi_document_transaction_commits_and_aborts(mongo_url):
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=15000)
    db = client[unique_name("tx")]
    try:
        accounts, ledger = db.accounts, db.ledger
        accounts.insert_one({"_id": "acme", "balance": 100})
        ledger.insert_one({"_id": "seed"})  # collections exist before the transaction

        def transfer(session):
            accounts.update_one({"_id": "acme"}, {"$inc": {"balance": -30}}, session=session)
            ledger.insert_one({"_id": "t1", "amount": 30}, session=session)

        with client.start_session() as session:
            session.with_transaction(transfer)
        assert accounts.find_one({"_id": "acme"})["balance"] == 70
        assert ledger.find_one({"_id": "t1"})["amount"] == 30

        with client.start_session() as session, pytest.raises(RuntimeError), session.start_transaction():
            accounts.update_one({"_id": "acme"}, {"$inc": {"balance": -70}}, session=session)
            ledger.insert_one({"_id": "t2"}, session=session)
            raise RuntimeError("abort the transaction")
        assert accounts.find_one({"_id": "acme"})["balance"] == 70
        assert ledger.find_one({"_id": "t2"}) is None
    finally:
        client.drop_database(db.name)
        client.close()


def test_mongo_single_node_lifecycle():
    replset = start_mongo()
    try:
        assert replset.startup_seconds < 20, f"mongod took {replset.startup_seconds:.2f}s to start"
        (member,) = replset.members
        assert process_alive(member.pid)
        assert replset.url == f"mongodb://{HOST}:{member.port}/?replicaSet={replset.name}"
        assert replset.primary() is member
    finally:
        replset.stop()
    assert not process_alive(member.pid)
    assert not replset.directory.exists()


def test_three_member_replica_set_elects_a_new_primary_after_kill():
    began = time.monotonic()
    with start_mongo_replica_set(3) as replset:
        assert len(set(replset.pids)) == 3 and len(set(replset.ports)) == 3
        assert all(process_alive(pid) for pid in replset.pids)
        old = replset.primary()
        assert old is not None

        client = MongoClient(replset.url, serverSelectionTimeoutMS=20000)
        try:
            coll = client.crm.get_collection("contacts", write_concern=WriteConcern(w="majority"))
            coll.insert_one({"_id": "before", "name": "Ada"})

            replset.kill(old)
            assert not process_alive(old.pid)

            new = replset.wait_for_primary(timeout=20)
            assert new is not old and new.alive()
            assert replset.primary() is new
            # a majority-committed write survives the crash of the primary
            assert coll.find_one({"_id": "before"})["name"] == "Ada"
            coll.insert_one({"_id": "after", "name": "Grace"})
            assert coll.count_documents({}) == 2
        finally:
            client.close()
        survivors = [m for m in replset.members if m is not old]
    assert not any(process_alive(m.pid) for m in survivors)
    assert not replset.directory.exists()
    assert time.monotonic() - began < 30

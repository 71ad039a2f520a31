"""Fixtures of the MongoDB backend tests: a fresh database per module, a fresh tenant per test.

The server is the session's single-node replica set (root ``conftest.py``: ``mongo_url``).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from tests.support import servers
from tests.support.servers import unique_name

import crmkit
from crmkit.crm import CRM


def database_url(url: str, database: str) -> str:
    """``url`` with its path set to ``database`` (options and credentials kept)."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    query = ""
    if "?" in authority:
        authority, _, query = authority.partition("?")
    elif slash:
        query = path.partition("?")[2]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


def fresh_tenant() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def mongo_db_url(mongo_url: str) -> Iterator[str]:
    """The URL of a database of its own for one test module, dropped afterwards."""
    name = unique_name("crmkit")
    yield database_url(mongo_url, name)
    with MongoClient(mongo_url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture(scope="module")
def raw_db(mongo_url: str, mongo_db_url: str) -> Iterator[object]:
    """A plain pymongo handle on the module's database, to look at stored documents."""
    name = mongo_db_url.partition("://")[2].partition("/")[2].partition("?")[0]
    with MongoClient(mongo_url, uuidRepresentation="standard") as client:
        yield client[name]


@pytest.fixture
def crm(mongo_db_url: str) -> Iterator[CRM]:
    """A CRM on the module's database, for a tenant no other test uses."""
    with crmkit.connect(mongo_db_url, tenant=fresh_tenant()) as opened:
        yield opened


@pytest.fixture(scope="session")
def url_with_database():
    """``database_url`` as a fixture (test modules cannot import this conftest by name)."""
    return database_url


@contextlib.contextmanager
def standalone_mongod(directory: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A mongod that is not a replica set member (no transactions), stopped by its pid."""
    mongod = servers._mongod_path()
    port = servers._free_port()
    cmd = [
        str(mongod), "--port", str(port), "--bind_ip", servers.HOST, "--dbpath", str(directory),
        "--nounixsocket", "--logpath", str(directory / "mongod.log"), "--wiredTigerCacheSizeGB", "0.25",
        "--setParameter", "diagnosticDataCollectionEnabled=false",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not servers._port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (directory / "mongod.log").read_text(errors="replace")[-2000:]
                raise servers.ServerStartError(f"standalone mongod did not start:\n{log}")
            time.sleep(0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def start_standalone(tmp_path: Path) -> Iterator[Callable[[], tuple[int, subprocess.Popen[bytes]]]]:
    """Call to start a standalone mongod for this test; it is stopped (by pid) afterwards."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(standalone_mongod(tmp_path))

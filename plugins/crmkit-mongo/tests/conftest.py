"""Fixtures of the MongoDB backend tests: a fresh database per module, a fresh tenant per test.

The server is the session's single-node replica set (root ``conftest.py``: ``mongo_url``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient
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

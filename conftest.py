"""Session-wide fixtures: real PostgreSQL and MongoDB servers, started lazily.

A server starts only when a test asks for its fixture, once per session (once
per worker when pytest-xdist spreads the run: each worker has servers of its own),
and is stopped by pid at the end even when tests fail. Set CRMKIT_POSTGRES_URL or
CRMKIT_MONGO_URL to use an existing server instead. How it works:
tests/support/servers.py.
"""

from collections.abc import Iterator

import pytest
from tests.support.servers import session_mongo_url, session_postgres_url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (postgresql+psycopg://...) of an empty database."""
    with session_postgres_url() as url:
        yield url


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """pymongo URL of a single-node replica set (transactions work)."""
    with session_mongo_url() as url:
        yield url

"""Fixtures of the SQL backend tests: SQLite files and PostgreSQL databases of their own.

PostgreSQL is the session's real server (root ``conftest.py``: ``postgres_url``); each
module or test that needs an empty database gets one from ``create_database``. Tests on a
shared database use a fresh tenant each, which the store keeps apart.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.servers import create_database, drop_database, unique_name

import crmkit
from crmkit.crm import CRM

DIALECTS = ("sqlite", "postgresql")

# The example plugin's aggregate (crmkit_subscriptions), importable in a checkout where it is not installed
_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "subscriptions" / "src"
if str(_EXAMPLE) not in sys.path:
    sys.path.append(str(_EXAMPLE))


def fresh_tenant() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def new_database(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """A factory: ``new_database("sqlite" | "postgresql")`` returns the URL of an empty database."""
    made: list[str] = []

    def make(dialect: str) -> str:
        if dialect == "sqlite":
            folder: Path = tmp_path_factory.mktemp("sqlite")
            return f"sqlite:///{folder / 'crm.db'}"
        url = create_database(request.getfixturevalue("postgres_url"), unique_name("sqla"))
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def empty_url(dialect: str, new_database: Callable[[str], str]) -> str:
    """The URL of an empty database of the dialect under test."""
    return new_database(dialect)


@pytest.fixture(scope="module")
def shared_urls(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """One database per dialect for a whole module (tests keep apart by tenant)."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('shared') / 'crm.db'}"}
    urls["postgresql"] = create_database(request.getfixturevalue("postgres_url"), unique_name("sqla"))
    yield urls
    drop_database(urls["postgresql"])


@pytest.fixture
def shared_url(dialect: str, shared_urls: dict[str, str]) -> str:
    return shared_urls[dialect]


@pytest.fixture
def crm(shared_url: str) -> Iterator[CRM]:
    """A CRM on the module's database of the dialect under test, for a tenant of its own."""
    with crmkit.connect(shared_url, tenant=fresh_tenant()) as opened:
        yield opened


class StatementCounter:
    """Counts the SQL statements an engine sends (to prove that something is one query)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _seen(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def count_statements() -> Callable[[CRM], StatementCounter]:
    """``with count_statements(crm) as seen: ...`` then ``len(seen.statements)``."""

    def make(crm: CRM) -> StatementCounter:
        return StatementCounter(crm.store.engine)  # type: ignore[attr-defined]

    return make

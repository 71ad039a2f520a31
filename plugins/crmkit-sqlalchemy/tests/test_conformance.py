"""crmkit's conformance suite, unchanged, against a SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.servers import create_database, drop_database, unique_name

from crmkit.testing.conformance import *  # noqa: F403


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def crmkit_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'crm.db'}"
        return
    url = create_database(request.getfixturevalue("postgres_url"), unique_name("conformance"))
    yield url
    drop_database(url)

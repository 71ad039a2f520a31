"""crmkit's conformance suite, unchanged, against a SQLite file and a real PostgreSQL database.

The example plugin's ``Subscription`` runs the generic contract next to the probe (listed
here for a checkout where the example is not installed; installed, its entry point declares it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crmkit_subscriptions import Subscription
from tests.support.servers import create_database, drop_database, unique_name

from crmkit.testing.conformance import *  # noqa: F403

CRMKIT_AGGREGATES = (Subscription,)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def crmkit_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'crm.db'}"
        return
    url = create_database(request.getfixturevalue("postgres_url"), unique_name("conformance"))
    yield url
    drop_database(url)

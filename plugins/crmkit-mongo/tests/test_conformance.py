"""crmkit's conformance suite, unchanged, against MongoDB (a database of its own per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import MongoClient
from tests.support.servers import unique_name

from crmkit.testing.conformance import *  # noqa: F403


@pytest.fixture(scope="session")
def crmkit_url(mongo_url: str, url_with_database) -> Iterator[str]:
    name = unique_name("conformance")
    yield url_with_database(mongo_url, name)
    with MongoClient(mongo_url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)

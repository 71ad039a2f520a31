"""The identity tests' stores (every backend, ``tests/support/backends.py``), with phones read as Romanian."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.backends import BACKENDS, backend_url
from tests.support.servers import unique_name

import crmkit


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("identity"))


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("identity")) as crm:
        crm.identity.region = "RO"
        yield crm

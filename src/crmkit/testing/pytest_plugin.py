"""pytest plugin (entry point ``pytest11``): the ``--crmkit-url`` option, crmkit markers and fixtures.

Fixtures, all overridable in a conftest.py or test module:

* ``crmkit_url`` (session): the store URL the conformance suite runs against; the
  ``--crmkit-url`` option, else ``memory://``. A backend plugin overrides this one.
* ``crmkit_connect_options`` (session): extra keyword arguments for ``crmkit.connect``.
* ``crmkit_plugins`` (session): plugin objects for ``crmkit.connect(plugins=...)``, for a
  backend that is not installed as a distribution with an entry point.
* ``crmkit_backends`` (session): the stores opened so far, one per URL, closed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crmkit.testing._backends import BackendPool

# The contract classes use plain asserts; have pytest explain them when they fail.
pytest.register_assert_rewrite("crmkit.testing.conformance")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crmkit")
    group.addoption(
        "--crmkit-url",
        action="store",
        default=None,
        help="store URL the crmkit conformance suite runs against (default: memory://)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): the test needs these crmkit.store.Capabilities; skipped when the store lacks one",
    )


@pytest.fixture(scope="session")
def crmkit_url(request: pytest.FixtureRequest) -> str:
    """The store URL under test: ``--crmkit-url``, else ``memory://``."""
    return request.config.getoption("crmkit_url") or "memory://"


@pytest.fixture(scope="session")
def crmkit_connect_options() -> dict[str, Any]:
    """Keyword options passed to ``crmkit.connect`` with ``crmkit_url`` (none by default)."""
    return {}


@pytest.fixture(scope="session")
def crmkit_plugins() -> tuple[object, ...]:
    """Extra plugin objects registered with every ``crmkit.connect`` of the suite (none by default)."""
    return ()


@pytest.fixture(scope="session")
def crmkit_backends() -> Iterator[BackendPool]:
    """Stores opened by the conformance suite, one per URL and options, closed at session end."""
    pool = BackendPool()
    yield pool
    pool.close()

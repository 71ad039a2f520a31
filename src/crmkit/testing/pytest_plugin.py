"""pytest plugin (entry point ``pytest11``): the ``--crmkit-url`` option and crmkit markers."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crmkit")
    group.addoption(
        "--crmkit-url",
        action="store",
        default=None,
        help="store URL the crmkit conformance suite runs against (default: memory://)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(capability): the test needs a backend capability")

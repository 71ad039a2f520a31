"""The four stores a feature's tests run on, and a clock the tests move by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

#: Every store a feature's end-to-end tests run on (the server ones start once per session).
BACKENDS = ("memory", "sqlite", "postgresql", "mongodb")


def backend_url(request: pytest.FixtureRequest, folder: Path) -> str:
    """The URL of the store ``request.param`` names; SQLite keeps its file in ``folder``."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{(folder / 'crm.db').as_posix()}"
    return str(request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mongo_url"))


class Clock:
    """A connection's clock (``crmkit.connect(..., clock=...)``) that stands still until moved."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: int = 60) -> dt.datetime:
        """Move the clock ``seconds`` on and return the new time."""
        self.now += dt.timedelta(seconds=seconds)
        return self.now

"""Deliberately broken copies of the memory store, each with one bug real backends have had.

The conformance suite must fail on every one of them (tests/testing/test_mutants.py); a
store without transactions must make the suite skip, not fail (test_capabilities.py).
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import Phase, settings

import crmkit
from crmkit.backends.memory import MemoryRepository, MemoryStore, order_value
from crmkit.entities import ENTITIES
from crmkit.query import And, Compare, Expr, Not, Or, Order, evaluate
from crmkit.store import Capabilities, Store
from crmkit.testing.conformance._harness import PROFILE


def _millis(record: Any) -> Any:
    changes = {}
    for name in ("occurred_at", "created_at", "updated_at"):
        value = getattr(record, name, None)
        if isinstance(value, dt.datetime):
            changes[name] = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return attrs.evolve(record, **changes)


def _floats(record: Any) -> Any:
    if not getattr(record, "attributes", None):
        return record
    return attrs.evolve(
        record, attributes={k: float(v) if isinstance(v, Decimal) else v for k, v in record.attributes.items()}
    )


def _null_is_unknown(expr: Expr, spec: Any, record: Any) -> bool:
    """SQL's three-valued logic leaking through: a comparison with a missing value is never true."""
    if isinstance(expr, Compare) and expr.value is not None and spec.record_value(record, expr.field) is None:
        return False
    if isinstance(expr, Not):
        inner = expr.item
        if isinstance(inner, Compare) and inner.value is not None and spec.record_value(record, inner.field) is None:
            return False
        return not _null_is_unknown(inner, spec, record)
    if isinstance(expr, And):
        return all(_null_is_unknown(i, spec, record) for i in expr.items)
    if isinstance(expr, Or):
        return any(_null_is_unknown(i, spec, record) for i in expr.items)
    return evaluate(expr, spec, record)


class _Repository(MemoryRepository):
    bug = ""

    def _put(self, tenant: str, record: Any) -> None:
        if self.bug == "milliseconds":
            record = _millis(record)
        elif self.bug == "decimal_attributes_as_floats":
            record = _floats(record)
        super()._put(tenant, record)

    def _conflicts(self, tenant: str, records: Any, *, skip_external: bool) -> list[Any]:
        if self.bug == "external_ids_not_unique":
            return list(records)
        return super()._conflicts(tenant, records, skip_external=skip_external)

    def get(self, tenant: str, id: uuid.UUID) -> Any | None:
        if self.bug == "lost_updates":
            record = super().get(tenant, id)
            time.sleep(0.002)  # let the other writers read the same version meanwhile
            return record
        if self.bug == "tenant_leak":
            with self._store._lock:
                for rows in self._rows.values():
                    if id in rows:
                        return rows[id]
                return None
        return super().get(tenant, id)

    def replace(self, tenant: str, record: Any, expected_version: int) -> bool:
        if self.bug == "lost_updates":
            current = self._rows.get(tenant, {}).get(record.id)
            return current is not None and super().replace(tenant, record, current.version)
        return super().replace(tenant, record, expected_version)

    def delete_where(self, tenant: str, where: Expr) -> int:
        if self.bug == "delete_where_deletes_one":
            with self._store._lock:
                doomed = list(self._matching(tenant, where))[:1]
                for record in doomed:
                    self._write(tenant, record, None)
                return len(doomed)
        return super().delete_where(tenant, where)

    def _matching(self, tenant: str, where: Expr) -> Iterator[Any]:
        if self.bug != "null_is_unknown":
            yield from super()._matching(tenant, where)
            return
        for record in list(self._rows.get(tenant, {}).values()):
            if _null_is_unknown(where, self.spec, record):
                yield record

    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[Any]:
        found = super().find(tenant, where, order, None)
        if self.bug in ("case_insensitive_order", "utf16_order"):
            for name, desc in reversed(order.keys):
                found.sort(key=lambda r, n=name: self._text_key(order_value(self.spec, r, name=n)), reverse=desc)
        return found if limit is None else found[:limit]

    def _text_key(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.casefold() if self.bug == "case_insensitive_order" else value.encode("utf-16-be")


class MutantStore(MemoryStore):
    """A memory store with one named bug."""

    def __init__(self, bug: str) -> None:
        super().__init__(name=None)
        self.bug = bug
        repos = {}
        for spec in ENTITIES.values():
            repo = _Repository(self, spec)
            repo.bug = bug
            repos[spec.name] = repo
        self._repos = repos  # type: ignore[assignment]
        if bug == "no_transactions_capability":
            self.capabilities = Capabilities(transactions=False, concurrent_writers=False)

    @property
    def url(self) -> str:
        return f"mutant://{self.bug}"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.bug in ("no_rollback", "no_transactions_capability"):
            yield  # writes stay, whatever happens
            return
        if self.bug == "lost_updates":
            yield  # no lock held across the read-check-write of an update
            return
        with super().transaction():
            yield


#: Every bug, with the test classes of the suite expected to catch it.
BUGS: Mapping[str, tuple[str, ...]] = {
    "milliseconds": ("TestRoundTrip",),
    "decimal_attributes_as_floats": ("TestRoundTrip",),
    "external_ids_not_unique": ("TestExternalIds", "TestBulkImport"),
    "tenant_leak": ("TestTenancy",),
    "lost_updates": ("TestConcurrency",),
    "no_rollback": ("TestUnitOfWork",),
    "null_is_unknown": ("TestQueries",),
    "case_insensitive_order": ("TestOrdering",),
    "utf16_order": ("TestOrdering",),
    "delete_where_deletes_one": ("TestDeleteCascade",),
}


class MutantPlugin:
    """Opens ``mutant://<bug>`` URLs."""

    def __init__(self) -> None:
        self.opened: list[Store] = []

    @crmkit.hookimpl
    def crmkit_open_store(self, url: str, options: Mapping[str, Any]) -> Store | None:
        if not url.startswith("mutant://"):
            return None
        store = MutantStore(url[len("mutant://") :])
        self.opened.append(store)
        return store

    @crmkit.hookimpl
    def crmkit_url_schemes(self) -> list[str]:
        return ["mutant"]


class _Outcomes:
    def __init__(self) -> None:
        self.by_test: dict[str, str] = {}
        self.skip_reasons: list[str] = []
        self.errors: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.by_test[report.nodeid] = "error" if report.when != "call" and report.failed else report.outcome
            if report.skipped:
                self.skip_reasons.append(str(report.longrepr))
            if report.when != "call" and report.failed:
                self.errors.append(str(report.longrepr))


def run_inner(directory: Path, files: Mapping[str, str], *args: str, shrink: bool = True) -> _Outcomes:
    """Write test modules into ``directory`` and run pytest on them in this process.

    Unlike pytester's in-process runs this keeps every module imported, because Hypothesis
    does not survive having half of its modules dropped from sys.modules between runs.
    ``shrink=False`` reports the first failing example as found (a failure is all we need).
    """
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    outcomes = _Outcomes()
    old = os.getcwd()
    profile = settings.get_profile(PROFILE)
    if not shrink:
        settings.register_profile(PROFILE, profile, phases=[p for p in Phase if p is not Phase.shrink])
    os.chdir(directory)
    try:
        pytest.main(
            ["-p", "no:cacheprovider", "--import-mode=importlib", "-q", "--rootdir", str(directory), *args, *files],
            plugins=[outcomes],
        )
    finally:
        os.chdir(old)
        settings.register_profile(PROFILE, profile)
    return outcomes


def backend_module(bug: str, *classes: str) -> str:
    """A backend's test module running ``classes`` of the suite against ``mutant://<bug>``."""
    imports = ", ".join(classes) if classes else "*  # noqa: F403"
    return f"""
import pytest
from crmkit.testing.conformance import {imports}
from tests.testing.mutants import MutantPlugin

@pytest.fixture(scope="session")
def crmkit_url():
    return "mutant://{bug}"

@pytest.fixture(scope="session")
def crmkit_plugins():
    return (MutantPlugin(),)
"""

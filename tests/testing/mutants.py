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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import Phase, settings

import crmkit
from crmkit._errors import ConflictError
from crmkit.backends.memory import MemoryRepository, MemoryStore, sort_key
from crmkit.entities import ENTITIES, EntitySpec
from crmkit.query import And, Compare, Expr, Not, Or, Order, conjuncts, evaluate
from crmkit.schema import Schema
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


def _dropped(record: Any, bug: str) -> Any:
    """A declared record as a store with a codec bug of one field kind would read it back."""
    spec = getattr(type(record), "__crmkit_spec__", None)
    if spec is None:
        return record
    if bug == "dropped_many":
        return attrs.evolve(record, **{n: () for n, fd in spec.declared.items() if fd.kind == "many"})
    copy = attrs.evolve(record)
    for name, fd in spec.declared.items():
        if fd.kind == "boolean":  # SQLite's 0 and 1, never turned back into False and True
            object.__setattr__(copy, name, int(getattr(record, name)))
    return copy


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
        elif self.bug in ("dropped_many", "boolean_as_int"):
            record = _dropped(record, self.bug)
        super()._put(tenant, record)

    def _unique_clash(self, tenant: str, record: Any, batch: dict[tuple[str, ...], set[tuple[Any, ...]]]) -> None:
        if self.bug == "unique_keys_not_enforced":
            return  # the unique index of the declared keys was never created
        if self.bug == "unique_keys_span_tenants":  # the unique index forgot the tenant column
            for key, index in self._unique.items():
                values = self._key(record, key)
                if None in values:
                    continue
                for other, held in index.items():
                    if other != tenant and values in held:
                        raise ConflictError(f"{self.spec.label} {key} {values} is taken", entity=self.spec.label)
        super()._unique_clash(tenant, record, batch)

    def _candidates(self, tenant: str, where: Expr, rows: Mapping[uuid.UUID, Any]) -> Iterable[Any]:
        found = super()._candidates(tenant, where, rows)
        if self.bug not in ("ref_index_keeps_one_row", "ref_lookup_ignores_tenant") or not self._declared:
            return found
        references = {r.field for r in self.spec.references}
        pinned = [p for p in conjuncts(where) if isinstance(p, Compare) and p.field.split(".")[0] in references]
        if not pinned or pinned[0].op != "==":
            return found
        if self.bug == "ref_index_keeps_one_row":  # a one-to-one map where a reference needs one-to-many
            return list(found)[:1]
        return [r for t in list(self._rows) for r in self._rows[t].values()]  # every tenant's rows

    @property
    def _declared(self) -> bool:
        return bool(getattr(self.spec, "declared", None))

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
                found.sort(key=lambda r, n=name: self._text_key(sort_key(self.spec, r, name=n)), reverse=desc)
        return found if limit is None else found[:limit]

    def _text_key(self, key: tuple[bool, Any]) -> Any:
        present, value = key
        if not isinstance(value, str):
            return key
        return present, value.casefold() if self.bug == "case_insensitive_order" else value.encode("utf-16-be")


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

    def repository(self, spec: EntitySpec) -> MemoryRepository:
        repo = self._repos.get(spec.name)
        if repo is None:  # a declared aggregate: a mutant repository too
            with self._lock:
                repo = self._repos.get(spec.name)
                if repo is None:
                    repo = _Repository(self, spec)
                    repo.bug = self.bug
                    self._repos[spec.name] = repo
        return repo

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
    "ref_index_keeps_one_row": ("TestAggregateReferences",),
    "ref_lookup_ignores_tenant": ("TestAggregateReferences",),
    "unique_keys_not_enforced": ("TestAggregateRecords",),
    "unique_keys_span_tenants": ("TestAggregateRecords",),
    "dropped_many": ("TestAggregateRecords",),
    "boolean_as_int": ("TestAggregateRecords",),
}


class MutantPlugin:
    """Opens ``mutant://<bug>`` URLs."""

    def __init__(self) -> None:
        self.opened: list[Store] = []

    @crmkit.hookimpl
    def crmkit_open_store(self, url: str, options: Mapping[str, Any], schema: Schema) -> Store | None:
        if not url.startswith("mutant://"):
            return None
        store = MutantStore(url[len("mutant://") :])
        store.prepare(schema)
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


#: A conftest for inner runs that keeps the generic contract's tests of the probe aggregates only.
#: The mutants' bugs live in the generic layout, which the probes cover with a field and a reference
#: of every kind; running the contract on every other declared aggregate too would only multiply
#: the time, and every feature adds aggregates.
PROBES_ONLY = """
PROBES = ("crmkit_probes", "crmkit_probe_links")

def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (keep if params.get("aggregate", PROBES[0]) in PROBES else drop).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
"""


def run_inner(
    directory: Path, files: Mapping[str, str], *args: str, shrink: bool = True, probes_only: bool = True
) -> _Outcomes:
    """Write test modules into ``directory`` and run pytest on them in this process.

    Unlike pytester's in-process runs this keeps every module imported, because Hypothesis
    does not survive having half of its modules dropped from sys.modules between runs.
    ``shrink=False`` reports the first failing example as found (a failure is all we need).
    ``probes_only`` runs the generic contract on the probe aggregates alone (see ``PROBES_ONLY``).
    """
    if probes_only:
        (directory / "conftest.py").write_text(PROBES_ONLY, encoding="utf-8")
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

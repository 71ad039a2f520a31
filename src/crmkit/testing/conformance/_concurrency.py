"""Concurrent writers: one winner per version, no lost update, clean errors, overlapping imports.

Overlapping imports run in processes of their own on a store that outlives a process (each
opens the URL with ``crmkit.connect``), and in threads sharing the store otherwise.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
import pytest

import crmkit
from crmkit import BulkResult, ConflictError, NotFound
from crmkit.crm import CRM
from crmkit.query import F
from crmkit.testing._backends import Backend, new_tenant
from crmkit.testing.conformance._harness import ContractBase, person

__all__ = ["ConcurrencyContract"]

T = TypeVar("T")
_THREADS = 6

#: The overlapping import: this many importers, each writing the same rows in its own order.
IMPORTERS = 4
IMPORT_ROWS = 6_000
IMPORT_BATCH = 200
_IMPORT_TIMEOUT = 300.0


def _import_rows(crm: CRM, seed: int, ready: Callable[[], object]) -> BulkResult:
    """Import IMPORT_ROWS people (external ids ext-00000...) shuffled by ``seed``, once ``ready()`` returns."""
    numbers = list(range(IMPORT_ROWS))
    random.Random(seed).shuffle(numbers)
    rows = [person(f"row {n}", external_id=f"ext-{n:05d}", attributes={"by": seed}) for n in numbers]
    ready()
    return crm.customers.add_many(rows, batch_size=IMPORT_BATCH)


def _import_in_process(
    url: str,
    options: Mapping[str, Any],
    plugins: tuple[object, ...],
    tenant: str,
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    """One importer of the overlapping import, in a process of its own (run by ``multiprocessing``)."""
    try:
        with crmkit.connect(url, tenant=tenant, plugins=plugins, **options) as crm:
            result = _import_rows(crm, seed, lambda: barrier.wait(_IMPORT_TIMEOUT))
        results.put((seed, result.added, result.skipped))
    except BaseException as exc:  # reported to the parent, which fails the test with it
        results.put((seed, f"{type(exc).__module__}.{type(exc).__name__}: {exc}", None))


def _in_processes(backend: Backend, tenant: str) -> list[BulkResult | str]:
    """Run the importers in processes of their own (spawned: nothing of this process is shared)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(IMPORTERS), context.Queue()
    workers = [
        context.Process(
            target=_import_in_process,
            args=(backend.url, backend.options, backend.plugins, tenant, seed, barrier, results),
            name=f"crmkit-importer-{seed}",
        )
        for seed in range(IMPORTERS)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[BulkResult | str] = []
    try:
        for _ in workers:
            seed, added, skipped = results.get(timeout=_IMPORT_TIMEOUT)
            outcomes.append(f"importer {seed}: {added}" if skipped is None else BulkResult(added, skipped))
    except queue.Empty:
        outcomes.append(f"an importer gave no answer within {_IMPORT_TIMEOUT:.0f} s")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():  # pragma: no cover - only when an importer hangs
                worker.kill()
                worker.join()
    return outcomes


def _in_threads(backend: Backend, tenant: str) -> list[BulkResult | str]:
    barrier = threading.Barrier(IMPORTERS)
    results = _race(IMPORTERS, lambda seed: _import_rows(backend.crm(tenant=tenant), seed, barrier.wait))
    return [r if isinstance(r, BulkResult) else f"{type(r).__name__}: {r}" for r in results]


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _race(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T | BaseException:
        barrier.wait(timeout=30)
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.requires("concurrent_writers")
class ConcurrencyContract(ContractBase):
    """Writers in several threads at once never lose an update and only ever see crmkit errors."""

    def test_of_racing_updates_from_one_version_exactly_one_wins(self, crm: CRM) -> None:
        ada = crm.customers.add(person("Ada"))
        results = _race(_THREADS, lambda i: crm.customers.update(attrs.evolve(ada, name=f"writer {i}")))
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, ConflictError) for r in losers), losers
        assert crm.customers.get(ada.id) == winners[0]
        assert winners[0].version == 2

    def test_retrying_writers_lose_no_update(self, crm: CRM) -> None:
        ada = crm.customers.add(person("Ada", attributes={"counter": 0}))
        per_thread = 5

        def increment(i: int) -> int:
            conflicts = 0
            for n in range(per_thread):
                while True:
                    current = crm.customers.get(ada.id)
                    counter = current.attributes["counter"]
                    assert isinstance(counter, int)
                    changed = attrs.evolve(
                        current,
                        attributes={**current.attributes, "counter": counter + 1},
                        tags=current.tags | {f"t{i}-{n}"},
                    )
                    try:
                        crm.customers.update(changed)
                        break
                    except ConflictError:
                        conflicts += 1
            return conflicts

        results = _race(4, increment)
        assert not [r for r in results if isinstance(r, BaseException)], results
        final = crm.customers.get(ada.id)
        assert final.attributes["counter"] == 4 * per_thread
        assert final.version == 1 + 4 * per_thread
        assert len(final.tags) == 4 * per_thread

    def test_racing_deletes_and_updates_raise_only_crmkit_errors(self, crm: CRM) -> None:
        ada = crm.customers.add(person("Ada"))

        def work(i: int) -> Any:
            if i == 0:
                return crm.customers.delete(ada.id)
            return crm.customers.update(attrs.evolve(ada, name=f"writer {i}"))

        results = _race(_THREADS, work)
        for r in results:
            assert r is None or not isinstance(r, BaseException) or isinstance(r, (ConflictError, NotFound)), r
        if results[0] is None:
            with pytest.raises(NotFound):
                crm.customers.get(ada.id)
        else:
            assert isinstance(results[0], ConflictError)
            assert crm.customers.get(ada.id).version == 2

    def test_concurrent_adds_are_all_kept(self, crm: CRM) -> None:
        _race(_THREADS, lambda i: [crm.customers.add(person(f"{i}-{n}")) for n in range(10)])
        assert crm.customers.count() == _THREADS * 10
        assert len({c.name for c in crm.customers.find()}) == _THREADS * 10

    def test_concurrent_imports_of_the_same_rows_store_each_once(self, crm: CRM) -> None:
        def load(i: int) -> BulkResult:
            numbers = list(range(20))
            random.Random(i).shuffle(numbers)
            rows = [person(f"row {n}", external_id=f"ext-{n}", attributes={"by": i}) for n in numbers]
            return crm.customers.add_many(rows, batch_size=7)

        results = _race(4, load)
        assert all(isinstance(r, BulkResult) for r in results), results
        assert crm.customers.count() == 20
        assert sorted(str(c.external_id) for c in crm.customers.find()) == sorted(f"ext-{n}" for n in range(20))
        assert sum(r.added for r in results if isinstance(r, BulkResult)) == 20
        assert sum(r.skipped for r in results if isinstance(r, BulkResult)) == 60
        assert crm.customers.count(F("external_id") == "ext-0") == 1

    def test_overlapping_imports_all_succeed_and_store_each_row_once(self, crmkit_backend: Backend) -> None:
        """Importers writing the same thousands of rows at once, each in its own order, all succeed.

        On a store that outlives a process they are processes of their own, as imports run in
        production (with different orders, PostgreSQL deadlocked before crmkit wrote each batch in
        key order; MongoDB aborted all but one with write conflicts before crmkit retried them).
        A store that lives in one process is shared by threads instead.
        """
        tenant = new_tenant()
        separate = crmkit_backend.capabilities.persistent and _picklable(crmkit_backend.plugins)
        results = (_in_processes if separate else _in_threads)(crmkit_backend, tenant)
        assert all(isinstance(r, BulkResult) for r in results), results
        done = [r for r in results if isinstance(r, BulkResult)]
        assert len(done) == IMPORTERS
        assert sum(r.added for r in done) == IMPORT_ROWS
        assert sum(r.skipped for r in done) == IMPORT_ROWS * (IMPORTERS - 1)
        crm = crmkit_backend.crm(tenant=tenant)
        assert crm.customers.count() == IMPORT_ROWS
        stored = {str(c.external_id): c for c in crm.customers.stream(batch_size=2_000)}
        assert sorted(stored) == [f"ext-{n:05d}" for n in range(IMPORT_ROWS)]
        assert {c.attributes["by"] for c in stored.values()} <= set(range(IMPORTERS))
        assert crm.customers.count(F("external_id") == "ext-00000") == 1

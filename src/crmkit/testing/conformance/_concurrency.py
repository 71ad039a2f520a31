"""Optimistic concurrency under real threads: one winner per version, no lost update, clean errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
import pytest

from crmkit import BulkResult, ConflictError, NotFound
from crmkit.crm import CRM
from crmkit.query import F
from crmkit.testing.conformance._harness import ContractBase, person

__all__ = ["ConcurrencyContract"]

T = TypeVar("T")
_THREADS = 6


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
            rows = [person(f"row {n}", external_id=f"ext-{n}", attributes={"by": i}) for n in range(20)]
            return crm.customers.add_many(rows, batch_size=7)

        results = _race(4, load)
        for r in results:
            assert isinstance(r, (BulkResult, ConflictError)), r
        assert crm.customers.count() == 20
        assert sorted(str(c.external_id) for c in crm.customers.find()) == sorted(f"ext-{n}" for n in range(20))
        done = [r for r in results if isinstance(r, BulkResult)]
        if len(done) == len(results):
            assert sum(r.added for r in done) == 20
            assert sum(r.skipped for r in done) == 60
        assert crm.customers.count(F("external_id") == "ext-0") == 1

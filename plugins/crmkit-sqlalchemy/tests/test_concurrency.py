"""Optimistic concurrency under real contention, and SQLite readers alongside a writer."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import pytest

import crmkit
from crmkit import ConflictError, Customer
from crmkit.entities import CUSTOMERS


def _run(threads: int, work: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    workers = [threading.Thread(target=guarded) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


@pytest.mark.parametrize(("dialect", "attempts", "threads"), [("postgresql", 1000, 8), ("sqlite", 300, 4)])
def test_contested_updates_lose_nothing_and_every_loser_is_told(
    new_database: Callable[[str], str], dialect: str, attempts: int, threads: int
) -> None:
    with crmkit.connect(new_database(dialect), tenant="acme", pool_size=threads) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada", attributes={"counter": 0}))
        lock = threading.Lock()
        tally = {"tried": 0, "won": 0, "lost": 0}

        def work() -> None:
            while True:
                with lock:
                    if tally["tried"] >= attempts:
                        return
                    tally["tried"] += 1
                current = crm.customers.get(ada.id)
                counter = current.attributes["counter"]
                assert isinstance(counter, int)
                try:
                    crm.customers.update(attrs.evolve(current, attributes={"counter": counter + 1}))
                except ConflictError:
                    with lock:
                        tally["lost"] += 1
                else:
                    with lock:
                        tally["won"] += 1

        assert _run(threads, work) == []
        final = crm.customers.get(ada.id)
        assert tally["won"] + tally["lost"] == attempts
        assert final.attributes["counter"] == tally["won"]  # no update was lost
        assert final.version == tally["won"] + 1
        assert tally["lost"] > 0  # there really was contention


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_version_is_checked_in_the_writing_statement(new_database: Callable[[str], str], dialect: str) -> None:
    """Threads that all read version v race replace(..., v): exactly one wins each round."""
    threads, rounds = 6, 40
    with crmkit.connect(new_database(dialect), tenant="acme", pool_size=threads) as crm:
        repo = crm.store.repository(CUSTOMERS)
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        barrier = threading.Barrier(threads)
        winners: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(rounds):
                barrier.wait()
                current = repo.get("acme", ada.id)
                barrier.wait()  # everybody has read the same version
                new = attrs.evolve(current, name=f"by {threading.get_ident()}", version=current.version + 1)
                if repo.replace("acme", new, current.version):
                    with lock:
                        winners.append(current.version)

        assert _run(threads, work) == []
        assert sorted(winners) == list(range(1, rounds + 1))  # one winner per version
        assert repo.get("acme", ada.id).version == rounds + 1


def test_sqlite_readers_are_not_blocked_by_a_writer(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    with crmkit.connect(url, tenant="acme") as writer, crmkit.connect(url, tenant="acme") as reader:
        writer.customers.add(Customer(kind="person", name="first"))
        inside = threading.Event()
        release = threading.Event()
        counts: list[int] = []

        def write() -> None:
            with writer.transaction():
                writer.customers.add_many(Customer(kind="person", name=f"c{i}") for i in range(200))
                inside.set()
                release.wait(10)  # hold the write transaction open until the reader is done

        def read() -> None:
            inside.wait(10)
            for _ in range(20):
                counts.append(reader.customers.count())
                list(reader.customers.find(limit=50))
            release.set()

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        # had a read waited for the writer, it would have run after the commit and seen 201
        assert counts == [1] * 20
        assert reader.customers.count() == 201

"""Optimistic concurrency: the version check is in the write itself, and no update is ever lost."""

from __future__ import annotations

import threading

import attrs

import crmkit
from crmkit import Customer
from crmkit.entities import CUSTOMERS

THREADS = 8
ATTEMPTS = 1000


def test_contested_updates_lose_nothing(crm):
    counter = crm.customers.add(Customer(kind="person", name="Counter", attributes={"n": 0}))
    tickets = iter(range(ATTEMPTS))
    lock = threading.Lock()
    successes, conflicts, other = [], [], []

    def work():
        while True:
            with lock:
                if next(tickets, None) is None:
                    return
            current = crm.customers.get(counter.id)
            try:
                crm.customers.update(attrs.evolve(current, attributes={"n": current.attributes["n"] + 1}))
            except crmkit.ConflictError:
                conflicts.append(1)
            except BaseException as exc:  # anything else is a bug, reported below
                other.append(exc)
            else:
                successes.append(1)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not other, other[:3]
    assert len(successes) + len(conflicts) == ATTEMPTS
    assert conflicts, "the threads never raced; the test proves nothing"
    final = crm.customers.get(counter.id)
    assert final.attributes["n"] == len(successes)
    assert final.version == 1 + len(successes)


def test_replace_checks_the_version_in_the_same_write(crm):
    repo = crm.store.repository(CUSTOMERS)
    stored = crm.customers.add(Customer(kind="person", name="V"))
    renamed = attrs.evolve(stored, name="W", version=2)
    assert repo.replace(crm.tenant, renamed, expected_version=5) is False
    assert crm.customers.get(stored.id).name == "V"
    assert repo.replace(crm.tenant, renamed, expected_version=1) is True
    assert repo.replace(crm.tenant, attrs.evolve(renamed, version=3), expected_version=1) is False
    assert repo.replace("another-tenant", attrs.evolve(renamed, version=3), expected_version=2) is False
    assert repo.delete(crm.tenant, stored.id, expected_version=1) is False
    assert repo.delete(crm.tenant, stored.id, expected_version=2) is True

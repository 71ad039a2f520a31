"""A primary killed in the middle of a write stream: no acknowledged write is lost or doubled."""

from __future__ import annotations

import collections
import threading
import time

import pytest
from pymongo import MongoClient
from pymongo.read_concern import ReadConcern
from tests.support.servers import start_mongo_replica_set

import crmkit
from crmkit import Customer

WRITES_BEFORE_KILL = 60
WRITES_AFTER_ELECTION = 60
TIME_LIMIT = 30.0


@pytest.fixture
def replica_set():
    replset = start_mongo_replica_set(members=3)
    try:
        yield replset
    finally:
        replset.stop()


def test_acknowledged_writes_survive_a_primary_crash_exactly_once(replica_set):
    url = replica_set.url.replace("/?", "/failover?")
    # Writes wait for a new primary instead of failing during the election; retryable writes are on.
    options = {"serverSelectionTimeoutMS": 15000, "retryWrites": True, "w": "majority"}
    acknowledged: dict[str, list[str]] = collections.defaultdict(list)
    raised: dict[str, list[str]] = collections.defaultdict(list)
    killed = threading.Event()
    after_kill: collections.Counter[str] = collections.Counter()
    unexpected: list[BaseException] = []

    def writer(name: str, **extra):
        deadline = time.monotonic() + TIME_LIMIT
        with crmkit.connect(url, tenant="ha", **options, **extra) as crm:
            i = 0
            while time.monotonic() < deadline and after_kill[name] < WRITES_AFTER_ELECTION:
                key = f"{name}-{i}"
                i += 1
                try:
                    crm.customers.add(Customer(kind="person", name=key, external_id=key))
                except crmkit.BackendError:
                    raised[name].append(key)  # may or may not have been written
                    time.sleep(0.05)
                    continue
                except BaseException as exc:  # pragma: no cover - reported below
                    unexpected.append(exc)
                    return
                acknowledged[name].append(key)
                if killed.is_set():
                    after_kill[name] += 1

    threads = [
        threading.Thread(target=writer, args=("txn",)),  # session transactions, commit retried
        threading.Thread(target=writer, args=("plain",), kwargs={"transactions": False}),  # retryable writes
    ]
    for t in threads:
        t.start()
    while min(len(acknowledged["txn"]), len(acknowledged["plain"])) < WRITES_BEFORE_KILL:
        assert all(t.is_alive() for t in threads), unexpected
        time.sleep(0.01)
    old_primary = replica_set.primary()
    assert old_primary is not None
    replica_set.kill(old_primary)
    killed.set()
    for t in threads:
        t.join(TIME_LIMIT + 20)
    assert not unexpected, unexpected
    new_primary = replica_set.wait_for_primary(20)
    assert new_primary.index != old_primary.index
    assert min(after_kill.values()) >= WRITES_AFTER_ELECTION, "writes did not resume after the election"

    with MongoClient(
        f"mongodb://{new_primary.host}/?directConnection=true", readConcernLevel="majority"
    ) as client:
        customers = client["failover"].get_collection("customers", read_concern=ReadConcern("majority"))
        counts = collections.Counter(d["external_id"] for d in customers.find({"tenant": "ha"}, {"external_id": 1}))
    for name in ("txn", "plain"):
        missing = [k for k in acknowledged[name] if counts[k] != 1]
        assert not missing, f"{name}: acknowledged writes lost or doubled: {missing[:5]}"
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    known = {k for keys in (*acknowledged.values(), *raised.values()) for k in keys}
    assert set(counts) <= known

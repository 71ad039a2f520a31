"""crm.transaction() is a MongoDB session transaction bound to the calling thread."""

from __future__ import annotations

import threading

import attrs
import pytest

import crmkit
from crmkit import Customer, F, Stage


def test_commit_makes_every_write_visible_together(crm, mongo_db_url):
    with crmkit.connect(mongo_db_url, tenant=crm.tenant) as observer:
        with crm.transaction():
            a = crm.customers.add(Customer(kind="person", name="A"))
            crm.customers.add(Customer(kind="person", name="B"))
            assert crm.customers.get(a.id) == a  # reads inside see the transaction's writes
            assert observer.customers.count() == 0  # nobody else sees them before the commit
        assert observer.customers.count() == 2


def test_an_exception_rolls_everything_back(crm):
    keep = crm.customers.add(Customer(kind="person", name="Keep"))
    with pytest.raises(RuntimeError), crm.transaction():
        crm.customers.add(Customer(kind="person", name="Gone"))
        crm.customers.update(attrs.evolve(crm.customers.get(keep.id), name="Changed"))
        raise RuntimeError("boom")
    assert [c.name for c in crm.customers.find()] == ["Keep"]
    assert crm.customers.get(keep.id).version == 1


def test_a_failed_write_inside_dooms_the_whole_unit(crm):
    crm.customers.add(Customer(kind="person", name="Taken", external_id="x1"))
    with pytest.raises(crmkit.CRMError), crm.transaction():
        crm.customers.add(Customer(kind="person", name="New"))
        try:
            crm.customers.add(Customer(kind="person", name="Clash", external_id="x1"))
        except crmkit.ConflictError:
            pass  # caught, but the transaction is rolled back all the same
    assert crm.customers.count() == 1


def test_stage_change_and_customer_commit_atomically(crm):
    c = crm.customers.add(Customer(kind="person", name="C"))
    updated = crm.customers.update(attrs.evolve(c, stage=Stage.PROSPECT))
    assert updated.stage is Stage.PROSPECT
    changes = crm.stage_changes.find(F("customer_id") == c.id)
    assert [(s.from_stage, s.to_stage) for s in changes] == [(Stage.LEAD, Stage.PROSPECT)]


def test_the_session_belongs_to_the_thread_that_opened_it(crm):
    """Another thread's writes during a transaction are its own: they survive the rollback."""
    started, written = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_thread():
        started.wait(10)
        try:
            crm.customers.add(Customer(kind="person", name="Other thread"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        written.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with pytest.raises(RuntimeError), crm.transaction():
        crm.customers.add(Customer(kind="person", name="Rolled back"))
        started.set()
        assert written.wait(10)
        raise RuntimeError("roll back")
    worker.join(10)
    assert not errors
    assert [c.name for c in crm.customers.find()] == ["Other thread"]


def test_nested_blocks_join_the_outer_transaction(crm):
    with pytest.raises(RuntimeError), crm.transaction():
        with crm.transaction():
            crm.customers.add(Customer(kind="person", name="Inner"))
        crm.customers.add(Customer(kind="person", name="Outer"))
        raise RuntimeError
    assert crm.customers.count() == 0


# --------------------------------------------------------------------------- standalone servers


def test_a_standalone_server_refuses_writes_clearly_and_reads_still_work(start_standalone):
    port, _ = start_standalone()
    url = f"mongodb://127.0.0.1:{port}/alone"
    with crmkit.connect(url, tenant="t") as crm:
        assert crm.store.capabilities.transactions is False
        assert crm.customers.count() == 0
        with pytest.raises(crmkit.BackendError, match="replica set") as info:
            crm.customers.add(Customer(kind="person", name="A"))
        assert f"127.0.0.1:{port}" in str(info.value) and "transactions=False" in str(info.value)
        with pytest.raises(crmkit.BackendError, match="standalone"), crm.transaction():
            pass  # pragma: no cover - never reached
        assert crm.customers.count() == 0

    # Opting out is explicit: then each write stands alone and nothing is rolled back.
    with crmkit.connect(url, tenant="t", transactions=False) as crm:
        assert crm.store.capabilities.transactions is False
        a = crm.customers.add(Customer(kind="person", name="A", external_id="a"))
        with pytest.raises(crmkit.ConflictError):
            crm.customers.add(Customer(kind="person", name="A again", external_id="a"))
        with pytest.raises(RuntimeError), crm.transaction():
            crm.customers.add(Customer(kind="person", name="B"))
            raise RuntimeError
        assert sorted(c.name for c in crm.customers.find()) == ["A", "B"]
        assert crm.customers.get(a.id) == a
        result = crm.customers.add_many(
            [Customer(kind="person", name="A", external_id="a"), Customer(kind="person", name="C", external_id="c")]
        )
        assert (result.added, result.skipped) == (1, 1)

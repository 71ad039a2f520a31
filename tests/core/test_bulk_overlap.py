"""add_many on a database server: batch k is written on a helper thread while batch k+1 is prepared.

The store here is the in-memory one declaring ``Capabilities.server``, and recording which
thread wrote what; the guarantees are those of the plain path: batches commit in order,
a bad row names itself and leaves the batches before it committed, events reach the hooks
on the calling thread, after each commit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import BulkResult, ConflictError, Customer, Transaction, ValidationError, events
from crmkit.backends.memory import MemoryStore
from crmkit.store import Store

WHEN = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


class ServerLikeStore(MemoryStore):
    capabilities = attrs.evolve(MemoryStore.capabilities, server=True)

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[str] = []
        self.prepared_on: list[str] = []


class Plugin:
    def __init__(self) -> None:
        self.store = ServerLikeStore()
        self.delivered: list[tuple[str, list[events.Event]]] = []

    @crmkit.hookimpl
    def crmkit_open_store(self, url: str, options: Mapping[str, Any]) -> Store | None:
        return self.store if url == "overlap://" else None

    @crmkit.hookimpl
    def crmkit_url_schemes(self) -> list[str]:
        return ["overlap"]

    @crmkit.hookimpl
    def crmkit_after_commit(self, events: Sequence[events.Event]) -> None:
        self.delivered.append((threading.current_thread().name, list(events)))


@pytest.fixture
def plugin() -> Plugin:
    return Plugin()


@pytest.fixture
def crm(plugin: Plugin) -> Iterator[crmkit.CRM]:
    repo_cls = type(plugin.store.repository(crmkit.entities.TRANSACTIONS))
    original = repo_cls.insert_new
    prepare = repo_cls.prepare_insert_new

    def recording_insert(self: Any, tenant: str, records: Sequence[Any]) -> list[Any]:
        if self.spec.name == "transactions":  # not the audit trail and the feed the same transaction writes
            plugin.store.writers.append(threading.current_thread().name)
        return original(self, tenant, records)

    def recording_prepare(self: Any, tenant: str, records: Sequence[Any]) -> Any:
        plugin.store.prepared_on.append(threading.current_thread().name)
        return prepare(self, tenant, records)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(repo_cls, "insert_new", recording_insert)
        patch.setattr(repo_cls, "prepare_insert_new", recording_prepare)
        with crmkit.connect("overlap://", plugins=[plugin], tenant="t") as opened:
            yield opened


def _sales(customer: Customer, n: int, start: int = 0) -> Iterator[Transaction]:
    for i in range(start, start + n):
        yield Transaction(customer_id=customer.id, occurred_at=WHEN, amount=Decimal(i), currency="EUR",
                          external_id=f"s{i}")


def test_batches_are_written_on_a_helper_thread_and_events_delivered_on_the_caller(
    crm: crmkit.CRM, plugin: Plugin
) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    plugin.delivered.clear()
    assert crm.transactions.add_many(_sales(ada, 25), batch_size=10) == BulkResult(25, 0)
    caller = threading.current_thread().name
    assert plugin.store.prepared_on == [caller] * 3
    assert len(plugin.store.writers) == 3 and caller not in plugin.store.writers
    assert [name for name, _ in plugin.delivered] == [caller] * 3
    amounts = [e.after.amount for _, batch in plugin.delivered for e in batch]
    assert amounts == [Decimal(i) for i in range(25)]  # commit order is input order
    assert crm.transactions.add_many(_sales(ada, 25), batch_size=10) == BulkResult(0, 25)


def test_one_batch_or_an_open_transaction_is_written_on_the_calling_thread(crm: crmkit.CRM, plugin: Plugin) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    caller = threading.current_thread().name
    crm.transactions.add_many(_sales(ada, 5), batch_size=10)
    with crm.transaction():
        crm.transactions.add_many(_sales(ada, 30, start=5), batch_size=10)
    assert plugin.store.writers == [caller] * 4
    assert crm.transactions.count() == 35


def test_a_bad_row_leaves_the_batches_before_it_committed(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    rows: list[Any] = list(_sales(ada, 35))
    rows[27] = "not a transaction"
    with pytest.raises(ValidationError) as caught:
        crm.transactions.add_many(rows, batch_size=10)
    assert caught.value.row == 27
    assert crm.transactions.count() == 20  # batches 0-9 and 10-19, the second one in flight when row 27 was read


def test_a_missing_customer_is_named_by_row(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    rows = list(_sales(ada, 30))
    rows[14] = attrs.evolve(rows[14], customer_id=Customer(kind="person", name="nobody").id)
    with pytest.raises(ValidationError) as caught:
        crm.transactions.add_many(rows, batch_size=10)
    assert (caught.value.field, caught.value.row) == ("customer_id", 14)
    assert crm.transactions.count() == 10


def test_a_failed_write_stops_the_import_and_is_raised(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    taken = crm.transactions.add(next(_sales(ada, 1, start=100)))
    rows = list(_sales(ada, 40))
    rows[15] = attrs.evolve(rows[15], id=taken.id)  # the id is taken: the store refuses the batch
    with pytest.raises(ConflictError):
        crm.transactions.add_many(rows, batch_size=10)
    assert crm.transactions.count() == 1 + 10  # batch 0-9 only; nothing after the failed one


def test_an_error_of_the_input_still_commits_the_batch_in_flight(crm: crmkit.CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))

    def rows() -> Iterator[Transaction]:
        yield from _sales(ada, 20)
        raise RuntimeError("the source file ended early")

    with pytest.raises(RuntimeError, match="ended early"):
        crm.transactions.add_many(rows(), batch_size=10)
    assert crm.transactions.count() == 20

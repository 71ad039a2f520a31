"""``crm.transaction()`` is one database transaction; failures roll back whole and leave the store usable."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import psycopg
import pytest
from crmkit_sqlalchemy import SqlStore
from tests.support.servers import libpq_params

import crmkit
from crmkit import BackendError, ConflictError, Customer, Transaction
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS


class Boom(Exception):
    pass


def test_an_exception_rolls_everything_back(crm: CRM) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    with pytest.raises(Boom), crm.transaction():
        crm.customers.add(Customer(kind="person", name="Bob"))
        crm.customers.update(attrs.evolve(ada, name="Ada renamed"))
        raise Boom
    assert crm.customers.count() == 1
    assert crm.customers.get(ada.id).name == "Ada"


def test_uncommitted_work_is_invisible_to_other_connections(crm: CRM, shared_url: str) -> None:
    seen: list[int] = []
    with crmkit.connect(shared_url, tenant=crm.tenant) as other:
        with crm.transaction():
            crm.customers.add(Customer(kind="person", name="Ada"))
            assert crm.customers.count() == 1  # the transaction sees its own writes
            reader = threading.Thread(target=lambda: seen.append(other.customers.count()))
            reader.start()
            reader.join(10)
        seen.append(other.customers.count())
    assert seen == [0, 1]


def test_calls_in_another_thread_are_not_part_of_the_transaction(crm: CRM) -> None:
    worker = threading.Thread(target=lambda: crm.customers.add(Customer(kind="person", name="autocommitted")))
    with pytest.raises(Boom), crm.transaction():
        crm.customers.add(Customer(kind="person", name="inside"))
        worker.start()  # on SQLite it waits for the write lock; on PostgreSQL it commits at once
        worker.join(0.5)
        raise Boom
    worker.join(10)
    assert [c.name for c in crm.customers.find()] == ["autocommitted"]


def test_a_conflict_inside_a_transaction_leaves_it_usable(crm: CRM) -> None:
    repo = crm.store.repository(CUSTOMERS)
    first = Customer(kind="person", name="Ada", external_id="x-1", version=1)
    repo.insert(crm.tenant, [first])
    with crm.store.transaction():
        repo.insert(crm.tenant, [Customer(kind="person", name="new", version=1)])
        with pytest.raises(ConflictError) as caught:
            same_id = attrs.evolve(first, external_id=None)
            repo.insert(crm.tenant, [Customer(kind="person", name="B", version=1), same_id])
        assert caught.value.key == first.id
        with pytest.raises(ConflictError) as caught:
            repo.insert(crm.tenant, [Customer(kind="person", name="C", external_id="x-1", version=1)])
        assert caught.value.key == "x-1"
        repo.insert(crm.tenant, [Customer(kind="person", name="after", version=1)])
    assert sorted(c.name for c in crm.customers.find()) == ["Ada", "after", "new"]


def _backend_pid(crm: CRM) -> int:
    store = crm.store
    assert isinstance(store, SqlStore) and store.current is not None
    return int(store.current.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_connection_killed_mid_transaction(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    with crmkit.connect(url, tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        with pytest.raises(BackendError) as caught, crm.transaction():
            crm.customers.add(Customer(kind="person", name="half"))
            crm.transactions.add(Transaction(customer_id=ada.id, occurred_at=ada.created_at, amount=1, currency="EUR"))
            with psycopg.connect(**libpq_params(url), autocommit=True) as admin:
                assert admin.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(crm),)).fetchone() == (True,)
            crm.customers.add(Customer(kind="person", name="after the kill"))
        assert "127.0.0.1" in str(caught.value)
        # nothing of the transaction was written, and the next operations work again
        assert [c.name for c in crm.customers.find()] == ["Ada"]
        assert crm.transactions.count() == 0
        crm.customers.add(Customer(kind="person", name="Bob"))
        assert crm.customers.count() == 2


def test_a_connection_killed_while_idle_in_the_pool(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    with crmkit.connect(url, tenant="acme", pool_size=1, ping_after=0) as crm:
        crm.customers.add(Customer(kind="person", name="Ada"))
        with psycopg.connect(**libpq_params(url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert crm.customers.count() == 1  # the pool noticed (the idle check) and reconnected


def test_sqlite_writers_wait_for_each_other(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    with crmkit.connect(url, tenant="acme", pool_size=4) as crm:
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                for i in range(20):
                    with crm.transaction():
                        crm.customers.add(Customer(kind="person", name=f"{n}-{i}"))
                        crm.customers.count()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert crm.customers.count() == 80

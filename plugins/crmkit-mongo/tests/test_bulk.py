"""Bulk ingest: streamed in batches, idempotent by external_id, safe against concurrent imports."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import attrs

import crmkit
from crmkit import Customer, Transaction
from crmkit.entities import TRANSACTIONS

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def _transactions(customer_id: uuid.UUID, n: int, prefix: str = "tx"):
    for i in range(n):
        yield Transaction(
            customer_id=customer_id,
            occurred_at=T0 + dt.timedelta(minutes=i),
            amount=Decimal(i) / 100,
            currency="EUR",
            external_id=f"{prefix}-{i}",
        )


def test_a_generator_is_consumed_a_batch_at_a_time(crm, mongo_db_url):
    """The source is never read more than one batch ahead of what is stored."""
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    batch, total = 250, 3000
    lead: list[int] = []
    with crmkit.connect(mongo_db_url, tenant=crm.tenant) as observer:

        def source():
            for i, record in enumerate(_transactions(ada.id, total)):
                if i % batch == 0:
                    lead.append(i - observer.transactions.count())
                yield record

        result = crm.transactions.add_many(source(), batch_size=batch)
    assert (result.added, result.skipped) == (total, 0)
    assert max(lead) <= batch and len(lead) == total // batch
    assert crm.transactions.count() == total


def test_importing_again_adds_nothing(crm):
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    first = crm.transactions.add_many(_transactions(ada.id, 1200), batch_size=500)
    again = crm.transactions.add_many(_transactions(ada.id, 1500), batch_size=500)
    assert (first.added, first.skipped) == (1200, 0)
    assert (again.added, again.skipped) == (300, 1200)
    without_key = [attrs.evolve(t, external_id=None) for t in _transactions(ada.id, 3)]
    assert crm.transactions.add_many(without_key).added == 3
    assert crm.transactions.count() == 1503


def _race(mongo_db_url, tenant, customer_id, **options):
    """Two importers load the same 2,000 keys at once; each retries a batch that lost a race."""
    added: list[int] = []
    errors: list[BaseException] = []

    def importer():
        with crmkit.connect(mongo_db_url, tenant=tenant, **options) as crm:
            for _attempt in range(20):
                try:
                    added.append(crm.transactions.add_many(_transactions(customer_id, 2000), batch_size=200).added)
                    return
                except crmkit.ConflictError:
                    continue  # the import is idempotent: simply run it again
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    return
            errors.append(AssertionError("no progress after 20 attempts"))

    threads = [threading.Thread(target=importer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return added


def test_concurrent_imports_store_every_key_once(crm, mongo_db_url, raw_db):
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    _race(mongo_db_url, crm.tenant, ada.id)
    assert crm.transactions.count() == 2000
    keys = raw_db["transactions"].distinct("external_id", {"tenant": crm.tenant})
    assert len(keys) == 2000


def test_without_transactions_concurrent_imports_still_store_every_key_once(crm, mongo_db_url):
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    added = _race(mongo_db_url, crm.tenant, ada.id, transactions=False)
    assert sum(added) == 2000  # each record is reported added by exactly one importer
    assert crm.transactions.count() == 2000


class _BlindFind:
    """A real collection whose existence check sees nothing, as when another writer wins a race."""

    def __init__(self, collection):
        self._collection = collection

    def find(self, *args, **kwargs):
        return iter(())

    def __getattr__(self, name):
        return getattr(self._collection, name)


def test_a_lost_race_on_external_id_reports_only_what_was_inserted(mongo_db_url):
    tenant = "b-" + uuid.uuid4().hex[:8]
    with crmkit.connect(mongo_db_url, tenant=tenant, transactions=False) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        crm.transactions.add_many(_transactions(ada.id, 5))
        repo = crm.store.repository(TRANSACTIONS)
        repo.collection = _BlindFind(repo.collection)
        now = dt.datetime.now(UTC)
        batch = [attrs.evolve(t, version=1, created_at=now, updated_at=now) for t in _transactions(ada.id, 8)]
        inserted = repo.insert_new(tenant, batch)
        assert [t.external_id for t in inserted] == ["tx-5", "tx-6", "tx-7"]
        clash = attrs.evolve(batch[6], external_id="fresh")  # an id that is already stored is still a conflict
        try:
            repo.insert_new(tenant, [clash])
        except crmkit.ConflictError as exc:
            assert exc.key == clash.id
        else:
            raise AssertionError("a duplicate id was not reported")
        repo.collection = repo.collection._collection
        assert crm.transactions.count() == 8

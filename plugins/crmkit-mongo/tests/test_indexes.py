"""The access paths are served by indexes (a regression here is slow, not wrong, so test the plans)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import attrs
from crmkit_mongo._store import _indexes

from crmkit import Customer, Transaction
from crmkit.entities import CUSTOMERS, TRANSACTIONS


def _plan(cursor) -> str:
    return str(cursor.explain()["queryPlanner"]["winningPlan"])


def test_every_index_leads_with_the_tenant(crm):
    for name in ("customers", "relationships", "interactions", "transactions", "state_changes"):
        info = crm.store.db[name].index_information()
        for index, spec in info.items():
            if index != "_id_":
                assert spec["key"][0][0] == "tenant", (name, index)


def test_lookups_use_their_indexes(crm):
    people = [crm.customers.add(Customer(kind="person", name=f"P{i}", external_id=f"p{i}")) for i in range(30)]
    crm.transactions.add_many(
        Transaction(customer_id=p.id, occurred_at=dt.datetime(2024, 1, 1 + d, tzinfo=dt.timezone.utc),
                    amount=Decimal(d), currency="EUR")
        for p in people
        for d in range(5)
    )
    customers = crm.store.db["customers"]
    transactions = crm.store.db["transactions"]
    # The partial unique index must be usable for lookups ($exists, not $type, in its filter).
    assert "tenant_external_id" in _plan(customers.find({"tenant": crm.tenant, "external_id": "p3"}))
    assert "tenant_external_id" in _plan(customers.find({"tenant": crm.tenant, "external_id": {"$in": ["p1", "p2"]}}))
    assert "PROJECTION_COVERED" in _plan(
        customers.find({"tenant": crm.tenant, "id": {"$in": [p.id for p in people]}}, {"id": 1, "_id": 0})
    )
    # Customer 360: newest first straight from the index, no sort stage.
    view = transactions.find({"tenant": crm.tenant, "customer_id": people[0].id},
                             sort=[("occurred_at", -1), ("id", 1)], limit=20)
    plan = _plan(view)
    assert "tenant_customer_time" in plan and "'SORT'" not in plan
    assert "tenant_time" in _plan(transactions.find({"tenant": crm.tenant}, sort=[("occurred_at", 1), ("id", 1)]))


def test_external_id_index_is_unique_and_partial():
    keys, options = _indexes(CUSTOMERS)["tenant_external_id"]
    assert keys == [("tenant", 1), ("external_id", 1)]
    assert options == {"unique": True, "partialFilterExpression": {"external_id": {"$exists": True}}}
    assert "tenant_external_id" in _indexes(TRANSACTIONS)


def test_records_without_external_id_never_clash(crm):
    for _ in range(3):
        crm.customers.add(Customer(kind="person", name="No key " + uuid.uuid4().hex))
    assert crm.customers.count() == 3


def test_the_history_of_a_record_comes_from_an_index(crm):
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    for stage in ("prospect", "customer", "repeat"):
        ada = crm.customers.update(attrs.evolve(ada, stage=stage))
    changes = crm.store.db["state_changes"]
    history = changes.find(
        {"tenant": crm.tenant, "record.aggregate": "customers", "record.id": ada.id},
        sort=[("occurred_at", 1), ("id", 1)],
    )
    plan = _plan(history)
    assert "IXSCAN" in plan and "'SORT'" not in plan
    assert [c.to_stage for c in crm.lifecycle.history(ada.id)] == ["prospect", "customer", "repeat"]


def test_searches_use_the_folded_name_indexes(crm):
    from crmkit_mongo._filters import for_tenant

    from crmkit import F
    from crmkit.query import bind

    crm.customers.add_many(Customer(kind="person", name=n) for n in ("Ștefan Popescu", "POPESCU, Ştefan", "Ana"))
    assert [c.name for c in crm.customers.find(F("name").startswith("pop", fold=True))] == ["POPESCU, Ştefan"]
    assert crm.customers.count(F("name").matches("Stefan popescu")) == 2
    customers = crm.store.db["customers"]
    prefix = for_tenant(crm.tenant, bind(F("name").startswith("pop", fold=True), CUSTOMERS), CUSTOMERS)
    assert "search_name" in _plan(customers.find(prefix))
    words = for_tenant(crm.tenant, bind(F("name").matches("stefan popescu"), CUSTOMERS), CUSTOMERS)
    assert "words_name" in _plan(customers.find(words))

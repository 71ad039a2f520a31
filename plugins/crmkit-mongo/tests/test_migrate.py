"""``crm.migrate()`` on MongoDB: every aggregate's indexes, plugins' included, and documents of older forms moved."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import Int64

import crmkit
from crmkit import Customer, StageChange
from crmkit.schema import Ref


def test_migrate_recreates_dropped_indexes(mongo_db_url: str, raw_db: Any) -> None:
    with crmkit.connect(mongo_db_url, tenant="m") as crm:
        raw_db["subscriptions"].drop_indexes()
        assert set(raw_db["subscriptions"].index_information()) <= {"_id_"}
        state = crm.migrate()
        assert state == f"indexes of {len(crm.schema)} aggregates present"
        unique = [i for i in raw_db["subscriptions"].index_information().values() if i.get("unique")]
        assert any([k for k, _ in i["key"]] == ["tenant", "customer_id", "plan"] for i in unique)


def test_stage_changes_of_older_stores_move_into_state_changes(mongo_db_url: str, raw_db: Any) -> None:
    """Documents of the former stage_changes collection become state changes when the store opens."""
    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    with crmkit.connect(mongo_db_url, tenant="m") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada", stage="customer"))
        crm.customers.add(Customer(kind="person", name="Bob"))
    changes = [
        StageChange(
            customer_id=ada.id, from_stage=before, to_stage=after, occurred_at=t0 + dt.timedelta(days=i),
            rule=rule, reason=reason, created_at=t0 + dt.timedelta(days=i, seconds=1),
            updated_at=t0 + dt.timedelta(days=i, seconds=2), version=1 + i,
        )
        for i, (before, after, rule, reason) in enumerate(
            [(None, "lead", "manual", None), ("lead", "customer", "first_purchase", "bought once")]
        )
    ]

    def micros(at: dt.datetime) -> Int64:
        return Int64((at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1))

    def old_document(c: StageChange) -> dict[str, Any]:  # as crmkit-mongo wrote stage changes before
        doc: dict[str, Any] = {"tenant": "m", "id": c.id, "customer_id": c.customer_id, "to_stage": c.to_stage.value,
                               "occurred_at": micros(c.occurred_at), "rule": c.rule}
        if c.from_stage is not None:
            doc["from_stage"] = c.from_stage.value
        if c.reason is not None:
            doc["reason"] = c.reason
        assert c.created_at is not None and c.updated_at is not None
        doc.update(created_at=micros(c.created_at), updated_at=micros(c.updated_at), version=c.version)
        return doc

    raw_db["stage_changes"].insert_many([old_document(c) for c in changes])
    with crmkit.connect(mongo_db_url, tenant="m") as crm:
        assert "stage_changes" not in raw_db.list_collection_names()
        assert list(crm.stage_changes.find()) == changes
        assert crm.lifecycle.history(ada.id) == changes
        (first, second) = crm.state_changes.history(ada)
        assert (second.record, second.stage_set, second.actor) == (Ref("customers", ada.id), "lifecycle", None)
        raw_db["stage_changes"].insert_one(old_document(changes[0]))  # left over by an interrupted move
        assert crm.store.move_stage_changes() == 1  # type: ignore[attr-defined]
        assert crm.store.move_stage_changes() == 0  # type: ignore[attr-defined]
        assert crm.state_changes.count() == 2 and crm.state_changes.get(first.id) == first
        crm.migrate()
        assert list(crm.stage_changes.find()) == changes


def test_customers_of_older_stores_get_their_folded_names(mongo_db_url: str, raw_db: Any) -> None:
    """Customers stored before name search get ``_folded.name`` and ``_words.name`` when the store opens."""
    from crmkit import F

    with crmkit.connect(mongo_db_url, tenant="fold") as crm:
        for name in ("Ștefan Popescu", "POPESCU, Ştefan", "Ana Pop"):
            crm.customers.add(Customer(kind="person", name=name))
    # as crmkit-mongo wrote customers before: no folded fields, and no marker saying they were added
    raw_db["customers"].update_many({"tenant": "fold"}, {"$unset": {"_folded": "", "_words": ""}})
    raw_db["crmkit_migrations"].delete_many({"_id": "search:customers.name"})
    with crmkit.connect(mongo_db_url, tenant="fold") as crm:
        stored = raw_db["customers"].find_one({"tenant": "fold", "name": "POPESCU, Ştefan"})
        assert stored["_folded"] == {"name": "popescu stefan"} and stored["_words"] == {"name": ["popescu", "stefan"]}
        assert crm.customers.count(F("name").matches("stefan popescu")) == 2
        assert [c.name for c in crm.customers.find(F("name").startswith("pop", fold=True))] == ["POPESCU, Ştefan"]
        assert crm.store.fold_search_fields() == 0  # type: ignore[attr-defined]  # done: the marker says so
        indexes = {name for name in raw_db["customers"].index_information()}
        assert {"search_name", "words_name"} <= indexes

"""``crm.migrate()`` on MongoDB: every aggregate's indexes, plugins' included, and nothing else to do."""

from __future__ import annotations

from typing import Any

import crmkit


def test_migrate_recreates_dropped_indexes(mongo_db_url: str, raw_db: Any) -> None:
    with crmkit.connect(mongo_db_url, tenant="m") as crm:
        raw_db["subscriptions"].drop_indexes()
        assert set(raw_db["subscriptions"].index_information()) <= {"_id_"}
        state = crm.migrate()
        assert state == f"indexes of {len(crm.schema)} aggregates present"
        unique = [i for i in raw_db["subscriptions"].index_information().values() if i.get("unique")]
        assert any([k for k, _ in i["key"]] == ["tenant", "customer_id", "plan"] for i in unique)

"""The documents crmkit's own aggregates are stored as, as BSON bytes.

Existing databases must never need a data rewrite: the documents of crmkit's own
aggregates are compared byte for byte with golden files taken when their form was decided
(``tests/support/golden.py``); ``state_changes`` replaced ``stage_changes`` on purpose
(the store moves old documents over when it opens), and customers gained ``_folded`` and
``_words`` on purpose (name search; the store adds them to older documents when it opens).
Transactions gained ``order_id``, the order paid, present only when set: older documents
have none and need nothing.
"""

from __future__ import annotations

from typing import Any

import bson
from pymongo import MongoClient
from tests.support import golden

import crmkit

BUILTIN = ("customers", "relationships", "interactions", "transactions", "state_changes")


def test_stored_bytes_of_the_builtin_aggregates(mongo_url: str, mongo_db_url: str) -> None:
    with crmkit.connect(mongo_db_url, tenant=golden.TENANT, clock=golden.fixed_clock(), actor="user:7") as crm:
        golden.write_records(crm)
    database = mongo_db_url.partition("://")[2].partition("/")[2].partition("?")[0]
    stored: dict[str, list[Any]] = {}
    with MongoClient(mongo_url, document_class=bson.SON) as client:
        db = client[database]
        for name in BUILTIN:
            docs = list(db[name].find({"tenant": golden.TENANT}, sort=[("created_at", 1)]))
            for doc in docs:
                doc["_id"] = "<object id>"  # the driver's, not crmkit's
                if name == "state_changes":
                    doc["id"] = "<generated>"  # made by the life cycle
            stored[name] = [bson.encode(doc).hex() for doc in docs]
    assert [len(stored[n]) for n in BUILTIN] == [2, 1, 1, 3, 1]
    golden.check("mongo", stored)

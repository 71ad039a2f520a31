"""``add_from`` on MongoDB against a hand-written pipeline and ``insert_many`` on the same server.

    python benchmarks/bench_insert_from_mongo.py                  # 100,000 members from 100,000 customers
    python benchmarks/bench_insert_from_mongo.py --customers 20000 --rounds 3

Starts a private single-node replica set unless ``--url`` or ``$CRMKIT_MONGO_URL`` names a
server (the server CPU ratio is printed only for a server it started; that server gets a
4 GB cache and a 15-minute transaction lifetime, as both sides write every member in one
transaction). Each round adds one
campaign's members, one per customer, both ways, taking turns:

* crmkit: ``crm.records(CampaignMember).add_from("customers", values=...)`` as targeting
  calls it: constants, the customer's id, the first e-mail address (as the customer
  has it), and ``control`` a test of a held-out list of 1,000 ids;
* raw: the pipeline one would write by hand (``$match`` of the tenant, ``$sort`` by id,
  ``$project`` with the constants as literals, the first address as stored,
  ``control`` as ``$in`` of the held-out ids), each document given a UUIDv7 in Python and
  written with ``insert_many`` in batches of 2,000 in one transaction, into a collection
  with the same indexes as crmkit's;
* with ``--generic``: ``crmkit.store.Repository.insert_from``, the base class's way (records
  built in Python a page at a time, then ``insert``), which the MongoDB store overrides.

Prints the median of each side's wall time and of the server's CPU time, and their ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import server_cpu, show, take_turns  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, F  # noqa: E402
from crmkit._ids import new_id  # noqa: E402
from crmkit.customers import EmailAddress  # noqa: E402
from crmkit.entities import CUSTOMERS  # noqa: E402
from crmkit.marketing import Campaign, CampaignMember  # noqa: E402
from crmkit.query import ALL, Test, bind, value_of  # noqa: E402
from crmkit.store import Repository  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TENANT = "bench"
BATCH = 2000


def seed(crm: Any, count: int) -> list[uuid.UUID]:
    """``count`` customers, every tenth without an e-mail address; their ids."""
    repo = crm.store.repository(CUSTOMERS)
    ids = []
    for start in range(0, count, 10_000):
        batch = [
            Customer(
                kind="person",
                name=f"Customer {n}",
                emails=() if n % 10 == 0 else (EmailAddress(address=f"Person.{n}@Example.org"),),
                version=1,
                created_at=T0,
                updated_at=T0,
            )
            for n in range(start, min(start + 10_000, count))
        ]
        with crm.transaction():
            repo.insert(TENANT, batch)
        ids.extend(c.id for c in batch)
    return ids


def member_values(campaign: uuid.UUID, held_out: list[uuid.UUID]) -> dict[str, Any]:
    """What targeting gives ``add_from``: constants, the customer's id and first address, the control test."""
    return {
        "campaign_id": campaign,
        "customer_id": F("id"),
        "status": "planned",
        "added_at": T0,
        "status_at": T0,
        "first_responded_at": None,
        "contacted_at": None,
        "history": (),
        "control": F("id").in_(held_out),
        "address": F("emails.address").first(),
    }


def new_campaign(crm: Any) -> uuid.UUID:
    return uuid.UUID(str(crm.records(Campaign).add(Campaign(name=f"c {uuid.uuid4().hex[:6]}", channel="email")).id))


def crmkit_side(crm: Any, held_out: list[uuid.UUID]) -> int:
    """The service, as targeting calls it (its events and its before-commit member checks included)."""
    values = member_values(new_campaign(crm), held_out)
    return int(crm.records(CampaignMember).add_from("customers", values=values).added)


def store_side(crm: Any, held_out: list[uuid.UUID], *, generic: bool = False) -> int:
    """The store's ``insert_from`` alone, in a transaction: the pipeline, ids, tests, decoding, writes
    (``generic``: the base class's page-at-a-time way, which the MongoDB store overrides)."""
    spec = crm.schema.spec(CampaignMember)
    values = {name: value_of(v) for name, v in member_values(new_campaign(crm), held_out).items()}
    values["control"] = Test(bind(values["control"].where, CUSTOMERS, crm.schema))  # type: ignore[union-attr]
    repo, source = crm.store.repository(spec), crm.store.repository(CUSTOMERS)
    with crm.transaction():
        if generic:
            made = Repository.insert_from(repo, TENANT, source, ALL, values, crm.now())
        else:
            made = repo.insert_from(TENANT, source, ALL, values, crm.now())
    return len(made)


def raw_side(client: Any, db: Any, held_out: list[uuid.UUID]) -> int:
    """The hand-written way: one pipeline, ids in Python, insert_many in one transaction."""
    stamp = (T0 - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
    first = {"$getField": {"field": "address", "input": {"$arrayElemAt": ["$emails", 0]}}}
    project = {
        "_id": 0,
        "tenant": {"$literal": TENANT},
        "id": "$id",
        "campaign_id": {"$literal": uuid.uuid4()},
        "customer_id": "$id",
        "status": {"$literal": "planned"},
        "added_at": {"$literal": stamp},
        "status_at": {"$literal": stamp},
        "control": {"$in": ["$id", held_out]},
        "address": {"$ifNull": [first, "$$REMOVE"]},
        "created_at": {"$literal": stamp},
        "updated_at": {"$literal": stamp},
        "version": {"$literal": 1},
    }
    pipeline = [{"$match": {"tenant": TENANT}}, {"$sort": {"id": 1}}, {"$project": project}]
    written = 0
    with client.start_session() as session, session.start_transaction():
        cursor = db.customers.aggregate(pipeline, allowDiskUse=True, session=session, batchSize=BATCH)
        batch: list[dict[str, Any]] = []
        for doc in cursor:
            doc["id"] = new_id()
            batch.append(doc)
            if len(batch) == BATCH:
                db.raw_members.insert_many(batch, session=session)
                written += len(batch)
                batch = []
        if batch:
            db.raw_members.insert_many(batch, session=session)
            written += len(batch)
    return written


def main() -> int:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("CRMKIT_MONGO_URL"), help="a server (else one is started)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="documents per insert_many, both ways")
    parser.add_argument("--generic", action="store_true", help="also time the base class's page-at-a-time way")
    parser.add_argument("--cache-gb", type=int, default=4, help="WiredTiger cache of the server it starts")
    args = parser.parse_args()
    BATCH = args.batch
    import crmkit_mongo._insert_from

    crmkit_mongo._insert_from.BATCH = args.batch

    server = None
    url = args.url
    if not url:
        from tests.support.servers import start_mongo

        server = start_mongo()
        url = server.url
    try:
        from pymongo import MongoClient

        name = f"bench_insert_from_{uuid.uuid4().hex[:8]}"
        scheme, _, rest = url.partition("://")
        authority, _, path = rest.partition("/")
        crm_url = f"{scheme}://{authority}/{name}" + (f"?{path.partition('?')[2]}" if "?" in path else "")
        with MongoClient(url, uuidRepresentation="standard") as client, crmkit.connect(crm_url, tenant=TENANT) as crm:
            if server is not None:
                # one transaction writes every member: its changes must fit in WiredTiger's cache (the
                # test servers' 1 GB holds about 50,000 members with their indexes) and in the time a
                # transaction may live (60 s by default, too short on a loaded machine)
                client.admin.command("setParameter", 1, wiredTigerEngineRuntimeConfig=f"cache_size={args.cache_gb}G")
                client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=900)
            db = client[name]
            ids = seed(crm, args.customers)
            held_out = ids[:: max(1, len(ids) // 1000)][:1000]
            members = crm.store.repository(crm.schema.spec(CampaignMember)).collection
            for index, info in members.index_information().items():
                if index != "_id_":
                    options = {k: v for k, v in info.items() if k in ("unique", "partialFilterExpression")}
                    db.raw_members.create_index(info["key"], name=index, **options)
            cpu = server_cpu(server.members[0].pid) if server is not None else None
            load = os.getloadavg()
            sides = {
                "crmkit": lambda: crmkit_side(crm, held_out),
                "store": lambda: store_side(crm, held_out),
                "raw": lambda: raw_side(client, db, held_out),
            }
            if args.generic:
                sides["generic"] = lambda: store_side(crm, held_out, generic=True)
            times, results = take_turns(args.rounds, sides, cpu)
            assert set(results.values()) == {args.customers}, results
            crmkit_s, raw_s = statistics.median(times["crmkit"]), statistics.median(times["raw"])
            store_s = statistics.median(times["store"])
            show(
                f"MongoDB {client.server_info()['version']}",
                f"{args.customers:,} members per round",
                f"{args.rounds} rounds",
                f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
            )
            show("crmkit add_from", f"{crmkit_s:.2f} s median", " ".join(f"{t:.2f}" for t in times["crmkit"]))
            show("store insert_from", f"{store_s:.2f} s median", " ".join(f"{t:.2f}" for t in times["store"]))
            show("raw pipeline  ", f"{raw_s:.2f} s median", " ".join(f"{t:.2f}" for t in times["raw"]))
            if args.generic:
                generic_s = statistics.median(times["generic"])
                show("generic insert_from", f"{generic_s:.2f} s median", " ".join(f"{t:.2f}" for t in times["generic"]))
                show("ratio generic/raw", f"{generic_s / raw_s:.2f}x")
            show(
                "ratio add_from/raw",
                f"{crmkit_s / raw_s:.2f}x wall",
                "ratio insert_from/raw",
                f"{store_s / raw_s:.2f}x",
            )
            if cpu is not None:
                theirs = statistics.median(times["raw cpu"])
                for side in ("crmkit", "store", "generic") if args.generic else ("crmkit", "store"):
                    mine = statistics.median(times[f"{side} cpu"])
                    show(f"server CPU {side}", f"{mine:.2f} s", f"raw {theirs:.2f} s", f"ratio {mine / theirs:.2f}x")
            client.drop_database(name)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

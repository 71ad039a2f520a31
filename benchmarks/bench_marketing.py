"""Segments and consent-aware targeting against hand-written SQL in the same run.

    python benchmarks/bench_marketing.py                       # 100,000 customers on SQLite
    python benchmarks/bench_marketing.py --customers 1000000 --skip-target
    python benchmarks/bench_marketing.py --postgresql             # the same on PostgreSQL
    python benchmarks/bench_marketing.py --mongodb                # the same on MongoDB
    python benchmarks/bench_marketing.py --customers 1000000 --copy-from 100000 --skip-target --runs 5

The customers are added with ``crm.customers.add_many``: half tagged ``vip``, countries RO,
DE and FR, one e-mail address each (``--copy-from N``, for the count only: N are added, then
the store copies their rows with new ids until there are ``--customers``; nothing measured
reads what is not copied, e-mail search terms and history). 70% granted marketing consent on e-mail, a seventh of
those withdrew it later, and 2% of the addresses are on the block list. Then the two sides take
turns for ``--runs`` rounds on:

- **count**: ``crm.segments.count(segment)`` of the dynamic segment ``vip`` and ``RO``
  against ``SELECT count(*)`` with the same condition written by hand (``count_documents``
  on MongoDB) (goal: 1.3x); the two alternate in every round (``--runs``), and the medians,
  the median of the rounds' ratios, the server's CPU time (this process's for SQLite,
  which runs in it) and the load average are printed;
- **target**: ``crm.marketing.target(campaign, segment=...)`` (every exclusion counted in
  the store by sub-queries: members already there, customers blocked or opted out by id or
  by address, the latest consent record per customer by ``Select(..., first_by=...)``; the
  members built from the customers who may be contacted by one ``add_from``, with their
  default status, history and first address as the customer has it) against one hand-written
  ``INSERT ... SELECT`` that does the same checks in SQL (common table expressions: the
  segment, its addresses, the blocked ones, the latest consent record per customer by a
  window function; ``+s.at`` keeps SQLite's planner on the address and customer indexes), on MongoDB one aggregation
  pipeline (``$lookup`` of the latest consent and of the block list) whose member
  documents are inserted with one ``insert_many``; each run targets a fresh campaign.
  It runs on a default connection (audit trail and event feed kept for every member) and
  again on one with both off, like the statement. The two sides take turns for
  ``--runs`` rounds; the medians of the times, of the rounds' ratios and (on a server) of
  the server's CPU time are printed.

Loading runs without the audit trail and event feed (it is not what is measured).

``--journeys 200000`` instead stores that many simulated journeys
(``crmkit.testing.journeys.JourneySimulator``: a customer each, its touches as interactions,
its purchase as a transaction) and times ``crm.marketing.attribution`` reading them back
(goal: under a minute), printing the shares next to the simulator's truth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from _timing import server_cpu, take_turns  # noqa: E402

import crmkit  # noqa: E402
from crmkit import F  # noqa: E402
from crmkit.customers import EmailAddress  # noqa: E402
from crmkit.marketing import Campaign, ConsentRecord, Segment, Suppression  # noqa: E402

TENANT = "bench"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
WHERE_SQL = (
    "c.tenant = :tenant AND EXISTS (SELECT 1 FROM json_each(c.tags) WHERE value = 'vip') "
    "AND json_extract(c.attributes, '$.country.s') = 'RO'"
)
COUNT_SQL = f"SELECT count(*) FROM customers c WHERE {WHERE_SQL}"
TARGET_SQL = f"""
INSERT INTO campaign_members (tenant, id, campaign_id, customer_id, status, added_at, status_at, history,
                              control, address, created_at, updated_at, version)
WITH seg AS MATERIALIZED (SELECT c.id, c.emails FROM customers c WHERE {WHERE_SQL} AND json_array_length(c.emails) > 0),
addresses AS MATERIALIZED (
    SELECT seg.id, lower(trim(json_extract(e.value, '$.address'))) AS address FROM seg, json_each(seg.emails) e),
blocked AS MATERIALIZED (
    SELECT a.id FROM addresses a CROSS JOIN suppressions s
      ON s.tenant = :tenant AND s.address = a.address AND s.channel = 'email' AND +s.at <= :now
     AND (s.list_name IS NULL OR s.list_name = :list)
    UNION
    SELECT s.customer_id FROM suppressions s
    WHERE s.tenant = :tenant AND s.customer_id IS NOT NULL AND s.channel = 'email' AND +s.at <= :now
      AND (s.list_name IS NULL OR s.list_name = :list)),
latest AS MATERIALIZED (
    SELECT k.customer_id, k.granted, k.pending, k.expires_at,
           row_number() OVER (PARTITION BY k.customer_id ORDER BY k.at DESC) AS rn
    FROM seg CROSS JOIN consents k
    WHERE k.customer_id = seg.id AND k.tenant = :tenant AND k.channel = 'email' AND k.purpose = 'marketing'
      AND +k.at <= :now)
SELECT :tenant, lower(hex(randomblob(16))), :campaign, seg.id, 'planned', :now, :now,
       json_array(json_object('status', 'planned', 'at', :now)), 0,
       json_extract(seg.emails, '$[0].address'), :now, :now, 1
FROM seg
WHERE seg.id IN (SELECT l.customer_id FROM latest l
                 WHERE l.rn = 1 AND l.granted AND NOT l.pending AND (l.expires_at IS NULL OR l.expires_at > :now))
  AND seg.id NOT IN (SELECT id FROM blocked)
"""

# The same statements as a developer writes them for PostgreSQL (jsonb, DISTINCT ON for the latest consent).
PG_WHERE_SQL = "c.tenant = :tenant AND c.tags @> '[\"vip\"]'::jsonb AND c.attributes->'country'->>'s' = 'RO'"
PG_COUNT_SQL = f"SELECT count(*) FROM customers c WHERE {PG_WHERE_SQL}"
PG_TARGET_SQL = f"""
INSERT INTO campaign_members (tenant, id, campaign_id, customer_id, status, added_at, status_at, history,
                              control, address, created_at, updated_at, version)
WITH seg AS MATERIALIZED (
    SELECT c.id, c.emails FROM customers c WHERE {PG_WHERE_SQL} AND jsonb_array_length(c.emails) > 0),
blocked AS (
    SELECT seg.id FROM seg CROSS JOIN LATERAL jsonb_array_elements(seg.emails) e
    JOIN suppressions s ON s.tenant = :tenant AND s.address = lower(trim(e->>'address')) AND s.channel = 'email'
     AND s.at <= :now AND (s.list_name IS NULL OR s.list_name = :list)
    UNION
    SELECT s.customer_id FROM suppressions s
    WHERE s.tenant = :tenant AND s.customer_id IS NOT NULL AND s.channel = 'email' AND s.at <= :now
      AND (s.list_name IS NULL OR s.list_name = :list)),
latest AS (
    SELECT DISTINCT ON (k.customer_id) k.customer_id, k.granted, k.pending, k.expires_at
    FROM seg JOIN consents k ON k.customer_id = seg.id
    WHERE k.tenant = :tenant AND k.channel = 'email' AND k.purpose = 'marketing' AND k.at <= :now
    ORDER BY k.customer_id, k.at DESC)
SELECT :tenant, gen_random_uuid(), :campaign, seg.id, 'planned', :now, :now,
       jsonb_build_array(jsonb_build_object('status', 'planned', 'at', CAST(:now AS text))), false,
       seg.emails->0->>'address', :now, :now, 1
FROM seg JOIN latest l ON l.customer_id = seg.id
WHERE l.granted AND NOT l.pending AND (l.expires_at IS NULL OR l.expires_at > :now)
  AND seg.id NOT IN (SELECT id FROM blocked)
"""

#: The hand-written count on MongoDB: tags are an array, a text attribute is stored as the text.
MONGO_COUNT = {"tenant": TENANT, "tags": "vip", "attributes.country": "RO"}


def customers(n: int) -> Iterator[crmkit.Customer]:
    rng = random.Random(14)
    for i in range(n):
        yield crmkit.Customer(
            kind="person",
            name=f"customer {i}",
            tags={"vip"} if rng.random() < 0.5 else set(),
            attributes={"country": rng.choice(("RO", "DE", "FR"))},
            emails=[EmailAddress(f"c{i}@example.com")],
        )


def consents(ids: list[uuid.UUID]) -> Iterator[ConsentRecord]:
    rng = random.Random(15)
    for cid in ids:
        if rng.random() < 0.7:
            granted = NOW - dt.timedelta(days=rng.randrange(30, 400))
            yield ConsentRecord(customer_id=cid, channel="email", purpose="marketing", granted=True, at=granted)
            if rng.random() < 1 / 7:
                later = granted + dt.timedelta(days=rng.randrange(1, 29))
                yield ConsentRecord(customer_id=cid, channel="email", purpose="marketing", granted=False, at=later)


def micros(moment: dt.datetime) -> int:
    return int((moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 1_000_000


def load(url: str, n: int, target: bool, copy_from: int | None = None) -> float:
    """Store the customers (and, for targeting, consents and the block list) without the audit trail and
    event feed, which loading does not measure; returns the seconds it took."""
    with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW, audit=False, event_feed=False) as crm:
        began = time.perf_counter()
        added = n if copy_from is None else min(n, copy_from)
        batch = 1_000 if url.startswith("mongodb") else 20_000  # a MongoDB transaction fits the server's cache
        crm.customers.add_many(customers(added), batch_size=batch)
        if added < n:
            copy_customers(url, n)
        if target:
            ids = [c.id for c in crm.customers.stream(order_by="id", batch_size=5000)]
            crm.consents.add_many(consents(ids), batch_size=batch)
            rng = random.Random(16)
            blocked = (
                Suppression(channel="email", address=f"c{i}@example.com", at=NOW - dt.timedelta(days=1))
                for i in rng.sample(range(n), n // 50)
            )
            crm.suppressions.add_many(blocked, batch_size=batch)
        return time.perf_counter() - began


def copy_customers(url: str, n: int) -> None:
    """Copy the stored customers' rows (documents), each with a new id, until ``n`` are stored."""
    if url.startswith("mongodb"):
        from bson import Binary
        from pymongo import MongoClient

        collection: Any = MongoClient(url).get_default_database()["customers"]
        stored = list(collection.find({"tenant": TENANT}, {"_id": 0}))
        have = len(stored)
        while have < n:
            batch = [{**doc, "id": Binary.from_uuid(uuid.uuid4())} for doc in stored[: min(n - have, 20_000)]]
            collection.insert_many(batch, ordered=False)
            have += len(batch)
        return
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    table = sa.Table("customers", sa.MetaData(), autoload_with=engine)
    new_id = "gen_random_uuid()" if pg else "lower(hex(randomblob(16)))"
    columns = [c.name for c in table.columns]
    chosen = ", ".join(new_id if c == "id" else c for c in columns)
    with engine.begin() as conn:
        have = int(conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one())
        while have < n:
            conn.execute(
                sa.text(f"INSERT INTO customers ({', '.join(columns)}) SELECT {chosen} FROM customers LIMIT :k"),
                {"k": n - have},
            )
            have = int(conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one())


def postgres_cpu(postmaster: int) -> Callable[[], float]:
    """The CPU seconds the PostgreSQL server has used so far: the postmaster with its ended children (the
    backends of closed connections, parallel workers) and its running children."""
    ticks = os.sysconf("SC_CLK_TCK")

    def used() -> float:
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if entry.name == str(postmaster):
                total += sum(int(f) for f in fields[11:15])
            elif fields[1] == str(postmaster):
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    return used


def report(label: str, times: dict[str, list[float]], server: bool) -> str:
    """Medians of both sides' times and of the rounds' ratios (and of the server's CPU, on a server)."""
    mine, theirs = times["crmkit"], times["hand"]
    ratio = statistics.median(m / t for m, t in zip(mine, theirs, strict=True))
    line = (
        f"{label}: crmkit median {statistics.median(mine):.2f} s, hand-written median "
        f"{statistics.median(theirs):.2f} s, median ratio {ratio:.2f}x"
    )
    if server:
        cpu = statistics.median(m / max(t, 0.01) for m, t in zip(times["crmkit cpu"], times["hand cpu"], strict=True))
        line += f", server CPU ratio {cpu:.2f}x"
    return line + f" ({len(mine)} rounds)"


def count_segment(
    label: str, crm: Any, n: int, loaded: float, runs: int, hand: Callable[[], int], cpu: Any
) -> tuple[Segment, int]:
    """Time the segment count against the hand-written one, taking turns; print medians and ratios."""
    segment = crm.segments.add(
        Segment(name="RO VIPs", where=F("tags").contains("vip") & (F("attributes.country") == "RO"))
    )
    times, results = take_turns(runs, {"crmkit": lambda: crm.segments.count(segment.id), "hand": hand}, cpu)
    counted, expected = results["crmkit"], results["hand"]
    assert counted == expected, (counted, expected)
    mine, theirs = times["crmkit"], times["hand"]
    ratios = [m / t for m, t in zip(mine, theirs, strict=True)]
    print(
        f"{label}  {n:,} customers (loaded in {loaded:.0f} s)  segment count {counted:,}, {runs} rounds: "
        f"crmkit median {statistics.median(mine) * 1000:.0f} ms, hand-written median "
        f"{statistics.median(theirs) * 1000:.0f} ms, median ratio {statistics.median(ratios):.2f}x (goal 1.3x)   "
        "rounds' ratios: " + " ".join(f"{r:.2f}" for r in ratios),
        flush=True,
    )
    mine, theirs = times["crmkit cpu"], times["hand cpu"]
    cpu_ratios = [m / t for m, t in zip(mine, theirs, strict=True) if t > 0]
    print(
        f"  server CPU: crmkit median {statistics.median(mine) * 1000:.0f} ms, hand-written median "
        f"{statistics.median(theirs) * 1000:.0f} ms, median ratio "
        f"{statistics.median(cpu_ratios) if cpu_ratios else float('nan'):.2f}x   load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    return segment, int(counted)


def mongo_hand_target(db: Any, campaign: Campaign) -> int:
    """The targeting as a developer writes it for MongoDB: one pipeline finds the members (the latest
    consent and the block list by ``$lookup``), one ``insert_many`` stores their documents."""
    from bson.binary import Binary

    now = micros(NOW)
    lists = [None, campaign.opt_out_list]
    blocked = {"tenant": TENANT, "channel": "email", "at": {"$lte": now}, "list_name": {"$in": lists}}
    pipeline: list[dict[str, Any]] = [
        {"$match": {"tenant": TENANT, "tags": "vip", "attributes.country": "RO", "emails.0": {"$exists": True}}},
        {
            "$project": {
                "_id": 0,
                "id": 1,
                "addresses": {"$map": {"input": "$emails.address", "in": {"$toLower": {"$trim": {"input": "$$this"}}}}},
                "address": {"$first": "$emails.address"},
            }
        },
        {
            "$lookup": {
                "from": "consents",
                "localField": "id",
                "foreignField": "customer_id",
                "pipeline": [
                    {"$match": {"tenant": TENANT, "channel": "email", "purpose": "marketing", "at": {"$lte": now}}},
                    {"$sort": {"at": -1, "created_at": -1}},
                    {"$limit": 1},
                ],
                "as": "latest",
            }
        },
        {
            "$match": {
                "latest.0.granted": True,
                "latest.0.pending": False,
                "$or": [{"latest.0.expires_at": None}, {"latest.0.expires_at": {"$gt": now}}],
            }
        },
        {
            "$lookup": {
                "from": "suppressions",
                "localField": "addresses",
                "foreignField": "address",
                "pipeline": [{"$match": blocked}, {"$limit": 1}],
                "as": "by_address",
            }
        },
        {
            "$lookup": {
                "from": "suppressions",
                "localField": "id",
                "foreignField": "customer_id",
                "pipeline": [{"$match": blocked}, {"$limit": 1}],
                "as": "by_id",
            }
        },
        {"$match": {"by_address": [], "by_id": []}},
        {"$project": {"id": 1, "address": 1}},
    ]
    campaign_id = Binary.from_uuid(campaign.id)
    docs = [
        {
            "tenant": TENANT,
            "id": Binary.from_uuid(uuid.uuid4()),
            "campaign_id": campaign_id,
            "customer_id": row["id"],
            "status": "planned",
            "added_at": now,
            "status_at": now,
            "history": [{"status": "planned", "at": now}],
            "control": False,
            "address": row["address"],
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for row in db["customers"].aggregate(pipeline, allowDiskUse=True)
    ]
    if docs:
        db["campaign_members"].insert_many(docs, ordered=False)
    return len(docs)


def time_targets(
    store: str,
    url: str,
    segment: Segment,
    counted: int,
    runs: int,
    cpu: Callable[[], float],
    server: bool,
    hand: Callable[[Campaign], int],
) -> None:
    """Target a fresh campaign through crmkit and by hand in turns, on a default connection and on one
    without the audit trail and event feed; print medians (and the server's CPU on a server)."""
    made = iter(range(10_000))
    for label, options in (("", {}), (" (no audit trail, no event feed)", {"audit": False, "event_feed": False})):
        with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW, **options) as crm:

            def mine_target() -> int:
                camp = crm.campaigns.add(Campaign(name=f"crmkit {next(made)}", channel="email"))
                return crm.marketing.target(camp.id, segment=segment.id, at=NOW).added

            def hand_target() -> int:
                return hand(crm.campaigns.add(Campaign(name=f"hand {next(made)}", channel="email")))

            times, results = take_turns(runs, {"crmkit": mine_target, "hand": hand_target}, cpu)
            assert results["crmkit"] == results["hand"], results
            print(
                report(f"{store} target{label} {results['crmkit']:,} members of {counted:,}", times, server), flush=True
            )


def run_mongo(url: str, n: int, runs: int, target: bool, copy_from: int | None, pid: int) -> None:
    from pymongo import MongoClient

    loaded = load(url, n, target, copy_from)
    client: Any = MongoClient(url)
    db: Any = client.get_default_database()
    store = f"MongoDB {client.server_info()['version']}"
    cpu = server_cpu(pid)
    with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW) as crm:
        segment, counted = count_segment(
            store, crm, n, loaded, runs, lambda: db["customers"].count_documents(MONGO_COUNT), cpu
        )
    if not target:
        return
    time_targets(store, url, segment, counted, runs, cpu, True, lambda camp: mongo_hand_target(db, camp))


def run(url: str, n: int, runs: int, target: bool, copy_from: int | None = None, postmaster: int | None = None) -> None:
    loaded = load(url, n, target, copy_from)
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version" if pg else "SELECT sqlite_version()").scalar()
    store = f"{'PostgreSQL' if pg else 'SQLite'} {version}"
    count_sql, target_sql = (PG_COUNT_SQL, PG_TARGET_SQL) if pg else (COUNT_SQL, TARGET_SQL)
    if pg:  # fresh statistics for both sides (autovacuum would take them later, in the middle of a run)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW) as crm:

        def hand_count() -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(count_sql), {"tenant": TENANT}).scalar_one())

        cpu = postgres_cpu(postmaster) if postmaster is not None else time.process_time
        segment, counted = count_segment(store, crm, n, loaded, runs, hand_count, cpu)
        if not target:
            return

    def hand_target(camp: Campaign) -> int:
        params: dict[str, Any] = {"tenant": TENANT, "list": camp.opt_out_list}
        params.update({"campaign": camp.id, "now": NOW} if pg else {"campaign": camp.id.hex, "now": micros(NOW)})
        with engine.begin() as conn:
            return int(conn.execute(sa.text(target_sql), params).rowcount)

    time_targets(store, url, segment, counted, runs, cpu, postmaster is not None, hand_target)


def attribution(url: str, n: int) -> None:
    from crmkit.testing.journeys import JourneySimulator

    sim = JourneySimulator(channels=("social", "email", "web"))  # registered channels, for interactions
    with crmkit.connect(url, tenant=TENANT, clock=lambda: NOW) as crm:
        began = time.perf_counter()
        journeys = list(sim.journeys(n, seed=3))
        people = [crmkit.Customer(kind="person", name=f"j{i}") for i in range(n)]
        crm.customers.add_many(people, batch_size=20_000)
        touches = (
            crmkit.Interaction(p.id, channel, "outbound", at)
            for p, j in zip(people, journeys, strict=True)
            for channel, at in j.touches
        )
        crm.interactions.add_many(touches, batch_size=20_000)
        buys = (
            crmkit.Transaction(p.id, j.converted_at, Decimal("10"), "EUR")
            for p, j in zip(people, journeys, strict=True)
            if j.converted_at is not None
        )
        crm.transactions.add_many(buys, batch_size=20_000)
        loaded = time.perf_counter() - began
        since, until = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc), dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
        for model in ("shapley", "markov", "last_touch"):
            began = time.perf_counter()
            shares = crm.marketing.attribution(model, since=since, until=until)
            took = time.perf_counter() - began
            print(
                f"{model:<10} {n:,} journeys from SQLite in {took:.1f} s (stored in {loaded:.0f} s): "
                + ", ".join(f"{c} {v:.3f}" for c, v in shares.items())
            )
        print(
            "truth      Shapley "
            + ", ".join(f"{c} {v:.3f}" for c, v in sim.true_shapley().items())
            + "; removal effects "
            + ", ".join(f"{c} {v:.3f}" for c, v in sim.true_removal_effects().items())
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-target", action="store_true")
    parser.add_argument("--journeys", type=int, default=0)
    parser.add_argument("--copy-from", type=int, default=None, help="add this many customers, copy the rest")
    parser.add_argument("--mongodb", action="store_true", help="run on MongoDB (a private server) instead of SQLite")
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="run on PostgreSQL (a private server, or $CRMKIT_POSTGRES_URL) instead of SQLite",
    )
    args = parser.parse_args()
    if args.copy_from is not None and not args.skip_target:
        parser.error("--copy-from copies customers only: give --skip-target")
    if args.mongodb:
        from bench_mongo import database_url
        from tests.support.servers import start_mongo

        mongo = start_mongo()
        try:
            run_mongo(
                database_url(mongo.url, "bench_marketing"),
                args.customers,
                args.runs,
                not args.skip_target,
                args.copy_from,
                mongo.members[0].pid,
            )
        finally:
            mongo.stop()
        return 0
    if args.postgresql:
        import os

        from tests.support.servers import create_database, drop_database, start_postgres

        server = None
        url = os.environ.get("CRMKIT_POSTGRES_URL")
        if not url:
            server = start_postgres()
            url = server.url
        try:
            database = create_database(url, "bench_marketing")
            postmaster = None if server is None else server.pid
            run(database, args.customers, args.runs, not args.skip_target, args.copy_from, postmaster)
            drop_database(database)
        finally:
            if server is not None:
                server.stop()
        return 0
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as folder:
        if args.journeys:
            attribution(f"sqlite:///{folder}/crm.db", args.journeys)
            return 0
        run(f"sqlite:///{folder}/crm.db", args.customers, args.runs, not args.skip_target, args.copy_from)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

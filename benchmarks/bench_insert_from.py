"""``add_from`` (records built in the store) against a hand-written ``INSERT ... SELECT``, in the same run.

    python benchmarks/bench_insert_from.py                       # 100,000 customers, SQLite and PostgreSQL
    python benchmarks/bench_insert_from.py --rows 20000 --rounds 5 --backends sqlite

Campaign targeting's shape: one campaign member per customer, built from the customer
(``customer_id`` and the first e-mail address copied, whether the customer is in a
held-out control group of 1,000 tested), with the same status, times and history for
all. crmkit runs ``crm.records(CampaignMember).add_from("customers", values=...)`` (one
``INSERT ... SELECT ... RETURNING``, the new records decoded, the address's check applied
to each, the marketing rules run before the commit); the raw side runs one hand-written
``INSERT INTO campaign_members ... SELECT ... FROM customers`` through the driver writing
the same columns in the same stored form (its ids random, nothing read back). The two take
turns, the one going first alternating from round to round; the members are deleted
between runs, untimed. Printed: each run's wall time (and the PostgreSQL server's CPU
time, every process of it), then the medians and the median of the rounds' ratios, and
the load average at the end. The audit trail and event feed are off (``--audit`` turns
them on), as the raw side keeps neither.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import server_cpu, show, timed  # noqa: E402

import crmkit  # noqa: E402
from crmkit import Customer, F  # noqa: E402
from crmkit.customers import EmailAddress  # noqa: E402
from crmkit.marketing import Campaign, CampaignMember  # noqa: E402
from crmkit.marketing._model import StatusChange  # noqa: E402

TENANT = "bench"
STAMP = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.timezone.utc)


def load(crm: crmkit.CRM, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """``n`` customers, four in five with an e-mail address, and a campaign; its id and the held-out ids."""
    rng = random.Random(3)
    crm.customers.add_many(
        Customer(
            kind="person",
            name=f"customer {i}",
            emails=(EmailAddress(address=f"c{i}@example.org"),) if rng.random() < 0.8 else (),
        )
        for i in range(n)
    )
    ids = sorted(c.id for c in crm.customers.stream())
    campaign = crm.records(Campaign).add(Campaign(name="spring", channel="email"))
    return campaign.id, rng.sample(ids, min(1000, len(ids)))


def values(campaign: uuid.UUID, held_out: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "campaign_id": campaign,
        "customer_id": F("id"),
        "status": "planned",
        "added_at": STAMP,
        "status_at": STAMP,
        "history": (StatusChange(status="planned", at=STAMP),),
        "control": F("id").in_(held_out),
        "address": F("emails.address").first(),
    }


def raw_side(crm: crmkit.CRM, campaign: uuid.UUID, held_out: list[uuid.UUID]) -> Callable[[], int]:
    """One INSERT ... SELECT on the driver's connection, every column in crmkit's stored form."""
    store: Any = crm.store
    pg = store.dialect == "postgresql"
    columns = [c.name for c in store.repository(crm.schema.spec(CampaignMember)).table.c]
    history = json.dumps([{"status": "planned", "at": STAMP.isoformat(timespec="microseconds")}], separators=(",", ":"))
    if pg:
        select = {
            "id": "gen_random_uuid()",
            "control": "c.id = ANY(%(held)s::uuid[])",
            "address": "c.emails->0->>'address'",
            "history": "%(history)s::jsonb",
        }
        marks = {
            "tenant": "%(tenant)s::varchar",
            "campaign_id": "%(campaign)s::uuid",
            "stamp": "%(stamp)s::timestamptz",
        }
        held: Any = "{" + ",".join(str(i) for i in held_out) + "}"
        stamp: Any = STAMP
        camp: Any = str(campaign)
    else:
        select = {
            "id": "lower(hex(randomblob(16)))",
            "control": "c.id IN (SELECT value FROM json_each(:held))",
            "address": "json_extract(c.emails, '$[0].address')",
            "history": ":history",
        }
        marks = {"tenant": ":tenant", "campaign_id": ":campaign", "stamp": ":stamp"}
        held = json.dumps([i.hex for i in held_out])
        stamp = int((STAMP - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(microseconds=1))
        camp = campaign.hex
    select.update(
        tenant=marks["tenant"],
        campaign_id=marks["campaign_id"],
        customer_id="c.id",
        status="'planned'",
        added_at=marks["stamp"],
        status_at=marks["stamp"],
        first_responded_at="NULL",
        contacted_at="NULL",
        created_at=marks["stamp"],
        updated_at=marks["stamp"],
        version="1",
        external_id="NULL",
    )
    sql = (
        f"INSERT INTO campaign_members ({', '.join(columns)}) SELECT {', '.join(select[c] for c in columns)} "
        f"FROM customers AS c WHERE c.tenant = {marks['tenant']} ORDER BY c.id"
    )
    params = {"tenant": TENANT, "campaign": camp, "stamp": stamp, "held": held, "history": history}

    def run() -> int:
        conn = store.engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            written = int(cursor.rowcount)
            conn.commit()
            return written
        finally:
            conn.close()

    return run


def bench(label: str, url: str, n: int, rounds: int, audit: bool, server: Callable[[], float] | None) -> None:
    with crmkit.connect(url, tenant=TENANT, audit=audit, event_feed=audit) as crm:
        campaign, held_out = load(crm, n)
        given = values(campaign, held_out)
        members = crm.records(CampaignMember)
        store: Any = crm.store

        def mine() -> int:
            return crm.records(CampaignMember).add_from("customers", values=given).added

        def clear() -> None:
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    "DELETE FROM campaign_members WHERE tenant = "
                    + ("%(t)s" if store.dialect == "postgresql" else ":t"),
                    {"t": TENANT},
                )

        sides = [("crmkit", mine), ("raw", raw_side(crm, campaign, held_out))]
        walls: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}  # this process's CPU seconds, and the server's added on PostgreSQL
        served: dict[str, list[float]] = {}
        for r in range(rounds):
            for side, fn in sides if r % 2 == 0 else sides[::-1]:
                clear()
                began = server() if server is not None else 0.0
                wall, cpu, written = timed(fn)
                assert written == n, (side, written)
                walls.setdefault(side, []).append(wall)
                extra = ""
                if server is not None:
                    served.setdefault(side, []).append(server() - began)
                    extra = f" (server CPU {served[side][-1]:.2f} s)"
                cpus.setdefault(side, []).append(cpu + (served[side][-1] if server is not None else 0.0))
                show(f"{label} round {r + 1}", f"{side:<6} {wall:>7.2f} s (this process's CPU {cpu:.2f} s){extra}")
        assert members.count(F("control") == True) == len(held_out)  # noqa: E712 - a condition
        ratio = statistics.median(t / m for m, t in zip(walls["crmkit"], walls["raw"], strict=True))
        cpu_ratio = statistics.median(t / m for m, t in zip(cpus["crmkit"], cpus["raw"], strict=True))
        show(
            f"{label}: {n:,} members from {n:,} customers{' (audit trail on)' if audit else ''}",
            f"add_from {statistics.median(walls['crmkit']):.2f} s",
            f"raw INSERT ... SELECT {statistics.median(walls['raw']):.2f} s",
            f"crmkit's speed {ratio:.2f}x the raw statement's (median of {rounds} rounds)",
        )
        show(
            f"{label}: CPU{' (this process and the server)' if server is not None else ''}",
            f"add_from {statistics.median(cpus['crmkit']):.2f} s",
            f"raw {statistics.median(cpus['raw']):.2f} s",
            f"crmkit's speed by CPU {cpu_ratio:.2f}x the raw statement's",
        )
        if server is not None:
            ratios = [t / m for m, t in zip(served["crmkit"], served["raw"], strict=True) if m]
            show(
                f"{label}: server CPU add_from {statistics.median(served['crmkit']):.2f} s",
                f"raw {statistics.median(served['raw']):.2f} s",
                f"raw / crmkit {statistics.median(ratios):.2f}x",
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--audit", action="store_true", help="keep the audit trail and event feed")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "sqlite" in backends:
        import sqlite3

        with tempfile.TemporaryDirectory() as folder:
            bench(
                f"SQLite {sqlite3.sqlite_version}",
                f"sqlite:///{folder}/crm.db",
                args.rows,
                args.rounds,
                args.audit,
                None,
            )
    if "postgresql" in backends:
        from tests.support.servers import create_database, start_postgres

        server = start_postgres()
        try:
            url = create_database(server.url, "bench_insert_from")
            bench("PostgreSQL", url, args.rows, args.rounds, args.audit, server_cpu(server.pid))
        finally:
            server.stop()
    show("load average (1, 5, 15 min) at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

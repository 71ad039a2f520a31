"""Bulk ingest: idempotent by external_id on every path (executemany, multi-row INSERT, COPY), in bounded memory."""

from __future__ import annotations

import datetime as dt
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from crmkit_sqlalchemy._ingest import COPY_MIN_ROWS
from hypothesis import strategies as st

import crmkit
from crmkit import ConflictError, Customer, StateChange, Transaction
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS, TRANSACTIONS

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _purchases(customer: Customer, n: int, prefix: str = "tx", start: int = 0) -> Iterator[Transaction]:
    for i in range(start, start + n):
        yield Transaction(
            customer_id=customer.id,
            occurred_at=BASE + dt.timedelta(minutes=i),
            amount=Decimal(i % 997) / 100,
            currency="EUR",
            external_id=f"{prefix}-{i}",
        )


@pytest.mark.parametrize("batch_size", [COPY_MIN_ROWS // 2, COPY_MIN_ROWS * 3])
def test_importing_twice_adds_nothing(crm: CRM, batch_size: int) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    first = crm.transactions.add_many(_purchases(ada, 700), batch_size=batch_size)
    assert (first.added, first.skipped) == (700, 0)
    again = crm.transactions.add_many(_purchases(ada, 700), batch_size=batch_size)
    assert (again.added, again.skipped) == (0, 700)
    overlap = crm.transactions.add_many(_purchases(ada, 400, start=500), batch_size=batch_size)
    assert (overlap.added, overlap.skipped) == (200, 200)
    assert crm.transactions.count() == 900
    assert crm.transactions.get_by_external_id("tx-899").amount == Decimal(899 % 997) / 100


def _stored(records: Iterator[Transaction]) -> list[Transaction]:
    """Records as the core hands them to a repository (version 1)."""
    return [attrs.evolve(t, version=1) for t in records]


@pytest.mark.parametrize("size", [5, COPY_MIN_ROWS + 5])
def test_insert_new_keeps_the_first_of_duplicates_and_returns_what_it_stored(crm: CRM, size: int) -> None:
    repo = crm.store.repository(TRANSACTIONS)
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    old = _stored(_purchases(ada, 2, prefix="old"))
    repo.insert(crm.tenant, old)
    batch = _stored(_purchases(ada, size, prefix="new"))
    twin = attrs.evolve(batch[0], id=uuid.uuid4(), amount=Decimal(7))  # external_id seen earlier in the batch
    old_again = attrs.evolve(old[0], id=uuid.uuid4())  # external_id already stored
    anonymous = attrs.evolve(batch[1], id=uuid.uuid4(), external_id=None)  # no external_id: always new
    written = repo.insert_new(crm.tenant, [*batch, twin, old_again, anonymous])
    assert [t.id for t in written] == [*(t.id for t in batch), anonymous.id]
    assert repo.get(crm.tenant, twin.id) is None and repo.get(crm.tenant, old_again.id) is None
    assert crm.transactions.get_by_external_id("new-0").amount == batch[0].amount
    assert crm.transactions.count() == 2 + size + 1


@pytest.mark.parametrize("size", [3, COPY_MIN_ROWS + 3])
def test_an_existing_id_is_a_conflict_and_writes_nothing(crm: CRM, size: int) -> None:
    repo = crm.store.repository(TRANSACTIONS)
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    batch = _stored(_purchases(ada, size))
    repo.insert(crm.tenant, [batch[-1]])
    moved = attrs.evolve(batch[-1], external_id="renamed")
    with pytest.raises(ConflictError) as caught:
        repo.insert_new(crm.tenant, [*batch[:-1], moved])
    assert caught.value.key == moved.id
    assert crm.transactions.count() == 1


def test_concurrent_imports_of_the_same_file(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    with crmkit.connect(url, tenant="acme", pool_size=4) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        results = []
        lock = threading.Lock()

        def run() -> None:
            result = crm.transactions.add_many(_purchases(ada, 1500), batch_size=COPY_MIN_ROWS * 2)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.added for r in results) == 1500
        assert sum(r.skipped for r in results) == 4 * 1500 - 1500
        assert crm.transactions.count() == 1500


def _peak_while(work: Callable[[], object]) -> int:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    work()
    return tracemalloc.get_traced_memory()[1] - before


def test_memory_does_not_grow_with_the_number_of_rows(new_database: Callable[[str], str]) -> None:
    with crmkit.connect(new_database("sqlite"), tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        tracemalloc.start()
        try:
            crm.transactions.add_many(_purchases(ada, 1_000, prefix="warm"), batch_size=500)
            small = _peak_while(lambda: crm.transactions.add_many(_purchases(ada, 2_000, prefix="s"), batch_size=500))
            large = _peak_while(lambda: crm.transactions.add_many(_purchases(ada, 8_000, prefix="l"), batch_size=500))
        finally:
            tracemalloc.stop()
        assert crm.transactions.count() == 11_000
    # four times the rows, about the same peak: the rows stream through in batches
    assert large < small * 1.5 + 256 * 1024, (small, large)



def test_bulk_rows_are_what_sqlalchemy_would_bind(crm: CRM) -> None:
    """The generated fast converters of the bulk paths write exactly what an ordinary INSERT writes."""
    import json

    from crmkit_sqlalchemy._ingest import driver_rows

    from crmkit import Interaction, Relationship
    when = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    ada = Customer(kind="person", name="Ada 😀", tags={"b", "a"}, attributes={"x": Decimal("1.50"), "d": when},
                   created_at=when, updated_at=when, version=1)
    records = {
        "customers": ada,
        "transactions": next(_purchases(ada, 1)),
        "interactions": Interaction(customer_id=ada.id, channel="sms", direction="inbound", occurred_at=when,
                                    participants={"z", "y"}, attributes={"n": 1}),
        "relationships": Relationship(source_id=ada.id, target_id=uuid.uuid4(), kind="partner_of",
                                      since=dt.date(2020, 2, 29), attributes={"f": 0.5}),
        "state_changes": StateChange(record=("customers", ada.id), stage_set="lifecycle", to_stage="lead",
                                     occurred_at=when, actor="user:7"),
    }
    dialect = crm.store.engine.dialect  # type: ignore[attr-defined]
    for name, record in records.items():
        repo = crm.store.repository(crm.schema[name])
        (row,) = repo.rows(crm.tenant, [record])
        (fast,) = driver_rows(repo.table, dialect, crm.tenant, [record])
        slow = []
        for column in repo.table.c:
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            slow.append(process(row[column.name]) if process else row[column.name])
        for column, a, b in zip(repo.table.c, fast, slow, strict=True):
            if isinstance(column.type.dialect_impl(dialect), sa.JSON):
                a, b = json.loads(a), json.loads(b if isinstance(b, str) else json.dumps(b.obj))
            assert a == b, (name, column.name, a, b)


def test_postgresql_statistics_are_refreshed_after_big_imports(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    with crmkit.connect(url, tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        repo = crm.store.repository(TRANSACTIONS)
        repo._analyze_at = 300  # type: ignore[attr-defined]  # instead of 20,000, to keep the test quick

        def analyzed() -> object:
            with crm.store.engine.connect() as conn:  # type: ignore[attr-defined]
                return conn.exec_driver_sql(
                    "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'transactions'"
                ).scalar()

        crm.transactions.add_many(_purchases(ada, 200), batch_size=COPY_MIN_ROWS)
        assert analyzed() is None
        crm.transactions.add_many(_purchases(ada, 200, start=200), batch_size=COPY_MIN_ROWS)
        assert analyzed() is not None
        assert repo._analyze_at == 600  # type: ignore[attr-defined]  # next when twice as many rows are in


HOSTILE_KEYS = [
    'quote"inside', "back\\slash", "trailing\\", '\\"', "{brace}", "a,b", " lead and trail ", "NULL", "null",
    "tab\there", "new\nline", "'single'", "--comment", "فارسی", "😀 emoji", "x" * 200,
]


def test_stored_keys_finds_hostile_external_ids_exactly(crm: CRM) -> None:
    """The bulk paths' key probe (one text parameter per chunk) neither misses nor invents a hostile key."""
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    stored = HOSTILE_KEYS[::2]
    for key in stored:
        crm.transactions.add(Transaction(customer_id=ada.id, occurred_at=BASE, amount=Decimal(1), currency="EUR",
                                         external_id=key))
    repo = crm.store.repository(TRANSACTIONS)
    with crm.store.connection() as conn:  # type: ignore[attr-defined]
        found = repo.stored_keys(conn, crm.tenant, "external_id", HOSTILE_KEYS)  # type: ignore[attr-defined]
    assert found == set(stored)
    again = crm.transactions.add_many(
        Transaction(customer_id=ada.id, occurred_at=BASE, amount=Decimal(2), currency="EUR", external_id=key)
        for key in HOSTILE_KEYS
    )
    assert (again.added, again.skipped) == (len(HOSTILE_KEYS) - len(stored), len(stored))


def test_existing_ids_answers_for_its_own_tenant_only(crm: CRM, shared_url: str) -> None:
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    with crmkit.connect(shared_url, tenant=crm.tenant + "-other") as other:
        bob = other.customers.add(Customer(kind="person", name="Bob"))
    repo = crm.store.repository(CUSTOMERS)
    unknown = uuid.uuid4()
    assert repo.existing_ids(crm.tenant, [ada.id, bob.id, unknown, ada.id]) == {ada.id}
    assert repo.existing_ids(crm.tenant, []) == set()


@pytest.mark.parametrize("batch_size", [COPY_MIN_ROWS // 2, COPY_MIN_ROWS * 3])
def test_the_same_record_objects_imported_again_with_new_ones_are_skipped_not_clashes(
    crm: CRM, batch_size: int
) -> None:
    """Re-importing records that carry the stored ids (not only external ids) skips them; new ones are added."""
    ada = crm.customers.add(Customer(kind="person", name="Ada"))
    first = list(_purchases(ada, 150))
    assert crm.transactions.add_many(first, batch_size=batch_size) == crmkit.BulkResult(150, 0)
    mixed = [x for pair in zip(first, _purchases(ada, 150, prefix="more"), strict=True) for x in pair]
    result = crm.transactions.add_many(mixed, batch_size=batch_size)
    assert result == crmkit.BulkResult(150, 150)
    assert crm.transactions.count() == 300
    assert crm.transactions.get_by_external_id("more-149").amount == Decimal(149) / 100


_HOSTILE_TEXT = st.sampled_from(["tab\there", "new\nline\r\n", "back\\slash\\", "\\N", "'quote\"", "😀 فارسی", "{a,b}"])


@st.composite
def _stored_batch(draw: st.DrawFn, entity: str) -> list[Any]:
    """A few generated records of one entity (hostile text mixed in), stamped as stored, padded to COPY size."""
    import crmkit.testing.strategies as cs

    texts = st.one_of(_HOSTILE_TEXT, cs.texts(blank=False))
    built = {
        "customers": cs.customers(name=texts, tags=st.frozensets(texts, max_size=3),
                                  attributes=st.dictionaries(cs.identifiers(), st.one_of(texts, cs.attribute_values()),
                                                             max_size=3)),
        "interactions": cs.interactions(),
        "transactions": cs.transactions(),
        "relationships": cs.relationships(),
        "state_changes": st.builds(
            StateChange, record=st.tuples(st.just("customers"), cs.uuids()), stage_set=texts,
            from_stage=st.none() | texts, to_stage=texts, occurred_at=cs.aware_datetimes(), rule=texts,
            reason=st.none() | texts, actor=st.none() | texts,
        ),
    }[entity]
    records = draw(st.lists(built, min_size=1, max_size=6, unique_by=lambda r: r.id))
    when = draw(cs.aware_datetimes())
    records += [attrs.evolve(records[0], id=uuid.uuid4(), **({"external_id": None}
                if hasattr(records[0], "external_id") else {}),
                **({"source_id": uuid.uuid4()} if entity == "relationships" else {}))  # natural keys unique
                for _ in range(COPY_MIN_ROWS)]
    seen: set[str] = set()
    out = []
    for r in records:  # external ids unique, as insert() needs
        ext = getattr(r, "external_id", None)
        if ext is not None and ext in seen:
            r = attrs.evolve(r, external_id=None)
        seen.add(ext or "")
        out.append(attrs.evolve(r, created_at=when, updated_at=when, version=1))
    return out


@pytest.mark.parametrize("entity", ["customers", "interactions", "transactions", "relationships", "state_changes"])
def test_copy_text_stores_exactly_what_an_insert_stores(new_database: Callable[[str], str], entity: str) -> None:
    """PostgreSQL bulk batches are formatted as COPY text by crmkit: every column must come out as an INSERT's."""
    from hypothesis import HealthCheck, given, settings

    url = new_database("postgresql")
    with crmkit.connect(url, tenant="unused") as crm:
        repo = crm.store.repository(crm.schema[entity])
        engine: sa.Engine = crm.store.engine  # type: ignore[attr-defined]
        columns = ", ".join(f"{c.name}::text" for c in repo.table.c if c.name != "tenant")

        @given(records=_stored_batch(entity))
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def check(records: list[Any]) -> None:
            copied, inserted = "c-" + uuid.uuid4().hex[:12], "i-" + uuid.uuid4().hex[:12]
            assert len(repo.insert_new(copied, records)) == len(records)  # >= COPY_MIN_ROWS: the COPY path
            repo.insert(inserted, records)  # SQLAlchemy's INSERT with its bind processors
            with engine.connect() as conn:
                def rows(tenant: str) -> list[Any]:
                    sql = f"SELECT {columns} FROM {entity} WHERE tenant = %(t)s ORDER BY id"
                    return conn.exec_driver_sql(sql, {"t": tenant}).all()

                assert rows(copied) == rows(inserted)
            assert [repo.get(copied, r.id) for r in records] == records

        check()


def test_sqlite_imports_of_new_rows_do_not_look_up_external_ids_first(new_database: Callable[[str], str]) -> None:
    """The bet on new rows wins without a probe; only a batch that meets stored external ids pays for one."""
    with crmkit.connect(new_database("sqlite"), tenant="acme") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        probes: list[str] = []

        @sa.event.listens_for(crm.store.engine, "before_cursor_execute")  # type: ignore[attr-defined]
        def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("SELECT") and "external_id" in statement and "json_each" in statement:
                probes.append(statement)

        assert crm.transactions.add_many(_purchases(ada, 300), batch_size=100) == crmkit.BulkResult(300, 0)
        assert probes == []
        assert crm.transactions.add_many(_purchases(ada, 200, start=250), batch_size=100) == crmkit.BulkResult(150, 50)
        assert len(probes) == 1  # the batch 250-349 met stored ids; 350-449 was new

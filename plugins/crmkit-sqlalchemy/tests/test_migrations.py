"""The shipped Alembic migrations: they build exactly the table metadata, and stores create or refuse."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal

import attrs
import crmkit_sqlalchemy
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from crmkit_sqlalchemy.__main__ import main
from crmkit_sqlalchemy._migrate import HEAD, alembic_config, current_revision, diff
from crmkit_sqlalchemy._schema import TABLES, VERSION_TABLE
from crmkit_sqlalchemy._types import UtcDateTime

import crmkit
from crmkit import BackendError, Customer, F
from crmkit._host import PluginHost


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def test_head_constant_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


def test_migrations_from_empty_to_head_match_the_metadata(empty_url: str) -> None:
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert set(sa.inspect(conn).get_table_names()) == {*TABLES, "state_changes", VERSION_TABLE}
            assert diff(conn) == []  # crmkit's own declared tables (state_changes) are its history's too
    finally:
        engine.dispose()


def test_connect_creates_the_schema_without_drift(empty_url: str) -> None:
    with crmkit.connect(empty_url, tenant="acme") as crm:
        crm.customers.add(Customer(kind="person", name="Ada"))
        declared = list(crm.schema.derived.values())  # installed plugins' aggregates have tables too
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == HEAD
            assert diff(conn, declared) == []
    finally:
        engine.dispose()


def test_drift_is_detected(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    crmkit_sqlalchemy.upgrade(url)
    installed = list(PluginHost().schema().derived.values())  # upgrade made their tables too
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_customers_tenant_stage")
        with engine.connect() as conn:
            assert [d[0] for d in diff(conn, installed)] == ["add_index"]
    finally:
        engine.dispose()


def test_refusing_to_upgrade(empty_url: str) -> None:
    with pytest.raises(BackendError, match=r"has no crmkit tables.*python -m crmkit_sqlalchemy upgrade"):
        crmkit.connect(empty_url, upgrade=False)
    assert crmkit_sqlalchemy.current(empty_url) is None
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    assert crmkit_sqlalchemy.current(empty_url) == HEAD
    with crmkit.connect(empty_url, upgrade=False) as crm:
        assert crm.customers.count() == 0


def test_command_line(new_database: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    url = new_database("sqlite")
    assert main(["current", url]) == 0
    assert capsys.readouterr().out.strip() == "no crmkit schema"
    refused = main(["upgrade", "mysql://u:secret@h/db"])
    err = capsys.readouterr().err
    assert refused == 1 and "supported" in err and "secret" not in err
    done = subprocess.run([sys.executable, "-m", "crmkit_sqlalchemy", "upgrade", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"revision {HEAD}" in done.stdout
    assert main(["current", url]) == 0
    assert capsys.readouterr().out.strip() == HEAD


def test_tables_of_someone_else_are_not_touched(new_database: Callable[[str], str]) -> None:
    url = new_database("sqlite")
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE customers (name TEXT)")
    finally:
        engine.dispose()
    with pytest.raises(BackendError, match="refusing to touch them"):
        crmkit.connect(url)


def test_many_processes_opening_a_new_database_at_once(new_database: Callable[[str], str]) -> None:
    url = new_database("postgresql")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        try:
            start.wait()
            crmkit.connect(url, tenant="acme").close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert crmkit_sqlalchemy.current(url) == HEAD


def test_upgrading_0001_keeps_relationships_and_enforces_their_keys(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers, relationships

    from crmkit import BulkResult, ConflictError, Relationship

    now = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    people = [Customer(kind="person", name=n, created_at=now, updated_at=now, version=1) for n in ("Ada", "Bob")]
    a, b = (p.id for p in people)
    edges = [
        Relationship(source_id=a, target_id=b, kind="reports_to", created_at=now, updated_at=now, version=1),
        Relationship(
            source_id=b,
            target_id=a,
            kind="partner_of",
            role="co-founder",
            since=dt.date(2019, 2, 3),
            attributes={"met": "at work"},
            created_at=now,
            updated_at=now,
            version=2,
        ),
    ]
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            for table, records in ((customers, people), (relationships, edges)):
                rows = [{"tenant": "acme", **CONVERTERS[table.name].to_row(r)} for r in records]
                later = "external_id" if table is relationships else "name_folded"  # 0001 has no such column
                rows = [{k: v for k, v in row.items() if k != later} for row in rows]
                conn.execute(table.insert(), rows)
        with engine.connect() as conn:
            assert current_revision(conn) == "0001"
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        assert sorted(crm.relationships.find(), key=lambda r: r.kind) == sorted(edges, key=lambda r: r.kind)
        assert [crm.customers.get(p.id) for p in people] == people
        with pytest.raises(ConflictError):
            crm.relationships.add(Relationship(source_id=a, target_id=b, kind="reports_to"))
        again = [attrs.evolve(e, id=uuid.uuid4(), created_at=None, updated_at=None, version=0) for e in edges]
        assert crm.relationships.add_many(again) == BulkResult(0, 2)
        crm.relationships.add(Relationship(source_id=a, target_id=b, kind="referred_by", external_id="r-1"))
        with pytest.raises(ConflictError, match="external_id"):
            crm.relationships.add(Relationship(source_id=b, target_id=a, kind="referred_by", external_id="r-1"))
        assert crm.relationships.count() == 3
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, list(crm.schema.derived.values())) == []
    finally:
        engine.dispose()


def test_upgrading_0002_moves_stage_changes_into_state_changes(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers

    from crmkit import Stage, StageChange
    from crmkit.schema import Ref

    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    ada = Customer(kind="person", name="Ada", stage="customer", created_at=t0, updated_at=t0, version=3)
    bob = Customer(kind="person", name="Bob", created_at=t0, updated_at=t0, version=1)
    changes = [
        StageChange(
            customer_id=ada.id,
            from_stage=before,
            to_stage=after,
            occurred_at=t0 + dt.timedelta(days=i),
            rule=rule,
            reason=reason,
            created_at=t0 + dt.timedelta(days=i, seconds=1),
            updated_at=t0 + dt.timedelta(days=i, seconds=2),
            version=1 + i,
        )
        for i, (before, after, rule, reason) in enumerate(
            [("lead", "prospect", "manual", None), ("prospect", "customer", "first_purchase", "bought once")]
        )
    ]
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
            people = [{"tenant": "acme", **CONVERTERS["customers"].to_row(c)} for c in (ada, bob)]
            people = [{k: v for k, v in row.items() if k != "name_folded"} for row in people]  # 0004's
            conn.execute(customers.insert(), people)
            conn.execute(
                sa.text(
                    "INSERT INTO stage_changes (tenant, id, customer_id, from_stage, to_stage, occurred_at, rule, "
                    "reason, created_at, updated_at, version) VALUES (:tenant, :id, :customer_id, :from_stage, "
                    ":to_stage, :occurred_at, :rule, :reason, :created_at, :updated_at, :version)"
                ).bindparams(
                    sa.bindparam("id", type_=sa.Uuid()),
                    sa.bindparam("customer_id", type_=sa.Uuid()),
                    sa.bindparam("occurred_at", type_=UtcDateTime()),
                    sa.bindparam("created_at", type_=UtcDateTime()),
                    sa.bindparam("updated_at", type_=UtcDateTime()),
                ),
                [
                    {
                        "tenant": "acme",
                        **{f: getattr(c, f) for f in ("id", "customer_id", "occurred_at", "rule", "reason")},
                        **{f: getattr(c, f) for f in ("created_at", "updated_at", "version")},
                        "from_stage": c.from_stage.value if c.from_stage else None,
                        "to_stage": c.to_stage.value,
                    }
                    for c in changes
                ],
            )
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        assert list(crm.stage_changes.find()) == changes
        assert crm.lifecycle.history(ada.id) == changes and crm.lifecycle.history(bob.id) == []
        assert crm.stage_changes.count(F("customer_id") == ada.id) == 2
        (moved,) = crm.state_changes.history(ada, stage_set="lifecycle")[1:]
        assert (moved.record, moved.stage_set, moved.actor) == (Ref("customers", ada.id), "lifecycle", None)
        crm.lifecycle.move(bob.id, Stage.PROSPECT)
        assert [c.to_stage for c in crm.lifecycle.history(bob.id)] == [Stage.PROSPECT]
        declared = list(crm.schema.derived.values())
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert "stage_changes" not in sa.inspect(conn).get_table_names()
            assert diff(conn, declared) == []
        with engine.begin() as conn:  # and back: the customers' changes return to stage_changes
            command.downgrade(alembic_config(conn), "0002")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM stage_changes")).scalar() == 3
            assert "state_changes" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_upgrading_0003_folds_the_names_of_stored_customers(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers

    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    names = ["Ștefan Popescu", "POPESCU, Ştefan", "Ana Pop", "علي كريمي"]
    people = [Customer(kind="person", name=n, created_at=t0, updated_at=t0, version=1) for n in names]
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0003")
            rows = [{"tenant": "acme", **CONVERTERS["customers"].to_row(c)} for c in people]
            conn.execute(customers.insert(), [{k: v for k, v in r.items() if k != "name_folded"} for r in rows])
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        found = crm.customers.find(F("name").matches("stefan popescu"), order_by="name")
        assert [c.name for c in found] == names[1::-1]
        assert [c.name for c in crm.customers.find(F("name").startswith("pop", fold=True))] == [names[1]]
        assert [c.name for c in crm.customers.find(F("name").matches("علی کریمی"))] == [names[3]]
        declared = list(crm.schema.derived.values())
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, declared) == []
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        with engine.connect() as conn:
            assert "name_folded" not in {c["name"] for c in sa.inspect(conn).get_columns("customers")}
    finally:
        engine.dispose()


@contextlib.contextmanager
def _word_index_broken(url: str, names: Sequence[str]) -> Iterator[sa.Connection]:
    """A store of customers named ``names`` (a searchable field), and a transaction on its database in
    which the block breaks the word index; then the store must refuse to open until upgraded, and upgrade."""
    with crmkit.connect(url, tenant="acme") as crm:
        crm.customers.add_many(Customer(kind="person", name=n) for n in names)
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()
    with pytest.raises(BackendError, match=r"no word index for the searchable customers\.name_folded"):
        crmkit.connect(url, tenant="acme", upgrade=False)
    assert crmkit_sqlalchemy.upgrade(url) == HEAD


def test_a_missing_word_index_is_made_and_filled_on_upgrade(empty_url: str) -> None:
    """Word indexes (``_words``) are derived per database: a store without one gets it, filled from the rows."""
    from crmkit_sqlalchemy._words import index_name

    names = ["Ștefan Popescu", "POPESCU, Ştefan", "Ana Pop"]
    with _word_index_broken(empty_url, names) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f'DROP INDEX "{index_name("customers", "name_folded")}"')
        else:  # a migration that rebuilds the table on SQLite loses its triggers: the same repair
            conn.exec_driver_sql('DROP TRIGGER "customers__name_folded_words_update"')
            conn.exec_driver_sql('DELETE FROM "customers__name_folded_words"')
            conn.exec_driver_sql("INSERT INTO customers__name_folded_words VALUES ('acme', 'stale', '0')")
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        assert sorted(c.name for c in crm.customers.find(F("name").matches("stefan popescu"))) == sorted(names[:2])
        assert crm.customers.count(F("name").matches("stale")) == 0
        crm.customers.add(Customer(kind="person", name="Stefan Pop"))  # kept in step again
        assert crm.customers.count(F("name").matches("pop stefan")) == 1
        declared = list(crm.schema.derived.values())
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, declared) == []
    finally:
        engine.dispose()


def test_an_older_sqlite_store_loses_its_word_insert_trigger_on_upgrade(new_database: Callable[[str], str]) -> None:
    """SQLite stores made before inserts added their words in one statement per batch had a trigger per
    searchable field doing it row by row: upgrading drops it (the words refilled), and inserts still
    put their words, once. (SQLite only: PostgreSQL keeps words in a GIN index, with no trigger.)"""
    empty_url = new_database("sqlite")
    trigger = "customers__name_folded_words_insert"
    with _word_index_broken(empty_url, ["Ștefan Popescu", "Ana Pop"]) as conn:
        conn.exec_driver_sql(
            f'CREATE TRIGGER "{trigger}" AFTER INSERT ON customers BEGIN '
            "INSERT OR IGNORE INTO customers__name_folded_words (tenant, word, id) "
            "SELECT new.tenant, 'stale', new.id; END"
        )
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        crm.customers.add(Customer(kind="person", name="Stefan Pop"))
        crm.customers.add_many(Customer(kind="person", name=f"Pop Ana {i}") for i in range(3))
        assert crm.customers.count(F("name").matches("stale")) == 0
        assert crm.customers.count(F("name").matches("pop stefan")) == 1
        assert crm.customers.count(F("name").matches("ana pop")) == 4
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM sqlite_master WHERE name = '{trigger}'").scalar() == 0
            words = conn.exec_driver_sql("SELECT count(*) FROM customers__name_folded_words").scalar()
            assert words == 2 + 2 + 2 + 3 * 3  # each customer's distinct words, once
    finally:
        engine.dispose()


def test_upgrading_0004_lets_stored_transactions_name_the_order_they_paid(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers, transactions

    from crmkit import Transaction
    from crmkit.sales import Order

    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    ada = Customer(kind="person", name="Ada", created_at=t0, updated_at=t0, version=1)
    old = Transaction(
        customer_id=ada.id,
        occurred_at=t0,
        amount=Decimal("12.50"),
        currency="EUR",
        created_at=t0,
        updated_at=t0,
        version=1,
    )
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0004")
            conn.execute(customers.insert(), [{"tenant": "acme", **CONVERTERS["customers"].to_row(ada)}])
            row = {"tenant": "acme", **CONVERTERS["transactions"].to_row(old)}
            conn.execute(transactions.insert(), [{k: v for k, v in row.items() if k != "order_id"}])
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", upgrade=False) as crm:
        assert crm.transactions.get(old.id) == old  # stored before the revision: for no order
        order = crm.orders.add(Order(currency="EUR", customer_id=ada.id))
        paid = crm.transactions.add(attrs.evolve(old, id=uuid.uuid4(), order_id=order.id, version=0))
        assert [t.id for t in crm.transactions.find(F("order_id") == order.id)] == [paid.id]
        declared = list(crm.schema.derived.values())
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, declared) == []
            assert "ix_transactions_tenant_order_id" in {
                i["name"] for i in sa.inspect(conn).get_indexes("transactions")
            }
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0004")
        with engine.connect() as conn:
            assert "order_id" not in {c["name"] for c in sa.inspect(conn).get_columns("transactions")}
            assert conn.execute(sa.text("SELECT count(*) FROM transactions")).scalar() == 2  # the money stays
    finally:
        engine.dispose()


def test_upgrading_0005_indexes_customers_by_owner(empty_url: str) -> None:
    from crmkit_sqlalchemy._rows import CONVERTERS
    from crmkit_sqlalchemy._schema import customers

    from crmkit.access import OwnerPolicy

    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    stored = [
        Customer(kind="person", name=name, owner=owner, created_at=t0, updated_at=t0, version=1)
        for name, owner in (("Ada", "user:a"), ("Bo", "user:b"), ("Cy", None))
    ]
    engine = _engine(empty_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0005")
            conn.execute(customers.insert(), [{"tenant": "acme", **CONVERTERS["customers"].to_row(c)} for c in stored])
            assert "ix_customers_tenant_owner" not in {i["name"] for i in sa.inspect(conn).get_indexes("customers")}
    finally:
        engine.dispose()
    assert crmkit_sqlalchemy.upgrade(empty_url) == HEAD
    with crmkit.connect(empty_url, tenant="acme", actor="user:a", upgrade=False, plugins=[OwnerPolicy()]) as crm:
        assert [c.name for c in crm.customers.find()] == ["Ada"]  # the owner's customers, nothing else changed
        declared = list(crm.schema.derived.values())
    engine = _engine(empty_url)
    try:
        with engine.connect() as conn:
            assert diff(conn, declared) == []
            indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("customers")}
            assert indexes["ix_customers_tenant_owner"] == ["tenant", "owner"]
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0005")
        with engine.connect() as conn:
            assert "ix_customers_tenant_owner" not in {i["name"] for i in sa.inspect(conn).get_indexes("customers")}
            assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar() == 3  # the customers stay
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            assert diff(conn, declared) == []
    finally:
        engine.dispose()

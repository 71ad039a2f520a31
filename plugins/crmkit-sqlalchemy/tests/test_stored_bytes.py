"""The rows crmkit's own aggregates are stored as, column by column, as the database writes them out.

Existing databases must never need a data rewrite: the rows of crmkit's own aggregates are
compared with golden files taken when their form was decided (``tests/support/golden.py``);
``state_changes`` replaced ``stage_changes`` on purpose (migration 0003), and customers
gained ``name_folded`` on purpose (migration 0004, name search), and transactions
``order_id``, the order paid (migration 0005: NULL in every row stored before it).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from crmkit_sqlalchemy._derived import storage_of
from tests.support import golden

import crmkit

BUILTIN = ("customers", "relationships", "interactions", "transactions", "state_changes")


def _text_of(dialect: str, column: sa.Column[object]) -> sa.ColumnElement[object]:
    # SQLite's quote() shows the storage class too ('text', 12, X'..'); PostgreSQL's text cast is exact.
    if dialect == "sqlite":
        return sa.func.quote(column)
    return sa.cast(column, sa.Text)


def test_stored_bytes_of_the_builtin_aggregates(dialect: str, new_database: Callable[[str], str]) -> None:
    url = new_database(dialect)
    with crmkit.connect(url, tenant=golden.TENANT, clock=golden.fixed_clock(), actor="user:7") as crm:
        golden.write_records(crm)
        tables = {name: storage_of(crm.schema[name])[0] for name in BUILTIN}
    engine = sa.create_engine(url)
    stored: dict[str, list[dict[str, object]]] = {}
    try:
        with engine.connect() as conn:
            if dialect == "postgresql":  # timestamptz prints in the session's zone
                conn.execute(sa.text("SET TIME ZONE 'UTC'"))
            for name in BUILTIN:
                table = tables[name]
                columns = list(table.c)
                rows = conn.execute(
                    sa.select(*(_text_of(dialect, c).label(c.name) for c in columns)).order_by(table.c.created_at)
                ).mappings()
                stored[name] = [
                    {k: ("<generated>" if name == "state_changes" and k == "id" else v) for k, v in row.items()}
                    for row in rows
                ]
    finally:
        engine.dispose()
    assert [len(stored[n]) for n in BUILTIN] == [2, 1, 1, 3, 1]
    golden.check(f"sql-{dialect}", stored)

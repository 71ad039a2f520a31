"""Bulk writes: the fastest path each database offers that is still safe and idempotent.

``insert_new`` stores the records whose external_id is not stored yet:

* SQLite: writers are serialised (the write transaction began with ``BEGIN IMMEDIATE``),
  so the stored external_ids of the batch are read first and the rest goes to the
  driver's ``executemany`` as plain tuples, skipping SQLAlchemy's per-row work.
* PostgreSQL: other processes may import the same rows at the same moment, so the
  database decides: large batches are streamed with ``COPY`` into a temporary table and
  moved with ``INSERT ... SELECT ... ON CONFLICT (tenant, external_id) DO NOTHING
  RETURNING id``; small ones use a multi-row ``INSERT ... ON CONFLICT DO NOTHING``.

Rows are converted with the columns' own SQLAlchemy bind processors, so both paths store
exactly what an ordinary ``INSERT`` would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlRepository

__all__ = ["driver_rows", "insert_new"]

#: From this many rows on, PostgreSQL batches go through COPY.
COPY_MIN_ROWS = 100
_LOOKUP_CHUNK = 500

_processors: dict[tuple[str, int], list[tuple[str, Callable[[Any], Any] | None]]] = {}


def _column_processors(table: sa.Table, dialect: sa.Dialect) -> list[tuple[str, Callable[[Any], Any] | None]]:
    key = (table.name, id(dialect))
    found = _processors.get(key)
    if found is None:
        found = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in table.c]
        _processors[key] = found
    return found


def driver_rows(table: sa.Table, dialect: sa.Dialect, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Row dicts as tuples of driver values, in the table's column order."""
    processors = _column_processors(table, dialect)
    return [tuple(p(row[name]) if p is not None else row[name] for name, p in processors) for row in rows]


def _first_new(repo: SqlRepository, records: Sequence[Any], stored: set[str]) -> list[Any]:
    """Records whose external_id is neither stored nor taken by an earlier record of the batch."""
    keep = []
    seen = set(stored)
    for record in records:
        ext = getattr(record, "external_id", None) if repo.spec.has_external_id else None
        if ext is not None:
            if ext in seen:
                continue
            seen.add(ext)
        keep.append(record)
    return keep


def insert_new(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> set[uuid.UUID]:
    """Write the records with new external_ids on ``conn``; return the ids written."""
    if conn.dialect.name == "postgresql":
        return _postgresql(repo, conn, tenant, records)
    return _sqlite(repo, conn, tenant, records)


def _sqlite(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> set[uuid.UUID]:
    table = repo.table
    stored: set[str] = set()
    if repo.spec.has_external_id:
        wanted = list({r.external_id for r in records if r.external_id is not None})
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            statement = sa.select(table.c.external_id).where(table.c.tenant == tenant, table.c.external_id.in_(chunk))
            stored.update(conn.execute(statement).scalars())
    keep = _first_new(repo, records, stored)
    if keep:
        quote = conn.dialect.identifier_preparer.quote
        columns = ", ".join(quote(c.name) for c in table.c)
        marks = ", ".join("?" for _ in table.c)
        conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})",
            driver_rows(table, conn.dialect, repo.rows(tenant, keep)),
        )
    return {r.id for r in keep}


def _postgresql(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> set[uuid.UUID]:
    table = repo.table
    rows = repo.rows(tenant, records)
    if len(rows) >= COPY_MIN_ROWS:
        return _copy(repo, conn, rows)
    statement = postgresql.insert(table)
    if repo.spec.has_external_id:
        statement = statement.on_conflict_do_nothing(index_elements=["tenant", "external_id"])
    return set(conn.execute(statement.returning(table.c.id), rows).scalars())


def _copy(repo: SqlRepository, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    table = repo.table
    quote = conn.dialect.identifier_preparer.quote
    staging = quote(f"crmkit_load_{table.name}")
    # A private table per session, emptied after each batch. Created inside the transaction
    # (IF NOT EXISTS) every time, so a rolled-back first batch cannot leave us without it.
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
        f"(LIKE {quote(table.name)} INCLUDING DEFAULTS, crmkit_ord bigint) ON COMMIT DELETE ROWS"
    )
    columns = ", ".join(quote(c.name) for c in table.c)
    values = driver_rows(table, conn.dialect, rows)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {staging} ({columns}, crmkit_ord) FROM STDIN") as copy:
        for ordinal, row in enumerate(values):
            copy.write_row((*row, ordinal))
    conflict = " ON CONFLICT (tenant, external_id) DO NOTHING" if repo.spec.has_external_id else ""
    result = conn.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} FROM {staging} "
        f"ORDER BY crmkit_ord{conflict} RETURNING id"
    )
    stored = {uuid.UUID(str(v)) if not isinstance(v, uuid.UUID) else v for (v,) in result}
    conn.exec_driver_sql(f"TRUNCATE {staging}")
    return stored

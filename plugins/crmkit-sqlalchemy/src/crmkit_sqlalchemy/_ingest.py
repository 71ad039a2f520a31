"""Bulk writes: the fastest path each database offers that is still safe and idempotent.

``insert_new`` stores the records whose external_id is not stored yet:

* SQLite: the batch goes to the driver's ``executemany`` as plain tuples, skipping
  SQLAlchemy's per-row work, with ``ON CONFLICT (tenant, external_id) DO NOTHING``
  inside a savepoint, on the bet that its rows are new. If the count of rows written
  says some were skipped, the savepoint is rolled back, the stored external_ids of the
  batch are read and the rest is inserted (writers are serialised: the write
  transaction began with ``BEGIN IMMEDIATE``, so nothing changes in between).
* PostgreSQL: batches of 100 rows or more are first ``COPY``-ed straight into the table,
  inside a savepoint, on the bet that they are new. If an external id is stored already
  (a re-run import, or another process importing the same rows at that moment), the
  COPY hits the unique key, the savepoint is rolled back and the database decides row by
  row: the batch is streamed with ``COPY`` into a temporary table and moved with
  ``INSERT ... SELECT ... ON CONFLICT (tenant, external_id) DO NOTHING RETURNING id``.
  Small batches use a multi-row ``INSERT ... ON CONFLICT DO NOTHING``. Every path writes
  the batch in external-id order, so that importers of overlapping rows wait for each
  other's keys in one order and never deadlock.

Records are turned into driver tuples (SQLite) or COPY text (PostgreSQL) by functions
generated once per table, applying the entity's encoders and then the same conversions as
the columns' SQLAlchemy types (tests check that both paths store exactly what an INSERT
stores), without SQLAlchemy's per-value overhead or an intermediate dict per row.
``prepare_postgresql`` splits the PostgreSQL write in two, so that ``add_many`` can format
one batch while a helper thread streams the one before.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from crmkit._ids import _make_uuid
from crmkit_sqlalchemy._encoding import money_text
from crmkit_sqlalchemy._rows import record_expressions
from crmkit_sqlalchemy._types import Money, UtcDateTime, micros_of

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlRepository

__all__ = ["driver_rows", "insert_new"]

T = TypeVar("T")

#: From this many rows on, PostgreSQL batches go through COPY.
COPY_MIN_ROWS = 100

_converters: dict[tuple[sa.Table, str], Callable[[str, Any], tuple[Any, ...]]] = {}


def _json_text(value: Any) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _driver_form(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """How a column's value is written by the bulk paths: what its bind processor would write."""
    kind = column.type.dialect_impl(dialect)
    if isinstance(kind, sa.JSON):
        return _json_text
    if dialect.name == "postgresql":
        return None  # psycopg writes uuid, timestamptz, numeric and date values itself
    if isinstance(kind, sa.Uuid):
        return _hex
    if isinstance(kind, UtcDateTime):
        return _micros
    if isinstance(kind, Money):
        return _money
    if isinstance(kind, sa.Date):
        return _iso
    return None


def _hex(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def _last_remembered(convert: Callable[[Any], T]) -> Callable[[Any], T]:
    """``convert`` remembering its last argument (by identity) and result.

    The created_at and updated_at of a whole batch are one datetime: converted once, not
    twice a row. The pair is one tuple, replaced in one step, so threads may share it.
    """
    memo: list[tuple[Any, Any]] = [(None, None)]

    def remembered(value: Any) -> T:
        seen, result = memo[0]
        if seen is not value:
            result = convert(value)
            memo[0] = (value, result)
        return result  # type: ignore[no-any-return]

    return remembered


_micros_of = _last_remembered(micros_of)


def _micros(value: Any) -> int | None:
    return None if value is None else _micros_of(value)


def _money(value: Any) -> str | None:
    return None if value is None else money_text(value)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _converter(table: sa.Table, dialect: sa.Dialect) -> Callable[[str, Any], tuple[Any, ...]]:
    """A function from (tenant, record) to the tuple of driver values, generated once per table and dialect.

    Each column's value is the record's field through the entity's encoder (``_rows.ENCODERS``)
    and then the column's driver form, written out as one tuple expression.
    """
    key = (table, dialect.name)
    found = _converters.get(key)
    if found is None:
        namespace: dict[str, Any] = {}
        items = []
        for i, (column, expression) in enumerate(record_expressions(table, namespace)):
            form = None if column.name == "tenant" else _driver_form(column, dialect)
            if form is None:
                items.append(expression)
            else:
                namespace[f"f{i}"] = form
                items.append(f"f{i}({expression})")
        source = f"def convert(tenant, r):\n    return ({', '.join(items)},)\n"
        exec(compile(source, f"<crmkit_sqlalchemy driver rows of {table.name}>", "exec"), namespace)
        found = _converters[key] = namespace["convert"]
    return found


def driver_rows(table: sa.Table, dialect: sa.Dialect, tenant: str, records: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Records as tuples of driver values, in the table's column order."""
    convert = _converter(table, dialect)
    return [convert(tenant, r) for r in records]


# --------------------------------------------------------------------------- COPY text

# COPY's text format: columns split by tab, rows by newline, NULL written \N; inside a value
# a backslash, newline, carriage return or tab is written with a backslash. Formatting the
# rows here, a batch at a time, costs half what the driver's per-row write_row does and
# sends the batch as one block.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_NULL = "\\N"


def _copy_text(value: Any) -> str:
    if value is None:
        return _NULL
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return str(value.translate(_COPY_ESCAPES))
    return str(value)


def _copy_plain(value: Any) -> str:
    """numeric and integer values: their str() never holds a character COPY escapes."""
    return _NULL if value is None else str(value)


def _copy_uuid(value: Any) -> str:
    """32 hex digits, which PostgreSQL reads as a uuid (cheaper to make than the dashed form)."""
    return _NULL if value is None else str(value.hex)


_instant_text = _last_remembered(lambda value: value.astimezone(dt.timezone.utc).isoformat())


def _copy_instant(value: Any) -> str:
    return _NULL if value is None else _instant_text(value)


def _copy_date(value: Any) -> str:
    return _NULL if value is None else value.isoformat()


def _copy_json(value: Any) -> str:
    return _copy_text(_json_text(value))


def _copy_bytes(value: Any) -> str:
    """bytea's hex input form, its backslash doubled for COPY's text format."""
    return _NULL if value is None else "\\\\x" + value.hex()


def _copy_form(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], str] | None:
    """The COPY text of a column's value, or None for a type this module does not format."""
    if isinstance(column.type, UtcDateTime):
        return _copy_instant
    if isinstance(column.type, Money):
        return _copy_plain
    kind = column.type.dialect_impl(dialect)
    if isinstance(kind, sa.JSON):
        return _copy_json
    if isinstance(kind, sa.Uuid):
        return _copy_uuid
    if isinstance(kind, (sa.Numeric, sa.Integer, sa.Boolean)):  # str(True) is "True", which COPY reads
        return _copy_plain
    if isinstance(kind, sa.Date):
        return _copy_date
    if isinstance(kind, sa.String):
        return _copy_text
    if isinstance(kind, sa.LargeBinary):
        return _copy_bytes
    return None


_copy_lines: dict[sa.Table, Callable[[str, Any], str]] = {}


#: Rows formatted and sent at a time: the server parses one chunk while the next is formatted.
COPY_CHUNK_ROWS = 500


def copy_chunks(table: sa.Table, dialect: sa.Dialect, tenant: str, records: Sequence[Any]) -> Iterator[str]:
    """The records as COPY text rows in the table's column order (PostgreSQL), a chunk at a time."""
    line = _copy_line(table, dialect)
    for start in range(0, len(records), COPY_CHUNK_ROWS):
        yield "".join([line(tenant, r) for r in records[start : start + COPY_CHUNK_ROWS]])


def _copy_line(table: sa.Table, dialect: sa.Dialect) -> Callable[[str, Any], str]:
    """A function from (tenant, record) to its COPY text row, generated once per table."""
    line = _copy_lines.get(table)
    if line is None:
        namespace: dict[str, Any] = {}
        items = []
        for i, (column, expression) in enumerate(record_expressions(table, namespace)):
            form = _copy_form(column, dialect)
            if form is None:  # pragma: no cover - every column type of the schema is handled
                raise TypeError(f"no COPY text form for {table.name}.{column.name} ({column.type})")
            namespace[f"f{i}"] = form
            items.append(f"{{f{i}({expression})}}")
        body = "\\t".join(items)  # a tab, once inside the generated f-string
        source = f'def line(tenant, r):\n    return f"{body}\\n"\n'
        exec(compile(source, f"<crmkit_sqlalchemy COPY rows of {table.name}>", "exec"), namespace)
        line = _copy_lines[table] = namespace["line"]
    return line


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


_EXTERNAL_ID = operator.attrgetter("external_id")


def in_key_order(repo: SqlRepository, records: Sequence[Any]) -> Sequence[Any]:
    """The records sorted by external id (stably: repeats keep their order), for PostgreSQL.

    Writing a row takes its unique-index entry; another transaction writing the same key
    waits for it to end. Two imports writing overlapping batches in different orders would
    wait for each other (a deadlock); written in one order, the one that got a key first
    always finishes. Records without an external id clash on nothing (their ids are new).
    """
    if not repo.spec.has_external_id or len(records) < 2:
        return records
    try:
        return sorted(records, key=_EXTERNAL_ID)
    except TypeError:  # some have no external id
        keyed = sorted([r for r in records if r.external_id is not None], key=_EXTERNAL_ID)
        return [*keyed, *(r for r in records if r.external_id is None)]


def insert_new(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> list[Any]:
    """Write the records with new external_ids on ``conn``; return those written, in order."""
    if conn.dialect.name == "postgresql":
        return _postgresql(repo, conn, tenant, records)
    return _sqlite(repo, conn, tenant, records)


class _SomeWereStored(Exception):
    """The bet that a batch is all new lost: undo it and look before inserting."""


def _stored_external_ids(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> set[str]:
    """Which external ids of the batch are stored already."""
    if not repo.spec.has_external_id:
        return set()
    wanted = {r.external_id for r in records if r.external_id is not None}
    return repo.stored_keys(conn, tenant, "external_id", wanted) if wanted else set()


def _sqlite(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> list[Any]:
    table = repo.table
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.c)
    marks = ", ".join("?" for _ in table.c)
    insert = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})"
    keep = _first_new(repo, records, set())
    if not keep:
        return []
    if repo.spec.has_external_id:
        # The common case first: the rows are new. Insert them skipping stored external ids; if
        # the count says some were skipped, undo the batch and insert the ones not stored.
        # (SQLite checks the ON CONFLICT target before the primary key, so a record stored
        # before under the same id is skipped too, not reported as a clash.)
        try:
            with conn.begin_nested():
                rows = driver_rows(table, conn.dialect, tenant, keep)
                result = conn.exec_driver_sql(f"{insert} ON CONFLICT (tenant, external_id) DO NOTHING", rows)
                if result.rowcount != len(keep):
                    raise _SomeWereStored
            _add_words(conn, table, tenant, rows)
            return keep
        except _SomeWereStored:
            keep = _first_new(repo, records, _stored_external_ids(repo, conn, tenant, records))
            if not keep:
                return []
    rows = driver_rows(table, conn.dialect, tenant, keep)
    conn.exec_driver_sql(insert, rows)
    _add_words(conn, table, tenant, rows)
    return keep


def insert_all(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> None:
    """SQLite: write every record (a clash is the driver's IntegrityError) as driver rows, and their words.

    ``Repository.insert`` of derived rows (search terms, identity keys, history) comes in
    batches as big as the import's; binding them through SQLAlchemy cost more than the
    database did. The driver rows are what SQLAlchemy would bind (``driver_rows``)."""
    table = repo.table
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.c)
    marks = ", ".join("?" for _ in table.c)
    rows = driver_rows(table, conn.dialect, tenant, records)
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})", rows)
    _add_words(conn, table, tenant, rows)


def _add_words(conn: sa.Connection, table: sa.Table, tenant: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """The words of the searchable fields of rows just inserted (driver tuples) into their word tables."""
    from crmkit_sqlalchemy import _words

    columns = _words.searched(table)
    if not columns:
        return
    at = {c.name: i for i, c in enumerate(table.c)}
    ids = [row[at["id"]] for row in rows]
    _words.add(conn, table, tenant, ids, {c: [row[at[c]] for row in rows] for c in columns})


def _postgresql(repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]) -> list[Any]:
    return prepare_postgresql(repo, conn.dialect, tenant, records)(conn)


def prepare_postgresql(
    repo: SqlRepository, dialect: sa.Dialect, tenant: str, records: Sequence[Any], *, formatted: bool = False
) -> Callable[[sa.Connection], list[Any]]:
    """A PostgreSQL ``insert_new`` as a function of the connection to run it on.

    ``formatted``: the COPY text is made now (for ``prepare_insert_new``, whose caller builds
    the next batch while the database takes this one); otherwise a chunk at a time during the
    COPY, so that the server parses one chunk while the next is formatted.
    """
    table = repo.table
    ordered = in_key_order(repo, records)  # every writer takes the keys in this one order
    if len(records) < COPY_MIN_ROWS:

        def insert(conn: sa.Connection) -> list[Any]:
            statement = postgresql.insert(table)
            if repo.spec.has_external_id:
                statement = statement.on_conflict_do_nothing(index_elements=["tenant", "external_id"])
                statement = statement.returning(table.c.id, table.c.external_id)
            else:
                statement = statement.returning(table.c.id, sa.null())
            rows = conn.execute(statement, repo.rows(tenant, ordered))
            return _written(repo, records, {(_uuid(i), e) for i, e in rows})

        return insert
    # The common case first: the rows are new. COPY them straight into the table inside a
    # savepoint; a stored (or concurrently imported) external id makes it fail, and then
    # the database sorts the batch out row by row. Asking first would cost more: PostgreSQL
    # plans a lookup of a thousand keys as a scan until the table is large.
    new = _first_new(repo, ordered, set())
    # What the batch writes, in the caller's order (repeats of an external id dropped, as in ``new``).
    keep = list(records) if len(new) == len(records) else _first_new(repo, records, set())
    chunks: Iterable[str] = list(copy_chunks(table, dialect, tenant, new)) if formatted else ()

    def copy(conn: sa.Connection) -> list[Any]:
        from psycopg.errors import IntegrityError

        try:
            with conn.begin_nested():
                _copy_text_into(conn, table, chunks or copy_chunks(table, dialect, tenant, new))
            return keep
        except IntegrityError:
            pass  # someone stored one of them meanwhile (or an id is taken): let the database decide, below
        return _written(repo, records, _copy(repo, conn, tenant, ordered))

    return copy


def _copy_text_into(conn: sa.Connection, table: sa.Table, chunks: Iterable[str]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.c)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN") as copy:
        for chunk in chunks:
            copy.write(chunk)


def _written(repo: SqlRepository, records: Sequence[Any], stored: set[tuple[uuid.UUID, str | None]]) -> list[Any]:
    """The records the database wrote, from the (id, external_id) pairs it returned.

    By the pair, not the id alone: a batch may hold one id twice, under an external id
    stored already (skipped) and under a new one (written); only the second was written.
    """
    if not repo.spec.has_external_id:
        return [r for r in records if (r.id, None) in stored]
    return [r for r in records if (r.id, r.external_id) in stored]


def _uuid(value: Any) -> uuid.UUID:
    """A stored id as a UUID: PostgreSQL's driver gives one; SQLite keeps the 32 hex digits crmkit wrote."""
    if isinstance(value, uuid.UUID):
        return value
    if value.__class__ is str and len(value) == 32:
        return _make_uuid(int(value, 16))  # uuid.UUID(hex) re-checks what the store holds, at 3x the time
    return uuid.UUID(str(value))


def _copy_into(
    conn: sa.Connection, table: sa.Table, target: str, values: Sequence[tuple[Any, ...]], *extra: str
) -> None:
    """Stream tuples into ``target`` (the table's columns, then ``extra`` ones) with COPY."""
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join([quote(c.name) for c in table.c] + list(extra))
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {quote(target)} ({columns}) FROM STDIN") as copy:
        for row in values:
            copy.write_row(row)


def _copy(
    repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]
) -> set[tuple[uuid.UUID, str | None]]:
    """The race-proof path: COPY into a temporary table, then INSERT ... ON CONFLICT DO NOTHING."""
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
    values = driver_rows(table, conn.dialect, tenant, records)
    _copy_into(conn, table, f"crmkit_load_{table.name}", [(*row, i) for i, row in enumerate(values)], "crmkit_ord")
    keyed = repo.spec.has_external_id
    conflict = " ON CONFLICT (tenant, external_id) DO NOTHING" if keyed else ""
    result = conn.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} FROM {staging} "
        f"ORDER BY crmkit_ord{conflict} RETURNING id, {'external_id' if keyed else 'NULL'}"
    )
    stored = {(_uuid(i), e) for i, e in result}
    conn.exec_driver_sql(f"TRUNCATE {staging}")
    return stored


# --------------------------------------------------------------------------- upsert comparison

#: Columns the store sets on a record, never compared by ``compare_stored``.
_STAMPS = frozenset({"tenant", "id", "created_at", "updated_at", "version"})


def compare_stored(
    repo: SqlRepository, conn: sa.Connection, tenant: str, records: Sequence[Any]
) -> dict[str, tuple[uuid.UUID, int, bool]]:
    """``Repository.compare_stored`` in the database: stage the batch, join it to the table, compare there.

    The records whose external id is stored (one probe of the unique index, ``stored_keys``)
    are written as driver rows (the bulk-insert encoding, so a stored row of the same values
    is the same bytes) into a private temporary table, which is joined to the table on
    (tenant, external_id); each value column is compared with ``IS NOT DISTINCT FROM`` (``IS``
    on SQLite), and only the stored id, version and the verdict come back: nothing is decoded.
    """
    wanted = {r.external_id for r in records if r.external_id is not None}
    stored = repo.stored_keys(conn, tenant, "external_id", wanted) if wanted else set()
    if not stored:
        return {}
    staged = [r for r in records if r.external_id in stored]
    table = repo.table
    quote = conn.dialect.identifier_preparer.quote
    name = f"crmkit_cmp_{table.name}"
    staging, target = quote(name), quote(table.name)
    columns = [c.name for c in table.c]
    listed = ", ".join(quote(c) for c in columns)
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy_text_into_table(conn, name, columns, copy_chunks(table, conn.dialect, tenant, staged))
        same = " IS NOT DISTINCT FROM "
    else:
        # re-made each time: a temporary table lives as long as the connection, the table's columns may change
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{staging}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {staging} AS SELECT * FROM {target} WHERE 0")
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(
            f"INSERT INTO temp.{staging} ({listed}) VALUES ({marks})", driver_rows(table, conn.dialect, tenant, staged)
        )
        same = " IS "
    compared = [c for c in columns if c not in _STAMPS] or ["id"]
    verdict = " AND ".join(f"s.{quote(c)}{same}b.{quote(c)}" for c in compared)
    rows = conn.exec_driver_sql(
        f"SELECT s.external_id, s.id, s.version, CASE WHEN {verdict} THEN 1 ELSE 0 END "
        f"FROM {staging} AS b JOIN {target} AS s ON s.tenant = b.tenant AND s.external_id = b.external_id"
    ).fetchall()
    conn.exec_driver_sql(f"TRUNCATE {staging}" if pg else f"DELETE FROM temp.{staging}")
    return {ext: (_uuid(id), int(version), bool(equal)) for ext, id, version, equal in rows}


def _copy_text_into_table(conn: sa.Connection, name: str, columns: Sequence[str], chunks: Iterable[str]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    driver = conn.connection.driver_connection
    assert driver is not None
    listed = ", ".join(quote(c) for c in columns)
    with driver.cursor() as cursor, cursor.copy(f"COPY {quote(name)} ({listed}) FROM STDIN") as copy:
        for chunk in chunks:
            copy.write(chunk)

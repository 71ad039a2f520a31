"""``SqlStore`` and ``SqlRepository``: crmkit's storage contract on SQLAlchemy Core.

Connections and transactions
----------------------------
``store.transaction()`` checks a connection out of the pool, begins a database
transaction and binds the connection to the calling thread; every repository call made
by that thread until the block ends runs on it. Calls made outside a transaction take
their own connection and commit at once. Statements that may violate a unique key run
inside a SAVEPOINT when a transaction is open, so a ConflictError leaves the transaction
usable, as it does with the in-memory store.

SQLite serialises writers. A transaction on a SQLite file therefore starts with
``BEGIN IMMEDIATE`` (it takes the write lock up front and waits up to ``busy_timeout``
for it) instead of failing when a read lock cannot be upgraded; readers never wait (WAL).
An in-memory SQLite database lives in one connection, so its store lets one thread in
at a time, like ``memory://``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from crmkit._errors import ConflictError, PluginError
from crmkit.aggregation import AggregateQuery
from crmkit.entities import ENTITIES, EntitySpec
from crmkit.query import (
    All,
    Compare,
    Const,
    Copy,
    Expr,
    In,
    InSelect,
    Matches,
    Order,
    StartsWith,
    Test,
    conjuncts,
    parse_order,
)
from crmkit.schema import AggregateSpec, Schema
from crmkit.search import prefix_end
from crmkit.store import Activity, Capabilities, Repository, Store
from crmkit_sqlalchemy import _words
from crmkit_sqlalchemy._aggregate import aggregate
from crmkit_sqlalchemy._derived import explain_conflict, storage_of
from crmkit_sqlalchemy._errors import Where, translated
from crmkit_sqlalchemy._fastread import RawSelect
from crmkit_sqlalchemy._query import Compiler
from crmkit_sqlalchemy._rows import Converter
from crmkit_sqlalchemy._schema import SHADOW, shadow_column
from crmkit_sqlalchemy._types import Text
from crmkit_sqlalchemy._url import Options

__all__ = ["SqlRepository", "SqlStore"]

_CHUNK = 1000  # ids per IN list in activity
_KEYS_PER_QUERY = 10_000  # keys per statement in stored_keys

K = TypeVar("K")
_PREPARED_KINDS = ("uuid", "text", "int", "datetime", "date")
_ANALYZE_FIRST = 20_000  # rows imported by this store before the first ANALYZE of a table


def _array_literal(texts: Sequence[str]) -> str:
    """A PostgreSQL array literal of text elements, each quoted (backslash and quote escaped)."""
    return "{" + ",".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in texts) + "}"


class SqlRepository(Repository[Any]):
    """One aggregate kind in one table of a SqlStore."""

    def __init__(self, store: SqlStore, spec: EntitySpec) -> None:
        self.spec = spec
        self.store = store
        self.table: sa.Table
        self.convert: Converter
        self.table, self.convert = storage_of(spec)  # crmkit's own tables, or derived from a declaration
        self.compiler = Compiler(self.table, spec, store.dialect, lambda other: store.repository(other).table)
        # the columns records are read from (folded shadows of searchable fields are only searched)
        self._columns = [c for c in self.table.c if c.name != "tenant" and SHADOW not in c.info]
        # The statements of the hot paths, built once (SQLAlchemy then reuses their compiled form).
        t = self.table
        mine = t.c.tenant == sa.bindparam("p_tenant")
        self._get = sa.select(*self._columns).where(mine, t.c.id == sa.bindparam("p_id"))
        self._get_external = (
            sa.select(*self._columns).where(mine, t.c.external_id == sa.bindparam("p_external"))
            if spec.has_external_id
            else None
        )
        self._replace = t.update().where(mine, t.c.id == sa.bindparam("p_id"), t.c.version == sa.bindparam("p_version"))
        self._delete = t.delete().where(mine, t.c.id == sa.bindparam("p_id"))
        self._delete_version = self._delete.where(t.c.version == sa.bindparam("p_version"))
        self._shapes: dict[tuple[Any, ...], sa.Select[Any]] = {}
        self._by_id = parse_order(None, spec)
        # the hot reads' compiled forms, run on the DBAPI cursor (``_fastread``); with ``echo``
        # every statement goes through SQLAlchemy, which logs it
        self._raw = store.dialect in ("sqlite", "postgresql") and not store.options.echo
        self._raw_selects: dict[int, tuple[sa.Select[Any], RawSelect]] = {}
        self._written, self._analyze_at = 0, _ANALYZE_FIRST
        self._searched = _words.searched(self.table)  # the folded columns with a word index

    # ------------------------------------------------------------------ helpers
    def rows(self, tenant: str, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Rows (dicts) of records, with the tenant."""
        to_row = self.convert.to_row
        return [{"tenant": tenant, **to_row(r)} for r in records]

    def _select(self, tenant: str, where: Expr) -> sa.Select[Any]:
        return sa.select(*self._columns).where(self.compiler.where(tenant, where))

    def _records(self, result: sa.Result[Any]) -> list[Any]:
        from_row = self.convert.from_row
        return [from_row(row) for row in result.mappings().all()]  # one fetchall, not a fetchone per row

    def _conflict(self, tenant: str, records: Sequence[Any], cause: ConflictError) -> ConflictError:
        """A ConflictError naming the id or external_id that clashed, found after the failed write."""
        explained = explain_conflict(self.spec, self.table, records, cause)  # a declared unique key
        if explained is not cause:
            return explained
        label = self.spec.label
        seen_ids: set[uuid.UUID] = set()
        seen_ext: set[str] = set()
        for record in records:  # duplicates inside the batch itself
            ext = getattr(record, "external_id", None) if self.spec.has_external_id else None
            if record.id in seen_ids:
                return ConflictError(f"{label} {record.id} appears twice in one write", entity=label, key=record.id)
            if ext is not None and ext in seen_ext:
                return ConflictError(f"{label} with external_id {ext!r} appears twice", entity=label, key=ext)
            seen_ids.add(record.id)
            if ext is not None:
                seen_ext.add(ext)
        try:
            if self.spec.has_external_id and seen_ext:
                for record in records:
                    key = record.external_id
                    if key is not None and self.get_by_external_id(tenant, key) is not None:
                        return ConflictError(f"{label} with external_id {key!r} already exists", entity=label, key=key)
            taken = self.existing_ids(tenant, [r.id for r in records])
        except Exception:  # the explanation is best effort; the original error stands
            return cause
        for record in records:
            if record.id in taken:
                return ConflictError(f"{label} {record.id} already exists", entity=label, key=record.id)
        if self.spec.natural_key:  # relationships: (source_id, target_id, kind, since), since None included
            try:
                return self._natural_conflict(tenant, records) or cause
            except Exception:  # best effort, as above
                return cause
        return cause

    def _natural_conflict(self, tenant: str, records: Sequence[Any]) -> ConflictError | None:
        """A ConflictError naming the natural key a record shares with the batch or a stored record."""
        names, label = self.spec.natural_key, self.spec.label
        seen: set[tuple[Any, ...]] = set()
        for record in records:
            values = tuple(getattr(record, n) for n in names)
            stored = self.find(tenant, In(names[0], (values[0],)), parse_order(None, self.spec), None)
            if values in seen or any(tuple(getattr(s, n) for n in names) == values for s in stored):
                shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True))
                return ConflictError(f"{label} with {shown} already exists", entity=label, key=values)
            seen.add(values)
        return None

    # ------------------------------------------------------------------ writes
    def insert(self, tenant: str, records: Sequence[Any]) -> None:
        if not records:
            return
        try:
            with self.store.connection(atomic=True, several=True, entity=self.spec.label) as conn:
                if self.store.dialect == "sqlite" and not self.store.options.echo:
                    from crmkit_sqlalchemy._ingest import insert_all

                    insert_all(self, conn, tenant, records)  # driver rows, and their words (``_words``)
                else:
                    rows = self.rows(tenant, records)
                    conn.execute(self.table.insert(), rows)
                    if self._searched and self.store.dialect == "sqlite":  # the words of the new rows
                        ids = [r["id"].hex for r in rows]
                        _words.add(conn, self.table, tenant, ids, {c: [r[c] for r in rows] for c in self._searched})
        except ConflictError as exc:
            if exc.transient:
                raise
            raise self._conflict(tenant, records, exc) from exc

    def insert_new(self, tenant: str, records: Sequence[Any]) -> list[Any]:
        if not records:
            return []
        from crmkit_sqlalchemy._ingest import insert_new

        try:
            with self.store.connection(atomic=True, several=True, entity=self.spec.label) as conn:
                stored = insert_new(self, conn, tenant, records)
        except ConflictError as exc:
            if exc.transient:  # lost a race (a deadlock): nothing to explain, the caller may retry
                raise
            raise self._conflict(tenant, records, exc) from exc
        self._grown(len(stored))
        return stored

    def prepare_insert_new(self, tenant: str, records: Sequence[Any]) -> Callable[[], list[Any]]:
        if self.store.dialect != "postgresql" or not records:
            return super().prepare_insert_new(tenant, records)
        from crmkit_sqlalchemy._ingest import prepare_postgresql

        # the rows are formatted as COPY text now, on the caller's thread; the database gets them later
        write = prepare_postgresql(self, self.store.engine.dialect, tenant, records, formatted=True)

        def insert() -> list[Any]:
            try:
                with self.store.connection(atomic=True, several=True, entity=self.spec.label) as conn:
                    stored = write(conn)
            except ConflictError as exc:
                if exc.transient:
                    raise
                raise self._conflict(tenant, records, exc) from exc
            self._grown(len(stored))
            return stored

        return insert

    def insert_from(
        self,
        tenant: str,
        source: Repository[Any],
        where: Expr,
        values: Mapping[str, Copy | Const | Test],
        stamp: dt.datetime,
    ) -> list[Any]:
        """One ``INSERT ... SELECT ... RETURNING`` (``_insert_from``); the default for what SQL cannot build."""
        if isinstance(source, SqlRepository) and source.store is self.store:
            from crmkit_sqlalchemy._insert_from import insert_from

            made = insert_from(self, tenant, source, where, values, stamp)
            if made is not None:
                return made
        return super().insert_from(tenant, source, where, values, stamp)

    def _grown(self, rows: int) -> None:
        """Refresh PostgreSQL's statistics after big imports, at 20,000 rows, 40,000, 80,000...

        Right after a bulk load the planner has no statistics yet (autovacuum gets there a
        minute or so later) and guesses that ``tenant = ?`` matches a handful of rows, which
        turns id lookups into scans of the whole tenant. ANALYZE samples the table and
        takes a fraction of a second; doubling the threshold keeps it rare.
        """
        if self.store.dialect != "postgresql" or not rows:
            return
        self._written += rows
        if self._written < self._analyze_at:
            return
        self._analyze_at = 2 * self._written
        with translated(self.store.where), self.store.engine.connect() as conn:
            conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(self.table.name)}")

    def replace(self, tenant: str, record: Any, expected_version: int) -> bool:
        values = self.convert.to_row(record)
        del values["id"]
        values.update(p_tenant=tenant, p_id=record.id, p_version=expected_version)
        try:
            with self.store.connection(atomic=True, entity=self.spec.label) as conn:
                return conn.execute(self._replace, values).rowcount == 1
        except ConflictError as exc:
            if exc.transient:
                raise
            explained = explain_conflict(self.spec, self.table, [record], exc)
            if explained is not exc:
                raise explained from exc
            ext = getattr(record, "external_id", None)
            raise ConflictError(
                f"{self.spec.label} with external_id {ext!r} already exists", entity=self.spec.label, key=ext
            ) from exc

    def replace_many(self, tenant: str, records: Sequence[Any], expected_versions: Sequence[int]) -> set[uuid.UUID]:
        """One ``executemany`` of the versioned ``UPDATE``; the rows it missed are found by reading them back."""
        if len(records) != len(expected_versions):
            raise ValueError("replace_many takes one expected version per record")
        if not records:
            return set()
        to_row = self.convert.to_row
        params = []
        for record, version in zip(records, expected_versions, strict=True):
            values = to_row(record)
            del values["id"]
            values.update(p_tenant=tenant, p_id=record.id, p_version=version)
            params.append(values)
        try:
            with self.store.connection(atomic=True, several=True, entity=self.spec.label) as conn:
                result = conn.execute(self._replace, params)
                written = result.rowcount if conn.dialect.supports_sane_multi_rowcount else -1
        except ConflictError as exc:
            if exc.transient:
                raise
            explained = explain_conflict(self.spec, self.table, records, exc)
            if explained is not exc:
                raise explained from exc
            raise self._conflict(tenant, records, exc) from exc
        if written == len(records):
            return set()
        # Some version had moved: a row this call wrote now equals its record, a missed one does not.
        stored = {r.id: r for r in self.find(tenant, In("id", tuple(r.id for r in records)), self._by_id, None)}
        return {r.id for r in records if stored.get(r.id) != r}

    def compare_stored(self, tenant: str, records: Sequence[Any]) -> dict[str, tuple[uuid.UUID, int, bool]]:
        """Compared in the database: the batch staged in a temporary table and joined to the table (``_ingest``)."""
        if not self.spec.has_external_id or not records:
            return {}
        from crmkit_sqlalchemy._ingest import compare_stored

        with self.store.connection(atomic=True, several=True, entity=self.spec.label) as conn:
            return compare_stored(self, conn, tenant, records)

    def delete(self, tenant: str, id: uuid.UUID, expected_version: int | None = None) -> bool:
        if expected_version is None:
            statement, params = self._delete, {"p_tenant": tenant, "p_id": id}
        else:
            statement, params = self._delete_version, {"p_tenant": tenant, "p_id": id, "p_version": expected_version}
        with self.store.connection() as conn:
            return conn.execute(statement, params).rowcount == 1

    def delete_where(self, tenant: str, where: Expr) -> int:
        statement = self.table.delete().where(self.compiler.where(tenant, where))
        with self.store.connection() as conn:
            return int(conn.execute(statement).rowcount)

    # ------------------------------------------------------------------ reads
    def _raw_select(self, statement: sa.Select[Any]) -> RawSelect:
        """The compiled form of one of the statements built once (``_get``, ``_shapes``)."""
        entry = self._raw_selects.get(id(statement))
        if entry is None or entry[0] is not statement:
            if len(self._raw_selects) > 64:
                self._raw_selects.clear()
            raw = RawSelect(statement, self.store.engine.dialect, self.convert.plan)
            entry = self._raw_selects[id(statement)] = (statement, raw)
        return entry[1]

    def _raw_records(self, raw: RawSelect, values: Mapping[str, Any]) -> list[Any]:
        """The records ``raw`` reads, on the thread's transaction if it has one, else on a pooled connection."""
        store = self.store
        current = store.current
        try:
            if current is not None:
                rows = raw.rows(current.connection, values)
            else:
                with store._lock():
                    dbapi = store.engine.raw_connection()
                    try:
                        rows = raw.rows(dbapi, values)
                    except Exception as exc:
                        if store.engine.dialect.is_disconnect(exc, dbapi.dbapi_connection, None):
                            dbapi.invalidate(exc)  # as SQLAlchemy's own execute would: connect anew next time
                        raise
                    finally:
                        dbapi.close()
        except Exception:
            with translated(store.where):  # driver errors in crmkit's words, as everywhere else
                raise
        if raw.builds_records:
            return rows
        from_row = self.convert.from_row
        return [from_row(row) for row in rows]

    def get(self, tenant: str, id: uuid.UUID) -> Any | None:
        if self._raw:
            found = self._raw_records(self._raw_select(self._get), {"p_tenant": tenant, "p_id": id})
            return found[0] if found else None
        with self.store.connection() as conn:
            found = self._records(conn.execute(self._get, {"p_tenant": tenant, "p_id": id}))
        return found[0] if found else None

    def get_by_external_id(self, tenant: str, external_id: str) -> Any | None:
        if self._get_external is None or "\x00" in external_id:  # stored text never holds NUL
            return None
        with self.store.connection() as conn:
            found = self._records(conn.execute(self._get_external, {"p_tenant": tenant, "p_external": external_id}))
        return found[0] if found else None

    def count(self, tenant: str, where: Expr) -> int:
        statement = sa.select(sa.func.count()).select_from(self.table).where(self.compiler.where(tenant, where))
        with self.store.connection() as conn:
            return int(conn.execute(statement).scalar_one())

    def aggregate(self, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
        return aggregate(self, tenant, where, query)

    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[Any]:
        prepared = self._prepared_find(where, order, limit)
        if prepared is not None:
            statement, params = prepared
            params.update(p_tenant=tenant, p_limit=limit)
            if self._raw:
                return self._raw_records(self._raw_select(statement), params)
            with self.store.connection() as conn:
                return self._records(conn.execute(statement, params))
        statement = self._select(tenant, where).order_by(*self.compiler.order_by(order))
        if limit is not None:
            statement = statement.limit(limit)
        with self.store.connection() as conn:
            return self._records(conn.execute(statement))

    def _prepared_find(
        self, where: Expr, order: Order, limit: int | None
    ) -> tuple[sa.Select[Any], dict[str, Any]] | None:
        """For the common shapes of a condition, a statement built once and its parameters.

        Customer 360 reads and timelines ask the same shape over and over
        (``customer_id = ?`` newest first), a type-ahead box one search a keystroke; building
        and hashing the SQLAlchemy expression is then most of the cost of a call. A shape is
        a conjunction of equalities with a value (never NULL-sensitive, so the plain
        ``col = :v`` is exact), at most one search (a prefix, ``startswith``, as a range on
        the folded shadow or on the text itself; or ``matches``, each word looked up in the
        word index) and semi-joins (``F(f).in_(Select(...))``) whose own condition is such a
        shape, e.g. a search on a derived field through ``search_terms``. Anything else is
        compiled afresh (``Compiler``).
        """
        params: dict[str, Any] = {}
        shape = self._shape(self.spec, where, "p", params, None)
        if shape is None:
            return None
        key = (shape, order.keys, limit is None)
        statement = self._shapes.get(key)
        if statement is None:
            if len(self._shapes) > 64:  # shapes come from code, not data; keep the cache small anyway
                self._shapes.clear()
            t = self.table
            conditions: list[sa.ColumnElement[bool]] = [t.c.tenant == sa.bindparam("p_tenant")]
            self._shape(self.spec, where, "p", {}, (self.compiler, conditions))
            terms = self.compiler.order_by(order)
            statement = sa.select(*self._columns).where(*conditions).order_by(*terms)
            if limit is not None:
                statement = statement.limit(sa.bindparam("p_limit", type_=sa.BigInteger()))  # limit + 1 may pass 2**31
            searches = any(part[0] in ("prefix", "words") for part in shape)
            semi_joins = self.store.dialect == "postgresql" and any(part[0] == "in" for part in shape)
            if limit is not None and (searches or semi_joins):
                # A short prefix or a common word matches thousands: pick the page's ids from
                # the index on (tenant, folded, id) alone, then read just those rows (a
                # "deferred join"), instead of reading every match to sort it. So for a
                # semi-join on PostgreSQL, which otherwise reads every row whose id the
                # sub-query returns before it sorts them (SQLite walks the sub-query's ids in
                # order and reads only the page's rows already).
                page = statement.with_only_columns(t.c.id).scalar_subquery()
                statement = (
                    sa.select(*self._columns)
                    .where(t.c.tenant == sa.bindparam("p_tenant"), t.c.id.in_(page))
                    .order_by(*terms)
                )
            self._shapes[key] = statement
        return statement, params

    def _shape(
        self,
        spec: EntitySpec,
        where: Expr,
        prefix: str,
        params: dict[str, Any],
        build: tuple[Compiler, list[sa.ColumnElement[bool]]] | None,
    ) -> tuple[tuple[Any, ...], ...] | None:
        """The shape of ``where`` on ``spec`` (None: not one ``_prepared_find`` prepares), its values put
        in ``params`` under names that start with ``prefix``; with ``build`` (a compiler of the table
        and a list), the conditions on bound parameters of those names are appended to the list."""
        parts = [] if isinstance(where, All) else list(conjuncts(where))
        shape: list[tuple[Any, ...]] = []
        searched = False
        for i, part in enumerate(parts):
            name = f"{prefix}{i}"
            if isinstance(part, StartsWith) and not searched:
                end = prefix_end(part.prefix) if isinstance(part.prefix, str) else None
                field = spec.field(part.field)
                if end is None or field is None or field.kind != "text" or "\x00" in part.prefix:
                    return None
                searched = True
                shape.append(("prefix", part.field, part.fold))
                params.update({name: part.prefix, f"{name}_end": end})
                if build is not None:
                    compiler, conditions = build
                    column = compiler.table.c[shadow_column(part.field)] if part.fold else compiler.column(part.field)
                    low, high = sa.bindparam(name, type_=Text), sa.bindparam(f"{name}_end", type_=Text)
                    conditions.append(compiler._guard(part.field, sa.and_(column >= low, column < high)))
                continue
            if isinstance(part, Matches) and not searched:
                searched = True
                shape.append(("words", part.field, len(part.words)))
                params.update({f"{name}_{j}": w for j, w in enumerate(part.words)})
                if build is not None:
                    compiler, conditions = build
                    words = [sa.bindparam(f"{name}_{j}", type_=sa.Text()) for j in range(len(part.words))]
                    found = compiler.words(part.field, sa.bindparam("p_tenant"), words)
                    conditions.append(compiler._guard(part.field, found))
                continue
            if isinstance(part, InSelect):
                select = part.select
                if select.spec is None or select.having is not None or select.first_by is not None:
                    return None  # grouped and first-of-group sub-queries are the compiler's
                if select.field not in select.spec.fields:
                    return None
                inner_build = None
                if build is not None:
                    tables = self.compiler.tables
                    assert tables is not None
                    other = tables(select.spec).alias()
                    inner = Compiler(other, select.spec, self.store.dialect, tables)
                    inner_build = (inner, [other.c.tenant == sa.bindparam("p_tenant")])
                inner_shape = self._shape(select.spec, select.where, f"{name}_", params, inner_build)
                if inner_shape is None:
                    return None
                shape.append(("in", part.field, select.spec.name, select.field, inner_shape))
                if build is not None and inner_build is not None:
                    compiler, conditions = build
                    inner, on_inner = inner_build
                    values = sa.select(inner.sortable(select.field)).where(*on_inner)
                    if select.spec.fields[select.field].nullable:
                        values = values.where(inner.column(select.field).is_not(None))
                    values = values.correlate(None)  # the tenant is bound: run once per statement
                    conditions.append(compiler._guard(part.field, compiler.sortable(part.field).in_(values)))
                continue
            if not (isinstance(part, Compare) and part.op == "==" and part.value is not None):
                return None
            if isinstance(part.value, str) and "\x00" in part.value:
                return None  # the compiler knows what NUL means (PostgreSQL cannot bind it)
            field = spec.field(part.field)
            if field is None or field.kind not in _PREPARED_KINDS or part.field.startswith("attributes."):
                return None
            shape.append(("eq", part.field))
            params[name] = part.value
            if build is not None:
                compiler, conditions = build
                conditions.append(compiler.column(part.field) == sa.bindparam(name))
        return tuple(shape)

    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        with self.store.connection() as conn:
            return self.stored_keys(conn, tenant, "id", ids)

    def stored_keys(self, conn: sa.Connection, tenant: str, column: str, keys: Iterable[K]) -> set[K]:
        """Which of ``keys`` (UUIDs of ``id``, strings of ``external_id``) the tenant has stored.

        Bulk imports ask this per batch, so it bypasses SQLAlchemy's statement and result
        machinery: one driver statement per 10,000 keys, the keys passed as one text parameter
        (a PostgreSQL array literal, or JSON for SQLite's json_each), probing the unique index,
        and only the keys *not* stored come back, usually none. (Binding a list of UUIDs made
        psycopg spend 5 ms per 1,000 adapting them, and PostgreSQL plans ``= ANY(array)`` on
        a table without statistics as a scan.)
        """
        pg = self.store.dialect == "postgresql"
        by_text: dict[str, K] = {(k.hex if column == "id" else k): k for k in keys}  # type: ignore[attr-defined]
        quote = conn.dialect.identifier_preparer.quote
        table, name = quote(self.table.name), quote(column)
        texts = list(by_text)
        missing: set[str] = set()
        for start in range(0, len(texts), _KEYS_PER_QUERY):
            chunk = texts[start : start + _KEYS_PER_QUERY]
            if pg:
                key = "k.key::uuid" if column == "id" else 'k.key COLLATE "C"'
                sql = (
                    f"SELECT k.key FROM unnest(%(keys)s::text[]) AS k(key) WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {table} AS t WHERE t.tenant = %(tenant)s AND t.{name} = {key})"
                )
                result = conn.exec_driver_sql(sql, {"tenant": tenant, "keys": _array_literal(chunk)})
            else:
                sql = (
                    f"SELECT k.value FROM json_each(?) AS k WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {table} AS t WHERE t.tenant = ? AND t.{name} = k.value)"
                )
                result = conn.exec_driver_sql(sql, (json.dumps(chunk, ensure_ascii=False), tenant))
            missing.update(row[0] for row in result.fetchall())
        if not missing:
            return set(by_text.values())
        return {k for text, k in by_text.items() if text not in missing}

    def activity(self, tenant: str, customer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Activity]:
        field, time_field = self.spec.customer_field, self.spec.time_field
        if field is None or time_field is None:
            raise TypeError(f"{self.spec.name} are not kept per customer")
        t = self.table
        owner, at = t.c[field], t.c[time_field]
        out: dict[uuid.UUID, Activity] = {}
        unique = list(dict.fromkeys(customer_ids))
        with self.store.connection() as conn:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                statement = (
                    sa.select(owner, sa.func.count(), sa.func.min(at), sa.func.max(at))
                    .where(t.c.tenant == tenant, self.compiler.expr(In(field, tuple(chunk))))
                    .group_by(owner)
                )
                for cid, n, first, last in conn.execute(statement):
                    out[cid] = Activity(int(n), first, last)
        return out


class SqlStore(Store):
    """A SQLite file, an in-memory SQLite database or a PostgreSQL database, shared by every tenant."""

    def __init__(self, engine: sa.Engine, url: URL, options: Options) -> None:
        self.engine = engine
        self.sa_url = url
        self.options = options
        self.dialect = engine.dialect.name
        self.where = Where(url)
        self.in_memory = self.dialect == "sqlite" and url.database in (None, "", ":memory:")
        self.capabilities = Capabilities(
            transactions=True,
            concurrent_writers=True,
            persistent=not self.in_memory,
            server=self.dialect == "postgresql",
        )
        self._local = threading.local()
        # one connection holds an in-memory database: let one thread use it at a time
        self._serial: threading.RLock | None = threading.RLock() if self.in_memory else None
        self._repos = {spec.name: SqlRepository(self, spec) for spec in ENTITIES.values()}
        self._serving = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return self.sa_url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"<SqlStore {self.url}>"

    def migrate(self, schema: Schema) -> str:
        """Run crmkit's revisions and every plugin branch, and create missing declared tables."""
        from crmkit_sqlalchemy._derived import declared_table
        from crmkit_sqlalchemy._migrate import upgrade_engine

        tables = [declared_table(spec) for spec in schema.derived.values()]
        with translated(self.where):
            revision = upgrade_engine(self.engine, tables, where=self.where.text)
        self.serve(list(schema.derived.values()), ensure=False)
        return f"crmkit schema revision {revision}; tables of {len(tables)} declared aggregates present"

    def repository(self, spec: EntitySpec) -> SqlRepository:
        repo = self._repos.get(spec.name)
        if repo is None or repo.spec is not spec:
            return self.serve([spec])[0]
        return repo

    def serve(self, specs: Sequence[EntitySpec], *, ensure: bool = True) -> list[SqlRepository]:
        """Repositories for declared aggregates, their tables created first when missing (as ``upgrade`` allows).

        ``ensure=False``: the caller has just made sure the tables are there.
        """
        from crmkit_sqlalchemy._derived import declared_table
        from crmkit_sqlalchemy._migrate import ensure_declared

        with self._serving:
            new: list[AggregateSpec] = []
            for spec in specs:
                served = self._repos.get(spec.name)
                if served is not None and served.spec is spec:
                    continue
                if served is not None and served.spec != spec:
                    raise PluginError(
                        f"this store already serves an aggregate named {spec.name!r} "
                        f"({served.spec.cls.__qualname__}); {spec.cls.__qualname__} is another one"
                    )
                if not (isinstance(spec, AggregateSpec) and spec.derived):
                    raise PluginError(f"{spec.name!r} is not an aggregate crmkit-sqlalchemy knows")
                new.append(spec)
            if new and ensure:
                tables = [declared_table(s) for s in new]
                with translated(self.where):
                    ensure_declared(self.engine, tables, upgrade=self.options.upgrade, where=self.where.text)
            for spec in new:
                self._repos[spec.name] = SqlRepository(self, spec)
            return [self._repos[s.name] for s in specs]

    # ------------------------------------------------------------------ connections
    def _lock(self) -> threading.RLock | nullcontext[None]:
        return self._serial if self._serial is not None else nullcontext()

    @property
    def current(self) -> sa.Connection | None:
        """The connection of the calling thread's open transaction, if any."""
        return getattr(self._local, "connection", None)

    @contextmanager
    def connection(
        self, *, atomic: bool = False, several: bool = False, entity: str | None = None
    ) -> Iterator[sa.Connection]:
        """A connection for one repository call: the thread's transaction if it has one, else its own.

        Outside a transaction, a call that sends one statement runs it in autocommit mode (no
        BEGIN / COMMIT round trips); ``several`` statements that must apply together get a
        transaction of their own (``BEGIN IMMEDIATE`` on SQLite: they write). Inside a
        transaction, ``atomic`` wraps the call in a SAVEPOINT, so that a failed write leaves
        nothing behind and the transaction stays usable.
        """
        current = self.current
        if current is not None:
            with translated(self.where, entity=entity):
                if atomic:
                    with current.begin_nested():
                        yield current
                else:
                    yield current
            return
        with self._lock(), translated(self.where, entity=entity), self.engine.connect() as conn:
            if several:
                self._transactional(conn)
            elif self.dialect == "sqlite":
                conn.execution_options(crmkit_autocommit=True)
            with conn.begin():
                yield conn

    def _transactional(self, conn: sa.Connection) -> None:
        """Make ``conn`` run a real transaction (connections are in autocommit mode by default)."""
        if self.dialect == "sqlite":
            conn.execution_options(crmkit_immediate=True)
        else:
            conn.execution_options(isolation_level="READ COMMITTED")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.current is not None:  # already inside one on this thread: join it
            yield
            return
        with self._lock():
            with translated(self.where):
                conn = self.engine.connect()
            try:
                with translated(self.where):
                    self._transactional(conn)
                    txn = conn.begin()
                self._local.connection = conn
                try:
                    yield
                except BaseException:
                    self._local.connection = None
                    try:
                        txn.rollback()
                    except Exception:  # connection lost: the server has dropped the transaction already
                        pass
                    raise
                self._local.connection = None
                with translated(self.where):
                    txn.commit()
            finally:
                self._local.connection = None
                try:
                    conn.close()
                except Exception:
                    pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.dispose()

    # ------------------------------------------------------------------ push-down
    def traverse(
        self,
        tenant: str,
        start: uuid.UUID,
        kinds: frozenset[str],
        direction: str,
        depth: int,
        as_of: Any,
    ) -> list[Any]:
        from crmkit_sqlalchemy._traverse import traverse

        return traverse(self, tenant, start, kinds, direction, depth, as_of)


def _json_dumps(value: Any) -> str:
    # module level: psycopg keeps a reference to the serializer for the process
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def engine_options(url: URL, options: Options) -> Mapping[str, Any]:
    """create_engine keyword arguments for a URL."""
    kwargs: dict[str, Any] = {"echo": options.echo, "json_serializer": _json_dumps}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            kwargs.update(poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs.update(
                poolclass=sa.pool.QueuePool,
                pool_size=options.pool_size,
                max_overflow=options.max_overflow,
                pool_timeout=options.pool_timeout,
                connect_args={"check_same_thread": False, "timeout": options.busy_timeout},
            )
    else:
        kwargs.update(
            isolation_level="AUTOCOMMIT",  # single statements need no BEGIN / COMMIT round trips
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            pool_timeout=options.pool_timeout,
            pool_recycle=options.pool_recycle,
            connect_args={
                "connect_timeout": options.connect_timeout,
                "options": "-c timezone=UTC",
                "application_name": "crmkit",
            },
        )
    return kwargs


def install_sqlite_pragmas(
    engine: sa.Engine, busy_timeout: float, *, in_memory: bool, cache_mb: int = 64, checkpoint_mb: int = 64
) -> None:
    """WAL, busy timeout, foreign keys, page cache; and crmkit, not the driver, decides when transactions begin.

    SQLite's default checkpoint size (1,000 pages, about 4 MB) makes a writer that commits
    often, such as an import committing every batch, copy the log back and fsync twice
    every few commits; with the larger default here a 50,000-row import in batches of
    1,000 ran about a quarter faster (16,400 to 20,800 rows a second).
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the sqlite3 module must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                (page_size,) = cursor.execute("PRAGMA page_size").fetchone()
                cursor.execute(f"PRAGMA wal_autocheckpoint={max(1, int(checkpoint_mb) * 1024 * 1024 // page_size)}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # SQLite's default page cache is 2 MB: too small for the indexes of a CRM's history
            cursor.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # erased or deleted data is overwritten with zeros, not left in free pages of the file
            cursor.execute("PRAGMA secure_delete=ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("crmkit_autocommit", False):
            return  # one statement: SQLite runs it in a transaction of its own
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("crmkit_immediate", False) else "BEGIN")


def install_idle_ping(engine: sa.Engine, idle_seconds: float) -> None:
    """Check a pooled connection with a round trip before use if it sat idle longer than ``idle_seconds``.

    A connection the server closed while it was idle is then replaced transparently (the
    pool retries with a new one); one used moments ago is trusted, which saves a round trip
    on every call under load. Should a connection die within that window, the failing call
    raises BackendError and SQLAlchemy invalidates the pool, so the next call reconnects.
    """

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["crmkit_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("crmkit_idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as exc:  # a dead connection: the pool discards it and connects anew
            raise sa.exc.DisconnectionError(str(exc)) from exc


def open_store(url: URL, options: Options, schema: Schema | None = None) -> SqlStore:
    """Create the engine, check (or create / upgrade) the schema, and return the store.

    The tables of the declared aggregates of ``schema`` are created with the rest when
    missing (in the same locked transaction), or named in a BackendError with ``upgrade=False``.
    """
    from crmkit_sqlalchemy._derived import declared_table
    from crmkit_sqlalchemy._migrate import ensure_schema

    declared = list(schema.derived.values()) if schema is not None else []
    tables = [declared_table(spec) for spec in declared]  # a declaration SQL cannot hold fails here

    where = Where(url)
    with translated(where):
        engine = sa.create_engine(url, **engine_options(url, options))
    store = SqlStore(engine, url, options)
    if store.dialect == "sqlite":
        install_sqlite_pragmas(
            engine,
            options.busy_timeout,
            in_memory=store.in_memory,
            cache_mb=options.cache_mb,
            checkpoint_mb=options.checkpoint_mb,
        )
    else:
        install_idle_ping(engine, options.ping_after)
    try:
        with translated(where):
            ensure_schema(engine, upgrade=options.upgrade, where=where.text, declared=tables)
        store.serve(declared, ensure=False)
    except BaseException:
        engine.dispose()
        raise
    return store

"""Word indexes: what lets ``F(field).matches(query)`` look its words up instead of scanning.

Every text field declared ``schema.text(search=True)`` has its folded form in a shadow
column ``<field>_folded`` (``_schema.shadow_column``): the words of ``crmkit.search.fold``
separated by one space. ``matches`` asks whether each query word is one of those words,
which a B-tree on the whole folded text cannot answer. So every such column also gets a
word index, derived here from the table alone (crmkit's own tables and every declared
aggregate's alike), and kept in step by the database itself on every write, whichever
statement makes it (insert, bulk insert, COPY, update, delete):

* PostgreSQL: a GIN index on the expression ``string_to_array(<field>_folded, ' ')``;
  a query asks ``string_to_array(<field>_folded, ' ') @> ARRAY[words]``, the same
  expression, which the index serves.
* SQLite: a table ``<table>__<field>_words`` of (tenant, word, id), its primary key in
  that order (``WITHOUT ROWID``); a query asks ``id IN (SELECT id FROM words WHERE
  tenant = ? AND word = ?)`` per word. Triggers keep it after every update of the folded
  column and every delete; the folded text holds only letters, digits and single spaces,
  so they split it as a JSON array (``json_each``). Inserts are the exception: the
  store's two insert statements (``SqlRepository.insert``, the bulk ``_ingest``) add the
  words of the rows they wrote with ``add``, one statement per batch in the same
  transaction, sorted by word. A trigger per inserted row cost a bulk import of a table
  with two searchable fields about four times the import itself; the batch's words,
  sorted, go into the key's pages in order at about half that.

They are not in the table metadata (they differ per database): ``ensure`` creates any
that is missing, and fills it from the stored rows, whenever the schema is created or
upgraded (``_migrate.upgrade_engine``); ``missing`` tells ``ensure_schema`` whether that is
needed. A SQLite table rebuilt by a migration loses its triggers: they are recreated, and
the words refilled, the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from crmkit_sqlalchemy._schema import SHADOW, shadow_column

__all__ = [
    "add",
    "ensure",
    "index_name",
    "index_names",
    "is_word_table",
    "missing",
    "searched",
    "word_table",
    "words_of",
]

_MAX_IDENTIFIER = 63


def searched(table: sa.Table) -> list[str]:
    """The folded shadow columns of a table (one per searchable field), in column order."""
    return [c.name for c in table.c if SHADOW in c.info]


def _short(name: str) -> str:
    """``name``, or a shortened one ending in a digest when PostgreSQL would cut it."""
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_IDENTIFIER - 9]}_{digest}"


def index_name(table: str, column: str) -> str:
    """The name of the PostgreSQL GIN index of a folded column's words."""
    return _short(f"ix_{table}_{column}_words")


def _word_table_name(table: str, column: str) -> str:
    return f"{table}__{column}_words"


def word_table(table: sa.Table, column: str) -> sa.Table:
    """The SQLite table of a folded column's words (tenant, word, id), for queries."""
    return sa.Table(
        _word_table_name(table.name, column),
        sa.MetaData(),
        sa.Column("tenant", sa.String(100)),
        sa.Column("word", sa.Text()),
        sa.Column("id", table.c.id.type),
    )


def words_of(column: sa.ColumnElement[str]) -> sa.ColumnElement[object]:
    """PostgreSQL: the expression the GIN index is on (a query must use it exactly so)."""
    return sa.func.string_to_array(column, sa.literal_column("' '"))


def index_names(tables: Iterable[sa.Table]) -> set[str]:
    """The names of the PostgreSQL word indexes of ``tables``."""
    return {index_name(table.name, column) for table in tables for column in searched(table)}


def is_word_table(name: str | None) -> bool:
    """Whether a table is a SQLite word table (``<table>__<field>_folded_words``)."""
    return name is not None and "__" in name and name.endswith(f"{shadow_column('')}_words")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _json_words(value: str) -> str:
    """SQLite: a folded text (``value``, an SQL expression) as a JSON array of its words."""
    return f"""json_each('["' || replace({value}, ' ', '","') || '"]')"""


def _sqlite_objects(table: str, column: str) -> list[tuple[str, str, str]]:
    """(type, name, DDL) of the words table of ``table.column`` and its three triggers."""
    words = _word_table_name(table, column)
    t, w, c = _q(table), _q(words), _q(column)

    def put(row: str) -> str:
        return (
            f"INSERT OR IGNORE INTO {w} (tenant, word, id) SELECT DISTINCT {row}.tenant, j.value, {row}.id "
            f"FROM {_json_words(f'{row}.{c}')} AS j WHERE j.value <> '';"
        )

    def drop(row: str) -> str:
        return (
            f"DELETE FROM {w} WHERE tenant = {row}.tenant AND id = {row}.id "
            f"AND word IN (SELECT j.value FROM {_json_words(f'{row}.{c}')} AS j);"
        )

    return [
        (
            "table",
            words,
            f"CREATE TABLE {w} (tenant VARCHAR(100) NOT NULL, word TEXT NOT NULL, id CHAR(32) NOT NULL, "
            "PRIMARY KEY (tenant, word, id)) WITHOUT ROWID",
        ),
        (
            "trigger",
            f"{words}_update",
            f"CREATE TRIGGER {_q(words + '_update')} AFTER UPDATE OF {c} ON {t} "
            f"WHEN old.{c} IS NOT new.{c} OR old.tenant IS NOT new.tenant OR old.id IS NOT new.id "
            f"BEGIN {drop('old')} {put('new')} END",
        ),
        (
            "trigger",
            f"{words}_delete",
            f"CREATE TRIGGER {_q(words + '_delete')} AFTER DELETE ON {t} BEGIN {drop('old')} END",
        ),
    ]


def _retired(table: str, column: str) -> str:
    """The trigger that kept the words of inserted rows before ``add`` did (dropped on upgrade)."""
    return f"{_word_table_name(table, column)}_insert"


def add(
    connection: sa.Connection, table: sa.Table, tenant: str, ids: Sequence[str], folded: dict[str, Sequence[object]]
) -> None:
    """SQLite: put the words of rows just inserted into their tables; ``ids`` in their stored form (hex),
    ``folded`` the folded texts of each searchable column, in the order of ``ids`` (None: no words)."""
    for column, texts in folded.items():
        pairs = sorted({(w, i) for i, text in zip(ids, texts, strict=True) if text for w in str(text).split(" ") if w})
        if pairs:
            connection.exec_driver_sql(
                f"INSERT OR IGNORE INTO {_q(_word_table_name(table.name, column))} (tenant, word, id) VALUES (?, ?, ?)",
                [(tenant, w, i) for w, i in pairs],
            )


def _existing(connection: sa.Connection) -> set[tuple[str, str]]:
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(
            "SELECT 'index', indexname FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()
    else:
        rows = connection.exec_driver_sql(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'trigger')"
        ).fetchall()
    return {(str(kind), str(name)) for kind, name in rows}


def _wanted(dialect: str, table: sa.Table, column: str) -> list[tuple[str, str, str]]:
    if dialect == "postgresql":
        name = index_name(table.name, column)
        ddl = f"CREATE INDEX {_q(name)} ON {_q(table.name)} USING gin (string_to_array({_q(column)}, ' '))"
        return [("index", name, ddl)]
    return _sqlite_objects(table.name, column)


def missing(connection: sa.Connection, tables: Iterable[sa.Table]) -> list[tuple[sa.Table, str]]:
    """The (table, folded column) pairs of existing tables whose word index is missing or incomplete."""
    dialect = connection.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return []
    wanted = [(t, c) for t in tables for c in searched(t)]
    if not wanted:
        return []
    have = _existing(connection)
    tables_present = {name for kind, name in have if kind == "table"}
    if dialect == "postgresql":
        tables_present = set(sa.inspect(connection).get_table_names())
    out = []
    for table, column in wanted:
        if table.name not in tables_present:
            continue  # created later, with its word index
        if any((kind, name) not in have for kind, name, _ in _wanted(dialect, table, column)) or (
            dialect == "sqlite" and ("trigger", _retired(table.name, column)) in have
        ):
            out.append((table, column))
    return out


def ensure(connection: sa.Connection, tables: Sequence[sa.Table]) -> None:
    """Inside the schema's locked transaction: create every missing word index and fill it from the rows."""
    dialect = connection.dialect.name
    for table, column in missing(connection, tables):
        if dialect == "postgresql":
            for _, _, ddl in _wanted(dialect, table, column):
                connection.exec_driver_sql(ddl)  # PostgreSQL fills the index from the rows itself
            continue
        objects = _sqlite_objects(table.name, column)
        for kind, name, _ in [*objects, ("trigger", _retired(table.name, column), "")]:
            # a half-present set (a rebuilt table lost its triggers), or an older one: start afresh
            connection.exec_driver_sql(f"DROP {kind.upper()} IF EXISTS {_q(name)}")
        for _, _, ddl in objects:
            connection.exec_driver_sql(ddl)
        words, t, c = _q(_word_table_name(table.name, column)), _q(table.name), _q(column)
        connection.exec_driver_sql(
            f"INSERT OR IGNORE INTO {words} (tenant, word, id) SELECT r.tenant, j.value, r.id "
            f"FROM {t} AS r, {_json_words(f'r.{c}')} AS j WHERE j.value <> ''"
        )

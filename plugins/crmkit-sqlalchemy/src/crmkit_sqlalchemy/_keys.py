"""Unique keys and indexes a declaration gained after its table was created.

A table of a declared aggregate is created from its declaration (``_derived``) with every
unique key and index it names. A declaration that later gains a key (``unique=[...]``,
``indexes=[...]``, a reference, a time field) does not change the table's columns, so no
migration is due, but the database would not keep the new rule. ``missing`` finds, per
existing table, the declared unique constraints and indexes the database lacks (compared by
their columns, whatever their names); ``ensure`` creates them inside the schema's locked
transaction (``_migrate.upgrade_engine``, run by ``upgrade``, ``crm.migrate()`` and a connect
with ``upgrade=True``):

* a unique key is checked first: when stored rows already repeat it, nothing is created and
  a ConflictError names the aggregate, the key and the repeated values (rows with a missing
  part never clash, as the database has it);
* PostgreSQL adds it as the named constraint the declaration derives; SQLite, which cannot
  add a constraint to a table, as a unique index of that name (it refuses the same writes
  with the same message);
* indexes are created as declared.

All of it, for every table, or none of it: the transaction holds the checks and the DDL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from crmkit._errors import ConflictError
from crmkit.schema import AggregateSpec

__all__ = ["Missing", "ensure", "missing", "same_keys"]

#: (table, the constraint or index it lacks)
Missing = tuple[sa.Table, "sa.UniqueConstraint | sa.Index"]

_SHOWN = 5


def _columns(item: sa.UniqueConstraint | sa.Index) -> tuple[str, ...]:
    return tuple(c.name for c in item.columns)


def _wanted(table: sa.Table) -> list[sa.UniqueConstraint | sa.Index]:
    out: list[sa.UniqueConstraint | sa.Index] = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    out += sorted(table.indexes, key=lambda i: str(i.name))
    return out


def missing(connection: sa.Connection, tables: Iterable[sa.Table]) -> list[Missing]:
    """The declared unique constraints and indexes that the existing ``tables`` lack (missing tables are skipped:
    they are created whole)."""
    inspector = sa.inspect(connection)
    existing = set(inspector.get_table_names())
    present = [t for t in tables if t.name in existing]
    if not present:
        return []
    names = [t.name for t in present]
    uniques = inspector.get_multi_unique_constraints(filter_names=names)
    indexes = inspector.get_multi_indexes(filter_names=names)
    out: list[Missing] = []
    for table in present:
        have_unique: set[tuple[Any, ...]] = {tuple(u["column_names"]) for u in uniques.get((None, table.name), [])}
        have_index: set[tuple[Any, ...]] = set()
        for index in indexes.get((None, table.name), []):
            columns = tuple(index["column_names"])
            (have_unique if index.get("unique") else have_index).add(columns)
        have_index |= have_unique  # a unique key also serves the look-ups of an index on its columns
        for item in _wanted(table):
            wanted = _columns(item)
            unique = isinstance(item, sa.UniqueConstraint) or bool(item.unique)
            if wanted not in (have_unique if unique else have_index):
                out.append((table, item))
    return out


def _key_fields(table: sa.Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The declared field names of a unique key's columns (its columns when no declared key has them)."""
    from crmkit_sqlalchemy._derived import columns_of

    spec = table.info.get("crmkit_spec")
    if isinstance(spec, AggregateSpec):
        for key in spec.unique:
            if columns == ("tenant", *(c for name in key for c in columns_of(spec, name))):
                return key
    return tuple(c for c in columns if c != "tenant")


def _repeated(connection: sa.Connection, table: sa.Table, columns: tuple[str, ...]) -> tuple[list[Any], int]:
    """Up to a few of the values of ``columns`` that stored rows repeat, and how many values are repeated."""
    cols = [table.c[name] for name in columns]
    groups = (
        sa.select(*cols, sa.func.count().label("n"))
        .where(*(c.is_not(None) for c in cols))
        .group_by(*cols)
        .having(sa.func.count() > 1)
        .subquery()
    )
    shown = connection.execute(sa.select(groups).limit(_SHOWN)).fetchall()
    if not shown:
        return [], 0
    total = int(connection.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one())
    return list(shown), total


def _refuse(table: sa.Table, columns: tuple[str, ...], rows: list[Any], total: int) -> ConflictError:
    spec = table.info.get("crmkit_spec")
    label = f"{table.name} ({spec.label})" if isinstance(spec, AggregateSpec) else table.name
    fields = _key_fields(table, columns)
    shown = "; ".join(
        ", ".join(f"{name}={value!r}" for name, value in zip(columns, row[:-1], strict=True)) + f" ({row[-1]} records)"
        for row in rows
    )
    more = f" and {total - len(rows)} more" if total > len(rows) else ""
    return ConflictError(
        f"cannot add the unique key ({', '.join(fields)}) of the aggregate {label}: stored records repeat it "
        f"({shown}{more}); merge or remove the duplicates, then upgrade again (nothing was changed)",
        entity=label,
        key=fields,
    )


def _create(connection: sa.Connection, table: sa.Table, item: sa.UniqueConstraint | sa.Index) -> None:
    if isinstance(item, sa.Index):
        connection.execute(sa.schema.CreateIndex(item))
        return
    if connection.dialect.name == "postgresql":
        connection.execute(sa.schema.AddConstraint(item))
        return
    quote = connection.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in _columns(item))
    connection.exec_driver_sql(f"CREATE UNIQUE INDEX {quote(str(item.name))} ON {quote(table.name)} ({columns})")


def ensure(connection: sa.Connection, tables: Sequence[sa.Table]) -> list[Missing]:
    """Inside the schema's locked transaction: create the unique keys and indexes ``tables`` lack, every unique
    key checked against the stored rows first (a ConflictError, and nothing created, when rows repeat one)."""
    lacking = missing(connection, tables)
    for table, item in lacking:
        if isinstance(item, sa.UniqueConstraint):
            rows, total = _repeated(connection, table, _columns(item))
            if rows:
                raise _refuse(table, _columns(item), rows, total)
    for table, item in lacking:
        _create(connection, table, item)
    return lacking


def same_keys(found: list[Any]) -> list[Any]:
    """Alembic's differences without the unique keys ``ensure`` added to SQLite tables as unique indexes: the
    index it reports as extra and the constraint it reports as missing are one key (same table and columns)."""

    def key(item: Any) -> tuple[str, tuple[str, ...]]:
        return (item[1].table.name, _columns(item[1]))

    def unique_index(item: Any) -> bool:
        return isinstance(item, tuple) and item[0] == "remove_index" and bool(item[1].unique)

    def constraint(item: Any) -> bool:
        return isinstance(item, tuple) and item[0] == "add_constraint" and isinstance(item[1], sa.UniqueConstraint)

    same = {key(i) for i in found if unique_index(i)} & {key(i) for i in found if constraint(i)}
    return [i for i in found if not ((unique_index(i) or constraint(i)) and key(i) in same)]

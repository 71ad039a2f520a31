"""Creating and upgrading the schema with the Alembic migrations shipped in this package.

An empty database gets the tables of the current metadata and is stamped with the head
revision (Alembic's advice for new databases); a database at an older revision runs the
migrations in between. Either way it happens in one transaction, under a lock (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so that several processes
opening a new database at once do not trip over each other. Alembic is imported only
when something has to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit._errors import BackendError
from crmkit_sqlalchemy import _keys, _words
from crmkit_sqlalchemy._branches import Branch, branches
from crmkit_sqlalchemy._schema import TABLES, VERSION_TABLE, metadata

if TYPE_CHECKING:
    from alembic.config import Config

    from crmkit.schema import AggregateSpec

__all__ = [
    "HEAD",
    "SCRIPT_LOCATION",
    "alembic_config",
    "current_revision",
    "declared_state",
    "diff",
    "ensure_declared",
    "ensure_schema",
    "own_declared",
]

#: The newest migration; a test checks it is Alembic's head of ``migrations/versions``.
HEAD = "0006"
SCRIPT_LOCATION = "crmkit_sqlalchemy:migrations"
_LOCK_KEY = 0x63726D6B6974  # "crmkit" as a number: one advisory lock for every crmkit migration


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic Config for the shipped migrations, bound to ``connection`` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revision(connection: sa.Connection) -> str | None:
    """The revision stamped in the database, or None when it has none."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    row = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def _crmkit_tables(connection: sa.Connection) -> list[str]:
    existing = set(sa.inspect(connection).get_table_names())
    return sorted(existing & set(TABLES))


def declared_state(
    connection: sa.Connection, tables: Sequence[sa.Table], *, skip: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """Which tables of declared aggregates are missing, and how each existing one differs from its declaration.

    Only column names are compared here (one catalog query on PostgreSQL); ``diff`` compares
    everything. A table whose columns differ is not altered at connect: that is a migration.
    ``skip``: tables whose columns are not compared (a migration of theirs is pending).
    """
    if not tables:
        return [], []
    inspector = sa.inspect(connection)
    existing = set(inspector.get_table_names())
    missing = [t.name for t in tables if t.name not in existing]
    present = [t for t in tables if t.name in existing and t.name not in skip]
    differing: list[str] = []
    if present:
        found = inspector.get_multi_columns(filter_names=[t.name for t in present])
        for table in present:
            have = {c["name"] for c in found.get((None, table.name), [])}
            want = {c.name for c in table.c}
            if have != want:
                parts = []
                if want - have:
                    parts.append(f"lacks {', '.join(sorted(want - have))}")
                if have - want:
                    parts.append(f"has undeclared {', '.join(sorted(have - want))}")
                differing.append(f"{table.name} ({'; '.join(parts)})")
    return missing, differing


def _refuse_differing(where: str, differing: list[str]) -> None:
    if differing:
        raise BackendError(
            f"{where}: the tables of declared aggregates differ from their declarations: {', '.join(differing)}; "
            "migrate them (an Alembic revision of the plugin that declares them) before connecting"
        )


def ensure_schema(engine: sa.Engine, *, upgrade: bool, where: str, declared: Sequence[sa.Table] = ()) -> str:
    """Make the database's schema the current one (or, with upgrade=False, refuse unless it is).

    ``declared``: the tables of the connection's declared aggregates; missing ones are created
    in the same locked transaction as crmkit's own tables.
    """
    groups = branches(declared)
    stale: list[str] = []  # plugins' histories behind their heads
    pending: set[str] = set()  # their tables: a migration will change them
    with engine.connect() as connection:
        revision = current_revision(connection)
        missing: list[str] = []
        differing: list[str] = []
        unindexed: list[tuple[sa.Table, str]] = []
        unkeyed: list[_keys.Missing] = []
        if revision == HEAD:
            for branch, tables in groups.items():
                found = branch.revision(connection)
                if found != branch.head():
                    stale.append(f"{branch.label} is at {found or 'no revision'}, not {branch.head()}")
                    pending.update(t.name for t in tables)
            missing, differing = declared_state(connection, declared, skip=frozenset(pending))
            unindexed = _words.missing(connection, [*TABLES.values(), *declared])
            unkeyed = _keys.missing(connection, [t for t in declared if t.name not in pending])
        connection.rollback()
    _refuse_differing(where, differing)
    if revision == HEAD and not missing and not stale and not unindexed and not unkeyed:
        return HEAD
    if not upgrade:
        if revision != HEAD:
            state = "has no crmkit tables" if revision is None else f"is at schema revision {revision}"
            raise BackendError(
                f"{where} {state}, and this crmkit-sqlalchemy needs revision {HEAD}; "
                "run `python -m crmkit_sqlalchemy upgrade URL` or connect with upgrade=True"
            )
        if stale:
            raise BackendError(
                f"{where}: the migrations of installed plugins are behind ({'; '.join(stale)}); "
                "run `python -m crmkit_sqlalchemy upgrade URL` or connect with upgrade=True"
            )
        if not missing and unkeyed:
            lacking = ", ".join(f"{t.name} ({', '.join(c.name for c in item.columns)})" for t, item in unkeyed)
            raise BackendError(
                f"{where} lacks unique keys or indexes the declared aggregates gained: {lacking}; "
                "run `python -m crmkit_sqlalchemy upgrade URL` or connect with upgrade=True"
            )
        if not missing:
            names = ", ".join(f"{t.name}.{c}" for t, c in unindexed)
            raise BackendError(
                f"{where} has no word index for the searchable {names}; "
                "run `python -m crmkit_sqlalchemy upgrade URL` or connect with upgrade=True"
            )
        raise BackendError(
            f"{where} has no table for the declared aggregate{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; run `python -m crmkit_sqlalchemy upgrade URL` with the plugins that "
            "declare them installed, or connect with upgrade=True"
        )
    return upgrade_engine(engine, declared, where=where)


def ensure_declared(engine: sa.Engine, tables: Sequence[sa.Table], *, upgrade: bool, where: str) -> None:
    """Create (or migrate) the tables of declared aggregates a store was not opened with."""
    ensure_schema(engine, upgrade=upgrade, where=where, declared=tables)


def upgrade_engine(engine: sa.Engine, declared: Sequence[sa.Table] = (), *, where: str = "the database") -> str:
    """Create or migrate the schema to HEAD in one locked transaction; return the revision.

    The tables of ``declared`` aggregates that are missing are created in the same transaction.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.execution_options(crmkit_immediate=True)
        else:  # crmkit's engines autocommit by default; DDL and the advisory lock need a transaction
            connection.execution_options(isolation_level="READ COMMITTED")
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            revision = current_revision(connection)
            if revision == HEAD:
                _migrate_branches(connection, declared, where)
                _create_declared(connection, declared, where)
                _keys.ensure(connection, declared)
                _words.ensure(connection, [*TABLES.values(), *declared])
                return HEAD
            if revision is None:
                found = _crmkit_tables(connection)
                if found:
                    raise BackendError(
                        f"the database holds tables named like crmkit's ({', '.join(found)}) but no "
                        f"{VERSION_TABLE} revision; refusing to touch them"
                    )
                metadata.create_all(connection)
                _stamp(connection)
            else:
                from alembic import command

                command.upgrade(alembic_config(connection), "head")
            _migrate_branches(connection, declared, where)
            _create_declared(connection, declared, where)
            _keys.ensure(connection, declared)
            _words.ensure(connection, [*TABLES.values(), *declared])
    return HEAD


def _migrate_branches(connection: sa.Connection, declared: Sequence[sa.Table], where: str) -> None:
    """Inside the locked transaction: bring every plugin's migration history to its head (see ``_branches``)."""
    for branch, tables in branches(declared).items():
        head = branch.head()
        found = branch.revision(connection)
        if found == head:
            continue
        if found is None:
            missing, differing = declared_state(connection, tables)
            if differing:
                raise BackendError(
                    f"{where}: tables of {branch.label} exist without its migration history and differ from "
                    f"their declarations ({', '.join(differing)}); record the revision they match in "
                    f"{branch.version_table} (alembic stamp, version location {branch.location})"
                )
            for table in tables:  # new ones, or created before the plugin shipped revisions: at the head
                if table.name in missing:
                    table.create(connection)
            _stamp(connection, branch)
            continue
        from alembic import command

        command.upgrade(branch.config(connection, tables), "head")


def _create_declared(connection: sa.Connection, tables: Sequence[sa.Table], where: str) -> None:
    """Inside the locked transaction: create the declared tables still missing (another process may have)."""
    missing, differing = declared_state(connection, tables)
    _refuse_differing(where, differing)
    for table in tables:
        if table.name in missing:
            table.create(connection)


def _stamp(connection: sa.Connection, branch: Branch | None = None) -> None:
    """Record the head revision of crmkit's history (or of a plugin's branch) in its version table."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    table = VERSION_TABLE if branch is None else branch.version_table
    script = _script() if branch is None else ScriptDirectory.from_config(branch.config())
    context = MigrationContext.configure(connection, opts={"version_table": table})
    context.stamp(script, "head")


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def own_declared() -> list[AggregateSpec]:
    """crmkit's own derived aggregates whose tables this history creates and migrates (``state_changes``).

    The tables of crmkit's other derived aggregates (identity, sales) are created when a
    store opens, as plugins' are, until a revision of this history takes them in.
    """
    from crmkit.schema import spec_of
    from crmkit.state_changes import StateChange

    return [spec_of(StateChange)]


def diff(connection: sa.Connection, declared: Sequence[AggregateSpec] = ()) -> list[Any]:
    """What Alembic autogenerate finds different between the database and the table metadata.

    ``declared``: aggregates whose derived tables the database should hold too (the
    connection's ``schema.derived``); tables of other aggregates count as extra.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from crmkit_sqlalchemy._derived import schema_metadata

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        # plugins' version tables (crmkit_alembic_version_<package>) are Alembic's, not the schema's;
        # word indexes (``_words``) are derived per database, outside the table metadata
        if (type_ == "index" and name in derived_words) or (type_ == "table" and _words.is_word_table(name)):
            return False
        return not (type_ == "table" and name is not None and name.startswith(f"{VERSION_TABLE}_"))

    # crmkit's own derived tables (state_changes) belong to this history as much as the hand-written ones
    wanted = {spec.name: spec for spec in (*own_declared(), *declared)}
    target = schema_metadata(wanted.values())
    derived_words = _words.index_names(target.tables.values())
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": VERSION_TABLE,
            "compare_type": True,
            "target_metadata": target,
            "include_name": include_name,
        },
    )
    return _keys.same_keys(list(compare_metadata(context, target)))

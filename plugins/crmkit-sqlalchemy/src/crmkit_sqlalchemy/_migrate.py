"""Creating and upgrading the schema with the Alembic migrations shipped in this package.

An empty database gets the tables of the current metadata and is stamped with the head
revision (Alembic's advice for new databases); a database at an older revision runs the
migrations in between. Either way it happens in one transaction, under a lock (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so that several processes
opening a new database at once do not trip over each other. Alembic is imported only
when something has to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit._errors import BackendError
from crmkit_sqlalchemy._schema import TABLES, VERSION_TABLE, metadata

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "SCRIPT_LOCATION", "alembic_config", "current_revision", "diff", "ensure_schema"]

#: The newest migration; a test checks it is Alembic's head of ``migrations/versions``.
HEAD = "0001"
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


def ensure_schema(engine: sa.Engine, *, upgrade: bool, where: str) -> str:
    """Make the database's schema the current one (or, with upgrade=False, refuse unless it is)."""
    with engine.connect() as connection:
        revision = current_revision(connection)
        connection.rollback()
    if revision == HEAD:
        return HEAD
    if not upgrade:
        state = "has no crmkit tables" if revision is None else f"is at schema revision {revision}"
        raise BackendError(
            f"{where} {state}, and this crmkit-sqlalchemy needs revision {HEAD}; "
            "run `python -m crmkit_sqlalchemy upgrade URL` or connect with upgrade=True"
        )
    return upgrade_engine(engine)


def upgrade_engine(engine: sa.Engine) -> str:
    """Create or migrate the schema to HEAD in one locked transaction; return the revision."""
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
    return HEAD


def _stamp(connection: sa.Connection) -> None:
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    context.stamp(_script(), "head")


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def diff(connection: sa.Connection) -> list[Any]:
    """What Alembic autogenerate finds different between the database and the table metadata."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True, "target_metadata": metadata}
    )
    return list(compare_metadata(context, metadata))

"""crmkit-sqlalchemy: crmkit's SQL storage on SQLAlchemy 2, for SQLite and PostgreSQL.

Installed, it lets ``crmkit.connect`` open ``sqlite://`` (in memory), ``sqlite:///crm.db``
and ``postgresql+psycopg://user:password@host/db``. The schema is created or migrated
when a store is opened (``connect(url, upgrade=False)`` refuses instead), or ahead of time::

    crmkit_sqlalchemy.upgrade("postgresql+psycopg://crm@db/crm")
    python -m crmkit_sqlalchemy upgrade postgresql+psycopg://crm@db/crm
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crmkit._errors import PluginError
from crmkit_sqlalchemy._migrate import HEAD
from crmkit_sqlalchemy._schema import metadata
from crmkit_sqlalchemy._store import SqlRepository, SqlStore

__all__ = ["HEAD", "SqlRepository", "SqlStore", "current", "metadata", "revision", "upgrade"]


def _engine(url: str, **options: Any) -> tuple[Any, Any]:
    from crmkit_sqlalchemy._store import engine_options, install_sqlite_pragmas
    from crmkit_sqlalchemy._url import SUPPORTED, parse_options, parse_url

    parsed = parse_url(url)
    if parsed is None:
        raise PluginError(f"crmkit-sqlalchemy does not open {url.split('://', 1)[0]}:// URLs; supported: {SUPPORTED}")
    opts = parse_options(options)
    import sqlalchemy as sa

    engine = sa.create_engine(parsed, **engine_options(parsed, opts))
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        install_sqlite_pragmas(
            engine, opts.busy_timeout, in_memory=in_memory, cache_mb=opts.cache_mb, checkpoint_mb=opts.checkpoint_mb
        )
    return engine, parsed


def upgrade(url: str, *, plugins: Iterable[object] = ()) -> str:
    """Create crmkit's tables in an empty database, or migrate them to the current revision; return it.

    The tables of the aggregates declared by installed plugins (and by ``plugins``, as
    given to ``crmkit.connect``) are created too when missing.
    """
    from crmkit._host import PluginHost
    from crmkit_sqlalchemy._derived import declared_table
    from crmkit_sqlalchemy._errors import Where, translated
    from crmkit_sqlalchemy._migrate import upgrade_engine

    declared = [declared_table(spec) for spec in PluginHost(plugins=plugins).schema().derived.values()]
    engine, parsed = _engine(url)
    where = Where(parsed)
    try:
        with translated(where):
            return upgrade_engine(engine, declared, where=where.text)
    finally:
        engine.dispose()


def revision(url: str, package: str, message: str, *, plugins: Iterable[object] = ()) -> str:
    """Autogenerate the next migration of the aggregates ``package`` declares; return its revision id.

    The revision is written into ``<package>/crmkit_migrations/`` (create the folder for the
    first one), comparing the tables derived from the declarations with the database at
    ``url``, which must be at the package's latest revision (for the first one: without
    the package's tables). Installed plugins and ``plugins`` are searched for the aggregates.
    """
    from crmkit._host import PluginHost
    from crmkit_sqlalchemy._branches import write_revision
    from crmkit_sqlalchemy._errors import Where, translated

    specs = [
        spec
        for spec in PluginHost(plugins=plugins).schema().derived.values()
        if spec.cls.__module__.split(".", 1)[0] == package
    ]
    if not specs:
        raise PluginError(f"no installed plugin declares aggregates in package {package!r}")
    engine, parsed = _engine(url)
    try:
        with translated(Where(parsed)), engine.begin() as connection:
            return write_revision(connection, specs, message)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    """The schema revision of the database at ``url`` (None: no crmkit schema yet)."""
    from crmkit_sqlalchemy._errors import Where, translated
    from crmkit_sqlalchemy._migrate import current_revision

    engine, parsed = _engine(url)
    try:
        with translated(Where(parsed)), engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()

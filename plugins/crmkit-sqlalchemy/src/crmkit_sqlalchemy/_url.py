"""Which URLs this plugin opens, and the engine options ``crmkit.connect`` may pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import URL, make_url

from crmkit._errors import PluginError

__all__ = ["SCHEMES", "SUPPORTED", "Options", "parse_options", "parse_url", "sql_dialect_family"]

#: URL schemes served (``postgresql`` and ``postgres`` are read as ``postgresql+psycopg``).
SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "sqlite", "sqlite+pysqlite")

SUPPORTED = (
    "sqlite:// (in memory), sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "postgresql+psycopg://user:password@host:port/database (postgresql:// means the same)"
)

# SQLAlchemy dialects other plugins might serve; named in the refusal message only.
_OTHER_SQL = ("mysql", "mariadb", "mssql", "oracle", "cockroachdb", "duckdb", "snowflake", "redshift")


def sql_dialect_family(url: str) -> str | None:
    """``sqlite`` / ``postgresql`` for URLs of those families (any driver), a foreign SQL name, or None."""
    if "://" not in url:
        return None
    scheme = url.split("://", 1)[0].lower()
    base = scheme.partition("+")[0]
    if base in ("sqlite", "postgres", "postgresql"):
        return "postgresql" if base == "postgres" else base
    if base in _OTHER_SQL:
        return base
    return None


def parse_url(url: str) -> URL | None:
    """The SQLAlchemy URL for a crmkit URL this plugin serves, None for other schemes.

    Raises PluginError for URLs of the SQLite / PostgreSQL family with an unsupported driver
    (``postgresql+asyncpg://``) or that SQLAlchemy cannot parse.
    """
    family = sql_dialect_family(url)
    if family not in ("sqlite", "postgresql"):
        return None
    scheme = url.split("://", 1)[0].lower()
    driver = scheme.partition("+")[2]
    wanted = "pysqlite" if family == "sqlite" else "psycopg"
    if driver not in ("", wanted):
        raise PluginError(
            f"crmkit-sqlalchemy does not support the driver '{driver}' of {scheme}:// URLs; "
            f"supported URLs: {SUPPORTED}"
        )
    try:
        parsed = make_url(f"{family}+{wanted}://{url.split('://', 1)[1]}")
    except sa_exc.ArgumentError as exc:
        raise PluginError(f"not a valid {family} URL ({exc}); supported URLs: {SUPPORTED}") from None
    if family == "postgresql" and not parsed.database:
        raise PluginError(f"a PostgreSQL URL must name a database; supported URLs: {SUPPORTED}")
    return parsed


@attrs.frozen
class Options:
    """Engine options accepted as keyword arguments of ``crmkit.connect`` (all optional)."""

    #: Create the tables or migrate them to the current revision on connect; False refuses instead.
    upgrade: bool = True
    #: Connections kept open (PostgreSQL and SQLite files).
    pool_size: int = 5
    #: Extra connections allowed beyond pool_size under load.
    max_overflow: int = 10
    #: Seconds to wait for a free pooled connection.
    pool_timeout: float = 30.0
    #: Seconds after which a pooled connection is replaced (-1: never).
    pool_recycle: int = -1
    #: SQLite: seconds a writer waits for another writer's lock before failing.
    busy_timeout: float = 30.0
    #: SQLite: page cache per connection, in MiB.
    cache_mb: int = 64
    #: SQLite: the write-ahead log is copied back into the database file (a checkpoint, with
    #: two fsyncs) once it has grown past this many MiB.
    checkpoint_mb: int = 64
    #: PostgreSQL: seconds to wait for the server when connecting.
    connect_timeout: int = 10
    #: PostgreSQL: a pooled connection idle longer than this many seconds is checked before use.
    ping_after: float = 1.0
    #: Log every SQL statement (SQLAlchemy's ``echo``).
    echo: bool = False


_KINDS: dict[str, tuple[type, ...]] = {
    "upgrade": (bool,),
    "pool_size": (int,),
    "max_overflow": (int,),
    "pool_timeout": (int, float),
    "pool_recycle": (int,),
    "busy_timeout": (int, float),
    "cache_mb": (int,),
    "checkpoint_mb": (int,),
    "connect_timeout": (int,),
    "ping_after": (int, float),
    "echo": (bool,),
}


def parse_options(options: Mapping[str, Any]) -> Options:
    """Check ``connect`` keyword options; PluginError names any unknown or mistyped one."""
    unknown = sorted(set(options) - set(_KINDS))
    if unknown:
        raise PluginError(
            f"crmkit-sqlalchemy does not know the option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_KINDS))})"
        )
    for name in options:
        value: Any = options[name]
        kinds = _KINDS[name]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise PluginError(f"option {name} must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")
        if name in ("pool_size", "cache_mb", "checkpoint_mb") and isinstance(value, int) and value < 1:
            raise PluginError(f"option {name} must be at least 1, not {value!r}")
    return Options(**options)

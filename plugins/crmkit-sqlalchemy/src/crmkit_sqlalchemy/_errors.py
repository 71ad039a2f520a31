"""Driver errors in, crmkit errors out: nothing from SQLAlchemy or a DBAPI escapes to callers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import URL

from crmkit._errors import BackendError, ConflictError, CRMError

__all__ = ["Where", "describe", "translated"]


class Where:
    """Where a store is, for error messages: dialect, host and database, never the password."""

    def __init__(self, url: URL) -> None:
        self.password = url.password
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            self.text = f"SQLite database {database!r}" if database and database != ":memory:" else "in-memory SQLite"
        else:
            host = url.host or "localhost"
            port = f":{url.port}" if url.port else ""
            self.text = f"PostgreSQL at {host}{port}/{url.database or ''}"

    def scrub(self, message: str) -> str:
        """The message with the password (should a driver ever echo it) masked."""
        if self.password:
            message = message.replace(str(self.password), "***")
        return message


def describe(where: Where, exc: BaseException) -> str:
    """A one-paragraph message for a driver error: the driver's own words, without SQL or parameters."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    first = text.splitlines()[0] if "\n" in text and len(text) > 500 else text
    return where.scrub(f"{where.text}: {type(original).__name__}: {first}")


@contextmanager
def translated(where: Where, *, entity: str | None = None) -> Iterator[None]:
    """Turn driver errors raised inside the block into ConflictError or BackendError."""
    try:
        yield
    except CRMError:
        raise
    except sa_exc.IntegrityError as exc:
        raise ConflictError(describe(where, exc), entity=entity) from exc
    except (sa_exc.DBAPIError, sa_exc.SQLAlchemyError) as exc:
        if _lost_race(getattr(exc, "orig", None)):
            raise _transient(where, exc, entity) from exc
        raise BackendError(describe(where, exc)) from exc
    except Exception as exc:
        # raw driver calls (COPY, PRAGMA) raise the DBAPI's own classes
        if not _is_driver_error(exc):
            raise
        if any(cls.__name__ == "IntegrityError" for cls in type(exc).__mro__):
            raise ConflictError(describe(where, exc), entity=entity) from exc
        if _lost_race(exc):
            raise _transient(where, exc, entity) from exc
        raise BackendError(describe(where, exc)) from exc


#: PostgreSQL's deadlock_detected and serialization_failure: the server rolled the transaction
#: back because of a concurrent one, and the same work run again may succeed.
_LOST_RACE = ("40P01", "40001")


def _lost_race(exc: BaseException | None) -> bool:
    return getattr(exc, "sqlstate", None) in _LOST_RACE


def _transient(where: Where, exc: BaseException, entity: str | None) -> ConflictError:
    message = f"{describe(where, exc)} (a concurrent transaction got in the way; nothing was written, retry)"
    return ConflictError(message, entity=entity, transient=True)


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("psycopg", "sqlite3", "psycopg_binary")

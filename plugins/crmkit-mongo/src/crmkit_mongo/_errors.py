"""pymongo errors as crmkit errors: callers only ever catch ``crmkit.CRMError`` subclasses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bson.binary import Binary
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from crmkit._errors import BackendError, ConflictError, CRMError
from crmkit_mongo._url import MongoURL

__all__ = ["DUPLICATE_KEY", "WRITE_CONFLICT", "duplicate_key_of", "translate_errors"]

DUPLICATE_KEY = 11000
WRITE_CONFLICT = 112
_AUTH_FAILED = 18
_LOCK_TIMEOUT = 24
#: How a transaction loses to a concurrent one: a write conflict, or a lock another one held
#: past the 5 ms a transaction waits. Both carry the TransientTransactionError label, which
#: elections and lost connections carry too; those stay BackendErrors.
_LOST_RACE = (WRITE_CONFLICT, _LOCK_TIMEOUT)
_MAX_REASON = 300


def _reason(exc: BaseException, url: MongoURL) -> str:
    text = str(exc)
    if isinstance(exc, OperationFailure) and exc.details:
        # The server's own message, without the raw reply pymongo appends.
        text = str(exc.details.get("errmsg") or text)
        if exc.details.get("codeName"):
            text = f"{text} ({exc.details['codeName']})"
    # Server-selection errors end with a long topology description; the first part says it all.
    for marker in (", Timeout:", " Topology Description:"):
        head = text.split(marker, 1)[0]
        text = head if head else text
    text = url.scrub(text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, Binary) and value.subtype == 4:
        return uuid.UUID(bytes=bytes(value))
    return value


#: Reads one field of a duplicate key from its stored form: (field name, stored value) -> value.
ValueOf = Callable[[str, Any], Any]


def duplicate_key_of(details: Mapping[str, Any] | None) -> tuple[str, Any] | None:
    """(field, value) of the unique key a duplicate-key error names, when it is ``id`` or ``external_id``."""
    if not details:
        return None
    key_value = details.get("keyValue") or {}
    fields = [field for field in key_value if field != "tenant"]
    if fields in (["external_id"], ["id"]):
        return fields[0], _plain(key_value[fields[0]])
    return None


def _declared_key(details: Mapping[str, Any] | None, value_of: ValueOf | None) -> list[tuple[str, Any]] | None:
    """(field, value) pairs of a declared unique key a duplicate-key error names (the tenant left out)."""
    key_value = (details or {}).get("keyValue") or {}
    pairs = [(field, _plain(value)) for field, value in key_value.items() if field != "tenant"]
    if not pairs or any(field == "_id" for field, _ in pairs):
        return None
    if value_of is not None:
        pairs = [(field, value_of(field, value)) for field, value in pairs]
    return pairs


def conflict_for(label: str, details: Mapping[str, Any] | None, value_of: ValueOf | None = None) -> ConflictError:
    """The ConflictError for a duplicate key, worded as the memory store words it."""
    found = duplicate_key_of(details)
    if found is None:
        pairs = _declared_key(details, value_of)
        if pairs is None:
            return ConflictError(f"{label} already exists (duplicate key)", entity=label)
        shown = ", ".join(f"{field}={value!r}" for field, value in pairs)
        values = tuple(value for _, value in pairs)
        return ConflictError(f"{label} with {shown} already exists", entity=label, key=values)
    field, value = found
    if field == "external_id":
        return ConflictError(f"{label} with external_id {value!r} already exists", entity=label, key=value)
    return ConflictError(f"{label} {value} already exists", entity=label, key=value)


def _first_write_error(exc: BulkWriteError) -> Mapping[str, Any] | None:
    errors = exc.details.get("writeErrors") or []
    return errors[0] if errors else None


@contextmanager
def translate_errors(url: MongoURL, label: str = "record", value_of: ValueOf | None = None) -> Iterator[None]:
    """Turn any pymongo error raised inside the block into the matching crmkit error.

    ``value_of`` reads the parts of a duplicate key back into record values (for its message).
    """
    try:
        yield
    except CRMError:
        raise
    except DuplicateKeyError as exc:
        raise conflict_for(label, exc.details, value_of) from exc
    except BulkWriteError as exc:
        first = _first_write_error(exc)
        if first is not None and first.get("code") == DUPLICATE_KEY:
            raise conflict_for(label, first, value_of) from exc
        if first is not None and first.get("code") in _LOST_RACE:
            raise _write_conflict(label) from exc
        raise BackendError(f"MongoDB at {url.hosts}: bulk write failed: {_reason(exc, url)}") from exc
    except OperationFailure as exc:
        if exc.code in _LOST_RACE:  # the server aborted the transaction: worth running again
            raise _write_conflict(label) from exc
        if exc.code == DUPLICATE_KEY:
            raise conflict_for(label, exc.details, value_of) from exc
        if exc.code == _AUTH_FAILED:
            raise BackendError(f"MongoDB at {url.hosts}: authentication failed: {_reason(exc, url)}") from exc
        raise BackendError(f"MongoDB at {url.hosts}: {_reason(exc, url)}") from exc
    except ConnectionFailure as exc:
        raise BackendError(f"MongoDB at {url.hosts} is unreachable: {_reason(exc, url)}") from exc
    except ConfigurationError as exc:
        raise BackendError(f"MongoDB at {url.hosts}: configuration error: {_reason(exc, url)}") from exc
    except PyMongoError as exc:
        raise BackendError(f"MongoDB at {url.hosts}: {_reason(exc, url)}") from exc


def _write_conflict(label: str) -> ConflictError:
    return ConflictError(
        f"{label} was changed by a concurrent transaction (write conflict); nothing was written, retry",
        entity=label,
        transient=True,
    )

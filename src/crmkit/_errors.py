"""The one error hierarchy of crmkit: every failure a caller can catch is a CRMError."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "CRMError",
    "ConflictError",
    "NotFound",
    "PluginError",
    "TransitionVetoed",
    "ValidationError",
]


class CRMError(Exception):
    """Base class of every error crmkit raises on purpose."""


class ValidationError(CRMError, ValueError):
    """Input that breaks a rule of the domain; names the field (and input row) at fault."""

    def __init__(self, field: str, message: str, value: Any = None, *, row: int | None = None) -> None:
        self.field = field
        self.message = message
        self.value = value
        self.row = row
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}{field}: {message} (got {_short_repr(value)})")

    def at_row(self, row: int) -> ValidationError:
        """The same error, located at an input row of a bulk operation."""
        return ValidationError(self.field, self.message, self.value, row=row)


class NotFound(CRMError, LookupError):
    """No record with that id (or key) exists for this tenant."""

    def __init__(self, entity: str, key: Any) -> None:
        self.entity = entity
        self.key = key
        super().__init__(f"{entity} {key!s} not found")


class ConflictError(CRMError):
    """A write lost a race (stale version) or broke a unique key.

    ``transient`` is true when the write collided with a concurrent transaction (a
    deadlock, a serialisation failure, a MongoDB write conflict) rather than with stored
    data: nothing of it was written, and running the same work again may well succeed.
    ``add_many`` retries such batches itself.
    """

    def __init__(self, message: str, *, entity: str | None = None, key: Any = None, transient: bool = False) -> None:
        self.entity = entity
        self.key = key
        self.transient = transient
        super().__init__(message)


class BackendError(CRMError):
    """The store failed (connection lost, driver error); the operation did not take effect."""


class PluginError(CRMError):
    """A plugin is missing, misbehaves or implements a hook that does not exist."""


class TransitionVetoed(CRMError):
    """A lifecycle stage change was refused by one or more guards (all reasons listed)."""

    def __init__(self, customer_id: Any, from_stage: Any, to_stage: Any, reasons: tuple[str, ...]) -> None:
        self.customer_id = customer_id
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.reasons = reasons
        joined = "; ".join(reasons)
        super().__init__(f"customer {customer_id}: transition {from_stage} -> {to_stage} vetoed: {joined}")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""What a hook may use of a connection: the narrow view plugins are handed instead of the whole CRM.

``crmkit_before_commit`` and ``crmkit_after_commit`` receive a ``Session``: the tenant, the
actor, the clock, the schema and the record service of every aggregate, enough to write
audit rows or counters in the same transaction and to read what they need. Scoring hooks
receive a ``ScoringSession``, which adds the value calculations. The connection itself
(``crmkit.CRM``) is both; implementations should rely on no more than the protocol says,
so a later connection class, or a test double, serves them as well.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from crmkit.schema import Schema
    from crmkit.services.records import Records, _Record
    from crmkit.value._store import CRMValue

__all__ = ["ScoringSession", "Session"]

R = TypeVar("R", bound="_Record")


class Session(Protocol):
    """The tenant's connection as hooks see it."""

    @property
    def tenant(self) -> str:
        """The tenant every read and write is scoped to."""

    @property
    def actor(self) -> str | None:
        """Who is acting (``connect(actor=...)``, ``crm.acting_as``), None when unset."""

    @property
    def schema(self) -> Schema:
        """Every aggregate of the connection, with fields, references, unique keys and indexes."""

    def now(self) -> dt.datetime:
        """The connection's clock (timezone-aware UTC)."""

    def records(self, aggregate: type[R] | str) -> Records[R]:
        """The record service of an aggregate, by class or name (``session.records("customers")``)."""

    def transaction(self) -> AbstractContextManager[Any]:
        """A unit of work: inside a hook that runs in a transaction, it joins it."""


class ScoringSession(Session, Protocol):
    """A ``Session`` with the customer-value calculations, for ``crmkit_customer_scores``."""

    @property
    def value(self) -> CRMValue:
        """Customer-value calculations pushed down into the store."""

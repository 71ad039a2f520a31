"""The privacy layer's own aggregates: retention holds, and the record of every erasure."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import ClassVar

from crmkit import schema

__all__ = ["Erasure", "Hold"]


@schema.aggregate("privacy_holds", indexes=[("person_id", "until")])
class Hold(schema.Record):
    """A retention hold: the person's data must be kept until ``until`` (an erase is refused until then).

    Kept with the customer (it goes when the customer is deleted) and exported with their data.
    """

    person_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    until: dt.date = schema.date(sortable=True, personal=False)
    reason: str = schema.text(personal=False)
    placed_at: dt.datetime = schema.instant(sortable=True, personal=False)
    actor: str | None = schema.text(default=None, personal=False)


@schema.aggregate("privacy_erasures", time_field="erased_at", indexes=[("person_id",)])
class Erasure(schema.Record):
    """That a person's data was erased: who did it, when, and how much changed; none of the erased data.

    ``person_id`` is a plain id, not a reference: the record outlives the customer.
    """

    #: Fields holding the id of a record without being a reference (``crmkit.privacy`` follows them).
    __crmkit_mentions__: ClassVar[Mapping[str, str]] = {"person_id": "customers"}

    person_id: uuid.UUID = schema.uuid(sortable=True, personal=False)
    erased_at: dt.datetime = schema.instant(sortable=True, personal=False)
    actor: str | None = schema.text(default=None, sortable=True, personal=False)
    records: int = schema.integer(default=0, personal=False)
    fields: int = schema.integer(default=0, personal=False)

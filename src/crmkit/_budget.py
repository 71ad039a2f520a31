"""The size budget of a stored record: what every backend can hold, checked before any of them is asked.

MongoDB refuses documents over 16 MB; SQL databases take far more. So that every store
gives the same answer, the core refuses records over a budget that all of them can hold:

* at most ``MAX_ITEMS`` tags (customers) or participants (interactions), custom
  attributes, and contact points (customers: e-mails, phones, addresses and handles
  together);
* at most ``MAX_CHARS`` characters in all: every text (names, notes, tags, attribute
  names and text values, contact points, line items), plus ``ITEM`` for every other value
  and for every item of a collection. Even with four bytes to each character (UTF-8)
  that is 8 MB, half of MongoDB's limit, which leaves room for field names and encoding.

The counts cost a few ``len`` calls. The total is estimated only when a record has more
values that may each be long (up to ``MAX_TEXT`` characters) than could ever exceed it,
so that ordinary records, imported by the million, pay nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from crmkit._errors import ValidationError
from crmkit._validation import MAX_TEXT
from crmkit.customers import Customer
from crmkit.interactions import Interaction
from crmkit.transactions import Transaction

__all__ = ["ITEM", "MAX_CHARS", "MAX_ITEMS", "check_size", "size_of"]

#: Tags, participants, custom attributes, contact points: at most this many of each per record.
MAX_ITEMS = 1_000
#: Characters a record may hold in all (see the module docstring for what counts).
MAX_CHARS = 2_000_000
#: What a value other than text, and each item of a collection, counts for.
ITEM = 50

# A record's short values (ids, times, numbers, kind, stage, external id, at most MAX_ITEMS
# tags of at most 200 characters) count for less than this...
_SHORT = 20 * ITEM + 200 + MAX_ITEMS * (200 + ITEM)
# ... and each value that may be long (free text, an attribute, a line item) for at most this:
_LONG = MAX_TEXT + 63 + 3 * ITEM
#: A record with at most this many values that may be long cannot exceed MAX_CHARS.
SAFE_LONG_VALUES = (MAX_CHARS - _SHORT) // _LONG


def size_of(value: Any) -> int:
    """The characters a value counts for in the budget (texts by length, other values ITEM)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(len(str(k)) + size_of(v) + ITEM for k, v in value.items())
    if isinstance(value, (tuple, list, frozenset, set)):
        return sum(size_of(v) + ITEM for v in value)
    if attrs.has(value.__class__):
        return sum(size_of(getattr(value, a.name)) for a in attrs.fields(value.__class__))
    return ITEM


def _too_many(field: str, count: int) -> ValidationError:
    return ValidationError(field, f"holds {count:,} items; a record holds at most {MAX_ITEMS:,}", count)


def _count(field: str, items: Any) -> None:
    if len(items) > MAX_ITEMS:
        raise _too_many(field, len(items))


def _total(label: str, record: Any) -> None:
    size = size_of(record)
    if size > MAX_CHARS:
        raise ValidationError(
            label,
            f"is too large to store: about {size:,} characters, and a record holds at most {MAX_CHARS:,} "
            f"(all its text, plus {ITEM} for every other value and collection item)",
            size,
        )


def _transaction(label: str, record: Transaction) -> None:
    attributes = len(record.attributes)
    if attributes > MAX_ITEMS:
        raise _too_many("attributes", attributes)
    if attributes + len(record.line_items) > SAFE_LONG_VALUES:
        _total(label, record)


def _interaction(label: str, record: Interaction) -> None:
    _count("participants", record.participants)
    _count("attributes", record.attributes)
    if 3 + len(record.attributes) > SAFE_LONG_VALUES:  # subject, summary, outcome
        _total(label, record)


def _customer(label: str, record: Customer) -> None:
    _count("tags", record.tags)
    _count("attributes", record.attributes)
    points = len(record.emails) + len(record.phones) + len(record.addresses) + len(record.handles)
    if points > MAX_ITEMS:
        raise _too_many("contact_points", points)
    long_values = 2 + len(record.attributes)  # name, owner
    if points:  # labels, address lines and consent sources may each be long
        for point in record.contact_points():
            long_values += 5 + len(getattr(point, "lines", ())) + len(point.consent)
    if long_values > SAFE_LONG_VALUES:
        _total(label, record)


def _any(label: str, record: Any) -> None:
    """Any other record: counts of its collections, and the total when it could be large."""
    long_values = 0
    for a in attrs.fields(record.__class__) if attrs.has(record.__class__) else ():
        value = getattr(record, a.name)
        if isinstance(value, (Mapping, tuple, list, frozenset, set)):
            _count(a.name, value)
            long_values += len(value)
        elif isinstance(value, str):
            long_values += 1
    if long_values > SAFE_LONG_VALUES:
        _total(label, record)


_CHECKS: dict[type, Callable[[str, Any], None]] = {
    Transaction: _transaction,
    Interaction: _interaction,
    Customer: _customer,
}


def check_size(record: Any, label: str, row: int | None = None) -> None:
    """Raise ValidationError (at ``row`` of an import) if the record is over the budget."""
    if record.__class__ is Transaction and len(record.attributes) + len(record.line_items) <= SAFE_LONG_VALUES:
        return  # imports build transactions by the million: the usual one is settled here
    try:
        _CHECKS.get(record.__class__, _any)(label, record)
    except ValidationError as err:
        if row is None:
            raise
        raise err.at_row(row) from None

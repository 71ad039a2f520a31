"""A second, plain-Python reading of the query semantics, written from ``crmkit.query``'s docstring.

The suite compares stores with this model rather than with the memory backend, so a
mistake shared by ``crmkit.query.evaluate`` and a backend still shows up.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from crmkit.query import ALL, And, Compare, Contains, Expr, In, IsEmpty, Not, Or

__all__ = ["matches", "plain", "sort_records", "value_of"]


def plain(value: Any) -> Any:
    """Enum members and str subclasses (Stage, Channel) as the text they stand for."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, str) and type(value) is not str:
        return str.__str__(value)
    return value


def value_of(record: Any, field: str) -> Any:
    """A model field or ``attributes.<key>`` of a domain record; None when missing."""
    if field.startswith("attributes."):
        return plain(record.attributes.get(field.split(".", 1)[1]))
    return plain(getattr(record, field))


def _family(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, str):
        return "text"
    if isinstance(value, uuid.UUID):
        return "uuid"
    return "other"


def _same(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    return _family(left) == _family(right) and left == right


def _ordered(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None or _family(left) != _family(right) or _family(left) in ("bool", "other"):
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def matches(expr: Expr, record: Any) -> bool:
    """Whether ``record`` satisfies ``expr`` (two-valued logic, same-kind comparisons, binary text)."""
    if expr is ALL or type(expr).__name__ == "All":
        return True
    if isinstance(expr, Compare):
        left, right = value_of(record, expr.field), plain(expr.value)
        if expr.op == "==":
            return _same(left, right)
        if expr.op == "!=":
            return not _same(left, right)
        return _ordered(expr.op, left, right)
    if isinstance(expr, In):
        left = value_of(record, expr.field)
        return any(_same(left, plain(v)) for v in expr.values)
    if isinstance(expr, Contains):
        left = value_of(record, expr.field)
        if isinstance(left, frozenset):
            return expr.value in left
        return isinstance(left, str) and expr.value in left
    if isinstance(expr, IsEmpty):  # a list with no element; None counts as empty
        items = getattr(record, expr.field)
        return items is None or len(items) == 0
    if isinstance(expr, And):
        return all(matches(item, record) for item in expr.items)
    if isinstance(expr, Or):
        return any(matches(item, record) for item in expr.items)
    if isinstance(expr, Not):
        return not matches(expr.item, record)
    raise TypeError(f"not a condition: {expr!r}")


def sort_records(records: Iterable[Any], keys: Sequence[tuple[str, bool]]) -> list[Any]:
    """Records in the order of ``(field, descending)`` keys, ties broken by id ascending."""
    out = list(records)
    if not any(name == "id" for name, _ in keys):
        keys = (*keys, ("id", False))
    for name, descending in reversed(keys):
        out.sort(key=lambda r, n=name: value_of(r, n), reverse=descending)  # type: ignore[misc]
    return out

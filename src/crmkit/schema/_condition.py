"""A query expression kept in a record: ``schema.condition()`` stores it as canonical JSON text.

Rules, segments and service-level policies say which records they apply to with the query
language (``F("priority") == "urgent"``). A ``condition`` field accepts such an expression
(or its stored text), keeps the canonical text form, which every backend stores as text,
and ``schema.parse_condition`` turns it back into the expression::

    applies_to: str = schema.condition(default="true")
    ...
    where = schema.parse_condition(policy.applies_to)
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from crmkit._errors import ValidationError
from crmkit.query import ALL, Ago, All, And, Compare, Contains, Expr, In, InSelect, IsEmpty, Not, Or, Order, Select

__all__ = ["condition_text", "parse_condition"]


def _value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str.__str__(value)  # str subclasses (Channel) as plain text
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, Ago):  # stays relative: resolved when the condition is evaluated
        return {"ago": str(value.delta // dt.timedelta(microseconds=1))}
    raise ValidationError("condition", f"cannot keep a {type(value).__name__} value in a stored condition", value)


def _read_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        readers: dict[str, Callable[[str], Any]] = {
            "uuid": uuid.UUID,
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "decimal": Decimal,
            "ago": lambda text: Ago(dt.timedelta(microseconds=int(text))),
        }
        if tag in readers and isinstance(text, str):
            return readers[tag](text)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValidationError("condition", "holds a value of no known kind", value)


def _tree(expr: Any) -> Any:
    if isinstance(expr, All):
        return True
    if isinstance(expr, Compare):
        return {"field": expr.field, "op": expr.op, "value": _value(expr.value)}
    if isinstance(expr, In):
        return {"field": expr.field, "in": [_value(v) for v in expr.values]}
    if isinstance(expr, Contains):
        return {"field": expr.field, "contains": _value(expr.value)}
    if isinstance(expr, IsEmpty):
        return {"field": expr.field, "is_empty": True}
    if isinstance(expr, InSelect) and isinstance(expr.select, Select):
        select = expr.select
        where = None if select.where is None else _tree(select.where)
        tree: dict[str, Any] = {"entity": select.entity, "field": select.field, "where": where}
        if select.having is not None:
            measure, op, bound = select.having
            tree["having"] = [measure, op, _value(bound)]
        if select.first_by is not None:
            first_by = select.first_by
            if isinstance(first_by, Order):
                tree["first_by"] = [("-" if desc else "") + name for name, desc in first_by.keys]
            else:
                tree["first_by"] = [first_by] if isinstance(first_by, str) else list(first_by)
            tree["first_where"] = None if select.first_where is None else _tree(select.first_where)
        return {"field": expr.field, "in_select": tree}
    if isinstance(expr, And):
        return {"and": [_tree(i) for i in expr.items]}
    if isinstance(expr, Or):
        return {"or": [_tree(i) for i in expr.items]}
    if isinstance(expr, Not):
        return {"not": _tree(expr.item)}
    raise ValidationError("condition", "must be a condition built with crmkit.F (or its stored text)", expr)


def _expr(tree: Any) -> Expr:
    if tree is True:
        return ALL
    if isinstance(tree, dict):
        if "and" in tree:
            return And(tuple(_expr(i) for i in tree["and"]))
        if "or" in tree:
            return Or(tuple(_expr(i) for i in tree["or"]))
        if "not" in tree:
            return Not(_expr(tree["not"]))
        field = tree.get("field")
        if isinstance(field, str):
            if "in" in tree:
                return In(field, tuple(_read_value(v) for v in tree["in"]))
            select = tree.get("in_select")
            if (
                isinstance(select, dict)
                and isinstance(select.get("entity"), str)
                and isinstance(select.get("field"), str)
            ):
                where = select.get("where")
                inner = None if where is None else _expr(where)
                having = select.get("having")
                grouped = None
                if isinstance(having, list) and len(having) == 3:
                    grouped = (having[0], having[1], _read_value(having[2]))
                first_by = select.get("first_by")
                if isinstance(first_by, list) and all(isinstance(name, str) for name in first_by):
                    first_where = select.get("first_where")
                    first = None if first_where is None else _expr(first_where)
                    entity, of = select["entity"], select["field"]
                    return InSelect(field, Select(entity, of, inner, first_by=tuple(first_by), first_where=first))
                return InSelect(field, Select(select["entity"], select["field"], inner, grouped))
            if "contains" in tree:
                return Contains(field, _read_value(tree["contains"]))
            if tree.get("is_empty") is True:
                return IsEmpty(field)
            if "op" in tree:
                return Compare(field, tree["op"], _read_value(tree.get("value")))
    raise ValidationError("condition", "is not the stored form of a condition", tree)


def condition_text(value: Any) -> str:
    """The canonical stored text of a condition (an expression, or stored text, which is checked)."""
    if isinstance(value, str):
        return condition_text(parse_condition(value))
    return json.dumps(_tree(value), separators=(",", ":"), sort_keys=True)


def parse_condition(text: str) -> Expr:
    """The expression a ``condition`` field holds."""
    try:
        tree = json.loads(text)
    except (TypeError, ValueError):
        raise ValidationError("condition", "is not the stored form of a condition", text) from None
    return _expr(tree)

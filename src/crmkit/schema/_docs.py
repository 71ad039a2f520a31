"""Documentation derived from declarations: the Markdown table of an aggregate's (or value object's) fields.

The docs pages paste these tables; a test regenerates them and compares, so the
documentation of a field cannot drift from its declaration.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from crmkit.schema._declare import declared_fields
from crmkit.schema._fields import MISSING, FieldDef
from crmkit.schema._registry import AggregateSpec

__all__ = ["field_table"]

_HEADER = (
    "| Field | Kind | Required / default | Sortable | Personal | Refers to |\n| --- | --- | --- | --- | --- | --- |"
)


def _kind(fd: FieldDef) -> str:
    kind = _kind_name(fd)
    if fd.choices is not None:
        kind += ": " + ", ".join(f"`{c}`" for c in fd.choices)
    if fd.check is not None:
        kind += f", checked by `{getattr(fd.check, '__name__', 'a check').lstrip('_')}`"
    return kind


def _kind_name(fd: FieldDef) -> str:
    if fd.kind == "enum":
        values = ", ".join(f"`{m.value}`" for m in fd.type)
        return f"enum `{fd.type.__name__}` ({values})"
    if fd.kind == "many":
        return f"many `{fd.type.__name__}`"
    if fd.kind == "money" and fd.negative:
        return "money (may be negative)"
    if fd.kind == "text" and fd.blank:
        return "text (may be blank)"
    return fd.kind


def _default(value: Any) -> str:
    if isinstance(value, str) and type(value) is not str:  # an open vocabulary such as Stage
        return f"`{str(value)!r}`"
    if isinstance(value, enum.Enum):
        return f"`{type(value).__name__}.{value.name}`"
    if isinstance(value, frozenset) and not value:
        return "`frozenset()`"
    return f"`{value!r}`"


def _required(fd: FieldDef) -> str:
    if fd.kind == "attributes":
        return "optional (empty)"
    if fd.default is MISSING:
        return "required"
    return f"default {_default(fd.default)}"


def _refers(fd: FieldDef) -> str:
    if fd.kind == "ref":
        return f"`{fd.target}`, on delete: {fd.on_delete}"
    if fd.kind == "ref_any":
        return f"any aggregate, on delete: {fd.on_delete}"
    return ""


def _personal(fd: FieldDef) -> str:
    return f"`{fd.personal}`" if fd.personal else ""


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def field_table(declared: AggregateSpec | type) -> str:
    """The Markdown table of the fields of an aggregate (class or spec) or a ``@schema.value_object`` class.

    One row per declared field, in declaration order: name, kind, required or its default,
    sortable, the kind of personal data it holds, and for references the aggregate referred to and ``on_delete``.
    The fields every record has (id, created_at, updated_at, version, external_id) are
    left out.
    """
    if isinstance(declared, AggregateSpec):
        fields: tuple[FieldDef, ...] = tuple(declared.declared.values())
    elif isinstance(declared, type) and attrs.has(declared):
        fields = declared_fields(declared)
    else:
        raise TypeError(f"field_table takes a declared aggregate or value object, not {declared!r}")
    rows = [
        f"| `{fd.name}` | {_kind(fd)} | {_required(fd)} | {_yes(fd.sortable)} | {_personal(fd)} | {_refers(fd)} |"
        for fd in fields
    ]
    return "\n".join([_HEADER, *rows])

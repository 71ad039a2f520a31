"""crmkit's query language as MongoDB filters, with the semantics of ``crmkit.query.evaluate``.

How each rule of the reference semantics is kept:

* two-valued logic: ``~`` becomes ``$nor`` of the translated condition, which is the
  exact complement over documents (a missing field included), never ``$not``;
  ``!=`` is ``$ne``, which matches missing fields as the reference does;
* same-kind comparisons: MongoDB compares values of one BSON type bracket only, and the
  stored shapes (``_documents``) put each crmkit kind in its own bracket (numbers, text,
  booleans, BSON dates for dates, ``{"us": ...}`` sub-documents for attribute datetimes).
  Booleans are never ordered, so an ordering comparison with a boolean matches nothing;
* binary collation: no collation is ever given, so strings compare by UTF-8 bytes, which
  is code-point order;
* ``contains``: array membership for sets, an escaped regular expression for text;
* ``is_empty``: the list has no element 0 (``{"field.0": {"$exists": false}}``), which holds for
  an empty array, null and a field left out (empty lists are not stored); under ``~`` the
  ``$nor`` of it is "has an element";
* ``startswith``: a range of strings (``prefix <= v < prefix_end(prefix)``), on the field
  or, folded, on its folded form ``_folded.<field>``; ``matches``: ``$all`` of the folded
  words on the array ``_words.<field>``; both kept and indexed by the codecs (``_documents``);
* declared aggregates (``_derived``) need nothing of their own: an enum is stored as its
  value text (what a bound query value is), a boolean as a BSON boolean (only ``==``,
  ``!=`` and ``in_`` apply), and a ``ref_any`` field as the sub-document whose paths
  ``about.aggregate`` and ``about.id`` are the query's own field names;
* order: a missing value sorts as null, below every value of any bracket: first in an
  ascending order, last in a descending one, which is crmkit's rule for None. A keyset
  page's condition gets the bound its branches imply on the first sort key, so that the
  index giving the order is read from the cursor on (``_implied_bound``).

User values only ever appear as operands (``{"$eq": value}``), and field names come from
the entity spec or are identifiers (``attributes.<name>``), so no value can become an
operator or a path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from crmkit.entities import EntitySpec
from crmkit.query import All, And, Compare, Contains, Expr, In, IsEmpty, Matches, Not, Or, Order, StartsWith
from crmkit.search import prefix_end
from crmkit_mongo._documents import FOLDED, WORDS, bson_date, decimal128, encode_attribute, micros

__all__ = ["NOTHING", "for_tenant", "sort_spec", "translate"]

#: A filter no document matches (every document has an _id).
NOTHING: Mapping[str, Any] = {"_id": {"$exists": False}}

_ORDERING = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def encode_value(spec: EntitySpec, field: str, value: Any) -> Any:
    """A bound query value in the stored BSON form of ``field``."""
    if field.startswith("attributes."):
        return encode_attribute(value)
    kind = spec.fields[field].kind
    if kind == "datetime":
        return micros(value)
    if kind == "date":
        return bson_date(value)
    if kind == "decimal":
        return decimal128(value if isinstance(value, Decimal) else Decimal(value))
    if kind in ("text", "text_set"):
        return str(value)  # plain str, not a Stage or Channel subclass
    return value


def translate(expr: Expr, spec: EntitySpec) -> dict[str, Any]:
    """A MongoDB filter matching exactly the documents whose records satisfy ``expr``."""
    if isinstance(expr, All):
        return {}
    if isinstance(expr, Compare):
        field = expr.field
        if expr.value is None:
            return {field: None} if expr.op == "==" else {field: {"$ne": None}}
        value = encode_value(spec, field, expr.value)
        if expr.op == "==":
            return {field: {"$eq": value}}
        if expr.op == "!=":
            return {field: {"$ne": value}}
        if isinstance(expr.value, bool):
            return dict(NOTHING)
        return {field: {_ORDERING[expr.op]: value}}
    if isinstance(expr, In):
        return {expr.field: {"$in": [encode_value(spec, expr.field, v) for v in expr.values]}}
    if isinstance(expr, Contains):
        field = expr.field
        if not field.startswith("attributes.") and spec.fields[field].kind == "text_set":
            return {field: {"$eq": expr.value}}  # an array field equals a value when it holds it
        return {field: {"$regex": re.escape(expr.value)}}
    if isinstance(expr, IsEmpty):
        return {f"{expr.field}.0": {"$exists": False}}
    if isinstance(expr, StartsWith):
        path = f"{FOLDED}.{expr.field}" if expr.fold else expr.field
        end = prefix_end(expr.prefix)
        # a range on the text bracket: the index on the (folded) field serves it
        return {path: {"$gte": expr.prefix} if end is None else {"$gte": expr.prefix, "$lt": end}}
    if isinstance(expr, Matches):
        return {f"{WORDS}.{expr.field}": {"$all": list(expr.words)}}
    if isinstance(expr, And):
        parts: list[dict[str, Any]] = []
        for item in expr.items:
            part = translate(item, spec)
            parts.extend(part["$and"] if len(part) == 1 and "$and" in part else [part])
        return {"$and": parts}
    if isinstance(expr, Or):
        either = {"$or": [translate(item, spec) for item in expr.items]}
        bound = _implied_bound(expr, spec)
        return either if bound is None else {"$and": [bound, either]}
    if isinstance(expr, Not):
        return {"$nor": [translate(expr.item, spec)]}
    raise TypeError(f"not a bound crmkit condition: {expr!r}")


def _implied_bound(expr: Or, spec: EntitySpec) -> dict[str, Any] | None:
    """``{k: {"$gte": v}}`` (``$lte`` for ``<``) when every branch of ``expr`` implies it, else None.

    That is the shape of a keyset page (``crmkit.query.keyset_after``): ``k > v``, or
    ``k == v`` and a later key beyond its value. MongoDB plans the ``$or`` alone as one
    index scan per branch and a sort of everything after the cursor, so paging through a
    collection would read it again for every page; with the bound, which changes no
    answer, the index that gives the order is read from the cursor on, in order.
    """
    first = expr.items[0]
    if not isinstance(first, Compare) or first.op not in ("<", ">") or first.value is None:
        return None
    field, value = first.field, first.value
    if field.startswith("attributes."):
        return None  # an attribute may hold values of any kind: nothing is implied across kinds
    for item in expr.items[1:]:
        head = item.items[0] if isinstance(item, And) else item
        if not (
            isinstance(head, Compare)
            and head.field == field
            and head.op == "=="
            and type(head.value) is type(value)
            and head.value == value
        ):
            return None
    return {field: {"$gte" if first.op == ">" else "$lte": encode_value(spec, field, value)}}


def for_tenant(
    tenant: str, expr: Expr, spec: EntitySpec, translated: Callable[[Expr, EntitySpec], dict[str, Any]] = translate
) -> dict[str, Any]:
    """The filter of ``expr`` restricted to one tenant (every query goes through here); ``translated`` is
    ``translate`` or one that knows more nodes (``_semijoin``'s planned sub-queries)."""
    condition = translated(expr, spec)
    if not condition:
        return {"tenant": tenant}
    if "$and" in condition and len(condition) == 1:
        return {"$and": [{"tenant": tenant}, *condition["$and"]]}
    return {"$and": [{"tenant": tenant}, condition]}


def sort_spec(order: Order) -> list[tuple[str, int]]:
    """A pymongo sort for an Order (always total: it ends with id)."""
    return [(name, -1 if desc else 1) for name, desc in order.keys]

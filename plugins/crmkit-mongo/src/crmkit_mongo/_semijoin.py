"""Sub-queries (``F(f).in_(Select(...))``, ``among``, grouped ones with ``having``) inside one pipeline.

A MongoDB filter cannot read another collection, so a condition with sub-queries is read
by an aggregation pipeline instead (``count``, ``find`` and reports use it):

1. ``$match`` of the conjuncts without a sub-query (and the tenant): the indexes serve it and
   it leaves only the documents the rest must look at;
2. per sub-query, a ``$lookup`` whose ``localField`` / ``foreignField`` equality (the field
   against the selected one, through the other collection's ``(tenant, field)`` index) is
   followed by the sub-query's own pipeline: its ``$match`` (with the tenant and its own
   sub-queries, recursively), and for ``having`` a ``$group`` of the one value's records
   with the measure and a ``$match`` on it, for ``first_by`` a ``$sort`` of them, ``$limit: 1``
   and the ``first_where`` test of that first record; ``$limit: 1``, since only "is there
   one" counts;
3. ``$match`` of the rest of the condition, where a sub-query is "its lookup found
   something" (``{"_sN.0": {"$exists": true}}``): negations and ``|`` keep their meaning;
4. the looked-up fields are dropped.

This is the general form: a sub-query anywhere in the condition (under ``~`` or ``|``), and
the exact group semantics of ``having`` (a sum of integers as Decimal128, so it is exact; a
measure of no values never passes). Its cost is one indexed look-up per document left after
the first ``$match``. A missing field is in nothing: the looked-up records must have a value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from crmkit.entities import EntitySpec
from crmkit.query import ALL, And, Compare, Expr, InSelect, Not, Or, has_select
from crmkit_mongo._documents import decimal128
from crmkit_mongo._filters import encode_value, for_tenant, sort_spec, translate

__all__ = ["stages"]

_OPERATORS = {"==": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}

#: The collection name of an aggregate (the store's repository for it).
Collections = Callable[[EntitySpec], str]


def stages(tenant: str, where: Expr, spec: EntitySpec, collection_of: Collections) -> list[dict[str, Any]]:
    """The pipeline stages that keep exactly the tenant's documents matching ``where``."""
    if not has_select(where):
        return [{"$match": for_tenant(tenant, where, spec)}]
    items = where.items if isinstance(where, And) else (where,)
    plain = [i for i in items if not has_select(i)]
    joined = [i for i in items if has_select(i)]
    names = (f"_s{n}" for n in itertools.count())
    out: list[dict[str, Any]] = [{"$match": for_tenant(tenant, And(tuple(plain)) if plain else ALL, spec)}]
    lookups: list[dict[str, Any]] = []
    rest = [_replaced(i, tenant, collection_of, names, lookups) for i in joined]
    out.extend(lookups)
    out.append({"$match": translate_marked(And(tuple(rest)) if len(rest) > 1 else rest[0], spec)})
    out.append({"$unset": [lookup["$lookup"]["as"] for lookup in lookups]})
    return out


class _Found(Expr):
    """A sub-query replaced by its lookup: the looked-up array ``name`` is not empty."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def translate_marked(expr: Expr, spec: EntitySpec) -> dict[str, Any]:
    """``translate`` with each looked-up sub-query a test that its lookup found something."""
    if isinstance(expr, _Found):
        return {f"{expr.name}.0": {"$exists": True}}
    if isinstance(expr, And):
        return {"$and": [translate_marked(i, spec) for i in expr.items]}
    if isinstance(expr, Or):
        return {"$or": [translate_marked(i, spec) for i in expr.items]}
    if isinstance(expr, Not):
        return {"$nor": [translate_marked(expr.item, spec)]}
    return translate(expr, spec)


def _replaced(
    expr: Expr, tenant: str, collection_of: Collections, names: Iterator[str], lookups: list[dict[str, Any]]
) -> Expr:
    if isinstance(expr, InSelect):
        name = next(names)
        lookups.append(_lookup(expr, tenant, collection_of, name))
        return _Found(name)
    if isinstance(expr, (And, Or)):
        return type(expr)(tuple(_replaced(i, tenant, collection_of, names, lookups) for i in expr.items))
    if isinstance(expr, Not):
        return Not(_replaced(expr.item, tenant, collection_of, names, lookups))
    return expr


def _lookup(expr: InSelect, tenant: str, collection_of: Collections, name: str) -> dict[str, Any]:
    select = expr.select
    inner = select.spec
    assert inner is not None, "a bound sub-query"
    present = Compare(select.field, "!=", None)
    where = present if select.where is None else And((present, select.where))
    pipeline = stages(tenant, where, inner, collection_of)
    if select.having is not None:
        pipeline.extend(_having(inner, select.having))
    if select.first_by is not None:
        # the looked-up records are the one group of this value: its first record, then its test
        pipeline.extend(({"$sort": dict(sort_spec(select.first_by))}, {"$limit": 1}))
        if select.first_where is not None:
            pipeline.extend(stages(tenant, select.first_where, inner, collection_of))
    pipeline.append({"$limit": 1})
    pipeline.append({"$project": {"_id": 1}})
    return {
        "$lookup": {
            "from": collection_of(inner),
            "localField": expr.field,
            "foreignField": select.field,
            "pipeline": pipeline,
            "as": name,
        }
    }


def _having(spec: EntitySpec, having: tuple[str, str, Any]) -> list[dict[str, Any]]:
    """``$group`` of the records of one value (all the lookup found) and ``$match`` of the measure."""
    measure, op, value = having
    if measure == "count":
        return [{"$group": {"_id": None, "m": {"$sum": 1}}}, {"$match": {"m": {_OPERATORS[op]: value}}}]
    function, _, field = measure[:-1].partition("(")
    path = "$" + field
    present = {"$sum": {"$cond": [{"$eq": [{"$ifNull": [path, None]}, None]}, 0, 1]}}
    if function == "sum":
        total = {"$toDecimal": path} if spec.fields[field].kind == "int" else path
        group, bound = {"$sum": total}, decimal128(Decimal(value))
    else:
        group, bound = {"$" + function: path}, encode_value(spec, field, value)
    # a measure of no values (every one missing) never passes, whatever the operator
    return [
        {"$group": {"_id": None, "m": group, "n": present}},
        {"$match": {"n": {"$gt": 0}, "m": {_OPERATORS[op]: bound}}},
    ]

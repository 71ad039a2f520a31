"""Sub-queries (``F(f).in_(Select(...))``, ``among``, ``having``, ``first_by``) on MongoDB, planned one by one.

A MongoDB filter cannot read another collection, so each sub-query of a condition is run in
one of two ways, chosen for each sub-query when the condition is read:

* **read first**, when it has at most ``READ_FIRST`` records: one pipeline on its collection
  reads them (a ``$limit`` of one more record bounds what this costs when it has more), and
  works out its values from them (per value: the ``$group`` and measure of ``having``, the
  ``$sort`` and ``$first`` of ``first_by`` then the ``first_where`` test); the values go in
  the condition as ``$in``, which the indexes of the queried collection serve like any list
  of values, so nothing is looked up per document. Values travel in the query, so none may
  be larger than ``READ_FIRST_VALUE_BYTES`` and all those of a condition together no larger
  than ``READ_FIRST_BYTES`` (MongoDB bounds a command at 16 MiB);
* **looked up**, otherwise: a ``$lookup`` per document, whose ``localField`` /
  ``foreignField`` equality (the field against the selected one, through the other
  collection's ``(tenant, field)`` index) is followed by the same pipeline for the records of
  that one value: its ``$match``, the ``$group`` of ``having`` and a ``$match`` on the measure,
  or the ``$sort`` of ``first_by``, ``$limit: 1`` and the ``first_where`` test; then
  ``$limit: 1``, since only "is there one" counts.

A condition whose sub-queries are all read first is one ``$match``. Otherwise the pipeline is:

1. ``$match`` of the tenant and of the conjuncts without a looked-up sub-query (the indexes
   serve it, and it leaves only the documents the rest must look at);
2. the ``$lookup`` of each looked-up sub-query;
3. ``$match`` of the rest, where a looked-up sub-query is "its lookup found something"
   (``{"_sN.0": {"$exists": true}}``): negations and ``|`` keep their meaning;
4. the looked-up fields are dropped.

A sub-query's own condition, and ``first_where``, are planned the same way (sub-queries nested
in sub-queries), and a sub-query met twice in a condition is read once. Both ways give the
same answers: a missing field is in nothing, the selected field must have a value, a
measure of no values never passes, and sums of integers are exact (as Decimal128). The
values read first are the stored (BSON) ones, put back unchanged, so they compare as the
lookup's equality does. They are read in the session of the calling thread's transaction:
inside a unit of work, from the snapshot the query that uses them reads, its own writes
included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.entities import EntitySpec
from crmkit.query import ALL, And, Compare, Expr, InSelect, Not, Or, Select, has_select
from crmkit_mongo._documents import decimal128
from crmkit_mongo._filters import encode_value, for_tenant, sort_spec, translate

if TYPE_CHECKING:
    from crmkit_mongo._repository import MongoRepository

__all__ = ["READ_FIRST", "READ_FIRST_BYTES", "READ_FIRST_VALUE_BYTES", "stages"]

#: A sub-query with at most this many records is read first and becomes ``$in`` its values; one with
#: more is a ``$lookup``. None: every sub-query is a ``$lookup``.
READ_FIRST: int | None = 5_000
#: A sub-query with a value larger than this (BSON bytes: long text) is looked up, whatever its size.
READ_FIRST_VALUE_BYTES = 1_024
#: The values read first for one condition take at most this many bytes altogether (they travel in the query,
#: which MongoDB bounds at 16 MiB); the sub-queries met once it is spent are looked up.
READ_FIRST_BYTES = 8 << 20

_OPERATORS = {"==": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}

#: The store's repository (its collection and session) of an aggregate.
Repositories = Callable[[EntitySpec], "MongoRepository"]


def stages(tenant: str, where: Expr, spec: EntitySpec, repository_of: Repositories) -> list[dict[str, Any]]:
    """The pipeline stages that keep exactly the tenant's documents matching ``where``."""
    return _Planner(tenant, repository_of).stages(where, spec)


@attrs.frozen
class _Found(Expr):
    """A looked-up sub-query: the looked-up array ``name`` is not empty."""

    name: str


@attrs.frozen
class _Values(Expr):
    """A sub-query read first: ``field`` is one of its ``values``, in their stored form."""

    field: str
    values: tuple[Any, ...]


def _holds(expr: Expr, kind: type[Expr] | tuple[type[Expr], ...]) -> bool:
    if isinstance(expr, kind):
        return True
    if isinstance(expr, (And, Or)):
        return any(_holds(i, kind) for i in expr.items)
    return isinstance(expr, Not) and _holds(expr.item, kind)


def translate_planned(expr: Expr, spec: EntitySpec) -> dict[str, Any]:
    """``translate`` with each sub-query as planned: ``$in`` its values, or a test that its lookup found one."""
    if isinstance(expr, _Found):
        return {f"{expr.name}.0": {"$exists": True}}
    if isinstance(expr, _Values):
        return {expr.field: {"$in": list(expr.values)}}
    if not _holds(expr, (_Found, _Values)):
        return translate(expr, spec)
    if isinstance(expr, And):
        return {"$and": [translate_planned(i, spec) for i in expr.items]}
    if isinstance(expr, Or):
        return {"$or": [translate_planned(i, spec) for i in expr.items]}
    assert isinstance(expr, Not)
    return {"$nor": [translate_planned(expr.item, spec)]}


def _conjuncts(expr: Expr) -> Iterator[Expr]:
    """The items of a conjunction, nested ones opened (``a & b & c`` is ``And((And((a, b)), c))``)."""
    if isinstance(expr, And):
        for item in expr.items:
            yield from _conjuncts(item)
    else:
        yield expr


def _conjunction(items: list[Expr]) -> Expr:
    return ALL if not items else items[0] if len(items) == 1 else And(tuple(items))


class _Planner:
    """Plans the sub-queries of one condition (and of theirs) in one tenant; a sub-query is read at most once."""

    def __init__(self, tenant: str, repository_of: Repositories) -> None:
        self.tenant = tenant
        self.repository_of = repository_of
        self.read: dict[Select, tuple[tuple[Any, ...], int] | None] = {}
        self.budget = READ_FIRST_BYTES

    def stages(self, where: Expr, spec: EntitySpec) -> list[dict[str, Any]]:
        """The stages keeping the tenant's documents of ``spec`` that match ``where``."""
        if not has_select(where):
            return [{"$match": for_tenant(self.tenant, where, spec)}]
        lookups: list[dict[str, Any]] = []
        planned = self._planned(where, lookups)
        items = list(_conjuncts(planned))
        first = [i for i in items if not _holds(i, _Found)]
        out: list[dict[str, Any]] = [{"$match": for_tenant(self.tenant, _conjunction(first), spec, translate_planned)}]
        if lookups:
            rest = [i for i in items if _holds(i, _Found)]
            out.extend(lookups)
            out.append({"$match": translate_planned(_conjunction(rest), spec)})
            out.append({"$unset": [lookup["$lookup"]["as"] for lookup in lookups]})
        return out

    def _planned(self, expr: Expr, lookups: list[dict[str, Any]]) -> Expr:
        """``expr`` with each sub-query read first (``_Values``) or looked up (``_Found``, its lookup appended)."""
        if isinstance(expr, InSelect):
            select = expr.select
            records = self._records(select)
            read = self._read(select, records)
            if read is not None and read[1] <= self.budget:
                self.budget -= read[1]
                return _Values(expr.field, read[0])
            name = f"_s{len(lookups)}"
            lookups.append(self._lookup(expr, records, name))
            return _Found(name)
        if isinstance(expr, (And, Or)):
            return type(expr)(tuple(self._planned(i, lookups) for i in expr.items))
        if isinstance(expr, Not):
            return Not(self._planned(expr.item, lookups))
        return expr

    def _records(self, select: Select) -> list[dict[str, Any]]:
        """Stages keeping the sub-query's records: those matching its condition, with a value."""
        assert select.spec is not None, "a bound sub-query"
        present = Compare(select.field, "!=", None)
        return self.stages(present if select.where is None else And((present, select.where)), select.spec)

    def _groups(self, select: Select, per_value: bool) -> list[dict[str, Any]]:
        """Stages after ``_records`` keeping the groups of records (of one value each) that pass the sub-query's
        ``having`` or ``first_by``/``first_where``: ``per_value``, one document per value (the value its
        ``_id`` or its field); in a lookup, where all the records have the one value, a document if it passes."""
        spec = select.spec
        assert spec is not None, "a bound sub-query"
        key = "$" + select.field if per_value else None
        if select.having is not None:
            return _having(spec, select.having, key)
        if select.first_by is None:
            return []
        out: list[dict[str, Any]] = [{"$sort": dict(sort_spec(select.first_by))}]
        if per_value:
            first = {"$group": {"_id": key, "first": {"$first": "$$ROOT"}}}
            out.extend((first, {"$replaceRoot": {"newRoot": "$first"}}))
        else:
            out.append({"$limit": 1})
        if select.first_where is not None:
            out.extend(self.stages(select.first_where, spec))
        return out

    def _read(self, select: Select, records: list[dict[str, Any]]) -> tuple[tuple[Any, ...], int] | None:
        """The sub-query's values (stored form) and (at most) their size in bytes, when it has at most
        ``READ_FIRST`` records and none of its values is larger than ``READ_FIRST_VALUE_BYTES``; else None."""
        at_most = READ_FIRST
        if at_most is None:
            return None
        try:
            if select in self.read:
                return self.read[select]
        except TypeError:  # a value that cannot be hashed: read it again
            pass
        assert select.spec is not None, "a bound sub-query"
        values_of = self._groups(select, per_value=True)
        if select.having is None:  # one document per value (having's groups are one already)
            values_of.append({"$group": {"_id": "$" + select.field}})
        # the values of a sub-query that is looked up after all are left out, so that no answer is large
        values_of.append({"$match": {"$expr": {"$lte": [{"$bsonSize": {"v": "$_id"}}, READ_FIRST_VALUE_BYTES]}}})
        size = {"$bsonSize": {"v": "$" + select.field}}
        counted = {"$group": {"_id": None, "n": {"$sum": 1}, "largest": {"$max": size}, "bytes": {"$sum": size}}}
        repo = self.repository_of(select.spec)
        pipeline = [*records, {"$limit": at_most + 1}, {"$facet": {"records": [counted], "values": values_of}}]
        (found,) = repo.collection.aggregate(pipeline, allowDiskUse=True, session=repo._session())
        seen = found["records"][0] if found["records"] else {"n": 0, "largest": 0, "bytes": 0}
        small = seen["n"] <= at_most and seen["largest"] <= READ_FIRST_VALUE_BYTES
        values = (tuple(doc["_id"] for doc in found["values"]), int(seen["bytes"])) if small else None
        try:
            self.read[select] = values
        except TypeError:
            pass
        return values

    def _lookup(self, expr: InSelect, records: list[dict[str, Any]], name: str) -> dict[str, Any]:
        select = expr.select
        assert select.spec is not None, "a bound sub-query"
        pipeline = [*records, *self._groups(select, per_value=False), {"$limit": 1}, {"$project": {"_id": 1}}]
        return {
            "$lookup": {
                "from": self.repository_of(select.spec).collection.name,
                "localField": expr.field,
                "foreignField": select.field,
                "pipeline": pipeline,
                "as": name,
            }
        }


def _having(spec: EntitySpec, having: tuple[str, str, Any], key: str | None) -> list[dict[str, Any]]:
    """``$group`` of records by ``key`` (None: all of them, one value's in a lookup) and ``$match`` of the measure."""
    measure, op, value = having
    if measure == "count":
        return [{"$group": {"_id": key, "m": {"$sum": 1}}}, {"$match": {"m": {_OPERATORS[op]: value}}}]
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
        {"$group": {"_id": key, "m": group, "n": present}},
        {"$match": {"n": {"$gt": 0}, "m": {_OPERATORS[op]: bound}}},
    ]

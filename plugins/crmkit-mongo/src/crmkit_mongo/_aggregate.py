"""Group-by reports (``crmkit.aggregation``) as one ``$match`` + ``$group`` pipeline.

The server groups and measures; Python decodes one document per group. How the stored
shapes (``_documents``) keep the semantics of ``crmkit.aggregation.compute``:

* a missing field (None is never stored) groups as null (``$ifNull``);
* numbers of every BSON type compare by value, so an attribute's ``1``, ``1.0`` and
  ``Decimal128("1.00")`` are one group, as the reference says; booleans are a bracket of
  their own;
* sums are exact: money is Decimal128, whose addition keeps every digit (34 of them), and
  integers are added as Decimal128 too (``$toDecimal``), never as a double that could round;
* an instant is stored as microseconds: a time bucket floors it to milliseconds, makes a
  date of it and truncates that with ``$dateTrunc``, whose default zone is UTC (weeks
  starting on Monday);
* a distinct count is the size of the group's ``$addToSet``, without null.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bson import Decimal128

from crmkit.aggregation import AggregateQuery, Bucket, Measure
from crmkit.query import Expr
from crmkit_mongo._documents import from_micros

if TYPE_CHECKING:
    from crmkit_mongo._repository import MongoRepository

__all__ = ["aggregate"]


def _path(field: str) -> str:
    return "$" + field


def _group_expression(bucket: Bucket) -> Any:
    # a missing field groups as null (an explicit null and a missing field would differ)
    value: Any = {"$ifNull": [_path(bucket.field), None]} if bucket.nullable else _path(bucket.field)
    if bucket.unit is None:
        return value
    if bucket.kind == "datetime":
        value = {"$toDate": {"$floor": {"$divide": [_path(bucket.field), 1000]}}}
    # no "timezone": $dateTrunc works in UTC without one, and naming "UTC" sends every document
    # through the time zone rules (a forecast of 300,000 deals took 15% more server time with it)
    trunc: dict[str, Any] = {"date": value, "unit": bucket.unit}
    if bucket.unit == "week":
        trunc["startOfWeek"] = "monday"
    return {"$dateTrunc": trunc}


def _measure_expression(measure: Measure) -> Any:
    if measure.field is None:
        return {"$sum": 1}
    path = _path(measure.field)
    if measure.op == "count":
        return {"$sum": {"$cond": [{"$eq": [{"$ifNull": [path, None]}, None]}, 0, 1]}}
    if measure.op == "sum":
        return {"$sum": {"$toDecimal": path} if measure.kind == "int" else path}
    if measure.op == "min":
        return {"$min": path}
    if measure.op == "max":
        return {"$max": path}
    return {"$addToSet": path}  # count_distinct: sized below


def _decode(kind: str | None, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return int(number) if kind == "int" else number
    if kind == "datetime":
        return from_micros(value)
    if kind == "date":
        return value.date()
    if kind == "attribute":
        if isinstance(value, Mapping):
            return from_micros(value["us"])
        if hasattr(value, "date") and not isinstance(value, (str, bool, int, float, Decimal)):
            return value.date()
    if kind == "int":
        return int(value)
    return value


def aggregate(repo: MongoRepository, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
    """The raw rows of a report, computed by one aggregation pipeline."""
    group: dict[str, Any] = {"_id": {f"g{i}": _group_expression(b) for i, b in enumerate(query.group_by)}}
    sized: dict[str, Any] = {}
    for i, measure in enumerate(query.measures):
        group[f"m{i}"] = _measure_expression(measure)
        if measure.op == "count_distinct":
            sized[f"m{i}"] = {"$size": {"$setDifference": [f"$m{i}", [None]]}}
    pipeline: list[dict[str, Any]] = [*repo.stages(tenant, where), {"$group": group}]
    if query.count_range is not None:
        low, high = query.count_range
        group["size"] = {"$sum": 1}
        pipeline.append({"$match": {"size": {"$gte": low} if high is None else {"$gte": low, "$lte": high}}})
    if sized:
        pipeline.append({"$addFields": sized})
    rows: list[tuple[Any, ...]] = []
    for doc in repo.collection.aggregate(pipeline, allowDiskUse=True, session=repo._session()):
        key = doc["_id"]
        values: list[Any] = []
        for i, bucket in enumerate(query.group_by):
            kind = "date" if bucket.unit is not None else bucket.kind
            values.append(_decode(kind, key.get(f"g{i}")))
        for i, measure in enumerate(query.measures):
            value = doc[f"m{i}"]
            values.append(int(value) if measure.op in ("count", "count_distinct") else _decode(measure.kind, value))
        rows.append(tuple(values))
    return rows

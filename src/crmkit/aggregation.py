"""Group-by reports computed in the store: ``records.aggregate(group_by=..., count=True, sum=...)``.

A report groups the records that match a condition by fields, custom attributes and time
buckets, and measures each group::

    report = crm.transactions.aggregate(
        group_by=("currency", "month(occurred_at)"), count=True, sum="amount", where=F("kind") == "purchase"
    )
    for row in report:
        row["currency"], row["month(occurred_at)"], row["count"], row["sum(amount)"]

Semantics (the same answers on every backend; the conformance suite checks it against
``compute``, the reference written in Python):

* Groups: a model field's value (None is a group of its own); ``attributes.<name>`` (a
  missing attribute is None; numbers group by value, as ``==`` compares them, so ``1``,
  ``1.0`` and ``Decimal("1.00")`` are one group, reported as ``1``; a whole number comes back
  as an ``int``, any other as an exact ``Decimal``; text, booleans, dates and datetimes are
  groups of their own kind); ``day|week|month|quarter|year(field)`` of an instant or a date,
  in UTC, reported as the ``datetime.date`` the bucket starts on (weeks start on Monday).
* Measures: ``count`` (records), ``sum`` and ``mean`` of integer and money fields, ``min``
  and ``max`` of integer, money, text, date and instant fields, ``count_distinct`` of any
  field but sets. A measure ignores missing values; over no values ``sum``, ``mean``,
  ``min`` and ``max`` are None and ``count_distinct`` is 0.
* Exact numbers: an integer sum is an ``int``; a money sum is the exact ``Decimal`` with
  the largest number of decimal places of its terms (as ``Decimal`` addition gives); a mean
  is ``Decimal(sum) / count`` in a 28-digit context. Money values that are equal but
  written with different places (``1.5``, ``1.50``) are one group and one distinct value;
  money group values, minima and maxima come back without trailing zeros.
* Without ``group_by`` there is exactly one row (its count may be 0); with it, one row per
  group that holds a record. Rows come sorted by their group values, None first.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs

from crmkit._errors import ValidationError
from crmkit._validation import check_identifier
from crmkit.entities import EntitySpec
from crmkit.query import COMPARISONS

__all__ = [
    "TIME_UNITS",
    "Aggregation",
    "AggregateQuery",
    "Bucket",
    "Measure",
    "Row",
    "bucket_start",
    "compute",
    "finish",
    "number_value",
    "parse_aggregate",
    "select_values",
]

#: The time buckets of ``group_by``, as ``unit(field)``.
TIME_UNITS = ("day", "week", "month", "quarter", "year")

MeasureOp = Literal["count", "sum", "min", "max", "count_distinct"]

_SUMMABLE = frozenset({"int", "decimal"})
_ORDERED = frozenset({"int", "decimal", "text", "date", "datetime"})
_BUCKET = re.compile(r"^(day|week|month|quarter|year)\((.+)\)$")


@attrs.frozen
class Bucket:
    """One grouping of a report: a field, an attribute (``kind == "attribute"``) or a time bucket of a field."""

    name: str
    field: str
    kind: str
    unit: str | None = None
    #: Whether the field may be missing (attributes may always be).
    nullable: bool = True


@attrs.frozen
class Measure:
    """What the store computes per group: ``count`` (of records when ``field`` is None, else of present values),
    ``sum``, ``min``, ``max`` or ``count_distinct`` of a model field."""

    op: MeasureOp
    field: str | None = None
    kind: str | None = None

    @property
    def name(self) -> str:
        return self.op if self.field is None else f"{self.op}({self.field})"


@attrs.frozen
class AggregateQuery:
    """A bound report: its groupings, the measures the store computes and the ones the caller asked for.

    A store's ``Repository.aggregate`` returns, per group, a tuple of the group values (in
    ``group_by`` order) then the measure values (in ``measures`` order), in the Python types
    of the fields (a bucket as the ``date`` it starts on); ``finish`` does the rest.
    """

    group_by: tuple[Bucket, ...]
    measures: tuple[Measure, ...]
    #: The measures asked for, by name (``"count"``, ``"sum(amount)"``, ``"mean(amount)"``...).
    asked: tuple[str, ...] = ()
    #: Keep only the groups of at least ``low`` and at most ``high`` records (None: no bound),
    #: filtered in the store (``HAVING count(*)``, a ``$match`` after the ``$group``).
    count_range: tuple[int, int | None] | None = None


def _names(param: str, value: str | Sequence[str] | bool | None) -> list[str]:
    if value is None or value == ():
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        names = list(value)
        if all(isinstance(n, str) for n in names):
            return names
    raise ValidationError(param, "takes a field name or a sequence of them", value)


def _field_kind(spec: EntitySpec, param: str, name: str) -> str:
    field = spec.field(name)
    if field is None:
        known = ", ".join(sorted(spec.fields))
        raise ValidationError(param, f"{name!r} is not a field of {spec.name} (known: {known})", name)
    return field.kind


def _nullable(spec: EntitySpec, name: str) -> bool:
    field = spec.field(name)
    return field is None or field.nullable


def parse_aggregate(
    spec: EntitySpec,
    *,
    group_by: str | Sequence[str] | None,
    count: bool,
    sum: str | Sequence[str] | None,
    min: str | Sequence[str] | None,
    max: str | Sequence[str] | None,
    mean: str | Sequence[str] | None,
    count_distinct: str | Sequence[str] | None,
) -> AggregateQuery:
    """Check a report's arguments against an aggregate's fields; ValidationError naming the argument."""
    buckets: list[Bucket] = []
    for name in _names("group_by", group_by):
        match = _BUCKET.match(name)
        if match is not None:
            unit, field = match.groups()
            kind = _field_kind(spec, "group_by", field)
            if kind not in ("datetime", "date"):
                raise ValidationError("group_by", f"{unit}() takes an instant or a date field, not {kind}", name)
            buckets.append(Bucket(name, field, kind, unit, _nullable(spec, field)))
        elif name.startswith("attributes."):
            if not spec.has_attributes:
                raise ValidationError("group_by", f"{spec.name} have no custom attributes", name)
            check_identifier("group_by", name[len("attributes.") :])
            buckets.append(Bucket(name, name, "attribute"))
        else:
            kind = _field_kind(spec, "group_by", name)
            if kind == "text_set":
                raise ValidationError("group_by", "cannot group by a set field", name)
            buckets.append(Bucket(name, name, kind, None, _nullable(spec, name)))
        if len({b.name for b in buckets}) != len(buckets):
            raise ValidationError("group_by", "names a grouping twice", name)
    if not isinstance(count, bool):
        raise ValidationError("count", "must be True or False", count)
    asked: list[str] = ["count"] if count else []
    measures: dict[str, Measure] = {}

    def need(measure: Measure) -> None:
        measures.setdefault(measure.name, measure)

    if count:
        need(Measure("count"))
    for param, allowed, what in (
        ("sum", _SUMMABLE, "integer and money fields"),
        ("mean", _SUMMABLE, "integer and money fields"),
        ("min", _ORDERED, "integer, money, text, date and instant fields"),
        ("max", _ORDERED, "integer, money, text, date and instant fields"),
        ("count_distinct", None, "fields other than sets"),
    ):
        value = {"sum": sum, "mean": mean, "min": min, "max": max, "count_distinct": count_distinct}[param]
        for name in _names(param, value):
            if name.startswith("attributes."):
                raise ValidationError(param, "measures apply to model fields, not custom attributes", name)
            kind = _field_kind(spec, param, name)
            if (allowed is not None and kind not in allowed) or kind == "text_set":
                raise ValidationError(param, f"applies to {what}, not {kind}", name)
            label = f"{param}({name})"
            if label in asked:
                raise ValidationError(param, "names a field twice", name)
            asked.append(label)
            if param in ("sum", "mean"):
                need(Measure("sum", name, kind))
                # how many values: a sum of none is None, a mean divides by it (the records, when never missing)
                field = spec.field(name)
                need(Measure("count", name, kind) if field is not None and field.nullable else Measure("count"))
            else:
                need(Measure(param, name, kind))  # type: ignore[arg-type]
    if not asked:
        raise ValidationError("aggregate", "asks for no measure (count=True, sum=, min=, max=, mean=, count_distinct=)")
    return AggregateQuery(tuple(buckets), tuple(measures.values()), tuple(asked))


# --------------------------------------------------------------------------- the result


@attrs.frozen
class Row:
    """One group of a report: its group values and its measures, both by name (``row["sum(amount)"]``)."""

    group: Mapping[str, Any]
    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        if name in self.group:
            return self.group[name]
        return self.values[name]

    @property
    def key(self) -> tuple[Any, ...]:
        """The group values, in ``group_by`` order."""
        return tuple(self.group.values())

    @property
    def count(self) -> int | None:
        """The number of records of the group (when ``count=True`` was asked)."""
        return self.values.get("count")


@attrs.frozen
class Aggregation:
    """A report: ``rows`` sorted by group, each a ``Row``; iterate it, or look a group up with ``get``."""

    group_by: tuple[str, ...]
    measures: tuple[str, ...]
    rows: tuple[Row, ...]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Row:
        return self.rows[index]

    def get(self, *key: Any) -> Row | None:
        """The row of a group (its values in ``group_by`` order), None if no record falls in it."""
        wanted = tuple(_group_key(v) for v in key)
        for row in self.rows:
            if tuple(_group_key(v) for v in row.key) == wanted:
                return row
        return None

    def as_dict(self) -> dict[Any, dict[str, Any]]:
        """``{group: {measure: value}}``; a group of one field is its value, of several a tuple."""
        one = len(self.group_by) == 1
        return {(row.key[0] if one else row.key): dict(row.values) for row in self.rows}


# --------------------------------------------------------------------------- normal forms


def number_value(value: int | float | Decimal) -> int | Decimal:
    """A number as reports give it: an ``int`` when whole, else the exact ``Decimal`` without trailing zeros."""
    if isinstance(value, int):
        return int(value)  # a plain int, not a driver's subclass
    exact = Decimal(value)  # a float converts exactly
    if exact == exact.to_integral_value():
        return int(exact)
    return exact.normalize(_WIDE)


_WIDE = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999)
_MEAN = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)


def _money(value: Decimal) -> Decimal:
    """A money value without trailing zeros and without an exponent (``100``, not ``1E+2``)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_WIDE)
    return value.normalize(_WIDE)


def _money_sum(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return value.quantize(Decimal(1), context=_WIDE)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, str) and type(value) is not str:  # enums and str subclasses report their text
        return str(value.value) if hasattr(value, "value") else str.__str__(value)
    return value


def _group_value(bucket: Bucket, value: Any) -> Any:
    if value is None:
        return None
    if bucket.kind == "attribute":
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            return number_value(value)
        return _plain(value)
    if bucket.kind == "decimal":
        return _money(Decimal(value))
    return _plain(value)


def _group_key(value: Any) -> tuple[Any, ...]:
    """A sort and identity key for group values of any kind (None first; True is not 1)."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, 0, value)
    if isinstance(value, (int, float, Decimal)):
        return (1, 1, number_value(value))
    if isinstance(value, str):
        return (1, 2, _plain(value))
    if isinstance(value, dt.datetime):
        return (1, 4, value)
    if isinstance(value, dt.date):
        return (1, 3, value)
    if isinstance(value, uuid.UUID):
        return (1, 5, value.int)
    return (1, 9, repr(value))


def _group_form(bucket: Bucket) -> Callable[[Any], Any]:
    """How a group value of ``bucket`` is reported (see ``_group_value``), as one function."""
    if bucket.kind == "attribute" or bucket.kind == "decimal":
        return lambda value: _group_value(bucket, value)
    if bucket.kind == "text":
        return _plain
    return _same


def _same(value: Any) -> Any:
    return value


def _order_key(bucket: Bucket) -> Callable[[Any], tuple[Any, ...]]:
    """The sort key of one grouping's values: None first; values of one kind need no kind rank."""
    if bucket.kind == "attribute":
        return _group_key
    if bucket.kind == "uuid":
        return lambda value: (0, 0) if value is None else (1, value.int)
    return lambda value: (0,) if value is None else (1, value)


def finish(query: AggregateQuery, raw: Iterable[Sequence[Any]]) -> Aggregation:
    """The report from a store's raw rows: normal forms, sums of no values None, means, sorted rows."""
    width = len(query.group_by)
    names = [b.name for b in query.group_by]
    forms = [_group_form(b) for b in query.group_by]
    at = {m.name: width + i for i, m in enumerate(query.measures)}
    kinds = {m.name: m.kind for m in query.measures}
    plans: list[tuple[str, str, int, int, str | None]] = []  # name, op, where its value is, where its count is, kind
    for name in query.asked:
        op, _, rest = name.partition("(")
        field = rest[:-1]
        if op in ("sum", "mean"):
            total = f"sum({field})"
            plans.append((name, op, at[total], at.get(f"count({field})", at.get("count", -1)), kinds[total]))
        else:
            plans.append((name, op, at[name], -1, kinds.get(name)))
    rows: list[Row] = []
    for values in raw:
        key = [form(value) for form, value in zip(forms, values, strict=False)]
        out: dict[str, Any] = {}
        for name, op, index, count_index, kind in plans:
            value = values[index]
            if op in ("count", "count_distinct"):
                out[name] = int(value or 0)
            elif op in ("sum", "mean"):
                present = int(values[count_index] or 0)
                if not present or value is None:
                    out[name] = None
                    continue
                value = int(value) if kind == "int" else _money_sum(value if type(value) is Decimal else Decimal(value))
                out[name] = value if op == "sum" else _MEAN.divide(Decimal(value), Decimal(present))
            elif value is None:
                out[name] = None
            elif kind == "decimal":
                out[name] = _money(Decimal(value))
            elif kind == "int":
                out[name] = int(value)
            else:
                out[name] = _plain(value)
        rows.append(Row(dict(zip(names, key, strict=True)), out))
    if not width and not rows:
        empty = {n: (0 if n == "count" or n.startswith("count_distinct(") else None) for n in query.asked}
        rows.append(Row({}, empty))
    if width == 1:
        order = _order_key(query.group_by[0])
        rows.sort(key=lambda r: order(r.key[0]))
    elif width:
        orders = [_order_key(b) for b in query.group_by]
        rows.sort(key=lambda r: tuple(o(v) for o, v in zip(orders, r.key, strict=True)))
    return Aggregation(tuple(names), query.asked, tuple(rows))


# --------------------------------------------------------------------------- the reference


def bucket_start(unit: str, value: dt.date) -> dt.date:
    """The first day of the ``unit`` holding ``value`` (an instant is taken in UTC; weeks start on Monday)."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc).date()
    if unit == "day":
        return value
    if unit == "week":
        return value - dt.timedelta(days=value.weekday())
    if unit == "month":
        return value.replace(day=1)
    if unit == "quarter":
        return value.replace(month=(value.month - 1) // 3 * 3 + 1, day=1)
    if unit == "year":
        return value.replace(month=1, day=1)
    raise ValueError(f"unknown time unit {unit!r}")


def _distinct_key(kind: str | None, value: Any) -> Any:
    if isinstance(value, Decimal):
        return number_value(value)
    return _plain(value)


def compute(spec: EntitySpec, query: AggregateQuery, records: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The raw rows of a report computed in Python: the reference, and the store's default."""
    groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Any]]] = {}
    sizes: dict[tuple[Any, ...], int] = {}  # records per group, for ``count_range``
    for record in records:
        key_values: list[Any] = []
        for bucket in query.group_by:
            value = spec.record_value(record, bucket.field)
            if bucket.unit is not None and value is not None:
                value = bucket_start(bucket.unit, value)
            key_values.append(_group_value(bucket, value))
        identity = tuple(_group_key(v) for v in key_values)
        entry = groups.get(identity)
        if entry is None:
            state: list[Any] = [None] * len(query.measures)
            for i, m in enumerate(query.measures):
                state[i] = set() if m.op == "count_distinct" else (0 if m.op == "count" else None)
            entry = groups[identity] = (tuple(key_values), state)
        state = entry[1]
        for i, measure in enumerate(query.measures):
            if measure.field is None:
                state[i] += 1
                continue
            value = spec.record_value(record, measure.field)
            if value is None:
                continue
            if measure.op == "count":
                state[i] += 1
            elif measure.op == "sum":
                state[i] = value if state[i] is None else _WIDE.add(state[i], value)
            elif measure.op == "count_distinct":
                state[i].add(_distinct_key(measure.kind, value))
            else:
                value = _plain(value)
                if state[i] is None or (value < state[i] if measure.op == "min" else value > state[i]):
                    state[i] = value
        sizes[identity] = sizes.get(identity, 0) + 1
    out: list[tuple[Any, ...]] = []
    low, high = query.count_range or (0, None)
    for identity, (group_values, totals) in groups.items():
        if sizes[identity] < low or (high is not None and sizes[identity] > high):
            continue
        measured = [len(s) if isinstance(s, set) else s for s in totals]
        out.append((*group_values, *measured))
    return out


def select_values(repository: Any, tenant: str, select: Any) -> list[Any]:
    """The distinct present values of a bound sub-query (``crmkit.query.Select``) whose group passes its
    ``having``: one group-by in ``repository`` (the store of ``select.spec``), whose ``where`` holds no
    sub-query the repository cannot run. What a store without sub-queries of its own runs first."""
    spec: EntitySpec = select.spec
    if select.first_by is not None:
        # each group's first record in an order: the store's own pipeline (a sort and a first per group)
        found_first: list[Any] = repository.first_values(tenant, select)
        return found_first
    measure, op, bound = select.having or ("count", ">=", 1)
    function, _, field = measure.rstrip(")").partition("(")
    measures: dict[str, str | None] = {"sum": None, "min": None, "max": None}
    if field:
        measures[function] = field
    query = parse_aggregate(spec, group_by=select.field, count=True, mean=None, count_distinct=None, **measures)
    rows = finish(query, repository.aggregate(tenant, select.where, query))
    test = COMPARISONS[op]
    found = []
    for row in rows:
        value, key = row[measure], row[select.field]
        if key is not None and value is not None and test(value, bound):
            found.append(key)
    return found

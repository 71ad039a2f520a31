"""A small typed query language that every backend translates into its own queries.

Build conditions from field references and combine them with ``&``, ``|`` and ``~``::

    from crmkit.query import F
    where = (F("kind") == "person") & F("tags").contains("vip") & (F("attributes.score") >= 10)

Semantics (every backend must give the same answers; the conformance suite checks it):

* Logic is two-valued. A comparison with a missing value (NULL, an absent attribute) is
  false, and ``~`` is plain negation, so ``F("owner") != "x"`` is true when owner is None.
* ``== None`` / ``!= None`` test for a missing value.
* Ordering comparisons hold only between values of the same kind: numbers (int, float,
  Decimal; never bool), text, dates, datetimes, uuids. Mixed kinds never match.
* ``contains`` means membership for sets (``tags``, ``participants``) and a case-sensitive
  substring test for text; ``contains_any`` / ``contains_all`` are ``contains`` of each
  value joined with ``|`` / ``&`` (of no values: nothing / everything).
* ``startswith(prefix)`` is a case-sensitive prefix test of text. On fields declared
  ``schema.text(search=True)``, ``startswith(prefix, fold=True)`` tests the folded field
  against the folded prefix and ``matches(query)`` holds when every word of the folded
  query is a word of the folded field (``crmkit.search.fold``); a query with no words
  matches every record whose field is not missing. Customers' ``emails`` and the custom
  attributes a tenant indexes are searched the same way, through ``crmkit.search_terms``
  (a sub-query): they hold when one address (one text value) does.
* ``F("id").in_(Select("transactions", "customer_id", condition))`` (a sub-query, a semi-join)
  holds when the field's value is the ``customer_id`` of a record of ``transactions`` that
  matches ``condition``, in the same tenant; a missing value is in nothing, and the
  sub-query's missing values are left out. ``having=(measure, op, value)`` keeps only the
  values whose group of records passes it. ``F("customer_id").among(customers, condition)``
  is the same as ``F("customer_id").in_(Select(customers, "id", condition))``. Stores run it
  inside the query that uses it: ``IN (SELECT ... [GROUP BY ... HAVING ...])`` in SQL, a
  ``$lookup`` in one pipeline on MongoDB; a store with no sub-queries of its own reads the
  values first (one query, a group-by when there is ``having``): ``resolve_selects``.
* ``F("emails").is_empty()`` holds when a list field (a ``schema.many`` tuple of value objects,
  a ``text_set``) has no element; a missing (None) list counts as empty, so ``~`` of it means
  "has at least one element". Stores test the stored list itself (no element 0).
* Text compares by Unicode code point (binary collation), never by locale.
* Text in a condition is Unicode: a lone surrogate is a ValidationError, as it is in
  stored text. A value for a model field may hold NUL, which stored text never does: it
  is never equal to a stored value, and ``contains`` with it matches nothing.
* ``order_by`` puts a missing value (None) before every value of the field: first in an
  ascending order, last in a descending one; keyset pages follow the same order.
* ``order_by="attributes.<name>"`` sorts by a custom attribute, whose values may be of any
  kind: missing, then numbers (by value: 1, 1.0 and Decimal("1.00") tie), text (by code
  point), instants, booleans (False first), dates, which is the order MongoDB keeps natively.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import operator
import re
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol, Union, overload

import attrs

from crmkit import search
from crmkit._errors import ValidationError
from crmkit._validation import _SURROGATE, check_identifier, frozen_attributes, utc
from crmkit.schema._specs import EntitySpec, FieldSpec

__all__ = [
    "ALL",
    "COMPARISONS",
    "Ago",
    "All",
    "And",
    "Compare",
    "Const",
    "Contains",
    "Copy",
    "Cursor",
    "Expr",
    "F",
    "In",
    "InSelect",
    "IsEmpty",
    "Not",
    "Matches",
    "Or",
    "Order",
    "StartsWith",
    "Test",
    "Value",
    "Where",
    "ago",
    "bind",
    "relative_to",
    "evaluate",
    "attribute_rank",
    "keyset_after",
    "parse_order",
    "resolve_selects",
    "Select",
    "has_select",
    "value_of",
]

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]

#: The comparison operators of conditions (``Compare``) and of a sub-query's ``having``, each with
#: the Python function that applies it. A store runs it as it is (SQLAlchemy columns overload these
#: operators) or maps the keys to operators of its own (MongoDB's ``$lt``...).
COMPARISONS: Mapping[str, Callable[[Any, Any], Any]] = types.MappingProxyType(
    {
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }
)
_OPS: tuple[str, ...] = tuple(COMPARISONS)


class Expr:
    """A condition on records; combine with ``&``, ``|`` and ``~``."""

    __slots__ = ()

    def __and__(self, other: Expr) -> Expr:
        return And((self, _expr(other)))

    def __or__(self, other: Expr) -> Expr:
        return Or((self, _expr(other)))

    def __invert__(self) -> Expr:
        return Not(self)


def _expr(value: object) -> Expr:
    if not isinstance(value, Expr):
        raise ValidationError("where", "conditions combine only with other conditions", value)
    return value


@attrs.frozen
class All(Expr):
    """Matches every record."""


ALL = All()


@attrs.frozen
class Compare(Expr):
    """``field op value``."""

    field: str
    op: CompareOp
    value: Any


@attrs.frozen
class In(Expr):
    """``field`` equals one of ``values``."""

    field: str
    values: tuple[Any, ...]


@attrs.frozen(init=False)
class Select:
    """A sub-query: the ``field`` values of the ``entity`` records that match ``where``.

    ``entity`` is an aggregate's name, its spec (``crm.schema["transactions"]``) or its class.
    ``F("id").in_(Select("transactions", "customer_id", F("kind") == "purchase"))`` is a semi-join:
    the customers who bought. Stores run it inside the query that uses it.
    """

    entity: str
    field: str
    where: Any = None
    #: Keep only the values whose group of records passes ``(measure, op, value)``, a measure as
    #: ``crm.<aggregate>.aggregate`` names it: ``("sum(amount)", ">", Decimal("1000"))``, ``("count", ">=", 2)``.
    having: tuple[str, str, Any] | None = None
    #: Keep only the values whose group's first record in this order (``"-at"``: the latest; a
    #: find order, ties broken by id) matches ``first_where``: "the latest consent record of the
    #: customer for this channel is a grant". Bound: an ``Order``.
    first_by: Any = attrs.field(default=None, kw_only=True)
    #: The condition the first record of a group must match (None: any record).
    first_where: Any = attrs.field(default=None, kw_only=True)
    #: The spec of ``entity``, when given as a spec or class, and once bound (what stores read).
    spec: EntitySpec | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    def __init__(
        self,
        entity: str | EntitySpec | type,
        field: str,
        where: Any = None,
        having: tuple[str, str, Any] | None = None,
        *,
        first_by: str | Sequence[str] | Order | None = None,
        first_where: Any = None,
        spec: EntitySpec | None = None,
    ) -> None:
        if not isinstance(entity, str):
            spec = _entity_of(entity)
            entity = spec.name
        if isinstance(first_by, str):
            first_by = (first_by,)
        elif isinstance(first_by, list):
            first_by = tuple(first_by)
        self.__attrs_init__(entity, field, where, having, first_by=first_by, first_where=first_where, spec=spec)


@attrs.frozen
class InSelect(Expr):
    """``field`` equals the ``select.field`` of some record the sub-query matches (a semi-join).

    Once bound, ``select.where`` is the bound condition on ``select.entity``.
    """

    field: str
    select: Select


@attrs.frozen
class Contains(Expr):
    """Set membership (tags) or substring (text)."""

    field: str
    value: Any


@attrs.frozen
class IsEmpty(Expr):
    """The list field (value objects, a set of texts) has no element; a missing list is empty."""

    field: str


@attrs.frozen
class Matches(Expr):
    """Every one of ``words`` is a word of the folded text field (bound: folded, distinct, sorted)."""

    field: str
    words: tuple[str, ...]


@attrs.frozen
class StartsWith(Expr):
    """The text field starts with ``prefix``; with ``fold``, its folded form starts with the folded prefix."""

    field: str
    prefix: str
    fold: bool = False


@attrs.frozen
class And(Expr):
    """All of ``items`` hold."""

    items: tuple[Expr, ...]


@attrs.frozen
class Or(Expr):
    """At least one of ``items`` holds."""

    items: tuple[Expr, ...]


@attrs.frozen
class Not(Expr):
    """``item`` does not hold."""

    item: Expr


class F:
    """A reference to a field (``F("name")``) or a custom attribute (``F("attributes.tier")``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise ValidationError("where", "field names are strings", name)
        self.name = name

    def __repr__(self) -> str:
        return f"F({self.name!r})"

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "==", value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "!=", value)

    def __lt__(self, value: object) -> Compare:
        return Compare(self.name, "<", value)

    def __le__(self, value: object) -> Compare:
        return Compare(self.name, "<=", value)

    def __gt__(self, value: object) -> Compare:
        return Compare(self.name, ">", value)

    def __ge__(self, value: object) -> Compare:
        return Compare(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    @overload
    def in_(self, values: Select) -> InSelect: ...

    @overload
    def in_(self, values: Iterable[Any]) -> In: ...

    def in_(self, values: Iterable[Any] | Select) -> In | InSelect:
        """The field equals one of the values, or one of the values a sub-query (``Select``) gives."""
        if isinstance(values, Select):
            return InSelect(self.name, values)
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValidationError(self.name, "in_() takes a collection of values", values)
        return In(self.name, tuple(values))

    def contains(self, value: Any) -> Contains:
        """Membership for set fields, substring for text."""
        return Contains(self.name, value)

    def contains_any(self, values: Iterable[Any]) -> Expr:
        """The set holds at least one of ``values`` (for text: contains one of them); none given: never."""
        items = self._many("contains_any", values)
        return Or(items) if items else Not(ALL)

    def contains_all(self, values: Iterable[Any]) -> Expr:
        """The set holds every one of ``values`` (for text: contains each of them); none given: always."""
        items = self._many("contains_all", values)
        return And(items) if items else ALL

    def _many(self, method: str, values: Iterable[Any]) -> tuple[Expr, ...]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValidationError(self.name, f"{method}() takes a collection of values", values)
        return tuple(Contains(self.name, v) for v in dict.fromkeys(values))

    def matches(self, query: str) -> Matches:
        """Every word of ``query`` is a word of the field, in any order, ignoring case and accents.

        ``F("name").matches("stefan popescu")`` finds "Ștefan Popescu" and "POPESCU, Stefan";
        the field must be declared ``schema.text(search=True)`` (crmkit.search says how text folds).
        """
        if not isinstance(query, str):
            raise ValidationError(self.name, "matches() takes a string", query)
        return Matches(self.name, (query,))

    def startswith(self, prefix: str, *, fold: bool = False) -> StartsWith:
        """The field starts with ``prefix``; ``fold=True`` ignores case, accents and punctuation (type-ahead)."""
        if not isinstance(fold, bool):
            raise ValidationError("fold", "must be True or False", fold)
        return StartsWith(self.name, prefix, fold)

    def among(self, aggregate: Any, where: Where = None) -> InSelect:
        """The field's value is the id of a record of ``aggregate`` that matches ``where`` (a semi-join).

        ``aggregate`` is an aggregate's name, spec (``crm.schema["customers"]``) or class:
        ``F("customer_id").among(Customer, F("owner") == "user:a")`` holds for the records of
        customers that user owns. ``where`` is a condition on ``aggregate``'s fields (None: any
        record). The same as ``F(field).in_(Select(aggregate, "id", where))``.
        """
        return InSelect(self.name, Select(aggregate, "id", where))

    def is_empty(self) -> IsEmpty:
        """The list field has no element (``F("emails").is_empty()``: no e-mail address); ``~``: it has one."""
        return IsEmpty(self.name)

    def is_null(self) -> Compare:
        """The field is missing."""
        return Compare(self.name, "==", None)

    def first(self) -> Copy:
        """In ``add_from(values=...)``: the first element's value of a list field (``F("emails.address").first()``)."""
        return Copy(self.name, first=True)


# ----------------------------------------------------------------- values of records built in the store


@attrs.frozen
class Copy:
    """A field of a record built from another record (``add_from``) takes the source record's value.

    ``path`` is a field of the source (``"id"``, ``"owner"``, ``"attributes.tier"``) or a field
    of the value objects of a list field (``"emails.address"``); through a list, ``first=True``
    takes the first element's value (None when the list is empty). ``F("id")`` in ``values``
    is ``Copy("id")``; ``F("emails.address").first()`` is ``Copy("emails.address", first=True)``.
    """

    path: str
    first: bool = False


@attrs.frozen
class Const:
    """A field of a record built from another record (``add_from``) takes this value, the same for every record."""

    value: Any


@attrs.frozen
class Test:
    """A boolean field of a record built from another record (``add_from``): whether the source matches ``where``.

    A condition in ``values`` (``F("id").in_(held_out)``) is a ``Test``; bound, ``where`` is a
    condition on the source aggregate, sub-queries included.
    """

    where: Any


#: What a field of a record built in the store is made of.
Value = Copy | Const | Test


def value_of(value: Any) -> Copy | Const | Test:
    """The ``Value`` written in ``add_from(values=...)``: ``F(...)`` copies, a condition tests, the rest is constant."""
    if isinstance(value, (Copy, Const, Test)):
        return value
    if isinstance(value, F):
        return Copy(value.name)
    if isinstance(value, Expr):
        return Test(value)
    return Const(value)


def _entity_of(aggregate: Any) -> EntitySpec:
    if isinstance(aggregate, EntitySpec):
        return aggregate
    if isinstance(aggregate, type):
        from crmkit.entities import ENTITIES
        from crmkit.schema._declare import spec_of
        from crmkit.schema._registry import builtin_aggregate_of

        name = builtin_aggregate_of(aggregate)
        return ENTITIES[name] if name is not None else spec_of(aggregate)
    raise ValidationError("entity", "takes an aggregate's name, spec (crm.schema[name]) or class", aggregate)


#: What ``find(where=...)`` accepts: a condition, a mapping of field to value (all equal), or None.
Where = Union[Expr, Mapping[str, Any], None]

# --------------------------------------------------------------------------- binding


def _field_spec(entity: EntitySpec, name: str) -> FieldSpec:
    if not isinstance(name, str):
        raise ValidationError("where", "field names are strings", name)
    if name.startswith("attributes."):
        if not entity.has_attributes:
            raise ValidationError(name, f"{entity.name} have no custom attributes", name)
        check_identifier(name, name[len("attributes.") :])
        return FieldSpec(name, "text", nullable=True)  # kind checked per value below
    spec = entity.field(name)
    if spec is None:
        known = ", ".join(sorted(entity.fields))
        raise ValidationError(name, f"is not a field of {entity.name} (known: {known}, attributes.<name>)", name)
    return spec


def _value(entity: EntitySpec, spec: FieldSpec, value: Any, *, for_contains: bool = False) -> Any:
    """Check a query value against the field kind and normalise it (UTC datetimes, plain str)."""
    name = spec.name
    if value is None:
        return None
    if name.startswith("attributes."):
        key = name[len("attributes.") :]
        return frozen_attributes({key: value})[key]
    kind = spec.kind
    if kind == "text_set" or (kind == "text" and for_contains):
        kind = "text"
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return value
    elif kind == "text":
        text = None
        if isinstance(value, str):
            text = str(value.value) if hasattr(value, "value") else str(value)
        elif isinstance(value, enum.Enum) and isinstance(value.value, str):
            text = value.value  # an enum field compares as its value text
        if text is not None:
            if not text.isascii() and _SURROGATE.search(text):
                # not Unicode text: no store could hold it (and drivers cannot even encode it)
                raise ValidationError(name, "must not contain lone surrogates (not valid Unicode text)", value)
            return text
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise ValidationError(name, "integers in queries must fit in 64 bits", value)
            return value
    elif kind == "decimal":
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            number = Decimal(value)
            if not number.is_finite():
                raise ValidationError(name, "must be a finite number", value)
            return number
    elif kind == "datetime":
        if isinstance(value, dt.datetime):
            return utc(value, name)
    elif kind == "date" and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise ValidationError(name, f"compares with {spec.kind} values", value)


class Aggregates(Protocol):
    """What binding a sub-query needs: the specs of a connection's aggregates by name (``crm.schema``)."""

    def __contains__(self, name: object) -> bool: ...

    def __getitem__(self, name: str) -> EntitySpec: ...


def _condition(where: Where) -> Expr:
    """The condition ``where`` stands for, not yet checked against fields."""
    if where is None:
        return ALL
    if isinstance(where, Mapping):
        items = tuple(Compare(str(k), "==", v) for k, v in where.items())
        where = And(items) if items else ALL
    if not isinstance(where, Expr):
        raise ValidationError("where", "must be a condition built with crmkit.query.F, a mapping or None", where)
    return where


def bind(where: Where, entity: EntitySpec, schema: Aggregates | None = None) -> Expr:
    """Check a condition against an entity's fields and normalise its values; raises ValidationError.

    ``schema`` (a connection's ``crm.schema``) is what sub-queries (``F(...).in_(Select(...))``) are
    bound against; without it a condition holding one is refused.
    """
    return _bind(_condition(where), entity, schema)


def _bind_select(expr: InSelect, entity: EntitySpec, schema: Aggregates | None) -> Expr:
    select = expr.select
    if not isinstance(select, Select):
        raise ValidationError(expr.field, "in_() takes values or a Select", select)
    if expr.field.startswith("attributes."):
        raise ValidationError(expr.field, "a sub-query compares a field, not a custom attribute", select)
    spec = _field_spec(entity, expr.field)
    if schema is not None and isinstance(select.entity, str) and select.entity in schema:
        inner = schema[select.entity]
    elif isinstance(select.spec, EntitySpec) and select.spec.name == select.entity:
        inner = select.spec  # given by its spec or class
    elif schema is None:
        raise ValidationError(expr.field, "a sub-query is bound by a connection (crm.<aggregate> methods)", select)
    else:
        raise ValidationError(expr.field, "the sub-query names no aggregate of this connection", select.entity)
    if not isinstance(select.field, str) or select.field.startswith("attributes."):
        raise ValidationError(expr.field, "the sub-query selects a field, not a custom attribute", select.field)
    of = _field_spec(inner, select.field)
    if spec.kind == "text_set" or of.kind != spec.kind:
        raise ValidationError(
            expr.field, f"is {spec.kind}; the sub-query selects {inner.name}.{of.name}, {of.kind}", select.field
        )
    having = None if select.having is None else _bind_having(expr.field, inner, select.having)
    first_by: Order | None = None
    first_where: Expr | None = None
    if select.first_by is not None:
        if having is not None:
            raise ValidationError(expr.field, "a sub-query takes having or first_by, not both", select.first_by)
        first_by = select.first_by if isinstance(select.first_by, Order) else parse_order(select.first_by, inner)
        first_where = bind(select.first_where, inner, schema)
    elif select.first_where is not None:
        raise ValidationError(expr.field, "first_where needs first_by (the order saying which record is first)", None)
    return InSelect(
        expr.field,
        Select(
            inner.name,
            of.name,
            bind(select.where, inner, schema),
            having,
            first_by=first_by,
            first_where=first_where,
            spec=inner,
        ),
    )


_MEASURE = re.compile(r"^(sum|min|max|count)\((.+)\)$")


def _bind_having(name: str, inner: EntitySpec, having: Any) -> tuple[str, str, Any]:
    """``(measure, op, value)`` checked against the sub-query's aggregate: a measure of a field of the right
    kind, an operator, and a value of the measure's kind."""
    if not (isinstance(having, tuple) and len(having) == 3 and isinstance(having[0], str)):
        raise ValidationError(name, "having is (measure, operator, value), e.g. ('sum(amount)', '>', 100)", having)
    measure, op, value = having
    if op not in _OPS:
        raise ValidationError(name, f"having: unknown operator (use one of {' '.join(_OPS)})", op)
    if value is None or isinstance(value, bool):
        raise ValidationError(name, "having compares with a value", value)
    if measure == "count":
        if not isinstance(value, int):
            raise ValidationError(name, "having: a count compares with a whole number", value)
        return (measure, op, value)
    found = _MEASURE.match(measure)
    if found is None:
        raise ValidationError(name, "having: the measure is count, sum(field), min(field) or max(field)", measure)
    function, field = found.groups()
    spec = _field_spec(inner, field)
    allowed = ("int", "decimal") if function == "sum" else ("int", "decimal", "text", "date", "datetime")
    if field.startswith("attributes.") or spec.kind not in allowed:
        raise ValidationError(name, f"having: {function}() does not apply to {inner.name}.{field}", measure)
    return (measure, op, _value(inner, spec, value))


def has_select(expr: Expr) -> bool:
    """Whether a condition holds a sub-query."""
    if isinstance(expr, InSelect):
        return True
    if isinstance(expr, (And, Or)):
        return any(has_select(i) for i in expr.items)
    if isinstance(expr, Not):
        return has_select(expr.item)
    return False


def resolve_selects(expr: Expr, values: Callable[[Select], Iterable[Any]], *, grouped_only: bool = False) -> Expr:
    """A bound condition with each sub-query replaced by ``in_`` its values, for stores that run sub-queries
    first (``grouped_only``: only those with ``having``): ``values(select)`` gives the distinct present values
    (its ``where`` is resolved already). A sub-query that appears more than once is run once."""
    found: dict[Select, tuple[Any, ...]] = {}

    def once(select: Select) -> tuple[Any, ...]:
        try:
            hit = found.get(select)
        except TypeError:  # a value that cannot be hashed: run it again
            return tuple(values(select))
        if hit is None:
            hit = found[select] = tuple(values(select))
        return hit

    return _resolve_selects(expr, once, grouped_only)


def _resolve_selects(expr: Expr, values: Callable[[Select], Iterable[Any]], grouped_only: bool) -> Expr:
    if isinstance(expr, InSelect):
        select = attrs.evolve(expr.select, where=_resolve_selects(expr.select.where, values, grouped_only))
        if isinstance(select.first_where, Expr):
            select = attrs.evolve(select, first_where=_resolve_selects(select.first_where, values, grouped_only))
        if grouped_only and select.having is None:
            return InSelect(expr.field, select)
        return In(expr.field, tuple(values(select)))
    if isinstance(expr, (And, Or)):
        return type(expr)(tuple(_resolve_selects(i, values, grouped_only) for i in expr.items))
    if isinstance(expr, Not):
        return Not(_resolve_selects(expr.item, values, grouped_only))
    return expr


def has_having(expr: Expr) -> bool:
    """Whether a condition holds a sub-query with ``having``."""
    if isinstance(expr, InSelect):
        first = expr.select.first_where
        return (
            expr.select.having is not None
            or has_having(expr.select.where)
            or (isinstance(first, Expr) and has_having(first))
        )
    if isinstance(expr, (And, Or)):
        return any(has_having(i) for i in expr.items)
    if isinstance(expr, Not):
        return has_having(expr.item)
    return False


def _bind(expr: Expr, entity: EntitySpec, schema: Aggregates | None = None) -> Expr:
    if isinstance(expr, InSelect):
        return _bind_select(expr, entity, schema)
    if isinstance(expr, All):
        return expr
    if isinstance(expr, Compare):
        spec = _field_spec(entity, expr.field)
        if expr.op not in _OPS:
            raise ValidationError(expr.field, f"unknown operator (use one of {' '.join(_OPS)})", expr.op)
        if spec.kind == "text_set":
            raise ValidationError(expr.field, "is a set: use contains()", expr.value)
        if spec.kind == "bool" and expr.op not in ("==", "!="):
            raise ValidationError(expr.field, "is true or false: compare it with == or !=", expr.value)
        if expr.value is None and expr.op not in ("==", "!="):
            raise ValidationError(expr.field, "None only compares with == or !=", expr.value)
        return Compare(expr.field, expr.op, _value(entity, spec, expr.value))
    if isinstance(expr, In):
        spec = _field_spec(entity, expr.field)
        if spec.kind == "text_set":
            raise ValidationError(expr.field, "is a set: use contains()", expr.values)
        if not isinstance(expr.values, tuple):
            raise ValidationError(expr.field, "in_() takes a collection of values", expr.values)
        values = tuple(_value(entity, spec, v) for v in expr.values)
        if any(v is None for v in values):
            raise ValidationError(expr.field, "in_() values must not be None", expr.values)
        return In(expr.field, values)
    if isinstance(expr, Contains):
        spec = _field_spec(entity, expr.field)
        if spec.kind not in ("text", "text_set"):
            raise ValidationError(expr.field, "contains() applies to text and set fields", expr.value)
        value = _value(entity, spec, expr.value, for_contains=True)
        if not isinstance(value, str):
            raise ValidationError(expr.field, "contains() takes a string", expr.value)
        if "\x00" in value:
            # Stored text never holds NUL (the domain refuses it), so no record contains it;
            # said here, once, because some stores cannot even search for it.
            return Not(ALL)
        return Contains(expr.field, value)
    if isinstance(expr, IsEmpty):
        return _bind_is_empty(expr, entity)
    if isinstance(expr, (Matches, StartsWith)):
        derived = _derived_search(expr, entity, schema)
        return _bind_search(expr, entity) if derived is None else derived
    if isinstance(expr, (And, Or)):
        if not isinstance(expr.items, tuple) or not expr.items:
            raise ValidationError("where", f"{type(expr).__name__} needs at least one condition", expr.items)
        items = tuple(_bind(_expr(i), entity, schema) for i in expr.items)
        return type(expr)(items)
    if isinstance(expr, Not):
        return Not(_bind(_expr(expr.item), entity, schema))
    raise ValidationError("where", "is not a crmkit condition", expr)


#: Declared kinds whose values are lists (``is_empty`` applies).
LIST_KINDS = frozenset({"many", "text_set", "text_list"})


def list_kind(entity: EntitySpec, name: str) -> str | None:
    """The declared kind of a list field of ``entity`` (``many``, ``text_set``, ``text_list``), None otherwise."""
    declared = getattr(entity, "declared", None)
    fd = declared.get(name) if isinstance(declared, Mapping) else None
    if fd is not None:
        return fd.kind if fd.kind in LIST_KINDS else None
    spec = entity.field(name)
    return "text_set" if spec is not None and spec.kind == "text_set" else None


def _bind_is_empty(expr: IsEmpty, entity: EntitySpec) -> Expr:
    name = expr.field
    if not isinstance(name, str):
        raise ValidationError("where", "field names are strings", name)
    if list_kind(entity, name) is None:
        known = name.startswith("attributes.") or entity.field(name) is not None
        if not known and name not in getattr(entity, "declared", {}):
            _field_spec(entity, name)  # an unknown name: the error says which fields are known
        raise ValidationError(name, "is_empty() applies to list fields (schema.many, text_set)", expr)
    return IsEmpty(name)


def _derived_search(expr: Matches | StartsWith, entity: EntitySpec, schema: Aggregates | None) -> Expr | None:
    """A search on a derived searchable field (customers' ``emails``, an ``attributes.<name>``) as the sub-query
    on ``search_terms`` that serves it (``crmkit.search_terms``); None for a field searched in place."""
    from crmkit.search_terms import SOURCES

    name = expr.field
    if not isinstance(name, str) or schema is None or "search_terms" not in schema:
        return None
    if (entity.name, name) not in SOURCES and not (name.startswith("attributes.") and entity.has_attributes):
        return None
    terms = schema["search_terms"]
    if isinstance(expr, StartsWith) and not expr.fold:
        raise ValidationError(name, "startswith() on a derived searchable field is folded: pass fold=True", expr)
    on_term: Expr  # terms are kept folded: a prefix is folded here and is a range on the terms' index
    if isinstance(expr, Matches):
        on_term = Matches("term", expr.words)
    elif isinstance(expr.prefix, str) and not (not expr.prefix.isascii() and _SURROGATE.search(expr.prefix)):
        on_term = StartsWith("term", search.fold(expr.prefix))
    else:
        on_term = StartsWith("term", expr.prefix)  # not text: refused by binding
    where = And((Compare("record.aggregate", "==", entity.name), Compare("field", "==", name), on_term))
    try:
        return _bind_select(InSelect("id", Select(terms.name, "record.id", where)), entity, schema)
    except ValidationError as exc:  # the query text: name the field searched, not the term
        raise ValidationError(name, exc.message, exc.value) from None


def _bind_search(expr: Matches | StartsWith, entity: EntitySpec) -> Expr:
    name = expr.field
    spec = _field_spec(entity, name)
    folding = isinstance(expr, Matches) or expr.fold
    what = "matches()" if isinstance(expr, Matches) else "startswith()"
    if name.startswith("attributes.") or spec.kind != "text":
        raise ValidationError(name, f"{what} applies to text fields", expr)
    if folding and not spec.search:
        raise ValidationError(
            name, f"{what} folding needs a field declared schema.text(search=True), which this is not", expr
        )
    texts = expr.words if isinstance(expr, Matches) else (expr.prefix,)
    if not isinstance(texts, tuple) or len(texts) != 1 or not isinstance(texts[0], str):
        raise ValidationError(name, f"{what} takes a string", texts)
    text = _value(entity, spec, texts[0], for_contains=True)
    if isinstance(expr, Matches):
        found = search.words(text)
        return Matches(name, found) if found else Compare(name, "!=", None)
    if expr.fold:
        text = search.fold(text)
    elif "\x00" in text:
        return Not(ALL)  # stored text never holds NUL
    return StartsWith(name, text, expr.fold) if text else Compare(name, "!=", None)


# --------------------------------------------------------------------------- evaluation


def _kind_of(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return "bool" if isinstance(value, bool) else None
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, uuid.UUID):
        return "uuid"
    return type(value).__name__


def _plain(value: Any) -> Any:
    # Enums and str subclasses (Stage, Channel) compare as their text.
    if isinstance(value, str) and type(value) is not str:
        return str(value.value) if hasattr(value, "value") else str.__str__(value)
    return value


def _equal(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    left = _plain(left)
    return _kind_of(left) == _kind_of(right) and bool(left == right)


def evaluate(expr: Expr, entity: EntitySpec, record: Any) -> bool:
    """Whether a bound condition holds for a domain record: the reference semantics."""
    if isinstance(expr, All):
        return True
    if isinstance(expr, Compare):
        value = entity.record_value(record, expr.field)
        if expr.op == "==":
            return _equal(value, expr.value)
        if expr.op == "!=":
            return not _equal(value, expr.value)
        value = _plain(value)
        if value is None or _kind_of(value) != _kind_of(expr.value) or isinstance(value, bool):
            return False
        if expr.op == "<":
            return bool(value < expr.value)
        if expr.op == "<=":
            return bool(value <= expr.value)
        if expr.op == ">":
            return bool(value > expr.value)
        return bool(value >= expr.value)
    if isinstance(expr, In):
        value = entity.record_value(record, expr.field)
        return any(_equal(value, v) for v in expr.values)
    if isinstance(expr, Contains):
        value = entity.record_value(record, expr.field)
        if isinstance(value, (frozenset, set)):
            return expr.value in value
        return isinstance(value, str) and expr.value in value
    if isinstance(expr, IsEmpty):
        return not getattr(record, expr.field)
    if isinstance(expr, Matches):
        value = _plain(entity.record_value(record, expr.field))
        if not isinstance(value, str):
            return False
        have = set(search.fold(value).split())
        return all(word in have for word in expr.words)
    if isinstance(expr, StartsWith):
        value = _plain(entity.record_value(record, expr.field))
        if not isinstance(value, str):
            return False
        return (search.fold(value) if expr.fold else value).startswith(expr.prefix)
    if isinstance(expr, And):
        return all(evaluate(i, entity, record) for i in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(i, entity, record) for i in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, entity, record)
    if isinstance(expr, InSelect):
        raise ValidationError(expr.field, "a sub-query is evaluated by a store (resolve_selects first)", expr.select)
    raise ValidationError("where", "is not a crmkit condition", expr)


def conjuncts(expr: Expr) -> Iterable[Expr]:
    """The top-level AND-ed parts of a condition (used to pick an index)."""
    if isinstance(expr, And):
        for item in expr.items:
            yield from conjuncts(item)
    else:
        yield expr


# --------------------------------------------------------------------------- ordering and keyset pagination


@attrs.frozen
class Order:
    """Sort keys as (field, descending) pairs; always ends with ``id`` so the order is total."""

    keys: tuple[tuple[str, bool], ...]
    #: The fields of ``keys`` that may be missing (None sorts before every value).
    nullable: frozenset[str] = frozenset()

    def text(self) -> str:
        return ",".join(("-" if desc else "") + name for name, desc in self.keys)

    def sort_key_values(self, entity: EntitySpec, record: Any) -> tuple[Any, ...]:
        return tuple(_plain(entity.record_value(record, name)) for name, _ in self.keys)


#: Orders parsed from a single name (or None, the default), per entity: views ask the same few
#: over and over. Keyed by the entity's identity, which the value keeps alive and is checked against.
_ORDERS: dict[tuple[int, str | None], tuple[EntitySpec, Order]] = {}


def parse_order(order_by: str | Sequence[str] | None, entity: EntitySpec) -> Order:
    """``"-occurred_at"`` or ``("name", "-created_at")`` to an Order; only sortable fields are allowed."""
    if order_by is None or type(order_by) is str:
        found = _ORDERS.get((id(entity), order_by))
        if found is not None and found[0] is entity:
            return found[1]
        order = _parse_order(order_by, entity)
        if len(_ORDERS) >= 256:  # names come from code, not data; keep the cache small anyway
            _ORDERS.clear()
        _ORDERS[id(entity), order_by] = (entity, order)
        return order
    return _parse_order(order_by, entity)


def _parse_order(order_by: str | Sequence[str] | None, entity: EntitySpec) -> Order:
    if order_by is None:
        names: Sequence[str] = entity.default_order
    elif isinstance(order_by, str):
        names = [order_by]
    elif isinstance(order_by, Iterable) and not isinstance(order_by, (bytes, Mapping)):
        names = list(order_by)
    else:
        raise ValidationError("order_by", "takes a field name or a sequence of them", order_by)
    keys: list[tuple[str, bool]] = []
    for raw in names:
        if not isinstance(raw, str) or not raw.lstrip("-"):
            raise ValidationError("order_by", "takes field names, '-' in front for descending", raw)
        desc = raw.startswith("-")
        name = raw[1:] if desc else raw
        if name.startswith("attributes.") and entity.has_attributes:
            check_identifier("order_by", name[len("attributes.") :])
            if any(k == name for k, _ in keys):
                raise ValidationError("order_by", "names a field twice", raw)
            keys.append((name, desc))
            continue
        spec = entity.field(name)
        if spec is None or not spec.sortable:
            sortable = ", ".join(sorted(n for n, f in entity.fields.items() if f.sortable))
            if entity.has_attributes:
                sortable += ", attributes.<name>"
            raise ValidationError("order_by", f"cannot sort {entity.name} by this (sortable: {sortable})", raw)
        if any(k == name for k, _ in keys):
            raise ValidationError("order_by", "names a field twice", raw)
        keys.append((name, desc))
    if not any(k == "id" for k, _ in keys):
        keys.append(("id", False))
    nullable = frozenset(
        name
        for name, _ in keys
        if name.startswith("attributes.") or ((field := entity.field(name)) is not None and field.nullable)
    )
    return Order(tuple(keys), nullable)


def check_cursor(cursor: Cursor, order: Order, entity: EntitySpec) -> tuple[Any, ...]:
    """The cursor's values, checked against the kinds of the order's fields (ValidationError on ``after``)."""
    if cursor.order != order.text() or len(cursor.values) != len(order.keys):
        raise ValidationError("after", f"belongs to order_by={cursor.order!r}, not {order.text()!r}", str(cursor))
    checked: list[Any] = []
    for (name, _), value in zip(order.keys, cursor.values, strict=True):
        spec = _field_spec(entity, name) if name.startswith("attributes.") else entity.field(name)
        try:
            if value is None and spec is not None and spec.nullable:
                checked.append(None)
                continue
            if spec is None or value is None:
                raise ValidationError(name, "is missing", value)
            checked.append(_value(entity, spec, value))
        except ValidationError as exc:
            raise ValidationError("after", f"is not a cursor of this order ({exc})", str(cursor)) from None
    return tuple(checked)


def keyset_after(order: Order, values: Sequence[Any]) -> Expr:
    """The condition "comes after ``values`` in ``order``", as plain comparisons any backend can run.

    A missing value sorts before every value: after None come the present values
    (ascending) or nothing (descending); after a value, descending, come the missing ones.
    """
    branches: list[Expr] = []
    for i, (name, desc) in enumerate(order.keys):
        equal = [Compare(order.keys[j][0], "==", values[j]) for j in range(i)]
        beyond: Expr
        if values[i] is None:
            if desc:
                continue
            beyond = Compare(name, "!=", None)
        elif name.startswith("attributes."):
            beyond = _attribute_beyond(name, values[i], desc)
        else:
            beyond = Compare(name, "<" if desc else ">", values[i])
            if desc and name in order.nullable:
                beyond = Or((beyond, Compare(name, "==", None)))
        branches.append(And((*equal, beyond)) if equal else beyond)
    return Or(tuple(branches))


#: The kinds of custom attribute values in their sort order (after a missing value).
_ATTRIBUTE_KINDS = ("number", "text", "datetime", "bool", "date")


def attribute_rank(value: Any) -> int:
    """Where the kind of an attribute value sorts: 0 missing, then numbers, text, instants, booleans, dates."""
    kind = _kind_of(value)
    return 0 if kind is None else 1 + _ATTRIBUTE_KINDS.index(kind)


def _of_kind(name: str, kind: str) -> Expr:
    """The attribute holds a value of ``kind``: a comparison every value of the kind passes."""
    if kind == "number":
        return Compare(name, ">=", -1.7976931348623157e308)  # the least finite float, below any int or Decimal
    if kind == "text":
        return Compare(name, ">=", "")
    if kind == "datetime":
        return Compare(name, ">=", dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc))
    if kind == "date":
        return Compare(name, ">=", dt.date(1, 1, 1))
    return In(name, (False, True))


def _attribute_beyond(name: str, value: Any, desc: bool) -> Expr:
    """After ``value`` in an order by an attribute: greater values of its kind, then the later kinds."""
    rank = attribute_rank(value)
    if isinstance(value, bool):
        same: list[Expr] = [Compare(name, "==", not desc)] if value is desc else []
    else:
        same = [Compare(name, "<" if desc else ">", value)]
    kinds = _ATTRIBUTE_KINDS[: rank - 1] if desc else _ATTRIBUTE_KINDS[rank:]
    later = [_of_kind(name, kind) for kind in kinds]
    if desc:
        later.append(Compare(name, "==", None))
    return Or((*same, *later)) if len(same) + len(later) != 1 else (same + later)[0]


def _encode(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return {"u": value.hex}
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    return value


def _decode(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if tag == "u":
            return uuid.UUID(hex=text)
        if tag == "t":
            return dt.datetime.fromisoformat(text)
        if tag == "d":
            return dt.date.fromisoformat(text)
        if tag == "n":
            return Decimal(text)
    if isinstance(value, (str, int, float)):  # bool and float: values of custom attributes
        return value
    raise ValueError("bad cursor value")


@attrs.frozen
class Cursor:
    """Where a page ended: the sort-key values of its last record. Opaque to callers as ``str(cursor)``."""

    order: str
    values: tuple[Any, ...]

    def __str__(self) -> str:
        raw = json.dumps([self.order, [_encode(v) for v in self.values]], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: Cursor | str) -> Cursor:
        """A cursor from its string form; a bad token is a ValidationError on ``after``."""
        if isinstance(token, Cursor):
            return token
        try:
            padded = token + "=" * (-len(token) % 4)
            order, values = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return cls(str(order), tuple(_decode(v) for v in values))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValidationError("after", f"is not a cursor returned by find() ({exc})", token) from None


# --------------------------------------------------------------------------- relative instants


@attrs.frozen
class Ago:
    """An instant relative to when a condition is evaluated: ``delta`` before it (``ago(days=90)``).

    ``F("occurred_at") >= ago(days=90)`` is "in the last 90 days" wherever the condition is
    kept: a saved segment's query stays relative. It is resolved against the moment a query
    runs (``relative_to``): the connection's clock, or the ``at=`` a segment is counted,
    listed or targeted at.
    """

    delta: dt.timedelta = attrs.field()

    @delta.validator
    def _check(self, _: object, value: object) -> None:
        if not isinstance(value, dt.timedelta):
            raise ValidationError("ago", "is a datetime.timedelta", value)


def ago(delta: dt.timedelta | None = None, /, **units: float) -> Ago:
    """``ago(days=90)`` or ``ago(dt.timedelta(days=90))``: that long before the moment of evaluation."""
    if delta is None:
        try:
            delta = dt.timedelta(**units)
        except TypeError as exc:
            raise ValidationError("ago", f"takes datetime.timedelta units ({exc})", units) from None
    elif units:
        raise ValidationError("ago", "takes a timedelta or units, not both", units)
    return Ago(delta)


def relative_to(where: Where, at: dt.datetime) -> Where:
    """``where`` with every relative instant (``Ago``) made absolute against ``at``, sub-queries included."""
    if not isinstance(where, Expr):
        return where
    when = utc(at, "at")

    def walk(expr: Expr) -> Expr:
        if isinstance(expr, Compare) and isinstance(expr.value, Ago):
            return Compare(expr.field, expr.op, when - expr.value.delta)
        if isinstance(expr, InSelect) and isinstance(expr.select, Select) and isinstance(expr.select.where, Expr):
            inner = walk(expr.select.where)
            first = expr.select.first_where
            first_inner = walk(first) if isinstance(first, Expr) else first
            if inner is expr.select.where and first_inner is first:
                return expr
            return attrs.evolve(expr, select=attrs.evolve(expr.select, where=inner, first_where=first_inner))
        if isinstance(expr, (And, Or)) and isinstance(expr.items, tuple):
            items = tuple(walk(i) if isinstance(i, Expr) else i for i in expr.items)
            return expr if all(a is b for a, b in zip(items, expr.items, strict=True)) else type(expr)(items)
        if isinstance(expr, Not) and isinstance(expr.item, Expr):
            item = walk(expr.item)
            return expr if item is expr.item else Not(item)
        return expr

    return walk(where)

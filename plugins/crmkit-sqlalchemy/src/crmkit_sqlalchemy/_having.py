"""The ``HAVING`` of a grouped sub-query (``Select(..., having=(measure, op, value))``) in SQL.

The measure is compared as ``crmkit.aggregation.select_values`` compares it in Python: exactly,
a group whose measure is missing (a sum or minimum of no values) never passing. Sums on
SQLite are exact without a 64-bit overflow, as ``_aggregate`` computes them: integers as the
sums of their high and low 32 bits, money (stored as text) as the sums of its key's parts;
each side is brought to (whole part, remainder) and compared in that order.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crmkit.query import COMPARISONS

if TYPE_CHECKING:
    from crmkit_sqlalchemy._query import Compiler

__all__ = ["OPERATORS", "having"]

#: crmkit's comparison operators, as they apply to columns (which overload them): SQL's own.
OPERATORS: Mapping[str, Callable[[Any, Any], ColumnElement[bool]]] = COMPARISONS
_LOW_BITS = 2**32
_MICROS = 10**6


def having(compiler: Compiler, condition: tuple[str, str, Any]) -> ColumnElement[bool]:
    """The HAVING condition of a bound ``having`` on the sub-query's table (``compiler``'s)."""
    measure, op, value = condition
    if measure == "count":
        return OPERATORS[op](sa.func.count(), sa.bindparam(None, value, type_=sa.BigInteger()))
    function, _, field = measure[:-1].partition("(")
    if function in ("min", "max"):
        return _extreme(compiler, function, field, op, value)
    kind = compiler.spec.fields[field].kind
    column = compiler.column(field)
    if compiler.pg:
        return OPERATORS[op](sa.func.sum(column), sa.bindparam(None, value, type_=sa.Numeric()))
    if kind == "int":
        number = sa.type_coerce(column, sa.BigInteger())
        high, low = sa.func.sum(number.op(">>")(32)), sa.func.sum(number.op("&")(_LOW_BITS - 1))
        return _pair(high, low, _LOW_BITS, op, Decimal(value), 1)
    # money text: P|N, 8 + 7 digits of the units, '.', 6 digits of the millionths; a negative amount is
    # stored as 10**21 - 1 minus its millionths (N): take back 10**15 units and add one millionth per such amount
    text = sa.type_coerce(column, sa.Text())

    def part(start: int, length: int) -> ColumnElement[Any]:
        return sa.func.sum(sa.cast(sa.func.substr(text, start, length), sa.Integer()))

    negative = sa.func.sum(sa.case((sa.func.substr(text, 1, 1) == "N", 1), else_=0))
    units = part(2, 8) * 10**7 + part(10, 7) - negative * 10**15
    return _pair(units, part(18, 6) + negative, _MICROS, op, Decimal(value), _MICROS)


def _extreme(compiler: Compiler, function: str, field: str, op: str, value: Any) -> ColumnElement[bool]:
    extreme = (sa.func.min if function == "min" else sa.func.max)(compiler.sortable(field))
    if isinstance(value, str) and "\x00" in value and compiler.pg:
        # PostgreSQL text cannot hold NUL, and stored text never does (as Compiler._compare)
        if op in ("==", "!="):
            return extreme.is_not(None) if op == "!=" else sa.false()
        value, op = value[: value.index("\x00")], {"<": "<=", "<=": "<=", ">": ">", ">=": ">"}[op]
    return OPERATORS[op](extreme, compiler._bound(field, value))


def _pair(
    whole: ColumnElement[Any], rest: ColumnElement[Any], base: int, op: str, value: Decimal, scale: int
) -> ColumnElement[bool]:
    """``whole * base + rest`` (in units of ``1 / scale``, ``rest`` >= 0) compared with ``value``."""
    whole, rest = whole + rest // base, rest % base  # rest >= 0, so truncating is flooring
    exact = value * scale
    floor, ceil = math.floor(exact), math.ceil(exact)
    if op in ("==", "!="):
        if floor != ceil:
            return whole.is_not(None) if op == "!=" else sa.false()
        equal = _lexical(whole, rest, base, floor, "==")
        return sa.and_(whole.is_not(None), sa.not_(equal)) if op == "!=" else equal
    # a sum in steps of 1 / scale is > v when above floor(v), >= v when at least ceil(v) (likewise < and <=)
    return _lexical(whole, rest, base, floor if op in (">", "<=") else ceil, op)


def _lexical(
    whole: ColumnElement[Any], rest: ColumnElement[Any], base: int, bound: int, op: str
) -> ColumnElement[bool]:
    high, low = divmod(bound, base)
    big = sa.bindparam(None, high, type_=sa.BigInteger())
    small = sa.bindparam(None, low, type_=sa.BigInteger())
    if op == "==":
        return sa.and_(whole == big, rest == small)
    strict = operator.gt if op[0] == ">" else operator.lt
    return sa.or_(strict(whole, big), sa.and_(whole == big, OPERATORS[op](rest, small)))

"""Group-by reports (``crmkit.aggregation``) as one ``SELECT ... GROUP BY`` on SQLite and PostgreSQL.

Everything is computed by the database; Python only decodes one row per group. Exact
numbers where SQL types fall short:

* money on SQLite is text (``_encoding.money_text``): groups, minima, maxima and distinct
  counts use its sortable 23-character key; a sum adds three integer parts of the key
  (8 and 7 digits of the units, 6 of the millionths, so no sum can overflow 64 bits before
  10^10 rows), counts the negative amounts (stored as complements) and takes the largest
  number of places, and Python puts the exact Decimal back together;
* integer sums on SQLite add the high and low 32 bits apart (``x >> 32``, ``x & 0xFFFFFFFF``);
  PostgreSQL's ``sum(bigint)`` is already an exact ``numeric``;
* custom attributes group by their typed JSON object (``_encoding.encode_attribute``), a
  number by its exact ``n`` key only, so ``1``, ``1.0`` and ``Decimal("1.00")`` are one group;
* time buckets: ``date_trunc`` of the UTC time on PostgreSQL, ``date(..., 'unixepoch', ...)``
  modifiers of the floored second on SQLite (an instant is stored as microseconds there).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crmkit.aggregation import AggregateQuery, Bucket, Measure
from crmkit.query import Expr
from crmkit_sqlalchemy._encoding import MONEY_KEY_WIDTH, decode_attributes, money_of, parse_money_text

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlRepository

__all__ = ["aggregate", "number_of_key"]

_COMPLEMENT = str.maketrans("0123456789", "9876543210")
_BIAS = 5000
_NEGATIVE_BIAS = 10**21 - 1  # a negative amount is stored as this minus its millionths


def number_of_key(key: str) -> Decimal:
    """The exact number back from ``_encoding.number_key``."""
    if key == "1":
        return Decimal(0)
    if key[0] == "2":
        magnitude, digits, sign = int(key[1:5]) - _BIAS, key[5:], 0
    else:
        magnitude, digits, sign = 9999 - int(key[1:5]) - _BIAS, key[5:-1].translate(_COMPLEMENT), 1
    return Decimal((sign, tuple(int(d) for d in digits), magnitude - len(digits) + 1))


Decoder = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


class _Select:
    """The columns of the statement and how each value comes back to Python."""

    def __init__(self) -> None:
        self.columns: list[ColumnElement[Any]] = []
        self.groups: list[int] = []  # positions (1-based) of the grouping columns
        self.decoders: list[tuple[Decoder, int]] = []  # (decode, how many columns it reads)

    def add(self, columns: Sequence[ColumnElement[Any]], decode: Decoder = _identity, *, group: bool = False) -> None:
        for column in columns:
            self.columns.append(column.label(f"c{len(self.columns)}"))
            if group:
                self.groups.append(len(self.columns))
        self.decoders.append((decode, len(columns)))

    def decode(self, row: Sequence[Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        at = 0
        for decode, width in self.decoders:
            part = row[at : at + width]
            at += width
            out.append(decode(part[0] if width == 1 else tuple(part)))
        return tuple(out)


def aggregate(repo: SqlRepository, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
    """The raw rows of a report, computed by one grouped statement."""
    pg = repo.store.dialect == "postgresql"
    select = _Select()
    for bucket in query.group_by:
        _group(repo, select, bucket, pg)
    for measure in query.measures:
        _measure(repo, select, measure, pg)
    statement = sa.select(*select.columns).select_from(repo.table).where(repo.compiler.where(tenant, where))
    if select.groups:
        # by position: an expression with bound parameters (a JSON path, a time unit) would not
        # be recognised as the selected one by PostgreSQL
        statement = statement.group_by(*(sa.literal_column(str(position)) for position in select.groups))
    if query.count_range is not None:
        low, high = query.count_range
        statement = statement.having(sa.func.count() >= low)
        if high is not None:
            statement = statement.having(sa.func.count() <= high)
    with repo.store.connection() as conn:
        return [select.decode(row) for row in conn.execute(statement)]


# ------------------------------------------------------------------ groups


def _group(repo: SqlRepository, select: _Select, bucket: Bucket, pg: bool) -> None:
    if bucket.kind == "attribute":
        _attribute_group(repo, select, bucket.field[len("attributes.") :], pg)
        return
    column = repo.compiler.column(bucket.field)
    if bucket.unit is not None:
        select.add([_bucket(column, bucket.kind, bucket.unit, pg)], _date, group=True)
    elif bucket.kind == "decimal" and not pg:
        select.add([sa.func.substr(column, 1, MONEY_KEY_WIDTH)], _money_key, group=True)
    else:
        select.add([column], group=True)


def _date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value))


def _money_key(value: Any) -> Decimal | None:
    return None if value is None else parse_money_text(str(value))


def _bucket(column: ColumnElement[Any], kind: str, unit: str, pg: bool) -> ColumnElement[Any]:
    if pg:
        if kind == "datetime":
            local: ColumnElement[Any] = sa.func.timezone("UTC", column)
        else:
            local = sa.cast(column, sa.DateTime())
        return sa.cast(sa.func.date_trunc(unit, local), sa.Date())
    if kind == "datetime":
        micros = sa.type_coerce(column, sa.BigInteger())
        # the floored second: SQLite's % keeps the dividend's sign, so instants before 1970 need care
        second = (micros - (micros % 1_000_000 + 1_000_000) % 1_000_000) // 1_000_000
        day: list[Any] = [second, "unixepoch"]
    else:
        day = [column]
    if unit == "day":
        return sa.func.date(*day)
    if unit == "week":
        return sa.func.date(*day, "weekday 0", "-6 days")  # Sunday on or after, then its Monday
    if unit == "month":
        return sa.func.date(*day, "start of month")
    if unit == "year":
        return sa.func.date(*day, "start of year")
    month = sa.cast(sa.func.strftime("%m", *day), sa.Integer())
    quarter = sa.func.printf("%s-%02d-01", sa.func.strftime("%Y", *day), (month - 1) // 3 * 3 + 1)
    return sa.case((column.is_(None), sa.null()), else_=quarter)  # printf would make '-00-01' of a missing day


def _attribute_group(repo: SqlRepository, select: _Select, key: str, pg: bool) -> None:
    column = repo.table.c.attributes
    if pg:
        item = column.op("->")(sa.bindparam(None, key, type_=sa.Text()))
        number = item.op("->>")(sa.literal("n", sa.Text()))
        # a number groups by its exact key alone; anything else by its typed object
        whole = sa.case((number.is_(None), sa.cast(item, sa.Text())), else_=sa.null())
        select.add([number, whole], _attribute, group=True)
        return
    path = sa.bindparam(None, f"$.{key}", type_=sa.Text())
    number = sa.func.json_extract(column, sa.bindparam(None, f"$.{key}.n", type_=sa.Text()))
    whole = sa.case((number.is_(None), sa.func.json_extract(column, path)), else_=sa.null())
    select.add([number, whole], _attribute, group=True)


def _attribute(value: tuple[Any, Any]) -> Any:
    number, whole = value
    if number is not None:
        return number_of_key(str(number))
    if whole is None:
        return None
    stored = whole if isinstance(whole, dict) else json.loads(whole)
    return decode_attributes({"v": stored})["v"]


# ------------------------------------------------------------------ measures


def _measure(repo: SqlRepository, select: _Select, measure: Measure, pg: bool) -> None:
    if measure.field is None:
        select.add([sa.func.count()], int)
        return
    column = repo.compiler.column(measure.field)
    money_text = measure.kind == "decimal" and not pg
    key = sa.func.substr(column, 1, MONEY_KEY_WIDTH) if money_text else column
    if measure.op == "count":
        select.add([sa.func.count(column)], int)
    elif measure.op == "count_distinct":
        select.add([sa.func.count(sa.distinct(key))], int)
    elif measure.op in ("min", "max"):
        function = sa.func.min if measure.op == "min" else sa.func.max
        select.add([function(key)], _decoder(measure.kind, pg))
    elif measure.kind == "int":
        if pg:
            select.add([sa.func.sum(column)], _optional_int)
        else:
            number = sa.type_coerce(column, sa.BigInteger())
            select.add([sa.func.sum(number.op(">>")(32)), sa.func.sum(number.op("&")(0xFFFFFFFF))], _int_parts)
    elif pg:
        select.add([sa.func.sum(column)])
    else:
        text = sa.type_coerce(column, sa.Text())

        def part(start: int, length: int) -> ColumnElement[Any]:
            return sa.func.sum(sa.cast(sa.func.substr(text, start, length), sa.Integer()))

        negative = sa.func.sum(sa.case((sa.func.substr(text, 1, 1) == "N", 1), else_=0))
        places = sa.func.max(sa.cast(sa.func.substr(text, MONEY_KEY_WIDTH + 2), sa.Integer()))
        select.add([part(2, 8), part(10, 7), part(18, 6), negative, places], _money_parts)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _int_parts(value: tuple[Any, Any]) -> int | None:
    high, low = value
    return None if high is None else int(high) * 2**32 + int(low)


def _money_parts(value: tuple[Any, ...]) -> Decimal | None:
    high, low, micros, negative, places = value
    if high is None:
        return None
    total = (int(high) * 10**7 + int(low)) * 10**6 + int(micros) - int(negative) * _NEGATIVE_BIAS
    return money_of(total, int(places or 0))


def _decoder(kind: str | None, pg: bool) -> Decoder:
    # min() and max() of a column keep its type, whose result processing decodes the value;
    # only SQLite's money key (a substring of the stored text) is decoded here
    return _money_key if kind == "decimal" and not pg else _identity

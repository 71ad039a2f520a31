"""Column types that store crmkit values exactly on both SQLite and PostgreSQL.

=============  =====================================  ==================================
crmkit value   PostgreSQL                             SQLite
=============  =====================================  ==================================
UTC datetime   ``timestamptz`` (microseconds)          ``INTEGER`` microseconds since 1970
money          ``numeric`` (no typmod: exact scale)    ``TEXT`` sortable key + exponent
text           ``text COLLATE "C"`` (code points)      ``TEXT`` (binary collation)
uuid           ``uuid``                                ``CHAR(32)`` hex
JSON           ``jsonb``                               ``TEXT`` holding JSON
=============  =====================================  ==================================
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from crmkit_sqlalchemy._encoding import money_text, parse_money_text

__all__ = ["EPOCH", "Json", "Money", "Text", "UtcDateTime", "micros_of", "datetime_of"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def micros_of(value: dt.datetime) -> int:
    """Microseconds since 1970-01-01 UTC (exact, any year 1..9999)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_of(micros: int) -> dt.datetime:
    """The UTC datetime ``micros`` microseconds after 1970-01-01."""
    return EPOCH + dt.timedelta(microseconds=micros)


#: Text compared by code point: PostgreSQL's "C" collation; SQLite's default BINARY already is.
Text = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

#: JSON documents: jsonb on PostgreSQL, JSON text on SQLite.
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC instant: ``timestamptz`` on PostgreSQL, integer microseconds elsewhere."""

    impl = sa.BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        return dialect.type_descriptor(sa.BigInteger())

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return value.astimezone(dt.timezone.utc)
        return micros_of(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.timezone.utc)
        return datetime_of(int(value))


class Money(sa.types.TypeDecorator[Decimal]):
    """An exact Decimal: unconstrained ``numeric`` on PostgreSQL, sortable text on SQLite."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return money_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return parse_money_text(str(value))

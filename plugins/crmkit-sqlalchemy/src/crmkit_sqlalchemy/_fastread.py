"""Hot reads (get by id, "field = value" newest first) run past SQLAlchemy's execute path.

A customer 360 view asks the same few statement shapes over and over and gets back a
handful of rows each time. Through ``Connection.execute`` most of its time went to the
execution context, the result object and per-row processing, not to the database. Here a
statement is compiled once; each call binds its parameters with the very bind processors
SQLAlchemy would use, runs the SQL text on the DBAPI cursor of a pooled connection, and
decodes each row positionally with a function generated once per statement from the
columns' own result processors. Two value shapes that dominate crmkit rows get a shortcut
that gives the same value: empty JSON arrays and objects, and UTC instants stored as integer
microseconds (SQLite). Only SQLite uses this path for now.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from crmkit_sqlalchemy._types import EPOCH, UtcDateTime

__all__ = ["RawSelect"]

_timedelta = dt.timedelta


def _json_reader(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if value == "[]":
            return []
        if value == "{}":
            return {}
        return process(value)

    return read


def _instant_reader(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # the previous value and its instant, as one tuple (threads share it); created_at == updated_at is common
    last: list[tuple[Any, Any]] = [(None, None)]

    def read(value: Any) -> Any:
        if type(value) is int:
            seen, made = last[0]
            if value == seen:
                return made
            instant = EPOCH + _timedelta(microseconds=value)
            last[0] = (value, instant)
            return instant
        return process(value)

    return read


_UUID, _new, _set, _UNKNOWN = uuid.UUID, object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def _uuid_reader(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """UUIDs stored as 32 hex digits (SQLite), built as ``uuid.UUID(hex)`` builds them, without its parsing."""
    last: list[tuple[Any, Any]] = [(None, None)]  # a page of one customer's rows repeats its customer_id

    def read(value: Any) -> Any:
        if type(value) is str and len(value) == 32:
            seen, made = last[0]
            if value == seen:
                return made
            made = _new(_UUID)
            _set(made, "int", int(value, 16))
            _set(made, "is_safe", _UNKNOWN)
            last[0] = (value, made)
            return made
        return process(value)

    return read


class RawSelect:
    """One compiled SELECT: its SQL text, how to bind its parameters, and a row decoder."""

    __slots__ = ("_binds", "_fixed", "decode", "names", "sql")

    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not compiled.positional or compiled.positiontup is None:
            raise TypeError("RawSelect needs a dialect with positional parameters")
        self.sql = compiled.string
        self._binds: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type._cached_bind_processor(dialect)) for name in compiled.positiontup
        ]
        # parameters whose value is part of the statement (literals of an ORDER BY expression)
        self._fixed = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and name in compiled.positiontup
        }
        self.names = [c.key for c in statement.selected_columns]
        namespace: dict[str, Any] = {}
        items = []
        for i, column in enumerate(statement.selected_columns):
            process: Callable[[Any], Any] | None = column.type._cached_result_processor(dialect, None)
            if process is None:
                items.append(f"{column.key!r}: row[{i}]")
                continue
            if isinstance(column.type, sa.JSON):
                process = _json_reader(process)
            elif isinstance(column.type, UtcDateTime) and dialect.name == "sqlite":
                process = _instant_reader(process)
            elif isinstance(column.type, sa.Uuid) and dialect.name == "sqlite" and column.type.as_uuid:
                process = _uuid_reader(process)
            namespace[f"p{i}"] = process
            items.append(f"{column.key!r}: p{i}(row[{i}])")
        source = f"def decode(row):\n    return {{{', '.join(items)}}}\n"
        exec(compile(source, "<crmkit_sqlalchemy raw select>", "exec"), namespace)
        self.decode: Callable[[Any], dict[str, Any]] = namespace["decode"]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters of a call, each through its column type's bind processor."""
        return tuple(
            value if process is None else process(value)
            for name, process in self._binds
            for value in (values[name] if name in values else self._fixed[name],)
        )

    def rows(self, dbapi_connection: Any, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The decoded rows (dicts by column name) the statement returns for ``values``."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self.sql, self.parameters(values))
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        decode = self.decode
        return [decode(row) for row in fetched]

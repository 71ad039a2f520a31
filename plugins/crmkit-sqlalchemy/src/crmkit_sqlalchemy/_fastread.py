"""Hot reads (get by id, "field = value" newest first) run past SQLAlchemy's execute path.

A customer 360 view asks the same few statement shapes over and over and gets back a
handful of rows each time. Through ``Connection.execute`` most of its time went to the
execution context, the result object and per-row processing, not to the database. Here a
statement is compiled once; each call binds its parameters with the very bind processors
SQLAlchemy would use, runs the SQL text on the DBAPI cursor of a pooled connection, and
decodes each row positionally with a function generated once per statement from the
columns' own result processors and, for crmkit's own tables, the record's ``RecordPlan``:
the row becomes the record with no dict in between. Value shapes that dominate crmkit rows
get shortcuts that give the same value (see ``_read``). SQLite and PostgreSQL use this path.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from crmkit_sqlalchemy._encoding import parse_money_text
from crmkit_sqlalchemy._rows import RecordPlan
from crmkit_sqlalchemy._types import EPOCH, Money, UtcDateTime

__all__ = ["RawSelect"]

_timedelta = dt.timedelta


_UUID, _new, _set, _UNKNOWN = uuid.UUID, object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def _slot_setter(name: str) -> Callable[[Any, Any], None]:
    """The setter of a slot of ``uuid.UUID`` (faster than ``object.__setattr__``, which looks the name up)."""
    slot = vars(uuid.UUID).get(name)
    if isinstance(slot, types.MemberDescriptorType):
        return slot.__set__
    return lambda obj, value: _set(obj, name, value)


_uuid_int, _uuid_safe = _slot_setter("int"), _slot_setter("is_safe")

#: A column read in a plan's expression.
_COLUMN = re.compile(r"row\['\w+'\]")


def _read(
    i: int,
    column: sa.ColumnElement[Any],
    process: Callable[[Any], Any] | None,
    dialect: Dialect,
    namespace: dict[str, Any],
    instants: list[int],
) -> list[str]:
    """Lines of the generated decoder that set ``c{i}``, the value of column ``i``, from ``row[i]``.

    ``c{i} = p{i}(row[i])`` (the column type's result processor), with shortcuts that give the same
    value for shapes that make up most of crmkit's rows: empty JSON arrays and objects; SQLite's
    integer-microsecond instants (the same one as the previous row's or as another instant column
    of the row is reused: created_at == updated_at is common); SQLite's hex UUIDs, built as
    ``uuid.UUID(hex)`` builds them without its parsing (a page of one customer's rows repeats its
    customer_id); and SQLite's money text.
    """
    if process is None:
        return [f"    c{i} = row[{i}]"]
    lines = [f"    v = row[{i}]"]
    sqlite = dialect.name == "sqlite"
    if isinstance(column.type, sa.JSON):
        lines.append(f"    c{i} = [] if v == '[]' else {{}} if v == '{{}}' else p{i}(v)")
    elif isinstance(column.type, UtcDateTime) and sqlite:
        namespace[f"m{i}"] = [(None, None)]  # the previous row's value and instant, as one tuple (threads share it)
        lines += ["    if type(v) is int:", f"        s = m{i}[0]"]
        for n, j in enumerate(instants):
            lines += [f"        {'elif' if n else 'if'} v == row[{j}]:", f"            c{i} = c{j}"]
        lines += [
            f"        {'elif' if instants else 'if'} v == s[0]:",
            f"            c{i} = s[1]",
            "        else:",
            f"            c{i} = _epoch + _td(0, 0, v)",
            f"            m{i}[0] = (v, c{i})",
            "    else:",
            f"        c{i} = p{i}(v)",
        ]
        instants.append(i)
    elif isinstance(column.type, sa.Uuid) and sqlite and column.type.as_uuid:
        namespace[f"m{i}"] = [(None, None)]
        lines += [
            "    if type(v) is str and len(v) == 32:",
            f"        s = m{i}[0]",
            "        if v == s[0]:",
            f"            c{i} = s[1]",
            "        else:",
            f"            c{i} = _new(_UUID)",
            f"            _uuid_int(c{i}, _int(v, 16))",
            f"            _uuid_safe(c{i}, _UNKNOWN)",
            f"            m{i}[0] = (v, c{i})",
            "    else:",
            f"        c{i} = p{i}(v)",
        ]
    elif isinstance(column.type, Money) and sqlite:
        lines.append(f"    c{i} = _money(v) if type(v) is str else p{i}(v)")
    else:
        lines.append(f"    c{i} = p{i}(v)")
    return lines


class RawSelect:
    """One compiled SELECT: its SQL text, how to bind its parameters, and a row decoder.

    With the ``plan`` of the records its rows hold (``_rows.RecordPlan``), the decoder goes
    from a DBAPI row straight to the record; without one, to a dict by column name.
    """

    __slots__ = (
        "_dialect", "_plan", "_selected", "_statement", "builds_records", "decode", "names", "parameters", "sql"
    )  # fmt: skip

    def __init__(self, statement: sa.Select[Any] | sa.Insert, dialect: Dialect, plan: RecordPlan | None = None) -> None:
        # a SELECT's columns, or those an INSERT ... RETURNING gives back
        selected = statement.selected_columns if isinstance(statement, sa.Select) else statement.exported_columns
        self._selected = list(selected)
        compiled = statement.compile(dialect=dialect)
        positional = compiled.positional
        names = compiled.positiontup if positional else list(compiled.binds)
        if names is None:
            raise TypeError("RawSelect cannot find the parameters of this statement")
        self.sql = compiled.string
        # The parameters of a call (a tuple, or a dict for named styles such as psycopg's), each
        # through its column type's bind processor; a parameter whose value is part of the
        # statement (a literal of an ORDER BY expression) is used unless the call gives one.
        binds: dict[str, Any] = {}
        items = []
        for n, name in enumerate(names):
            bind = compiled.binds[name]
            value = f"values[{name!r}]"
            if not bind.required:
                binds[f"f{n}"] = bind.effective_value
                value = f"(values[{name!r}] if {name!r} in values else f{n})"
            to_driver = bind.type._cached_bind_processor(dialect)
            if to_driver is not None:
                binds[f"b{n}"] = to_driver
                value = f"b{n}({value})"
            rendered = compiled.escaped_bind_names.get(name, name)
            items.append(value if positional else f"{rendered!r}: {value}")
        joined = "".join(f"{item}, " for item in items)
        source = f"def parameters(values):\n    return {f'({joined})' if positional else f'{{{joined}}}'}\n"
        exec(compile(source, "<crmkit_sqlalchemy raw select parameters>", "exec"), binds)
        self.parameters: Callable[[Mapping[str, Any]], Any] = binds["parameters"]
        self.names = [c.key for c in self._selected]
        self._statement, self._dialect, self._plan = statement, dialect, plan
        columns = {f"row[{name!r}]": f"c{i}" for i, name in enumerate(self.names)}
        self.builds_records = plan is not None and all(
            set(_COLUMN.findall(value)) <= columns.keys() for _, value in plan.fields
        )
        # made at the first call: PostgreSQL's result processors depend on the type codes the driver reports
        self.decode: Callable[[Any], Any] | None = None

    def _decoder(self, type_codes: Sequence[Any]) -> Callable[[Any], Any]:
        """The function from a DBAPI row (whose columns have these type codes) to a record or a dict."""
        dialect, plan = self._dialect, self._plan
        namespace: dict[str, Any] = {
            "_epoch": EPOCH, "_td": _timedelta, "_new": _new, "_set": _set, "_UUID": _UUID, "_UNKNOWN": _UNKNOWN,
            "_uuid_int": _uuid_int, "_uuid_safe": _uuid_safe, "_int": int, "_money": parse_money_text,
        }  # fmt: skip
        lines = ["def decode(row):"]
        instants: list[int] = []
        for i, (column, code) in enumerate(zip(self._selected, type_codes, strict=True)):
            process: Callable[[Any], Any] | None = column.type._cached_result_processor(dialect, code)
            namespace[f"p{i}"] = process
            lines += _read(i, column, process, dialect, namespace, instants)
        if plan is not None and self.builds_records:
            columns = {f"row[{name!r}]": f"c{i}" for i, name in enumerate(self.names)}
            namespace.update(plan.helpers)
            lines.append("    new = _new(cls)")
            for name, value in plan.fields:
                lines.append(f"    {plan.assign(name, _COLUMN.sub(lambda m: columns[m.group(0)], value))}")
            lines.append("    return new")
        else:
            lines.append(f"    return {{{', '.join(f'{name!r}: c{i}' for i, name in enumerate(self.names))}}}")
        exec(compile("\n".join(lines) + "\n", "<crmkit_sqlalchemy raw select>", "exec"), namespace)
        return namespace["decode"]  # type: ignore[no-any-return]

    def rows(self, dbapi_connection: Any, values: Mapping[str, Any]) -> list[Any]:
        """The decoded rows the statement returns for ``values``: records if ``builds_records``, else dicts."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self.sql, self.parameters(values))
            return self.fetched(cursor)
        finally:
            cursor.close()

    def fetched(self, cursor: Any) -> list[Any]:
        """The decoded rows of a DBAPI cursor that has run this statement (here, or through SQLAlchemy)."""
        fetched = cursor.fetchall()
        decode = self.decode
        if decode is None:
            decode = self.decode = self._decoder([d[1] for d in cursor.description])
        return [decode(row) for row in fetched]

"""Translate crmkit's query language (``crmkit.query``) into SQLAlchemy Core expressions.

Every atom is built so that it is never NULL (two-valued logic): comparisons on nullable
columns are guarded with ``IS NOT NULL``, attribute tests are wrapped in ``COALESCE(.., false)``.
``NOT``, ``AND`` and ``OR`` over such atoms then mean exactly what ``crmkit.query.evaluate``
says. Values always travel as bound parameters.

Custom attributes use the typed JSON encoding of ``_encoding``: a comparison with a
number looks only at the ``n`` key (exact number key), with text only at ``s``, and so on,
so values of different kinds never match and booleans are never numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from crmkit.entities import EntitySpec
from crmkit.query import All, And, Compare, Contains, Expr, In, InSelect, IsEmpty, Matches, Not, Or, Order, StartsWith
from crmkit.search import prefix_end
from crmkit_sqlalchemy._encoding import MONEY_KEY_WIDTH, money_key, number_key, utc_text
from crmkit_sqlalchemy._having import OPERATORS, having
from crmkit_sqlalchemy._schema import shadow_column
from crmkit_sqlalchemy._words import word_table, words_of

__all__ = ["Compiler"]

# Above this many values an IN list becomes one array (PostgreSQL) or JSON (SQLite) parameter.
_LONG_IN = 64


def _columns_of(compiler: Compiler, expr: Expr, field: str) -> list[Any]:
    """The columns of ``compiler``'s table that ``expr`` and ``field`` read (the window sorts only those rows'
    worth); every column when the condition reads more than plain columns (words, folded shadows, attributes)."""
    names = {"tenant", "id", field, *(name for name in compiler.spec.fields if "." in name)}
    todo = [expr]
    while todo:
        item = todo.pop()
        if isinstance(item, (And, Or)):
            todo.extend(item.items)
        elif isinstance(item, Not):
            todo.append(item.item)
        elif isinstance(item, (Compare, In, InSelect, IsEmpty)) and not item.field.startswith("attributes."):
            names.add(item.field)
        elif not isinstance(item, All):
            return list(compiler.table.c)
    return [compiler.column(name) for name in sorted(names)]


class Compiler:
    """Builds WHERE and ORDER BY clauses for one table on one dialect."""

    def __init__(
        self,
        table: sa.Table | sa.Alias,
        spec: EntitySpec,
        dialect: str,
        tables: Callable[[EntitySpec], sa.Table] | None = None,
    ) -> None:
        self.table = table
        self.spec = spec
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        #: The table of another aggregate, for sub-queries (``F(...).in_(Select(...))``, ``among``).
        self.tables = tables
        #: Sub-queries built before: an access policy asks the same (large) ones on every read.
        self._semi_joins: dict[tuple[str | None, InSelect], ColumnElement[bool]] = {}
        # a ref_any field ``about`` is queried as ``about.aggregate`` and ``about.id``: two columns
        self._paths = {name: table.c[name.replace(".", "_")] for name in spec.fields if "." in name}

    # ------------------------------------------------------------------ public
    def where(self, tenant: str, expr: Expr) -> ColumnElement[bool]:
        """``tenant = :tenant AND <expr>``."""
        condition = self.table.c.tenant == tenant
        if isinstance(expr, All):
            return condition
        return sa.and_(condition, self.expr(expr, tenant))

    def order_by(self, order: Order) -> list[ColumnElement[Any]]:
        """ORDER BY terms for a crmkit Order (binary text order, exact money order, a missing value first).

        crmkit sorts None before every value (first ascending, last descending): SQLite's
        order already; PostgreSQL's is the opposite, so nullable fields say it there (only
        those: a NULLS FIRST on a column without NULLs would keep an index from serving the order).
        """
        terms: list[ColumnElement[Any]] = []
        for name, desc in order.keys:
            if name.startswith("attributes."):
                for term in self._attribute_order(name[len("attributes.") :]):
                    terms.append(term.desc() if desc else term.asc())
                continue
            column = self.sortable(name)
            term = column.desc() if desc else column.asc()
            if self.pg and self.spec.fields[name].nullable:
                term = term.nulls_last() if desc else term.nulls_first()
            terms.append(term)
        return terms

    def sortable(self, name: str) -> ColumnElement[Any]:
        """The expression that orders and compares a field like crmkit does."""
        column = self.column(name)
        if self.spec.fields[name].kind == "decimal" and not self.pg:
            return sa.func.substr(column, 1, MONEY_KEY_WIDTH)
        return column

    def column(self, name: str) -> sa.Column[Any]:
        """The column of a queryable field (``about.id`` of a ref_any field is column ``about_id``)."""
        path = self._paths.get(name)
        return self.table.c[name] if path is None else path

    # ------------------------------------------------------------------ expressions
    def expr(self, expr: Expr, tenant: str | None = None, *, negated: bool = False) -> ColumnElement[bool]:
        """The condition; ``tenant`` is the one the statement reads (the word indexes' look-ups and the
        semi-joins read that tenant's rows; None: the row's own tenant).

        ``negated``: the condition is under an odd number of NOTs. Only there must a test of a custom
        attribute that SQL finds unknown (NULL: the attribute is missing) be made false; outside, a WHERE
        keeps the same rows either way (AND and OR without NOT are monotone), so the statement does not
        pay a ``coalesce`` per row for it.
        """
        if isinstance(expr, All):
            return sa.true()
        if isinstance(expr, And):
            return sa.and_(*(self.expr(i, tenant, negated=negated) for i in expr.items))
        if isinstance(expr, Or):
            keyset = self._keyset(expr)
            if keyset is not None:
                return keyset
            return sa.or_(*(self.expr(i, tenant, negated=negated) for i in expr.items))
        if isinstance(expr, Not):
            return sa.not_(self.expr(expr.item, tenant, negated=not negated))
        if isinstance(expr, InSelect):
            return self._in_select(expr, tenant)
        if isinstance(expr, Compare):
            if expr.field.startswith("attributes."):
                return self._attribute_compare(expr.field[len("attributes.") :], expr.op, expr.value, negated)
            return self._compare(expr.field, expr.op, expr.value)
        if isinstance(expr, In):
            if expr.field.startswith("attributes."):
                key = expr.field[len("attributes.") :]
                return sa.or_(sa.false(), *(self._attribute_compare(key, "==", v, negated) for v in expr.values))
            return self._in(expr.field, expr.values)
        if isinstance(expr, Contains):
            return self._contains(expr.field, expr.value, negated)
        if isinstance(expr, IsEmpty):
            return self._is_empty(expr.field)
        if isinstance(expr, StartsWith):
            column = self.table.c[shadow_column(expr.field)] if expr.fold else self.column(expr.field)
            return self._guard(expr.field, self._prefix(column, expr.prefix))
        if isinstance(expr, Matches):
            bound = sa.bindparam(None, tenant, type_=sa.String()) if tenant is not None else self.table.c.tenant
            words = [sa.bindparam(None, w, type_=sa.Text()) for w in expr.words]
            return self._guard(expr.field, self.words(expr.field, bound, words))
        raise TypeError(f"not a crmkit condition: {expr!r}")

    def _in_select(self, expr: InSelect, tenant: str | None) -> ColumnElement[bool]:
        """``field IN (SELECT other.field FROM other WHERE other.tenant = :tenant AND ... AND other.field IS NOT
        NULL)``: a semi-join in the database, never NULL (neither side is), so NOT means what it says.

        The sub-select reads its own (aliased) table even when it is the outer one; with the tenant a
        bound value it is not correlated, so SQLite and PostgreSQL run it once per statement (a hashed
        or materialised semi-join), not per row. A grouped sub-query (``having``) is ``IN (SELECT other.field ...
        GROUP BY other.field HAVING ...)`` (``_having``).
        """
        key = (tenant, expr)
        found = self._semi_joins.get(key)
        if found is not None:
            return found
        select = expr.select
        if self.tables is None or select.spec is None:
            raise TypeError(f"a sub-query needs the other tables and a bound Select: {expr!r}")
        other = self.tables(select.spec).alias()
        inner = Compiler(other, select.spec, self.dialect, self.tables)
        mine = other.c.tenant == (self.table.c.tenant if tenant is None else tenant)
        of = select.field
        values = sa.select(inner.sortable(of)).where(mine, inner.expr(select.where, tenant))
        if select.first_by is not None:
            values = self._first_of_groups(inner, values, select, tenant)
        elif select.spec.fields[of].nullable:
            values = values.where(inner.column(of).is_not(None))
        if select.having is not None:
            values = values.group_by(inner.sortable(of)).having(having(inner, select.having))
        if tenant is not None:
            values = values.correlate(None)
        found = self._guard(expr.field, self.sortable(expr.field).in_(values))
        if len(self._semi_joins) >= 256:  # conditions come from code and policies, not data; bounded anyway
            self._semi_joins.clear()
        self._semi_joins[key] = found
        return found

    def _first_of_groups(
        self, inner: Compiler, matching: sa.Select[Any], select: Any, tenant: str | None
    ) -> sa.Select[Any]:
        """``SELECT field FROM (SELECT *, row_number() OVER (PARTITION BY field ORDER BY <first_by>) AS rank
        FROM other WHERE ...) WHERE rank = 1 AND <first_where>``: the values whose group's first record
        matches, one pass over the matching rows (the window sorts each group, no correlated probe)."""
        of = select.field
        rank = sa.func.row_number().over(partition_by=inner.sortable(of), order_by=inner.order_by(select.first_by))
        columns = _columns_of(inner, select.first_where, of)
        ranked = matching.with_only_columns(*columns, rank.label("crmkit_rank"), maintain_column_froms=True).subquery()
        # the ranked rows have the table's columns: conditions compile on them as on the table
        first = Compiler(cast(Any, ranked), select.spec, self.dialect, self.tables)
        values = sa.select(first.sortable(of)).where(ranked.c.crmkit_rank == 1, first.expr(select.first_where, tenant))
        if select.spec.fields[of].nullable:
            values = values.where(first.column(of).is_not(None))
        return values

    # ------------------------------------------------------------------ model fields
    def _guard(self, name: str, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        if self.spec.fields[name].nullable:
            return sa.and_(self.column(name).is_not(None), condition)
        return condition

    def _value(self, name: str, value: Any) -> Any:
        """A query value in the form the column compares with."""
        if self.spec.fields[name].kind == "decimal" and not self.pg:
            return money_key(value)
        return value

    def _bound(self, name: str, value: Any) -> ColumnElement[Any]:
        """A bound parameter for a field value, typed like what it is compared with."""
        if self.spec.fields[name].kind == "decimal" and not self.pg:
            return sa.bindparam(None, money_key(value), type_=sa.Text())
        return sa.bindparam(None, value, type_=self.column(name).type)

    def _compare(self, name: str, op: str, value: Any) -> ColumnElement[bool]:
        column = self.sortable(name)
        if value is None:
            return column.is_(None) if op == "==" else column.is_not(None)
        if isinstance(value, str) and "\x00" in value and self.pg:
            # PostgreSQL text cannot hold NUL, and stored text never does (the domain refuses it):
            # equality never holds, and an order comparison with p + NUL + ... is one with p.
            if op in ("==", "!="):
                return sa.true() if op == "!=" else sa.false()
            value, op = value[: value.index("\x00")], {"<": "<=", "<=": "<=", ">": ">", ">=": ">"}[op]
        bound = self._bound(name, value)
        if op == "==":
            return self._guard(name, column == bound)
        if op == "!=":
            return sa.not_(self._guard(name, column == bound))
        return self._guard(name, OPERATORS[op](column, bound))

    def _in(self, name: str, values: Sequence[Any]) -> ColumnElement[bool]:
        if not values:
            return sa.false()
        column = self.sortable(name)
        if self.pg:  # text with NUL is never stored, so never equal (and PostgreSQL cannot bind it)
            values = [v for v in values if not (isinstance(v, str) and "\x00" in v)]
            if not values:
                return sa.false()
        bound = [self._value(name, v) for v in values]
        if len(bound) <= _LONG_IN:
            return self._guard(name, column.in_(bound))
        kind = self.spec.fields[name].kind
        if self.pg:
            elements: dict[str, Any] = {
                "uuid": sa.Uuid(),
                "int": sa.BigInteger(),
                "bool": sa.Boolean(),
                "decimal": sa.Numeric(),
                "date": sa.Date(),
                "datetime": postgresql.TIMESTAMP(timezone=True),
            }
            element = elements.get(kind, sa.Text())
            return self._guard(name, column == sa.any_(sa.bindparam(None, bound, type_=postgresql.ARRAY(element))))
        # SQLite: one JSON array parameter read back by json_each, in the column's stored form
        stored = [_sqlite_form(kind, v) for v in bound]
        each: sa.Select[Any] = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam(None, json.dumps(stored), type_=sa.Text())).table_valued("value")
        )
        return self._guard(name, column.in_(each))

    def _contains(self, name: str, value: str, negated: bool = True) -> ColumnElement[bool]:
        if "\x00" in value and self.pg:
            return sa.false()  # stored text never holds NUL
        if name.startswith("attributes."):
            text = self._attribute_path(name[len("attributes.") :], "s", as_text=True)
            return _never_null(self._substring(text, value), negated)
        column = self.column(name)
        if self.spec.fields[name].kind == "text_set":
            if self.pg:
                return column.bool_op("@>")(_jsonb([value]))
            each = sa.func.json_each(column).table_valued("value")
            return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == value))
        return self._guard(name, self._substring(column, value))

    def _is_empty(self, name: str) -> ColumnElement[bool]:
        """The JSON list in column ``name`` has no element 0: ``[]``, JSON ``null`` (a None set) or SQL NULL.

        Never NULL itself, so NOT means "has an element". PostgreSQL: ``col -> 0 IS NULL`` (jsonb_array_length
        fails on a scalar); SQLite: ``coalesce(json_array_length(col), 0) = 0`` (0 for a scalar, NULL for NULL).
        """
        column = self.table.c[name]
        if self.pg:
            return column.op("->")(sa.literal_column("0")).is_(None)
        return sa.func.coalesce(sa.func.json_array_length(column), 0) == 0

    def _substring(self, text: ColumnElement[Any], value: str) -> ColumnElement[bool]:
        # strpos / instr treat % _ \ literally, unlike LIKE; an empty needle is found at 1
        function = sa.func.strpos if self.pg else sa.func.instr
        return function(text, sa.bindparam(None, value, type_=sa.Text())) > 0

    def _prefix(self, column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
        """``column`` starts with ``prefix``, as the range a B-tree index on the column serves."""
        low = column >= sa.bindparam(None, prefix, type_=sa.Text())
        end = prefix_end(prefix)
        if end is None:
            return low
        return sa.and_(low, column < sa.bindparam(None, end, type_=sa.Text()))

    def words(self, name: str, tenant: ColumnElement[Any], words: Sequence[ColumnElement[Any]]) -> ColumnElement[bool]:
        """Every one of ``words`` (bound parameters) is a word of searchable field ``name``, from its word index.

        PostgreSQL: the folded column's words contain them all (the GIN index on that very
        expression serves it); SQLite: the id is in the intersection of the lists the words
        table keeps for each word in ``tenant`` (a bound tenant, so that the look-ups drive
        the query). See ``_words``.
        """
        column = self.table.c[shadow_column(name)]
        if self.pg:
            wanted = sa.cast(postgresql.array(words), postgresql.ARRAY(sa.Text()))
            return words_of(column).op("@>")(wanted)  # type: ignore[no-any-return]
        table = self.table.element if isinstance(self.table, sa.Alias) else self.table  # a sub-query's alias
        assert isinstance(table, sa.Table)
        index = word_table(table, column.name)
        lists = [sa.select(index.c.id).where(index.c.tenant == tenant, index.c.word == word) for word in words]
        if len(lists) == 1:
            return self.table.c.id.in_(lists[0])
        # each list is in id order (the words table's key): ordered, SQLite intersects them by a merge
        both = sa.intersect(*lists).order_by(sa.literal_column("id"))
        return self.table.c.id.in_(both)

    # ------------------------------------------------------------------ keyset pagination
    def _keyset(self, expr: Or) -> ColumnElement[bool] | None:
        """Recognise ``keyset_after`` (one sort direction) and emit a row-value comparison.

        ``(a > x) OR (a = x AND b > y) ...`` is ``(a, b) > (x, y)`` when the sorted fields
        are never NULL; the row form lets both databases seek the index directly.
        """
        names: list[str] = []
        values: list[Any] = []
        op: str | None = None
        for i, branch in enumerate(expr.items):
            parts = branch.items if isinstance(branch, And) else (branch,)
            if len(parts) != i + 1 or not all(isinstance(p, Compare) for p in parts):
                return None
            *equal, beyond = parts
            assert isinstance(beyond, Compare)
            for j, part in enumerate(equal):
                assert isinstance(part, Compare)
                if part.op != "==" or part.field != names[j] or part.value is not values[j]:
                    return None
            if beyond.op not in ("<", ">") or beyond.value is None or (op is not None and beyond.op != op):
                return None
            spec = self.spec.field(beyond.field)
            if spec is None or spec.nullable or not spec.sortable or beyond.field in names:
                return None
            op = beyond.op
            names.append(beyond.field)
            values.append(beyond.value)
        if len(names) < 2 or op is None:
            return None
        left = sa.tuple_(*(self.sortable(n) for n in names))
        right = sa.tuple_(*(self._bound(n, v) for n, v in zip(names, values, strict=True)))
        return left > right if op == ">" else left < right

    # ------------------------------------------------------------------ custom attributes
    def _attribute_path(self, key: str, slot: str, *, as_text: bool) -> ColumnElement[Any]:
        column = self.table.c.attributes
        if self.pg:
            item = column.op("->")(sa.bindparam(None, key, type_=sa.Text()))
            if as_text:
                return sa.type_coerce(item.op("->>")(sa.literal(slot, sa.Text())), sa.Text()).collate("C")
            return item.op("->")(sa.literal(slot, sa.Text()))
        return sa.func.json_extract(column, sa.bindparam(None, f"$.{key}.{slot}", type_=sa.Text()))

    def _attribute_order(self, key: str) -> list[ColumnElement[Any]]:
        """ORDER BY terms of a custom attribute: the rank of its kind, then the value within the kind.

        Kinds sort as ``crmkit.query.attribute_rank`` says (missing, numbers, text, instants,
        booleans, dates); within one rank only that kind's slot is not NULL, and each slot
        sorts as its values do (the number key, code points, fixed-width UTC text, false
        before true, ISO dates).
        """
        slots = ("n", "s", "T", "b", "D")
        present = [self._attribute_path(key, slot, as_text=True).is_not(None) for slot in slots]
        rank = sa.case(*((p, i + 1) for i, p in enumerate(present)), else_=0)
        values = [self._attribute_path(key, slot, as_text=True) for slot in slots]
        return [rank, *values]

    def _attribute_compare(self, key: str, op: str, value: Any, negated: bool = True) -> ColumnElement[bool]:
        column = self.table.c.attributes
        if value is None:
            if self.pg:
                present = column.op("->")(sa.bindparam(None, key, type_=sa.Text())).is_not(None)
            else:
                present = sa.func.json_type(column, sa.bindparam(None, f"$.{key}", type_=sa.Text())).is_not(None)
            return sa.not_(present) if op == "==" else present
        if op == "!=":
            return sa.not_(self._attribute_compare(key, "==", value, not negated))
        if isinstance(value, bool):
            if op != "==":
                return sa.false()  # booleans have no order
            if self.pg:
                return column.bool_op("@>")(_jsonb({key: {"b": value}}))
            path = sa.bindparam(None, f"$.{key}.b", type_=sa.Text())
            return _never_null(sa.func.json_type(column, path) == ("true" if value else "false"), negated)
        slot, stored = _attribute_slot(value)
        if op == "==" and self.pg:
            return column.bool_op("@>")(_jsonb({key: {slot: stored}}))
        left = self._attribute_path(key, slot, as_text=True)
        return _never_null(OPERATORS[op](left, sa.bindparam(None, stored, type_=sa.Text())), negated)


def _attribute_slot(value: Any) -> tuple[str, str]:
    """Which key of the typed attribute object holds comparable values of this kind, and the value there."""
    if isinstance(value, (int, float, Decimal)):
        return "n", number_key(value)
    if isinstance(value, str):
        return "s", value
    if isinstance(value, dt.datetime):
        return "T", utc_text(value)
    if isinstance(value, dt.date):
        return "D", value.isoformat()
    raise TypeError(f"attribute values cannot be compared with {value!r}")


def _jsonb(document: Any) -> ColumnElement[Any]:
    return sa.cast(sa.bindparam(None, json.dumps(document, ensure_ascii=False), type_=sa.Text()), postgresql.JSONB)


def _never_null(condition: ColumnElement[bool], negated: bool = True) -> ColumnElement[bool]:
    """False where SQL finds ``condition`` unknown, where that matters: under a NOT (``Compiler.expr``)."""
    return sa.func.coalesce(condition, sa.false()) if negated else condition


def _sqlite_form(kind: str, value: Any) -> Any:
    """How SQLite stores a column value (for comparisons inside json_each)."""
    if kind == "uuid" and isinstance(value, uuid.UUID):
        return value.hex
    if kind == "datetime" and isinstance(value, dt.datetime):
        from crmkit_sqlalchemy._types import micros_of

        return micros_of(value)
    if kind == "date" and isinstance(value, dt.date):
        return value.isoformat()
    return value

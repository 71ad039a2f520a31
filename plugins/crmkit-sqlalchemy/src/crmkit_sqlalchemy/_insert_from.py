"""``Repository.insert_from`` in the database: one ``INSERT INTO target (...) SELECT ... FROM source``.

Each new record is a pure function of one source row, so the database builds and writes
them all in one statement and hands back only the new rows (``RETURNING``):

* a ``Const`` is bound once, encoded exactly as ``insert`` encodes the field (the column's
  expression of ``_rows.record_expressions`` applied to the value, then the column type's
  own bind processing: JSON of value objects, enum values, money, instants, uuids);
* a ``Copy`` reads the source column (``about.id``: its column), a custom attribute's
  typed slot (``_encoding``), or the first element's value of a JSON list of value objects
  (``json_extract(emails, '$[0].address')`` / ``emails->0->>'address'``, NULL when empty);
* a ``Test`` is the source store's condition compiler (``_query.Compiler``: semi-joins,
  grouped and first-of-group sub-queries; never the prepared-statement shapes) as
  ``CASE WHEN ... THEN true ELSE false END``, and so is ``where``;
* the ids are UUIDv7 made in SQL from one ``new_id()``: its 64 high bits (the millisecond
  and counter) for every row, and its 64 low bits, the variant and random bits, plus the
  row's number in source-id order (``row_number() OVER (ORDER BY id)``); the top random
  bit is cleared first, so the sum never runs into the variant bits. Later ids of the
  process come after them (``new_id`` counts on within the millisecond).

The returned rows go through the store's generated decoder (``_fastread``). For a declared
aggregate only the ids, copies and tests come back: constants are the values the records
hold already, converted once. Each copied value goes through the target field's converter,
as the class's constructor would run it: a value the field refuses (a text not among its
``choices``) raises ValidationError and nothing is written; a value a ``check`` normalises
(a text lower-cased) is written back normalised, and so is the folded form of a
searchable field copied from a text that has none, as ``insert`` stores them. A copy
that cannot be missing is checked first: a source row without a value (a missing
attribute, an attribute of another kind) raises ValidationError naming the field.
Copies SQL cannot type the way the domain does (a list element's money or instant, a
text copied into a number) are left to the page-at-a-time default: ``insert_from`` then
returns None.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs
import sqlalchemy as sa

from crmkit._errors import ConflictError, ValidationError
from crmkit._ids import new_id
from crmkit.customers import EmailAddress, Handle, Phone, PostalAddress
from crmkit.entities import EntitySpec
from crmkit.query import Const, Copy, Expr, Test
from crmkit.schema import AggregateSpec, Ref, declared_fields
from crmkit.search import fold
from crmkit.transactions import LineItem
from crmkit_sqlalchemy import _words
from crmkit_sqlalchemy._derived import _many_decoder, explain_conflict
from crmkit_sqlalchemy._fastread import RawSelect
from crmkit_sqlalchemy._query import Compiler
from crmkit_sqlalchemy._rows import _attributes, _json_value, record_expressions
from crmkit_sqlalchemy._schema import SHADOW, shadow_column
from crmkit_sqlalchemy._types import Money, UtcDateTime

if TYPE_CHECKING:
    from crmkit_sqlalchemy._store import SqlRepository

__all__ = ["insert_from"]

_OWN = ("id", "created_at", "updated_at", "version", "external_id")

#: The value objects in the JSON list columns of crmkit's own tables.
_OWN_LISTS: Mapping[str, Mapping[str, type]] = {
    "customers": {"emails": EmailAddress, "phones": Phone, "addresses": PostalAddress, "handles": Handle},
    "transactions": {"line_items": LineItem},
}

#: A value object field's kind -> how its JSON value is stored in a column of that storage.
_ELEMENT_STORAGE = {
    "text": "text",
    "currency": "text",
    "enum": "text",
    "uuid": "uuid",
    "integer": "int",
    "boolean": "bool",
}

#: A custom attribute's typed slot (``_encoding``) per storage of the target column.
_ATTRIBUTE_SLOT = {"text": ("s", "text"), "bool": ("b", "bool"), "int": ("i", "int")}

_LOW_BITS = (1 << 64) - 1


class _Unsupported(Exception):
    """A value this module does not build in SQL: the default does it."""


def _storage(type_: Any) -> str:
    """What a column holds, to tell whether a source column's stored form fits a target column."""
    if isinstance(type_, sa.Uuid):
        return "uuid"
    if isinstance(type_, UtcDateTime):
        return "instant"
    if isinstance(type_, Money):
        return "money"
    if isinstance(type_, sa.Boolean):
        return "bool"
    if isinstance(type_, sa.Integer):
        return "int"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.JSON):
        return "json"
    if isinstance(type_, sa.LargeBinary):
        return "binary"
    if isinstance(type_, (sa.String, sa.Text)):
        return "text"
    return repr(type_)


def _derived(spec: EntitySpec) -> AggregateSpec | None:
    return spec if isinstance(spec, AggregateSpec) and spec.derived else None


def _field_of(spec: EntitySpec, column: sa.Column[Any]) -> str:
    """The record field a column of the target table holds."""
    if SHADOW in column.info:
        return str(column.info[SHADOW])
    declared = _derived(spec)
    if declared is not None and column.name not in declared.declared:
        for fd in declared.declared.values():
            if fd.kind == "ref_any" and column.name in (f"{fd.name}_aggregate", f"{fd.name}_id"):
                return fd.name
    return column.name


def _list_item(spec: EntitySpec, head: str) -> type | None:
    """The value object class of a list field of ``spec`` (None: ``head`` is not one)."""
    declared = _derived(spec)
    if declared is not None:
        fd = declared.declared.get(head)
        return fd.type if fd is not None and fd.kind == "many" else None
    return _OWN_LISTS.get(spec.name, {}).get(head)


def _checked_fields(spec: EntitySpec) -> frozenset[str]:
    """Text fields whose ``check`` or ``convert`` may change a value (derived aggregates)."""
    declared = _derived(spec)
    if declared is None:
        return frozenset()
    return frozenset(n for n, fd in declared.declared.items() if fd.check is not None or fd.convert is not None)


class _Builder:
    """The SELECT list of one ``insert_from`` and what to check afterwards."""

    def __init__(self, repo: SqlRepository, source: SqlRepository, tenant: str) -> None:
        self.repo, self.source, self.tenant = repo, source, tenant
        self.pg = repo.store.dialect == "postgresql"
        self.alias = source.table.alias("crmkit_source")
        self.compiler = Compiler(
            cast(Any, self.alias), source.spec, repo.store.dialect, lambda other: repo.store.repository(other).table
        )
        #: (field, condition) pairs no source row may meet (a copy SQL cannot put in its field)
        self.refused: list[tuple[str, str, sa.ColumnElement[bool]]] = []
        #: searchable fields whose folded form Python computes after the insert
        self.refold: set[str] = set()

    def const(self, column: sa.Column[Any], value: Any) -> sa.ColumnElement[Any]:
        bound: sa.ColumnElement[Any] = sa.bindparam(None, value, type_=column.type)
        # PostgreSQL types the select list's parameters from the cast (NULL included); SQLite
        # stores what is bound (a CAST there would apply affinities to JSON text)
        return sa.cast(bound, column.type) if self.pg else bound

    def copy(self, column: sa.Column[Any], field: str, value: Copy, nullable: bool) -> sa.ColumnElement[Any]:
        """The source expression of a copy into ``column`` (a column of field ``field``)."""
        spec, alias = self.source.spec, self.alias
        head, _, rest = value.path.partition(".")
        target = _storage(column.type)
        item = _list_item(spec, head) if rest else None
        if SHADOW in column.info:  # the folded form of a searchable target field
            if item is None and head != "attributes" and shadow_column(value.path) in alias.c:
                return alias.c[shadow_column(value.path)]  # folded already
            # the text itself for now (so a NOT NULL column takes it); folded afterwards (``_records``)
            self.refold.add(field)
            return self.copy(self.repo.table.c[field], field, value, True)
        if head == "attributes" and rest and spec.has_attributes:
            if target not in _ATTRIBUTE_SLOT:
                raise _Unsupported(field)
            slot, storage = _ATTRIBUTE_SLOT[target]
            stored = alias.c.attributes
            if self.pg:
                entry = stored.op("->")(sa.literal(rest, sa.Text()))
                text = entry.op("->>")(sa.literal(slot, sa.Text()))
                expr = _typed(text, storage)
                present = entry.is_not(None)
            else:
                expr = sa.func.json_extract(stored, sa.literal(f"$.{rest}.{slot}", sa.Text()))
                present = sa.func.json_type(stored, sa.literal(f"$.{rest}", sa.Text())).is_not(None)
            self.refused.append(
                (
                    field,
                    f"is {target}, and attribute {rest!r} of a source record is not",
                    sa.and_(present, expr.is_(None)),
                )
            )
            return self._null_checked(field, expr, nullable)
        if item is not None:
            if not value.first:
                raise TypeError(f"{value.path} goes through the list {head}: copy the first element's (first=True)")
            kinds = {fd.name: fd.kind for fd in declared_fields(item)}
            if kinds.get(rest) is None or _ELEMENT_STORAGE.get(kinds[rest]) != target:
                raise _Unsupported(field)
            stored = alias.c[head]
            if self.pg:
                text = stored.op("->")(sa.literal(0, sa.Integer())).op("->>")(sa.literal(rest, sa.Text()))
                expr = _typed(text, target)
            else:
                expr = sa.func.json_extract(stored, sa.literal(f"$[0].{rest}", sa.Text()))
            return self._null_checked(field, expr, nullable)
        # a queryable field (``about.id`` included), or one only stored (value objects, attributes, bytes)
        queried = spec.field(value.path)
        if queried is not None:
            source_column = self.compiler.column(value.path)
        elif value.path in alias.c and value.path not in (
            "tenant",
            *(_field_of(spec, c) for c in alias.c if SHADOW in c.info),
        ):
            source_column = alias.c[value.path]
            declared = _derived(spec)
            if declared is not None and (
                value.path not in declared.declared or declared.declared[value.path].kind == "ref_any"
            ):
                raise _Unsupported(field)
        else:  # a ref_any field as a whole (two columns), or no stored field
            raise _Unsupported(field)
        if _storage(source_column.type) != target:
            raise _Unsupported(field)
        return self._null_checked(field, source_column, nullable or not source_column.nullable)

    def reference(self, column: sa.Column[Any], field: str, value: Copy, nullable: bool) -> sa.ColumnElement[Any]:
        """A ``ref_any`` field copied from one of the source: each of its two columns (aggregate, id) from its own."""
        source = _derived(self.source.spec)
        fd = source.declared.get(value.path) if source is not None else None
        if fd is None or fd.kind != "ref_any":
            raise _Unsupported(field)
        part = "aggregate" if column.name == f"{field}_aggregate" else "id"
        copied = self.alias.c[f"{value.path}_{part}"]
        return self._null_checked(field, copied, nullable or part == "aggregate" or not fd.nullable)

    def _null_checked(self, field: str, expr: sa.ColumnElement[Any], nullable: bool) -> sa.ColumnElement[Any]:
        """``expr``, after making sure no source row gives NULL when the target field cannot be missing."""
        if not nullable:
            self.refused.append(
                (field, "must not be missing, and a source record has no value to copy", expr.is_(None))
            )
        return expr


def _typed(text: sa.ColumnElement[Any], storage: str) -> sa.ColumnElement[Any]:
    """PostgreSQL: a JSON value's text (``->>``) as a column of this storage holds it."""
    if storage == "text":
        return sa.type_coerce(text, sa.Text()).collate("C")
    types: dict[str, sa.types.TypeEngine[Any]] = {"uuid": sa.Uuid(), "int": sa.BigInteger(), "bool": sa.Boolean()}
    return sa.cast(text, types[storage])


def _resolved(attribute: attrs.Attribute[Any], value: Any) -> Any:
    """A ``Const`` as the record would hold it: factories called, the field's converter applied."""
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        if value.takes_self:
            raise _Unsupported(attribute.name)
        value = value.factory()
    converter = attribute.converter
    return converter(value) if callable(converter) else value


def _id_column(pg: bool, n: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The id of the ``n``-th new row (from 1)."""
    first = new_id().int
    high, low = first >> 64, (first & _LOW_BITS) & ~(1 << 61)
    start = low - (1 << 64)  # signed 64-bit: the variant bit is the sign bit
    head = sa.literal(f"{high:016x}", sa.Text())
    offset = sa.literal(start, sa.BigInteger()) + n - 1
    if pg:
        return sa.cast(head.concat(sa.func.lpad(sa.func.to_hex(offset), 16, "0")), sa.Uuid())
    # SQLite's printf('%x') writes a negative integer as its 64-bit two's complement
    return head.concat(sa.func.printf("%016x", offset))


def insert_from(
    repo: SqlRepository,
    tenant: str,
    source: SqlRepository,
    where: Expr,
    values: Mapping[str, Copy | Const | Test],
    stamp: dt.datetime,
) -> list[Any] | None:
    """The new records, built and written by one statement (None: the default must do it)."""
    spec, table, store = repo.spec, repo.table, repo.store
    cls = spec.cls
    attributes = {a.name: a for a in attrs.fields(cls)}
    unknown = set(values) - (set(attributes) - set(_OWN))
    if unknown:
        raise TypeError(f"{spec.label}: no field {sorted(unknown)[0]!r} to build")
    try:
        wanted: dict[str, Copy | Const | Test] = {}
        for name, attribute in attributes.items():
            if name in _OWN:
                continue
            value = values.get(name)
            if value is None:
                if attribute.default is attrs.NOTHING:
                    raise TypeError(f"{spec.label}: a value of {name!r} is needed")
                value = Const(attribute.default)
            if isinstance(value, Const):
                value = Const(_resolved(attribute, value.value))
            wanted[name] = value
        builder = _Builder(repo, source, tenant)
        consts = types.SimpleNamespace(**{n: v.value for n, v in wanted.items() if isinstance(v, Const)})
        namespace: dict[str, Any] = {}
        expressions = dict((c.name, e) for c, e in record_expressions(table, namespace))
        n = sa.func.row_number().over(order_by=builder.alias.c.id)
        id_column = _id_column(builder.pg, n)
        nullable = {n: fd.nullable for n, fd in spec.fields.items()}
        declared = _derived(spec)
        columns: list[sa.ColumnElement[Any]] = []
        for column in table.c:
            name = column.name
            if name == "tenant":
                columns.append(builder.const(column, tenant))
            elif name == "id":
                columns.append(id_column)
            elif name in ("created_at", "updated_at"):
                columns.append(builder.const(column, stamp))
            elif name == "version":
                columns.append(builder.const(column, 1))
            elif name == "external_id":
                columns.append(builder.const(column, None))
            else:
                field = _field_of(spec, column)
                value = wanted[field]
                if isinstance(value, Const):
                    columns.append(builder.const(column, eval(expressions[name], namespace, {"r": consts})))
                elif isinstance(value, Test):
                    if _storage(column.type) != "bool":
                        raise _Unsupported(field)
                    test = builder.compiler.expr(value.where, tenant)
                    columns.append(sa.case((test, sa.true()), else_=sa.false()))
                else:
                    if declared is not None and declared.declared[field].kind == "ref_any":
                        columns.append(builder.reference(column, field, value, declared.declared[field].nullable))
                        continue
                    maybe_missing = nullable.get(field, column.nullable)
                    columns.append(builder.copy(column, field, value, bool(maybe_missing)))
    except _Unsupported:
        return None
    alias = builder.alias
    condition = builder.compiler.where(tenant, where)
    labelled = [c.label(t.name) for c, t in zip(columns, table.c, strict=True)]
    select = sa.select(*labelled).where(condition).order_by(alias.c.id)
    copies = [n for n, v in wanted.items() if isinstance(v, Copy)]
    # copies a check may change or whose folded form is to be made: read back as rows, then fixed
    checked = sorted({n for n in copies if n in _checked_fields(spec)} | builder.refold)
    shadows = [table.c[shadow_column(n)] for n in checked if shadow_column(n) in table.c]
    if declared is not None:
        # a declared aggregate's records are put together here: only the ids, copies and tests come back
        back = [
            table.c.id,
            *(
                c
                for c in table.c
                if SHADOW not in c.info and not isinstance(wanted.get(_field_of(spec, c)), (Const, type(None)))
            ),
        ]
        back += shadows
        statement = table.insert().from_select([c.name for c in table.c], select).returning(*back)
        raw = RawSelect(statement, store.engine.dialect, None)
    else:
        statement = table.insert().from_select([c.name for c in table.c], select).returning(*repo._columns, *shadows)
        raw = RawSelect(statement, store.engine.dialect, None if checked else repo.convert.plan)
    try:
        with store.connection(atomic=True, several=True, entity=spec.label) as conn:
            if builder.refused:
                _refuse(conn, builder, condition)
            # SQLAlchemy binds the parameters (IN lists of a Test included); the rows come
            # straight off its DBAPI cursor through the generated decoder
            result = conn.execute(statement)
            try:
                rows = raw.fetched(result.cursor)
            finally:
                result.close()
            if declared is not None:
                made, fixes = _assembled(declared, rows, wanted, stamp, checked)
                if fixes:
                    _write_fixes(repo, conn, tenant, fixes)
            else:
                made = _records(repo, conn, tenant, rows, raw.builds_records, copies, checked)
            made.sort(key=lambda r: r.id)
            searched = _words.searched(table)
            if searched and store.dialect == "sqlite" and made:
                folds: dict[str, Any] = {}
                exprs = {c.name: e for c, e in record_expressions(table, folds)}
                folded: dict[str, Sequence[object]] = {
                    c: [eval(exprs[c], folds, {"r": r}) for r in made] for c in searched
                }
                _words.add(conn, table, tenant, [r.id.hex for r in made], folded)
    except ConflictError as exc:
        if exc.transient:
            raise
        raise _explained(repo, exc) from exc
    repo._grown(len(made))
    return made


def _explained(repo: SqlRepository, conflict: ConflictError) -> ConflictError:
    """The ConflictError naming the unique key the new rows clash on (stored already, or built twice)."""
    explained = explain_conflict(repo.spec, repo.table, [], conflict)  # which declared key, if one
    key = explained.key if explained is not conflict else repo.spec.natural_key
    if not key:
        return conflict
    label = repo.spec.label
    names = ", ".join(key)
    return ConflictError(
        f"{label}: a ({names}) of the records built is already stored, or two of them share one",
        entity=label,
        key=key,
    )


def _refuse(conn: sa.Connection, builder: _Builder, condition: sa.ColumnElement[bool]) -> None:
    """ValidationError when a matching source row holds a value a copy cannot put in its field."""
    whens = [(bad, i) for i, (_, _, bad) in enumerate(builder.refused)]
    which = sa.case(*whens, else_=-1)
    statement = (
        sa.select(which, builder.alias.c.id)
        .where(condition, sa.or_(*(bad for _, _, bad in builder.refused)))
        .order_by(builder.alias.c.id)
        .limit(1)
    )
    found = conn.execute(statement).first()
    if found is not None:
        field, message, _ = builder.refused[int(found[0])]
        raise ValidationError(field, message, found[1])


def _decoder(fd: Any) -> Callable[[Any], Any] | None:
    """How a returned column value of a declared field becomes what its converter takes (None: as it is)."""
    if fd.kind == "many":
        many = _many_decoder(fd.type)
        return lambda stored: many(_json_value(stored))
    if fd.kind == "attributes":
        return _attributes
    if fd.kind == "text_set":
        return lambda stored: frozenset(_json_value(stored))
    return None


def _assembled(
    spec: AggregateSpec,
    rows: list[dict[str, Any]],
    wanted: Mapping[str, Copy | Const | Test],
    stamp: dt.datetime,
    checked: list[str],
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Records of a declared aggregate from the returned ids, copies and tests, and the copies to write back.

    Constants are the values the record holds already (converted once, shared by every
    record, as immutable values may be); each copied value goes through the field's
    converter, as a record built with the class's constructor would, and a value the
    converter changes (a check's normalisation) or a folded form still to be made is to be
    written back.
    """
    cls = spec.cls
    converters = {a.name: a.converter for a in attrs.fields(cls)}
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "cls": cls, "_fix": _fix}
    namespace.update(ValidationError=ValidationError, _Ref=Ref)

    def assign(name: str, value: str) -> str:
        """Set field ``name`` of ``new``: through its slot's own setter when it has one (as ``_rows``)."""
        slot = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__), None)
        if isinstance(slot, types.MemberDescriptorType):
            namespace[f"_set_{name}"] = slot.__set__
            return f"_set_{name}(new, {value})"
        return f"_set(new, {name!r}, {value})"

    body = ["new = _new(cls)", assign("id", "row['id']")]
    fixed: list[tuple[str, Any]] = [(n, v.value) for n, v in wanted.items() if isinstance(v, Const)]
    fixed += [("created_at", stamp), ("updated_at", stamp), ("version", 1), ("external_id", None)]
    for j, (name, value) in enumerate(fixed):
        namespace[f"k{j}"] = value  # one value, shared by every record (values of records are immutable)
        body.append(assign(name, f"k{j}"))
    for j, (name, value) in enumerate(wanted.items()):
        if isinstance(value, Test):
            body.append(assign(name, f"bool(row[{name!r}])"))
        elif isinstance(value, Copy):
            if spec.declared[name].kind == "ref_any":
                a, i = f"{name}_aggregate", f"{name}_id"
                body.append(f"v = None if row[{a!r}] is None else _Ref(row[{a!r}], row[{i!r}])")
            else:
                body.append(f"v = row[{name!r}]")
            decode, convert = _decoder(spec.declared[name]), converters[name]
            if decode is not None:
                namespace[f"d{j}"] = decode
                body.append(f"if v is not None: v = d{j}(v)")
            if callable(convert):
                namespace[f"c{j}"] = convert
                body.append(f"v = c{j}(v)")
            if name in checked:
                body.append(f"_fix(fixes, row, {name!r}, v, {shadow_column(name)!r})")
            body.append(assign(name, "v"))
    lines = [
        "def assemble(rows):",
        "    made, fixes = [], []",
        "    append = made.append",
        "    i = -1",
        "    try:",
        "        for row in rows:",
        "            i += 1",
        *(f"            {line}" for line in body),
        "            append(new)",
        "    except ValidationError as exc:",
        "        raise exc.at_row(i) from None",
        "    return made, fixes",
    ]
    exec(compile("\n".join(lines) + "\n", f"<crmkit_sqlalchemy insert_from of {spec.name}>", "exec"), namespace)
    made, fixes = namespace["assemble"](rows)
    return made, fixes


def _fix(fixes: list[dict[str, Any]], row: Mapping[str, Any], name: str, value: Any, shadow: str) -> None:
    """Note a copied value to write back: its converter changed it, or its folded form is still to be made."""
    folded = (None if value is None else fold(value)) if shadow in row else None
    if value != row[name] or (shadow in row and row[shadow] != folded):
        fixes.append({"p_id": row["id"], "p_value": value, "p_folded": folded, "p_field": name})


def _records(
    repo: SqlRepository,
    conn: sa.Connection,
    tenant: str,
    rows: list[Any],
    built: bool,
    copies: list[str],
    checked: list[str],
) -> list[Any]:
    """The returned rows as records, each copied value passed through its field's converter."""
    cls = repo.spec.cls
    converters: dict[str, Callable[[Any], Any]] = {}
    for a in attrs.fields(cls):
        if a.name in copies and callable(a.converter):
            converters[a.name] = a.converter
    fixes: list[dict[str, Any]] = []
    if not built:
        from_row = repo.convert.from_row
        records = []
        for i, row in enumerate(rows):
            for name in checked:
                stored = row[name]
                try:
                    value = converters[name](stored) if name in converters else stored
                except ValidationError as exc:
                    raise exc.at_row(i) from None
                shadow = shadow_column(name)
                folded = (None if value is None else fold(value)) if shadow in row else None
                if value != stored or (shadow in row and row[shadow] != folded):
                    row[name] = value
                    fixes.append({"p_id": row["id"], "p_value": value, "p_folded": folded, "p_field": name})
            records.append(from_row(row))
    else:
        records = rows
    unchecked = [n for n in converters if n not in checked]
    for i, record in enumerate(records):
        for name in unchecked:
            try:
                converters[name](getattr(record, name))
            except ValidationError as exc:
                raise exc.at_row(i) from None
    if fixes:
        _write_fixes(repo, conn, tenant, fixes)
    return records


def _write_fixes(repo: SqlRepository, conn: sa.Connection, tenant: str, fixes: list[dict[str, Any]]) -> None:
    """Store the values a field's check normalised and the folded forms of copied searchable texts."""
    t = repo.table
    for name in dict.fromkeys(f["p_field"] for f in fixes):
        column = t.c[name]
        sets: dict[str, Any] = {name: sa.bindparam("p_value", type_=column.type)}
        shadow = shadow_column(name)
        params = [
            {"p_id": f["p_id"], "p_value": f["p_value"], "p_folded": f["p_folded"]}
            for f in fixes
            if f["p_field"] == name
        ]
        if shadow in t.c:
            sets[shadow] = sa.bindparam("p_folded", type_=t.c[shadow].type)
        statement = t.update().where(t.c.tenant == tenant, t.c.id == sa.bindparam("p_id")).values(**sets)
        conn.execute(statement, params)

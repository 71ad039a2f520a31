"""Tables and row converters derived from a declared aggregate (``crmkit.schema.AggregateSpec``).

Any aggregate declared with ``@schema.aggregate`` is stored with no code of its own: its
table, constraints and indexes come from the declaration, and so do the functions that
turn records into rows and back.

=============  ==============================================================
field kind     column
=============  ==============================================================
text, currency ``Text`` (code-point order on both databases)
enum           ``Text`` holding the member's value
integer        ``BigInteger``
boolean        ``Boolean``
money          ``Money`` (exact: numeric on PostgreSQL, sortable text on SQLite)
instant        ``UtcDateTime``
date           ``Date``
uuid, ref      ``Uuid``
ref_any        two columns: ``<field>_aggregate`` (Text) and ``<field>_id`` (Uuid)
text_set       ``Json``: the texts as a sorted list
many           ``Json``: a list of objects, one per value object (below)
attributes     ``Json``: the typed encoding of ``_encoding.encode_attributes``
binary         ``LargeBinary`` (BLOB on SQLite, bytea on PostgreSQL)
=============  ==============================================================

Every table has ``tenant`` and ``id`` first (the primary key), then the declared fields,
then one ``<field>_folded`` column per text field declared ``search=True`` (its folded form,
``crmkit.search.fold``, indexed as (tenant, folded, id)), then ``created_at``, ``updated_at``,
``version`` and ``external_id``. Unique constraints:
``(tenant, external_id)`` and ``(tenant, *key)`` for every declared unique key, so the
database, not a read before the write, keeps them. Indexes: ``(tenant, *key)`` for every
declared index, and, unless an index or unique key already starts with the same columns,
``(tenant, ref)`` per reference and ``(tenant, time_field, id)``. A ref_any field may be part
of a declared index (its two columns, aggregate first), which then also serves its look-ups.

Value objects inside a ``many`` column are JSON objects keyed by field name, a field left
out when it is None; each value is typed exactly: Decimal as its text (the exponent kept),
instants as UTC ISO text with microseconds, dates as ISO text, UUIDs as hex, enum members
as their value, text sets as sorted lists, nested value objects as lists of objects.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa

from crmkit._errors import ConflictError, PluginError
from crmkit.entities import EntitySpec
from crmkit.schema import AggregateSpec, FieldDef, Ref, declared_fields
from crmkit.search import fold
from crmkit_sqlalchemy._encoding import encode_attributes
from crmkit_sqlalchemy._rows import (
    CONVERTERS,
    Converter,
    _attributes,
    _json_value,
    _trusted,
    record_expressions,
    shadow_expression,
)
from crmkit_sqlalchemy._schema import SHADOW, TABLES, VERSION_TABLE, metadata, shadow_column
from crmkit_sqlalchemy._types import Json, Money, Text, UtcDateTime

__all__ = [
    "EXPRESSIONS",
    "columns_of",
    "declared_table",
    "derive_table",
    "explain_conflict",
    "schema_metadata",
    "storage_of",
]

#: ``table.info`` key under which a derived table keeps, per column, the Python expression of
#: its value from record ``r`` and the helpers the expression calls (see ``record_expressions``).
EXPRESSIONS = "crmkit_expressions"

_TENANT_LENGTH = 100
_MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names short, silently
_RESERVED_TABLES = frozenset({VERSION_TABLE, *TABLES})

_SCALAR_TYPES: Mapping[str, Callable[[], Any]] = {
    "text": lambda: Text,
    "currency": lambda: Text,
    "enum": lambda: Text,
    "integer": sa.BigInteger,
    "boolean": sa.Boolean,
    "money": Money,
    "instant": UtcDateTime,
    "date": sa.Date,
    "uuid": sa.Uuid,
    "ref": sa.Uuid,
    "binary": sa.LargeBinary,
}
_JSON_KINDS = frozenset({"text_set", "many", "attributes"})


def _check_name(spec: AggregateSpec, name: str, what: str) -> None:
    if len(name) > _MAX_IDENTIFIER:
        raise PluginError(
            f"aggregate {spec.name!r}: {what} {name!r} is longer than {_MAX_IDENTIFIER} characters, "
            "which PostgreSQL cannot hold; choose a shorter name"
        )


def columns_of(spec: AggregateSpec, name: str) -> tuple[str, ...]:
    """The columns that hold a field (or a query path such as ``about.id``) of a declared aggregate."""
    if "." in name:
        head, part = name.split(".", 1)
        return (f"{head}_{part}",)
    fd = spec.declared.get(name)
    if fd is not None and fd.kind == "ref_any":
        return (f"{name}_aggregate", f"{name}_id")
    return (name,)


def derive_table(spec: AggregateSpec, into: sa.MetaData) -> sa.Table:
    """The table of a declared aggregate, added to ``into`` (see the module docstring)."""
    if spec.name in _RESERVED_TABLES:
        raise PluginError(f"aggregate {spec.name!r}: crmkit-sqlalchemy keeps a table of that name for itself")
    _check_name(spec, spec.name, "the table name")
    columns: list[sa.Column[Any]] = [
        sa.Column("tenant", sa.String(_TENANT_LENGTH), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]
    for fd in spec.declared.values():
        if fd.kind == "ref_any":
            columns.append(sa.Column(f"{fd.name}_aggregate", Text, nullable=fd.nullable))
            columns.append(sa.Column(f"{fd.name}_id", sa.Uuid(), nullable=fd.nullable))
        elif fd.kind in _JSON_KINDS:
            columns.append(sa.Column(fd.name, Json, nullable=False))
        elif fd.kind in _SCALAR_TYPES:
            columns.append(sa.Column(fd.name, _SCALAR_TYPES[fd.kind](), nullable=fd.nullable))
        else:  # pragma: no cover - every kind of crmkit.schema is mapped above
            raise PluginError(f"aggregate {spec.name!r}: no column type for {fd.kind} field {fd.name!r}")
    searched = [fd for fd in spec.declared.values() if fd.search]
    for fd in searched:
        columns.append(sa.Column(shadow_column(fd.name), Text, nullable=fd.nullable, info={SHADOW: fd.name}))
    columns += [
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("external_id", Text, nullable=True),
    ]
    seen: set[str] = set()
    for column in columns:
        if column.name in seen:
            raise PluginError(
                f"aggregate {spec.name!r}: two fields need the column {column.name!r} "
                "(a ref_any field f takes f_aggregate and f_id)"
            )
        seen.add(column.name)
        _check_name(spec, column.name, "the column")

    def key_columns(key: Sequence[str]) -> tuple[str, ...]:
        return ("tenant", *(c for name in key for c in columns_of(spec, name)))

    uniques = [("tenant", "id"), ("tenant", "external_id"), *(key_columns(k) for k in spec.unique)]
    constraints: list[Any] = [sa.PrimaryKeyConstraint("tenant", "id")]
    constraints += [sa.UniqueConstraint(*key) for key in dict.fromkeys(uniques[1:])]
    indexes: list[tuple[str, ...]] = [("tenant", shadow_column(fd.name), "id") for fd in searched]
    for key in spec.indexes:
        wanted = key_columns(key)
        if wanted not in uniques and wanted not in indexes:
            indexes.append(wanted)
    implicit = [key_columns((r.field,)) for r in spec.references if not r.any]
    implicit += [("tenant", f"{r.field}_id", f"{r.field}_aggregate") for r in spec.references if r.any]
    if spec.time_field is not None:
        implicit.append(("tenant", spec.time_field, "id"))
    for wanted in implicit:
        # a ref_any's two columns serve its look-ups in either order (a declared index has aggregate first)
        if not any(have[: len(wanted)] == wanted or _same_ref_any(have, wanted) for have in uniques + indexes):
            indexes.append(wanted)
    constraints += [sa.Index(None, *key) for key in indexes]
    table = sa.Table(spec.name, into, *columns, *constraints)
    table.info[EXPRESSIONS] = _expressions(spec)
    table.info["crmkit_spec"] = spec
    return table


def _same_ref_any(have: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """Whether index ``have`` starts with the tenant and the two columns of the ref_any index ``wanted``."""
    return (
        len(wanted) == 3
        and wanted[1].endswith("_id")
        and wanted[2] == wanted[1][: -len("_id")] + "_aggregate"
        and have[:1] == ("tenant",)
        and set(have[1:3]) == set(wanted[1:])
    )


# --------------------------------------------------------------------------- value objects


def _scalar_encoder(fd: FieldDef) -> str | None:
    """The expression (of ``x``) that encodes a non-None scalar value for JSON, or None: as it is."""
    kind = fd.kind
    if kind == "money":
        return "str(x)"
    if kind == "instant":
        return "x.isoformat(timespec='microseconds')"
    if kind == "date":
        return "x.isoformat()"
    if kind == "uuid":
        return "x.hex"
    if kind == "enum":
        return "x.value"
    if kind == "text_set":
        return "sorted(x)"
    return None


_encoders: dict[type, Callable[[Any], dict[str, Any]]] = {}
_decoders: dict[type, Callable[[Mapping[str, Any]], Any]] = {}
_codec_lock = threading.Lock()


def _object_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    """A generated function from a value object to its JSON object."""
    found = _encoders.get(cls)
    if found is not None:
        return found
    namespace: dict[str, Any] = {}
    lines = ["def encode(v):", "    d = {}"]
    for i, fd in enumerate(declared_fields(cls)):
        if fd.kind == "many":
            namespace[f"many{i}"] = _many_encoder(fd.type)
            convert = f"many{i}(x)"
        else:
            convert = _scalar_encoder(fd) or "x"
        lines.append(f"    x = v.{fd.name}")
        guard = "    if x is not None:\n        " if fd.nullable else "    "
        lines.append(f"{guard}d[{fd.name!r}] = {convert}")
    lines.append("    return d")
    exec(compile("\n".join(lines) + "\n", f"<crmkit_sqlalchemy JSON of {cls.__qualname__}>", "exec"), namespace)
    with _codec_lock:
        return _encoders.setdefault(cls, namespace["encode"])


def _many_encoder(cls: type) -> Callable[[Sequence[Any]], list[dict[str, Any]]]:
    encode = _object_encoder(cls)

    def encode_many(items: Sequence[Any]) -> list[dict[str, Any]]:
        return [encode(item) for item in items]

    return encode_many


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)


def _scalar_decoder(fd: FieldDef) -> Callable[[Any], Any] | None:
    """How a JSON value of a value object's field comes back (None: as it is)."""
    kind = fd.kind
    if kind == "money":
        return Decimal
    if kind == "instant":
        return _instant
    if kind == "date":
        return dt.date.fromisoformat
    if kind == "uuid":
        return lambda text: uuid.UUID(hex=text)
    if kind == "enum":
        return fd.type  # type: ignore[no-any-return]
    if kind == "text_set":
        return frozenset
    if kind == "many":
        return _many_decoder(fd.type)
    return None


def _object_decoder(cls: type) -> Callable[[Mapping[str, Any]], Any]:
    """A function from a stored JSON object to the value object (through its constructor)."""
    found = _decoders.get(cls)
    if found is not None:
        return found
    plan = [(fd.name, _scalar_decoder(fd)) for fd in declared_fields(cls)]

    def decode(doc: Mapping[str, Any]) -> Any:
        values: dict[str, Any] = {}
        for name, convert in plan:
            if name in doc:
                value = doc[name]
                values[name] = value if convert is None or value is None else convert(value)
        return cls(**values)

    with _codec_lock:
        return _decoders.setdefault(cls, decode)


def _many_decoder(cls: type) -> Callable[[Iterable[Mapping[str, Any]]], tuple[Any, ...]]:
    decode = _object_decoder(cls)

    def decode_many(docs: Iterable[Mapping[str, Any]]) -> tuple[Any, ...]:
        return tuple(decode(d) for d in docs)

    return decode_many


# --------------------------------------------------------------------------- records to rows and back


def _expressions(spec: AggregateSpec) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per column: the Python expression of its value from record ``r``, and the helpers it calls."""
    out: dict[str, tuple[str, dict[str, Any]]] = {"tenant": ("tenant", {}), "id": ("r.id", {})}
    for fd in spec.declared.values():
        f = f"r.{fd.name}"
        if fd.kind == "ref_any":
            for part in ("aggregate", "id"):
                value = f"{f}.{part}"
                out[f"{fd.name}_{part}"] = (f"(None if {f} is None else {value})" if fd.nullable else value, {})
        elif fd.kind == "many":
            helper = f"encode_{fd.name}"
            out[fd.name] = (f"{helper}({f})", {helper: _many_encoder(fd.type)})
        elif fd.kind == "attributes":
            out[fd.name] = (f"encode_attributes({f})", {"encode_attributes": encode_attributes})
        elif fd.kind == "text_set":
            out[fd.name] = (f"sorted({f})", {})
        elif fd.kind == "enum":
            out[fd.name] = (f"(None if {f} is None else {f}.value)" if fd.nullable else f"{f}.value", {})
        else:
            out[fd.name] = (f, {})
        if fd.search:
            out[shadow_column(fd.name)] = (shadow_expression(fd.name, nullable=fd.nullable), {"fold": fold})
    for name in ("created_at", "updated_at", "version", "external_id"):
        out[name] = (f"r.{name}", {})
    return out


def _from_row(spec: AggregateSpec) -> Callable[[Mapping[str, Any]], Any]:
    """A generated function from a row to the record, set field by field without re-validating.

    Column values come back in the exact form the field converters produce (UTC datetimes,
    Decimals, dates, UUIDs, bools, ints, str); the rest is converted here the way the
    converters would: enum members, frozensets, read-only attribute maps, Ref pairs, texts
    through their field's ``check`` (which may make a value of its own type, such as a
    ``Channel``) and value objects (those through their constructors).
    """
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_set": object.__setattr__,
        "cls": spec.cls,
        "json_value": _json_value,
        "attributes_of": _attributes,
        "Ref": Ref,
    }
    _trusted(spec.cls)  # refuses a class that is not a plain attrs class
    lines = ["def from_row(row):", "    new = _new(cls)"]
    assigned = {"id", "created_at", "updated_at", "version", "external_id"}
    for name in ("id", "created_at", "updated_at", "version", "external_id"):
        lines.append(f"    _set(new, {name!r}, row[{name!r}])")
    for i, fd in enumerate(spec.declared.values()):
        assigned.add(fd.name)
        value = f"row[{fd.name!r}]"
        if fd.kind == "ref_any":
            lines.append(f"    a = row[{fd.name + '_aggregate'!r}]")
            lines.append(f"    _set(new, {fd.name!r}, None if a is None else Ref(a, row[{fd.name + '_id'!r}]))")
            continue
        if fd.kind == "enum":
            namespace[f"enum{i}"] = fd.type
            value = f"(None if {value} is None else enum{i}({value}))" if fd.nullable else f"enum{i}({value})"
        elif fd.kind == "text_set":
            value = f"frozenset(json_value({value}))"
        elif fd.kind == "many":
            namespace[f"many{i}"] = _many_decoder(fd.type)
            value = f"many{i}(json_value({value}))"
        elif fd.kind == "attributes":
            value = f"attributes_of({value})"
        elif fd.kind == "text" and fd.check is not None:
            # a check may turn the text into a value of its own type (check=Channel): the
            # column holds the text, so the record gets what the check makes of it again
            namespace[f"check{i}"] = fd.check
            value = f"(None if {value} is None else check{i}({value}))" if fd.nullable else f"check{i}({value})"
        lines.append(f"    _set(new, {fd.name!r}, {value})")
    missing = {a.name for a in attrs.fields(spec.cls)} - assigned
    if missing:
        raise PluginError(f"aggregate {spec.name!r}: fields {sorted(missing)} are not declared with crmkit.schema")
    lines.append("    return new")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<crmkit_sqlalchemy records of {spec.name}>", "exec"), namespace)
    return namespace["from_row"]  # type: ignore[no-any-return]


def _to_row(table: sa.Table) -> Callable[[Any], dict[str, Any]]:
    namespace: dict[str, Any] = {}
    items = [f"{c.name!r}: {e}" for c, e in record_expressions(table, namespace) if c.name != "tenant"]
    source = f"def to_row(r):\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, f"<crmkit_sqlalchemy rows of {table.name}>", "exec"), namespace)
    return namespace["to_row"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- one table per declaration


def _new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=metadata.naming_convention)


_derived: dict[type, tuple[AggregateSpec, sa.Table, Converter]] = {}
_derived_lock = threading.Lock()


def _derived_of(spec: AggregateSpec) -> tuple[sa.Table, Converter]:
    """The table and converters of a declared aggregate, derived once per declaration."""
    found = _derived.get(spec.cls)
    if found is None or found[0] is not spec:
        table = derive_table(spec, _new_metadata())  # a MetaData each: aggregates of one name may differ
        converter = Converter(_to_row(table), _from_row(spec))
        with _derived_lock:
            found = _derived[spec.cls] = (spec, table, converter)
    return found[1], found[2]


def declared_table(spec: AggregateSpec) -> sa.Table:
    """The table of a declared aggregate."""
    return _derived_of(spec)[0]


def storage_of(spec: EntitySpec) -> tuple[sa.Table, Converter]:
    """The table and converters of an aggregate: hand-written for crmkit's own five, derived for the rest."""
    if isinstance(spec, AggregateSpec) and spec.derived:
        return _derived_of(spec)
    return TABLES[spec.name], CONVERTERS[spec.name]


def schema_metadata(specs: Iterable[AggregateSpec]) -> sa.MetaData:
    """A MetaData of crmkit's own tables and those of ``specs``: what a database should hold."""
    combined = _new_metadata()
    for table in TABLES.values():
        table.to_metadata(combined)
    for spec in specs:
        declared_table(spec).to_metadata(combined).info.clear()
    return combined


# --------------------------------------------------------------------------- unique keys


_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")
_POSTGRESQL_KEY = re.compile(r"Key \(([^)]*)\)=")


def _violated(table: sa.Table, cause: BaseException) -> tuple[str, ...] | None:
    """The columns of the unique constraint the driver reports violated, when it says which."""
    original = cause
    while original is not None:
        diag = getattr(original, "diag", None)
        name = getattr(diag, "constraint_name", None)
        if name:
            for constraint in table.constraints:
                if isinstance(constraint, sa.UniqueConstraint) and constraint.name == name:
                    return tuple(c.name for c in constraint.columns)
            # a long name is cut short by PostgreSQL; the detail still lists the columns
            detail = _POSTGRESQL_KEY.match(getattr(diag, "message_detail", None) or "")
            return tuple(c.strip().strip('"') for c in detail.group(1).split(",")) if detail else None
        found = _SQLITE_UNIQUE.search(str(original))
        if found:
            return tuple(part.rsplit(".", 1)[-1] for part in found.group(1).split(", "))
        original = original.__cause__ or getattr(original, "orig", None)  # type: ignore[assignment]
    return None


def explain_conflict(spec: EntitySpec, table: sa.Table, records: Sequence[Any], cause: ConflictError) -> ConflictError:
    """A ConflictError naming the declared unique key a write violated (``cause`` when it was another one).

    The database reports the clash; this only puts it in crmkit's words: the key, and the
    values when the write was one record or the batch itself repeats them.
    """
    if not (isinstance(spec, AggregateSpec) and spec.derived) or not spec.unique:
        return cause
    columns = _violated(table, cause)
    for key in spec.unique:
        if columns is not None and columns != ("tenant", *(c for n in key for c in columns_of(spec, n))):
            continue
        seen: set[tuple[Any, ...]] = set()
        for record in records:
            value = tuple(spec.record_value(record, name) for name in key)
            if any(v is None for v in value):
                continue  # a key with a missing part never clashes
            shown = ", ".join(f"{n}={v!r}" for n, v in zip(key, value, strict=True))
            if value in seen:
                return ConflictError(f"{spec.label} with {shown} appears twice", entity=spec.label, key=value)
            seen.add(value)
            if columns is not None and len(records) == 1:
                return ConflictError(f"{spec.label} with {shown} already exists", entity=spec.label, key=value)
        if columns is not None:
            return ConflictError(
                f"{spec.label}: a record of this write has a ({', '.join(key)}) that is already stored",
                entity=spec.label,
                key=key,
            )
    return cause

"""Documents and indexes of declared aggregates, derived from their ``AggregateSpec``: no per-aggregate code.

A declared record is stored the way ``_documents`` stores crmkit's own aggregates, one
field of the document per declared field, under the field's name:

* text and currency: a string; integer: a BSON integer; boolean: a BSON boolean;
* money: Decimal128 (value and exponent); instant: Int64 microseconds since the epoch;
  date: a BSON date at UTC midnight; uuid and ref: Binary subtype 4;
* enum: its value text (compared and sorted as text, rebuilt as the member);
* text_set: a sorted array of strings; many: an array of sub-documents, each value
  object's fields encoded by these same rules;
* ref_any: the sub-document ``{"aggregate": name, "id": uuid}``, so that the query
  paths ``about.aggregate`` and ``about.id`` are the document's own paths;
* attributes: typed as on crmkit's own aggregates (``_documents.encode_attribute``);
* binary: BSON binary (subtype 0), read back as bytes;
* a text field declared ``search=True`` also has its folded form under ``_folded.<field>``
  and its folded words (an array) under ``_words.<field>``, each indexed with the tenant;
* None and empty collections are left out. A text_set that may be None keeps an
  empty set as ``[]``, so that None and the empty set both come back as they were.

The converters of each aggregate and value object are generated once, as straight-line
Python (like the stamping copier of ``crm.py``): bulk imports pay for no per-field
dispatch. Records are rebuilt through their class, so stored data is checked again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING

from crmkit._errors import ConflictError
from crmkit.entities import EntitySpec
from crmkit.query import parse_order
from crmkit.schema import AggregateSpec, FieldDef, Ref, declared_fields
from crmkit_mongo._documents import (
    CODECS,
    Codec,
    as_binary,
    bson_date,
    decimal128,
    encode_attribute,
    from_micros,
    micros,
    put_search,
    search_indexes,
)
from crmkit_mongo._documents import _decode_attribute as decode_attribute

__all__ = ["DerivedCodec", "codec_for", "derived_indexes", "repeated_keys"]

#: How a non-None value ``{v}`` of each kind becomes its BSON form.
_TO_BSON: Mapping[str, str] = {
    "text": "{v}",
    "currency": "{v}",
    "integer": "{v}",
    "boolean": "{v}",
    "money": "_decimal128({v})",
    "instant": "_micros({v})",
    "date": "_bson_date({v})",
    "uuid": "_binary({v})",
    "ref": "_binary({v})",
    "enum": "{v}.value",
    "text_set": "sorted({v})",
    "ref_any": "{{'aggregate': {v}.aggregate, 'id': _binary({v}.id)}}",
    "attributes": "_attributes({v})",
    "many": "[{encode}(x) for x in {v}]",
    "binary": "{v}",
}

#: How a stored BSON value ``{v}`` of each kind becomes the Python value again.
_FROM_BSON: Mapping[str, str] = {
    "text": "{v}",
    "currency": "{v}",
    "integer": "int({v})",
    "boolean": "{v}",
    "money": "{v}.to_decimal()",
    "instant": "_from_micros({v})",
    "date": "{v}.date()",
    "uuid": "{v}",
    "ref": "{v}",
    "enum": "{members}[{v}]",
    "text_set": "frozenset({v})",
    "ref_any": "_Ref({v}['aggregate'], {v}['id'])",
    "attributes": "_attributes_back({v})",
    "many": "tuple({decode}(x) for x in {v})",
    "binary": "bytes({v})",
}

#: Kinds whose empty value is left out of documents, with what a missing field reads back as.
_COLLECTIONS: Mapping[str, str] = {"text_set": "_EMPTY_SET", "many": "()", "attributes": "_NO_ATTRIBUTES"}


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: encode_attribute(value) for key, value in values.items()}


def _attributes_back(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {key: decode_attribute(value) for key, value in stored.items()}


class _Compiler:
    """Generates the encode and decode functions of one aggregate and of the value objects it holds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.namespace: dict[str, Any] = {
            "_decimal128": decimal128,
            "_micros": micros,
            "_bson_date": bson_date,
            "_binary": as_binary,
            "_from_micros": from_micros,
            "_attributes": _attributes,
            "_attributes_back": _attributes_back,
            "_Ref": Ref,
            "_EMPTY_SET": frozenset(),
            "_NO_ATTRIBUTES": {},
        }
        self.sources: list[str] = []
        self._value_objects: dict[type, tuple[str, str]] = {}

    def _name(self, prefix: str, thing: Any) -> str:
        name = f"{prefix}{len(self.namespace)}"
        self.namespace[name] = thing
        return name

    def value_object(self, cls: type) -> tuple[str, str]:
        """Names of the (encode, decode) functions of a value-object class, generated on first use."""
        found = self._value_objects.get(cls)
        if found is None:
            n = len(self._value_objects)
            found = self._value_objects[cls] = (f"_encode_vo{n}", f"_decode_vo{n}")
            fields = declared_fields(cls)
            cls_name = self._name("_cls", cls)
            self.sources.append(self.encoder(found[0], fields, "doc = {}", ()))
            self.sources.append(self.decoder(found[1], fields, cls_name, ()))
        return found

    def _to_bson(self, fd: FieldDef, v: str) -> str:
        encode = self.value_object(fd.type)[0] if fd.kind == "many" else ""
        return _TO_BSON[fd.kind].format(v=v, encode=encode)

    def _from_bson(self, fd: FieldDef, v: str) -> str:
        decode = self.value_object(fd.type)[1] if fd.kind == "many" else ""
        members = self._name("_members", {m.value: m for m in fd.type}) if fd.kind == "enum" else ""
        return _FROM_BSON[fd.kind].format(v=v, decode=decode, members=members)

    def encoder(self, name: str, fields: tuple[FieldDef, ...], start: str, record_lines: tuple[str, ...]) -> str:
        """``def name(r[, tenant])``: the document of one record or value object."""
        args = "tenant, r" if record_lines else "r"
        lines = [f"def {name}({args}):", f"    {start}"]
        for fd in fields:
            lines.append(f"    v = r.{fd.name}")
            lines.append(self.put(fd))
        lines.extend(record_lines)
        lines.append("    return doc")
        return "\n".join(lines) + "\n"

    def put(self, fd: FieldDef) -> str:
        """The lines storing the value ``v`` of one field in ``doc`` (None and empty collections left out)."""
        key = repr(fd.name)
        stored = self._to_bson(fd, "v")
        if fd.kind in _COLLECTIONS and not (fd.nullable and fd.kind == "text_set"):
            return f"    if v:\n        doc[{key}] = {stored}"  # empty: left out
        if fd.nullable:
            return f"    if v is not None:\n        doc[{key}] = {stored}"
        return f"    doc[{key}] = {stored}"

    def decoder(self, name: str, fields: tuple[FieldDef, ...], cls_name: str, record_args: tuple[str, ...]) -> str:
        """``def name(d)``: the record or value object of one document."""
        lines = [f"def {name}(d):", "    g = d.get"]
        args = list(record_args)
        for i, fd in enumerate(fields):
            key = repr(fd.name)
            value = f"v{i}"
            if fd.kind in _COLLECTIONS and not (fd.nullable and fd.kind == "text_set"):
                lines.append(f"    {value} = g({key})")
                empty = _COLLECTIONS[fd.kind]
                lines.append(f"    {value} = {empty} if {value} is None else {self._from_bson(fd, value)}")
            elif fd.nullable:
                lines.append(f"    {value} = g({key})")
                lines.append(f"    {value} = None if {value} is None else {self._from_bson(fd, value)}")
            else:
                lines.append(f"    {value} = {self._from_bson(fd, f'd[{key}]')}")
            args.append(f"{fd.name}={value}")
        lines.append(f"    return {cls_name}({', '.join(args)})")
        return "\n".join(lines) + "\n"

    def compile(self) -> dict[str, Any]:
        source = "\n".join(self.sources)
        exec(compile(source, f"<crmkit_mongo documents of {self.label}>", "exec"), self.namespace)
        return self.namespace


# The fields every record has, after the declared ones (the order crmkit's own documents use).
_RECORD_ENCODE = (
    "    v = r.external_id",
    "    if v is not None:\n        doc['external_id'] = v",
    "    created, updated = r.created_at, r.updated_at",
    "    doc['created_at'] = None if created is None else _micros(created)",
    "    doc['updated_at'] = doc['created_at'] if updated is created else "
    "(None if updated is None else _micros(updated))",
    "    doc['version'] = r.version",
)
_RECORD_DECODE = (
    "id=d['id']",
    "created_at=_optional_datetime(g('created_at'))",
    "updated_at=_optional_datetime(g('updated_at'))",
    "version=int(d['version'])",
    "external_id=g('external_id')",
)


def _optional_datetime(value: Any) -> Any:
    return None if value is None else from_micros(value)


class DerivedCodec(Codec):
    """The codec of a declared aggregate, generated from its spec; ``value_of`` reads one stored field."""

    def __init__(self, spec: AggregateSpec) -> None:
        compiler = _Compiler(spec.name)
        compiler.namespace["_optional_datetime"] = _optional_datetime
        compiler.namespace["_put_search"] = put_search
        fields = tuple(spec.declared.values())
        cls_name = compiler._name("_cls", spec.cls)
        searched = tuple(f"    _put_search(doc, {fd.name!r}, r.{fd.name})" for fd in fields if fd.search)
        compiler.sources.append(
            compiler.encoder(
                "encode", fields, "doc = {'tenant': tenant, 'id': _binary(r.id)}", _RECORD_ENCODE + searched
            )
        )
        compiler.sources.append(compiler.decoder("decode", fields, cls_name, _RECORD_DECODE))
        namespace = compiler.compile()
        super().__init__(spec, namespace["encode"], namespace["decode"])
        self._readers: dict[str, Callable[[Any], Any]] = {
            "id": lambda v: v,
            "external_id": lambda v: v,
            "version": int,
            "created_at": from_micros,
            "updated_at": from_micros,
        }
        #: Per declared field, ``put(doc, value)``: the field stored as ``encode`` stores it (``insert_from``).
        self.put: dict[str, Callable[[dict[str, Any], Any], None]] = {}
        for fd in fields:
            writer = f"def put(doc, v):\n{compiler.put(fd)}\n"
            exec(compile(writer, f"<crmkit_mongo {spec.name}.{fd.name} put>", "exec"), namespace)
            self.put[fd.name] = namespace.pop("put")
        for fd in fields:
            # Keys hold scalar fields only; an enum is named by its text, as queries compare it.
            if fd.kind not in _COLLECTIONS and fd.kind not in ("ref_any", "enum"):
                reader = f"def read(v):\n    return {compiler._from_bson(fd, 'v')}\n"
                exec(compile(reader, f"<crmkit_mongo {spec.name}.{fd.name}>", "exec"), namespace)
                self._readers[fd.name] = namespace.pop("read")

    def value_of(self, name: str, stored: Any) -> Any:
        """The value of a field from its stored form (to name a duplicate key as the record has it)."""
        reader = self._readers.get(name)
        return stored if reader is None or stored is None else reader(stored)


_compiled: dict[int, tuple[AggregateSpec, DerivedCodec]] = {}
_compiled_lock = threading.Lock()


def codec_for(spec: EntitySpec) -> Codec:
    """The codec of an aggregate: crmkit's own hand-written ones, or one derived (once) from a declaration."""
    if not (isinstance(spec, AggregateSpec) and spec.derived):
        return CODECS[spec.name]
    found = _compiled.get(id(spec))
    if found is None or found[0] is not spec:
        with _compiled_lock:
            found = _compiled.get(id(spec))
            if found is None or found[0] is not spec:
                found = _compiled[id(spec)] = (spec, DerivedCodec(spec))
    return found[1]


# --------------------------------------------------------------------------- indexes

IndexSpec = tuple[list[tuple[str, int]], dict[str, Any]]


def _paths(spec: AggregateSpec, name: str) -> list[str]:
    """The document paths of a field (a ref_any field is two: its aggregate and its id)."""
    fd = spec.declared.get(name)
    if fd is not None and fd.kind == "ref_any":
        return [f"{name}.aggregate", f"{name}.id"]
    return [name]


def derived_indexes(spec: AggregateSpec) -> dict[str, IndexSpec]:
    """The indexes a declaration asks for, each leading with the tenant (as every crmkit index does).

    * ``unique_<fields>``: every ``unique`` key, enforced by the database. Partial: only
      documents holding every part are indexed (a None part is left out of the document),
      so a key with a missing part never clashes, as with SQL NULLs;
    * ``index_<fields>``: every key of ``indexes``;
    * ``ref_<field>``: every ``ref`` and ``ref_any`` field, then the default order, so that
      the records referring to one (cascades, per-customer reads) come straight from it;
    * ``tenant_time``: the time field then id, for time ranges and timelines; and
      ``tenant_order`` when the default order is another one.

    An index whose keys another one already has is left out.
    """
    out: dict[str, IndexSpec] = {}
    seen: set[tuple[tuple[str, int], ...]] = set()

    def add(name: str, paths: list[tuple[str, int]], options: dict[str, Any]) -> None:
        keys = [("tenant", ASCENDING), *paths]
        if not options and tuple(keys) in seen:
            return
        seen.add(tuple(keys))
        out[name] = (keys, options)

    for key in spec.unique:
        paths = [p for name in key for p in _paths(spec, name)]
        add(
            "unique_" + "_".join(key),
            [(p, ASCENDING) for p in paths],
            {"unique": True, "partialFilterExpression": {p: {"$exists": True} for p in paths}},
        )
    for key in spec.indexes:
        add("index_" + "_".join(key), [(p, ASCENDING) for name in key for p in _paths(spec, name)], {})
    order = [(name, DESCENDING if desc else ASCENDING) for name, desc in parse_order(None, spec).keys]
    for ref in spec.references:
        paths = _paths(spec, ref.field)
        add("ref_" + ref.field, [(p, ASCENDING) for p in paths] + [k for k in order if k[0] not in paths], {})
    for name, (keys, options) in search_indexes(spec).items():
        add(name, keys[1:], options)
    if spec.time_field is not None:
        add("tenant_time", [(spec.time_field, ASCENDING), ("id", ASCENDING)], {})
    if order != [("id", ASCENDING)]:
        add("tenant_order", order, {})
    return out


# --------------------------------------------------------------------------- unique keys gained later

_SHOWN = 5


def repeated_keys(collection: Any, spec: AggregateSpec) -> ConflictError | None:
    """A ConflictError naming the first declared unique key whose index the collection lacks and its documents
    repeat (the aggregate, the key and up to a few repeated values), or None: every missing unique index of the
    declaration can be built. Checked before any index is created, so that a refusal changes nothing."""
    present = set(collection.index_information())
    for key in spec.unique:
        name = "unique_" + "_".join(key)
        if name in present:
            continue
        paths = [p for field in key for p in _paths(spec, field)]
        group = {"tenant": "$tenant", **{f"k{i}": f"${p}" for i, p in enumerate(paths)}}
        found = list(
            collection.aggregate(
                [
                    {"$match": {p: {"$exists": True} for p in paths}},
                    {"$group": {"_id": group, "n": {"$sum": 1}}},
                    {"$match": {"n": {"$gt": 1}}},
                    {"$sort": {"n": -1}},
                    {"$limit": _SHOWN},
                ]
            )
        )
        if not found:
            continue
        shown = "; ".join(
            ", ".join(
                [f"tenant={row['_id']['tenant']!r}"] + [f"{p}={row['_id'].get(f'k{i}')!r}" for i, p in enumerate(paths)]
            )
            + f" ({row['n']} records)"
            for row in found
        )
        more = " and maybe more" if len(found) == _SHOWN else ""
        label = f"{spec.name} ({spec.label})"
        return ConflictError(
            f"cannot add the unique key ({', '.join(key)}) of the aggregate {label}: stored records repeat it "
            f"({shown}{more}); merge or remove the duplicates, then migrate again (no index was created)",
            entity=label,
            key=key,
        )
    return None


def drop_changed(collection: Any, wanted: Mapping[str, IndexSpec]) -> list[str]:
    """Drop the indexes whose names ``wanted`` derives but whose keys or options the declaration has changed
    since they were built (a gained time field reorders the ``ref_`` indexes, for one); they are built
    again as declared right after. Returns their names."""
    dropped = []
    for name, have in collection.index_information().items():
        if name not in wanted:
            continue
        keys, options = wanted[name]
        same = (
            [(k, int(d)) for k, d in have["key"]] == [(k, int(d)) for k, d in keys]
            and bool(have.get("unique")) == bool(options.get("unique"))
            and have.get("partialFilterExpression") == options.get("partialFilterExpression")
        )
        if not same:
            collection.drop_index(name)
            dropped.append(name)
    return dropped

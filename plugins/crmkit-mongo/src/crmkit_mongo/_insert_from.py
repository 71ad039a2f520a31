"""``Repository.insert_from`` on MongoDB: the new documents built by one aggregation pipeline.

The source collection is read by one pipeline: the ``$match`` of the condition (with its
sub-queries as ``_semijoin`` looks them up), a ``$sort`` by id, and a ``$project`` that
writes each new document whole, in the key order the aggregate's encoder writes:

* a copied value (``Copy``) is the source document's stored value at its path: a field,
  ``attributes.<name>``, or the first element's field of a list (``$arrayElemAt``), left
  out when missing, as the encoder leaves None out. Copies are made only between fields
  stored alike (text to text, ref to uuid, an attribute to a text or boolean field); a
  pair stored differently is built by the base class instead;
* a constant (``Const``) is encoded once, by the aggregate's own per-field encoder, and
  sent as a ``$literal``; the tenant, ``created_at``, ``updated_at`` and ``version`` too;
* a test (``Test``) is ``False`` in the pipeline: see below.

MongoDB cannot ``$merge`` into a collection inside a multi-document transaction, so the
documents come back and are written with ``insert_many`` in the current session, a batch
at a time. In Python each document only gets its new id (UUIDv7, increasing in source
order, in the place of the source id it carried), its tests, and, when a copied field is
searchable, normalised by the declaration (``check=``/``convert=``) or an attribute's value,
the stored forms the encoder derives from the record's value. The returned records are the documents
decoded by the aggregate's decoder (which runs the declaration's checks before anything is
written): nothing is read back.

A test is a condition in the query language, whose semantics (type brackets, missing
fields, sub-queries) the filter compiler and ``_semijoin`` keep for ``$match``; aggregation
expressions compare across types and have no sub-queries, so translating a condition to
``$expr`` would be a second, different compiler. Instead, per batch, one query of the
source collection keeps the batch's ids (``$in`` on the ``(tenant, id)`` index) that match
the test and returns those ids only; the flags are set from that set. That costs one
indexed query per batch and test, reads no sub-query for documents outside the batch, and
is exact by construction.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from bson.binary import Binary, UuidRepresentation

from crmkit._ids import _make_uuid, new_id
from crmkit.entities import EntitySpec
from crmkit.query import And, Const, Copy, Expr, In, Test
from crmkit.schema import AggregateSpec, FieldDef, declared_fields
from crmkit_mongo._derived import DerivedCodec
from crmkit_mongo._documents import FOLDED, WORDS, micros, put_search

if TYPE_CHECKING:
    from crmkit_mongo._repository import MongoRepository

__all__ = ["BATCH", "Plan", "plan"]

#: Documents written per ``insert_many`` (and ids per test query).
BATCH = 2000

#: How each declared kind is stored, as far as copying goes: two kinds with one form copy as is.
_FORM: Mapping[str, str] = {
    "text": "text",
    "currency": "text",
    "enum": "text",
    "integer": "int",
    "boolean": "bool",
    "money": "decimal",
    "instant": "micros",
    "date": "date",
    "uuid": "uuid",
    "ref": "uuid",
    "text_set": "texts",
    "binary": "bytes",
    "ref_any": "ref_any",
}
#: The fields every record has, with their stored forms.
_COMMON_FORM = {"id": "uuid", "created_at": "micros", "updated_at": "micros", "version": "int", "external_id": "text"}
#: What an attribute value is copied to in the pipeline: fields whose decoder takes the stored value as it
#: is, so that the declaration's converter sees what a record would (and refuses an attribute of another
#: type as it would). An attribute datetime, an integer into money...: the generic way.
_FROM_ATTRIBUTE = frozenset({"text", "bool"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FACTORY: Any = attrs.Factory  # a declared default made per record (``attributes``)


@attrs.frozen
class _Source:
    """What a copy reads: its pipeline expression, its stored form, and whether its values may be missing."""

    expr: Any
    form: str
    nullable: bool
    enum: Any = None


def _source(spec: EntitySpec, value: Copy) -> _Source | None:
    """How the pipeline reads ``value`` from a source document; None when it is no plain stored value."""
    path = value.path
    head, _, rest = path.partition(".")
    if head == "attributes" and rest:
        if not spec.has_attributes or not _NAME.match(rest):
            return None
        return _Source("$attributes." + rest, "attribute", True)
    if head in _COMMON_FORM:
        return None if rest else _Source("$" + head, _COMMON_FORM[head], head == "external_id")
    fd = spec.declared.get(head) if isinstance(spec, AggregateSpec) else None
    if fd is None:
        return None
    if not rest:
        form = _FORM.get(fd.kind)
        return None if form is None else _Source("$" + head, form, fd.nullable, fd.type if fd.kind == "enum" else None)
    if fd.kind == "ref_any" and rest in ("aggregate", "id"):
        return _Source(f"${head}.{rest}", "text" if rest == "aggregate" else "uuid", fd.nullable)
    if fd.kind != "many":
        return None
    if not value.first:
        raise TypeError(f"{path} goes through the list {head}: copy the first element's (first=True)")
    sub = next((s for s in declared_fields(fd.type) if s.name == rest), None)
    form = None if sub is None else _FORM.get(sub.kind)
    if sub is None or form is None or not _NAME.match(rest):
        return None
    first = {"$let": {"vars": {"first": {"$arrayElemAt": ["$" + head, 0]}}, "in": "$$first." + rest}}
    return _Source(first, form, True, sub.type if sub.kind == "enum" else None)


def _copy_expr(source: _Source, target: FieldDef) -> Any:
    """The pipeline expression of a copied value in the target's stored form, or None when they differ."""
    form = _FORM.get(target.kind)
    if form is None:
        return None
    expr = source.expr
    if target.kind == "enum" and source.enum is not target.type:
        return None
    if source.form == "attribute":
        if form not in _FROM_ATTRIBUTE:
            return None
    elif source.form != form:
        return None
    if form == "texts":
        if target.nullable:
            # a None set is left out, an empty one kept as []: the source's missing set is empty unless it may be None
            return expr if source.nullable else {"$ifNull": [expr, []]}
        return {"$cond": [{"$eq": [expr, []]}, "$$REMOVE", expr]}
    return {"$ifNull": [expr, "$$REMOVE"]}


@attrs.frozen
class Plan:
    """How the documents of one ``insert_from`` are built: the ``$project`` and what Python adds."""

    project: dict[str, Any]
    tests: tuple[tuple[str, Expr], ...]
    #: Copied fields stored only after the declaration's own normalisation (``check=``, ``convert=``).
    normalised: tuple[str, ...]
    #: The searchable fields, when one is copied (their folded forms are derived per document).
    searched: tuple[str, ...]
    #: The documents are read with UUIDs left as BSON binaries (the driver's UUID objects cost a
    #: quarter of the call): the copied uuid fields (and ref_any ids) made UUIDs in one fast step,
    #: and the constants holding some as one shared readable value each.
    uuids: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    shared: tuple[tuple[str, Any], ...] = ()


def plan(
    target: AggregateSpec,
    codec: DerivedCodec,
    tenant: str,
    source: EntitySpec,
    values: Mapping[str, Any],
    stamp: dt.datetime,
) -> Plan | None:
    """The plan of an ``insert_from``; None when a value is not a plain stored one (the base class builds those)."""
    declared = target.declared
    if set(values) != set(declared):
        return None
    project: dict[str, Any] = {"_id": 0, "tenant": {"$literal": tenant}, "id": "$id"}
    tests: list[tuple[str, Expr]] = []
    normalised: list[str] = []
    constants: dict[str, Any] = {}
    uuids: list[str] = []
    refs: list[str] = []
    shared: list[tuple[str, Any]] = []
    copied_search = False
    for name, fd in declared.items():
        value = values[name]
        if isinstance(value, Const):
            given = value.value
            if given is attrs.NOTHING:
                return None  # a required field left out: the base class refuses it as records do
            if isinstance(given, _FACTORY) and not given.takes_self:
                given = given.factory()  # a declared default made per record (``attributes``)
            codec.put[name](constants, given)
            if name in constants:
                project[name] = {"$literal": constants[name]}
                readable = _readable(constants[name])
                if readable != constants[name]:
                    shared.append((name, readable))
        elif isinstance(value, Test):
            if fd.kind != "boolean":
                return None
            tests.append((name, value.where))
            project[name] = {"$literal": False}
        elif isinstance(value, Copy):
            found = _source(source, value)
            expr = None if found is None else _copy_expr(found, fd)
            if found is None or expr is None:
                return None
            project[name] = expr
            if found.form == "uuid":
                uuids.append(name)
            elif found.form == "ref_any":
                refs.append(name)
            if fd.check is not None or fd.convert is not None or found.form == "attribute":
                normalised.append(name)  # stored as the record holds it (an attribute: as converted, if at all)
            copied_search = copied_search or fd.search
        else:
            return None
    stamped = micros(stamp)
    project["created_at"] = project["updated_at"] = {"$literal": stamped}
    project["version"] = {"$literal": 1}
    searched = tuple(name for name, fd in declared.items() if fd.search)
    if searched and not copied_search:
        # every searchable field is a constant: its folded forms are too
        folded: dict[str, Any] = {}
        for name in searched:
            put_search(folded, name, values[name].value)
        for key in (FOLDED, WORDS):
            if key in folded:
                project[key] = {"$literal": folded[key]}
        searched = ()
    return Plan(project, tuple(tests), tuple(normalised), searched, tuple(uuids), tuple(refs), tuple(shared))


def _uuid(value: Any) -> uuid.UUID:
    """A UUID of a BSON binary of subtype 4 (as ``crmkit._ids`` makes them: without the checks)."""
    made: uuid.UUID = _make_uuid(int.from_bytes(value, "big"))
    return made


def _readable(value: Any) -> Any:
    """An encoded value with its UUIDs as the driver reads them (BSON binaries of subtype 4 as UUIDs)."""
    if isinstance(value, Binary) and value.subtype == 4:
        return _uuid(value)
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return value


def _batches(docs: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(docs, size)):
        yield batch


def insert_from(repo: MongoRepository, tenant: str, source: MongoRepository, where: Expr, built: Plan) -> list[Any]:
    """Run ``built``: the pipeline on ``source``, the new documents written in batches; the new records."""
    session = repo._store.session()
    codec = repo._codec
    assert isinstance(codec, DerivedCodec)
    decode, put = codec.decode, codec.put
    pipeline = [*source.stages(tenant, where), {"$sort": {"id": 1}}, {"$project": built.project}]
    read = _binary_uuids(source.collection)
    cursor = read.aggregate(_binaries(pipeline), allowDiskUse=True, session=session, batchSize=BATCH)
    found: Iterator[dict[str, Any]] = cursor
    if source.collection.full_name == repo.collection.full_name:
        found = iter(list(cursor))  # every source document read before the first new one is written
    made: list[Any] = []
    written: list[list[dict[str, Any]]] = []
    moved = False
    try:
        for batch in _batches(found, BATCH):
            flagged = [_matching(source, tenant, [doc["id"] for doc in batch], where) for _, where in built.tests]
            records = []
            for doc in batch:
                source_id = doc["id"]
                doc["id"] = new_id()
                for name in built.uuids:
                    copied = doc.get(name)
                    if copied is not None:
                        doc[name] = _uuid(copied)
                for name in built.refs:
                    copied = doc.get(name)
                    if copied is not None:
                        copied["id"] = _uuid(copied["id"])
                for name, readable in built.shared:
                    doc[name] = readable
                for (name, _), ids in zip(built.tests, flagged, strict=True):
                    if source_id in ids:
                        doc[name] = True
                record = decode(doc)  # the declaration's checks, before anything is written
                for name in built.normalised:
                    # stored as the record holds it, in its place (a key that was missing goes last: reordered)
                    value: dict[str, Any] = {}
                    put[name](value, getattr(record, name))
                    if name in value:
                        moved = moved or name not in doc
                        doc[name] = value[name]
                    else:
                        doc.pop(name, None)
                if built.searched:
                    doc.pop(FOLDED, None)
                    doc.pop(WORDS, None)
                    for name in built.searched:
                        put_search(doc, name, getattr(record, name))
                records.append(record)
            if moved:
                batch = [_reordered(doc, built.project) for doc in batch]
                moved = False
            if session is None:
                written.append(batch)  # insert_many gives each document its _id before it sends any
            repo.collection.insert_many(batch, ordered=True, session=session)
            made.extend(records)
    except BaseException:
        if session is None and written:
            # without a transaction: take back what this call wrote (the batches before, the clashing one's start)
            sent = [doc["_id"] for batch in written for doc in batch if "_id" in doc]
            repo.collection.delete_many({"_id": {"$in": sent}})
        raise
    return made


def _reordered(doc: dict[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with its keys in the encoder's order (a normalised field was added at the end)."""
    out = {key: doc[key] for key in project if key in doc}
    out.update((key, value) for key, value in doc.items() if key not in out)
    return out


def _matching(source: MongoRepository, tenant: str, ids: Sequence[Any], where: Expr) -> set[Any]:
    """The ids among ``ids`` of the source documents that match ``where`` (one query, ids only)."""
    condition = And((In("id", tuple(_uuid(i) for i in ids)), *(where.items if isinstance(where, And) else (where,))))
    pipeline = [*source.stages(tenant, condition), {"$project": {"_id": 0, "id": 1}}]
    found = _binary_uuids(source.collection).aggregate(_binaries(pipeline), session=source._store.session())
    return {doc["id"] for doc in found}


def _binaries(value: Any) -> Any:
    """Pipeline stages with their UUIDs as the BSON binaries the store writes (subtype 4)."""
    if isinstance(value, uuid.UUID):
        return Binary(value.bytes, 4)
    if isinstance(value, dict):
        return {key: _binaries(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_binaries(item) for item in value]
    return value


def _binary_uuids(collection: Any) -> Any:
    """The collection read with UUIDs left as BSON binaries (subtype 4)."""
    options = collection.codec_options.with_options(uuid_representation=UuidRepresentation.UNSPECIFIED)
    return collection.with_options(codec_options=options)

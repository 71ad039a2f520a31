"""One MongoDB collection per aggregate kind, every document and every filter tagged with the tenant."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from bson.binary import Binary, UuidRepresentation
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from crmkit._errors import ConflictError
from crmkit.aggregation import AggregateQuery, select_values
from crmkit.entities import EntitySpec
from crmkit.query import Const, Copy, Expr, Order, Select, Test, has_select, resolve_selects
from crmkit.schema import AggregateSpec
from crmkit.store import Activity, Repository
from crmkit_mongo._aggregate import _decode as decode_value
from crmkit_mongo._aggregate import aggregate
from crmkit_mongo._derived import DerivedCodec, codec_for
from crmkit_mongo._documents import as_binary, from_micros
from crmkit_mongo._errors import DUPLICATE_KEY, conflict_for, duplicate_key_of
from crmkit_mongo._filters import for_tenant, sort_spec
from crmkit_mongo._insert_from import insert_from, plan
from crmkit_mongo._semijoin import stages

if TYPE_CHECKING:
    from crmkit_mongo._store import MongoStore

__all__ = ["MongoRepository"]

F = TypeVar("F", bound=Callable[..., Any])


def _translated(method: F) -> F:
    """Run a repository method with driver errors turned into crmkit errors."""

    @functools.wraps(method)
    def wrapper(self: MongoRepository, *args: Any, **kwargs: Any) -> Any:
        with self._store.errors(self.spec.label, self._value_of):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Fields the store sets on a record (and MongoDB's own key), never compared by ``compare_stored``.
_STAMPS = frozenset({"_id", "id", "created_at", "updated_at", "version"})


class MongoRepository(Repository[Any]):
    """One aggregate in one collection: crmkit's own five, or any declared one (its codec derived)."""

    def __init__(self, store: MongoStore, spec: EntitySpec, collection: Collection[Any]) -> None:
        self.spec = spec
        self._store = store
        self._codec = codec_for(spec)
        self._value_of = getattr(self._codec, "value_of", None)
        self.collection = collection

    # -- helpers
    def _docs(self, tenant: str, records: Sequence[Any]) -> list[dict[str, Any]]:
        encode = self._codec.encode
        return [encode(tenant, r) for r in records]

    def _session(self) -> Any:
        return self._store.session()

    def filter(self, tenant: str, where: Expr) -> dict[str, Any]:
        """The tenant's filter for ``where``; a sub-query (``in_(Select)``, ``among``) first becomes ``$in``.

        MongoDB's filters cannot query another collection: the values come from one group-by of
        the other aggregate's collection (its own sub-queries resolved the same way), run in the
        server through the (tenant, ...) indexes, in this transaction's session.
        """
        if has_select(where):
            where = resolve_selects(where, lambda select: self._values(tenant, select))
        return for_tenant(tenant, where, self.spec)

    def _values(self, tenant: str, select: Select) -> list[Any]:
        assert select.spec is not None, "a bound sub-query"
        return select_values(self._store.repository(select.spec), tenant, select)

    @_translated
    def first_values(self, tenant: str, select: Select) -> list[Any]:
        """The values whose group's first record in ``select.first_by`` matches ``select.first_where``: one
        pipeline (``$sort``, ``$group`` with ``$first``, ``$match`` on the first records), in the server."""
        field = select.field
        pipeline: list[dict[str, Any]] = [
            {"$match": self.filter(tenant, select.where)},
            {"$sort": dict(sort_spec(select.first_by))},
            {"$group": {"_id": "$" + field, "first": {"$first": "$$ROOT"}}},
            {"$replaceRoot": {"newRoot": "$first"}},
        ]
        if select.first_where is not None:
            pipeline.append({"$match": self.filter(tenant, select.first_where)})
        pipeline.append({"$project": {"_id": 0, "value": "$" + field}})
        kind = self.spec.fields[field].kind
        found = self.collection.aggregate(pipeline, allowDiskUse=True, session=self._session())
        return [value for doc in found if (value := decode_value(kind, doc.get("value"))) is not None]

    def _check_new(self, tenant: str, records: Sequence[Any]) -> None:
        """Raise ConflictError before writing anything when an id or external_id is taken (no transaction)."""
        label = self.spec.label
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ConflictError(f"{label} {dup} already exists", entity=label, key=dup)
        taken = self.collection.find_one({"tenant": tenant, "id": {"$in": ids}}, {"id": 1})
        if taken is not None:
            raise ConflictError(f"{label} {taken['id']} already exists", entity=label, key=taken["id"])
        if self.spec.has_external_id:
            exts = [r.external_id for r in records if r.external_id is not None]
            if len(set(exts)) != len(exts):
                dup_ext = next(e for e in exts if exts.count(e) > 1)
                raise ConflictError(f"{label} with external_id {dup_ext!r} already exists", entity=label, key=dup_ext)
            if exts:
                found = self.collection.find_one({"tenant": tenant, "external_id": {"$in": exts}}, {"external_id": 1})
                if found is not None:
                    ext = found["external_id"]
                    raise ConflictError(f"{label} with external_id {ext!r} already exists", entity=label, key=ext)

    # -- the contract
    @_translated
    def insert(self, tenant: str, records: Sequence[Any]) -> None:
        if not records:
            return
        docs = self._docs(tenant, records)
        session = self._session()
        if session is not None:
            # Inside a transaction a duplicate key aborts it: nothing of this unit of work stays.
            self.collection.insert_many(docs, ordered=True, session=session)
            return
        self._check_new(tenant, records)
        try:
            self.collection.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            # Lost a race after the check: take back what this call wrote, then report the clash.
            written = [d["_id"] for d in docs[: exc.details.get("nInserted", 0)]]
            if written:
                self.collection.delete_many({"_id": {"$in": written}})
            raise

    @_translated
    def insert_from(
        self,
        tenant: str,
        source: Repository[Any],
        where: Expr,
        values: Mapping[str, Copy | Const | Test],
        stamp: dt.datetime,
    ) -> list[Any]:
        """One pipeline on the source collection builds the new documents, written in this session (``_insert_from``).

        A declared aggregate built from a collection of this store's database with values
        stored as they are copied; anything else (crmkit's own four as targets, a copy
        between differently stored fields) is built by the base class, a page at a time.
        """
        built = None
        same_store = isinstance(source, MongoRepository) and source._store is self._store
        if same_store and isinstance(self.spec, AggregateSpec) and isinstance(self._codec, DerivedCodec):
            built = plan(self.spec, self._codec, tenant, source.spec, values, stamp)
        if built is None or not isinstance(source, MongoRepository):
            return super().insert_from(tenant, source, where, values, stamp)
        return insert_from(self, tenant, source, where, built)

    @_translated
    def insert_new(self, tenant: str, records: Sequence[Any]) -> list[Any]:
        if not records:
            return []
        session = self._session()
        keep: list[Any] = list(records)
        if self.spec.has_external_id:
            exts = [r.external_id for r in records if r.external_id is not None]
            stored: set[str] = set()
            if exts:
                cursor = self.collection.find(
                    {"tenant": tenant, "external_id": {"$in": exts}},
                    {"external_id": 1, "_id": 0},
                    batch_size=len(exts),
                    session=session,
                )
                stored = {d["external_id"] for d in cursor}
            keep = []
            for record in records:
                ext = record.external_id
                if ext is not None:
                    if ext in stored:
                        continue
                    stored.add(ext)  # a second record with the same external_id in this batch is skipped too
                keep.append(record)
        if not keep:
            return []
        docs = self._docs(tenant, keep)
        if session is not None:
            self.collection.insert_many(docs, ordered=False, session=session)
            return keep
        try:
            self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Without a transaction another writer may have stored an external_id since the check:
            # those records are skipped (the import is idempotent); any other error is real.
            skipped: set[int] = set()
            for error in exc.details.get("writeErrors", []):
                key = duplicate_key_of(error) if error.get("code") == DUPLICATE_KEY else None
                if key is None:
                    raise
                if key[0] != "external_id":
                    raise conflict_for(self.spec.label, error) from exc
                skipped.add(error["index"])
            return [r for i, r in enumerate(keep) if i not in skipped]
        return keep

    @_translated
    def get(self, tenant: str, id: uuid.UUID) -> Any | None:
        doc = self.collection.find_one({"tenant": tenant, "id": id}, session=self._session())
        return None if doc is None else self._codec.decode(doc)

    @_translated
    def get_by_external_id(self, tenant: str, external_id: str) -> Any | None:
        if not self.spec.has_external_id:
            return None
        doc = self.collection.find_one({"tenant": tenant, "external_id": external_id}, session=self._session())
        return None if doc is None else self._codec.decode(doc)

    @_translated
    def replace(self, tenant: str, record: Any, expected_version: int) -> bool:
        # The version is part of the filter: the check and the write are one atomic operation.
        result = self.collection.replace_one(
            {"tenant": tenant, "id": record.id, "version": expected_version},
            self._codec.encode(tenant, record),
            session=self._session(),
        )
        return result.matched_count == 1

    @_translated
    def replace_many(self, tenant: str, records: Sequence[Any], expected_versions: Sequence[int]) -> set[uuid.UUID]:
        """One unordered ``bulk_write`` of versioned replaces; the documents it missed are found by reading back."""
        if len(records) != len(expected_versions):
            raise ValueError("replace_many takes one expected version per record")
        if not records:
            return set()
        encode = self._codec.encode
        operations = [
            ReplaceOne({"tenant": tenant, "id": record.id, "version": version}, encode(tenant, record))
            for record, version in zip(records, expected_versions, strict=True)
        ]
        result = self.collection.bulk_write(operations, ordered=False, session=self._session())
        if result.matched_count == len(records):
            return set()
        # Some version had moved: a document this call wrote now equals its record, a missed one does not.
        cursor = self.collection.find(
            {"tenant": tenant, "id": {"$in": [r.id for r in records]}}, {"_id": 0}, session=self._session()
        )
        decode = self._codec.decode
        stored = {found.id: found for found in (decode(doc) for doc in cursor)}
        return {r.id for r in records if stored.get(r.id) != r}

    @_translated
    def compare_stored(self, tenant: str, records: Sequence[Any]) -> dict[str, tuple[uuid.UUID, int, bool]]:
        """Stored documents against the records' encoded documents, field by field, neither decoded into records."""
        if not self.spec.has_external_id or not records:
            return {}
        # the values compared: each document without the fields the store sets (compared as dicts, in C)
        docs = {
            doc["external_id"]: {k: v for k, v in doc.items() if k not in _STAMPS}
            for doc in self._docs(tenant, records)
            if doc.get("external_id") is not None
        }
        if not docs:
            return {}
        # read as encoded: UUIDs stay BSON binaries, as the encoder writes them
        raw = self.collection.with_options(
            codec_options=self.collection.codec_options.with_options(uuid_representation=UuidRepresentation.UNSPECIFIED)
        )
        unread = {"_id": 0, "created_at": 0, "updated_at": 0}  # never compared: not decoded either
        cursor = raw.find({"tenant": tenant, "external_id": {"$in": list(docs)}}, unread, session=self._session())
        out: dict[str, tuple[uuid.UUID, int, bool]] = {}
        for stored in cursor:
            id, version = stored["id"], stored["version"]
            for stamp in _STAMPS:
                stored.pop(stamp, None)
            ext = stored["external_id"]
            out[ext] = (id.as_uuid() if isinstance(id, Binary) else id, int(version), stored == docs[ext])
        return out

    @_translated
    def delete(self, tenant: str, id: uuid.UUID, expected_version: int | None = None) -> bool:
        condition: dict[str, Any] = {"tenant": tenant, "id": id}
        if expected_version is not None:
            condition["version"] = expected_version
        return self.collection.delete_one(condition, session=self._session()).deleted_count == 1

    @_translated
    def delete_where(self, tenant: str, where: Expr) -> int:
        return self.collection.delete_many(self.filter(tenant, where), session=self._session()).deleted_count

    @_translated
    def count(self, tenant: str, where: Expr) -> int:
        if has_select(where):  # one pipeline, its sub-queries looked up in it (``_semijoin``)
            pipeline = [*self.stages(tenant, where), {"$count": "n"}]
            counted = list(self.collection.aggregate(pipeline, allowDiskUse=True, session=self._session()))
            return int(counted[0]["n"]) if counted else 0
        return self.collection.count_documents(self.filter(tenant, where), session=self._session())

    def stages(self, tenant: str, where: Expr) -> list[dict[str, Any]]:
        """Pipeline stages keeping the tenant's documents that match ``where``, sub-queries included."""
        return stages(tenant, where, self.spec, self._store.repository)

    @_translated
    def aggregate(self, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
        return aggregate(self, tenant, where, query)

    @_translated
    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[Any]:
        decode = self._codec.decode
        if has_select(where):
            pipeline = [*self.stages(tenant, where), {"$sort": dict(sort_spec(order))}]
            if limit:
                pipeline.append({"$limit": limit})
            pipeline.append({"$project": {"_id": 0}})
            found = self.collection.aggregate(pipeline, allowDiskUse=True, session=self._session())
            return [decode(doc) for doc in found]
        cursor = self.collection.find(
            self.filter(tenant, where),
            {"_id": 0},
            sort=sort_spec(order),
            limit=limit or 0,
            allow_disk_use=True,
            session=self._session(),
        )
        return [decode(doc) for doc in cursor]

    @_translated
    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        wanted = set(ids)
        condition = {"tenant": tenant, "id": {"$in": [as_binary(i) for i in wanted]}}
        # Usually every referenced id exists (bulk imports check each batch): a count from the
        # (tenant, id) index then answers without sending the ids back. Otherwise fetch them.
        if self.collection.count_documents(condition, session=self._session()) == len(wanted):
            return wanted
        cursor = self.collection.find(
            condition,
            {"id": 1, "_id": 0},
            batch_size=len(ids),
            session=self._session(),
        )
        return {doc["id"] for doc in cursor}

    @_translated
    def activity(self, tenant: str, customer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Activity]:
        field, time_field = self.spec.customer_field, self.spec.time_field
        if field is None or time_field is None:
            raise TypeError(f"{self.spec.name} are not kept per customer")
        if not customer_ids:
            return {}
        pipeline = [
            {"$match": {"tenant": tenant, field: {"$in": list(customer_ids)}}},
            {
                "$group": {
                    "_id": "$" + field,
                    "count": {"$sum": 1},
                    "first": {"$min": "$" + time_field},
                    "last": {"$max": "$" + time_field},
                }
            },
        ]
        out: dict[uuid.UUID, Activity] = {}
        for row in self.collection.aggregate(pipeline, session=self._session()):
            out[row["_id"]] = Activity(int(row["count"]), from_micros(row["first"]), from_micros(row["last"]))
        return out

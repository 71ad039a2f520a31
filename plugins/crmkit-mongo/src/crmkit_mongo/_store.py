"""The MongoDB store: one client, one database, a session transaction bound to each thread."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.client_session import ClientSession
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from crmkit._errors import BackendError, CRMError, PluginError
from crmkit.entities import CUSTOMERS, ENTITIES, INTERACTIONS, RELATIONSHIPS, TRANSACTIONS, EntitySpec
from crmkit.relationships import Reached
from crmkit.schema import AggregateSpec, Schema
from crmkit.store import Capabilities, Store
from crmkit_mongo._derived import derived_indexes, drop_changed, repeated_keys
from crmkit_mongo._documents import CODECS, FOLDED, put_search, search_indexes
from crmkit_mongo._errors import ValueOf, translate_errors
from crmkit_mongo._repository import MongoRepository
from crmkit_mongo._url import MongoURL

__all__ = ["INDEXES", "MongoStore", "open_store"]

#: Options of ``crmkit.connect`` that this plugin reads itself; every other option goes to MongoClient.
CRMKIT_OPTIONS = ("transactions", "create_indexes")

_COMMIT_ATTEMPTS = 3
#: IndexOptionsConflict, IndexKeySpecsConflict: an index of that name exists with other keys or options
_INDEX_CHANGED = (85, 86)

# Every index leads with the tenant (a later shard key prefix). Per-customer histories are read
# newest first (customer 360, timelines), so their time index runs descending then by id.
_PER_CUSTOMER = [("tenant", ASCENDING), ("customer_id", ASCENDING), ("occurred_at", DESCENDING), ("id", ASCENDING)]
_BY_TIME = [("tenant", ASCENDING), ("occurred_at", ASCENDING), ("id", ASCENDING)]

#: name -> (keys, options) per collection.
INDEXES: Mapping[str, Mapping[str, tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    # record-level access reads customers by owner (crmkit.access.OwnerPolicy)
    CUSTOMERS.name: {"tenant_owner": ([("tenant", ASCENDING), ("owner", ASCENDING)], {})},
    RELATIONSHIPS.name: {
        "tenant_source": ([("tenant", ASCENDING), ("source_id", ASCENDING), ("kind", ASCENDING)], {}),
        "tenant_target": ([("tenant", ASCENDING), ("target_id", ASCENDING), ("kind", ASCENDING)], {}),
        "tenant_ends": ([("tenant", ASCENDING), ("ends", ASCENDING), ("kind", ASCENDING)], {}),
        # The natural key. An undated edge leaves ``since`` out, which indexes as null and, unlike
        # SQL NULLs, clashes with another undated edge between the same two customers: one edge.
        "tenant_natural_key": (
            [(f, ASCENDING) for f in ("tenant", "source_id", "target_id", "kind", "since")],
            {"unique": True},
        ),
    },
    INTERACTIONS.name: {"tenant_customer_time": (_PER_CUSTOMER, {}), "tenant_time": (_BY_TIME, {})},
    TRANSACTIONS.name: {
        "tenant_customer_time": (_PER_CUSTOMER, {}),
        "tenant_time": (_BY_TIME, {}),
        # the payments of an order; partial, as the external id's: most money is for no order
        "tenant_order": (
            [("tenant", ASCENDING), ("order_id", ASCENDING)],
            {"partialFilterExpression": {"order_id": {"$exists": True}}},
        ),
    },
}


def _indexes(spec: EntitySpec) -> dict[str, tuple[list[tuple[str, int]], dict[str, Any]]]:
    out: dict[str, tuple[list[tuple[str, int]], dict[str, Any]]] = {
        "tenant_id": ([("tenant", ASCENDING), ("id", ASCENDING)], {"unique": True})
    }
    if spec.has_external_id:
        # Partial: records without an external id (the field is left out) are not indexed, so
        # they never clash on null. $exists, unlike $type, lets the planner use the index for
        # equality and $in lookups.
        out["tenant_external_id"] = (
            [("tenant", ASCENDING), ("external_id", ASCENDING)],
            {"unique": True, "partialFilterExpression": {"external_id": {"$exists": True}}},
        )
    if isinstance(spec, AggregateSpec) and spec.derived:
        out.update(derived_indexes(spec))
    else:
        out.update(INDEXES[spec.name])
        out.update(search_indexes(spec))
    return out


class MongoStore(Store):
    """Every aggregate of a connection (crmkit's five and the declared ones) in a collection each of one database."""

    def __init__(
        self,
        url: MongoURL,
        client: MongoClient[Any],
        *,
        transactions: bool = True,
        schema: Schema | None = None,
        create_indexes: bool = True,
    ) -> None:
        self._url = url
        self.client = client
        codecs: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD, tz_aware=False)
        self.db = client.get_database(url.database, codec_options=codecs)
        self._local = threading.local()
        self._want_transactions = transactions
        self._standalone = False
        self._repos = {
            spec.name: MongoRepository(self, spec, self.db.get_collection(spec.name)) for spec in ENTITIES.values()
        }
        for spec in schema.derived.values() if schema is not None else ():
            self._repos[spec.name] = MongoRepository(self, spec, self.db.get_collection(spec.name))
        self._repos_lock = threading.Lock()
        self._create_indexes = create_indexes
        self.capabilities = self._capabilities()

    def _capabilities(self) -> Capabilities:
        return Capabilities(
            transactions=self._want_transactions and not self._standalone,
            concurrent_writers=True,
            persistent=True,
        )

    # -- opening
    def probe(self) -> None:
        """Reach the server and learn whether it can run transactions (a replica set or mongos)."""
        with self.errors():
            hello = self.client.admin.command("hello")
        self._standalone = "setName" not in hello and hello.get("msg") != "isdbgrid"
        self.capabilities = self._capabilities()

    def create_indexes(self) -> None:
        """Create the indexes of every aggregate's collection (idempotent; run when the store opens)."""
        specs = [repo.spec for repo in list(self._repos.values())]
        self._check_unique_keys(specs)
        for spec in specs:
            self._create_indexes_of(spec, checked=True)

    def _check_unique_keys(self, specs: Iterable[EntitySpec]) -> None:
        """Refuse (a ConflictError naming the aggregate, the key and repeated values) before any index is built
        when stored documents repeat a unique key a declaration gained after its collection was made."""
        for spec in specs:
            if isinstance(spec, AggregateSpec) and spec.derived and spec.unique:
                with self.errors(spec.label):
                    refused = repeated_keys(self.db.get_collection(spec.name), spec)
                if refused is not None:
                    raise refused

    def migrate(self, schema: Schema) -> str:
        """Create the missing indexes of every aggregate of ``schema``, and move documents of older forms."""
        self.move_stage_changes()
        self.fold_search_fields()
        self._check_unique_keys(schema[name] for name in schema)
        for name in schema:
            self._create_indexes_of(schema[name], checked=True)
        return f"indexes of {len(schema)} aggregates present"

    def move_stage_changes(self, batch_size: int = 1000) -> int:
        """Move the documents of the former ``stage_changes`` collection into ``state_changes``; return how many.

        Each customer stage change becomes the state change crmkit writes today (record
        ``customers``, stage set ``lifecycle``, no actor) with its id, version and timestamps;
        the emptied collection is dropped. Idempotent: a move cut short is finished by the
        next (run when the store opens and by ``migrate``).
        """
        from pymongo import ReplaceOne

        from crmkit.schema import Ref, spec_of
        from crmkit.state_changes import LIFECYCLE, StateChange
        from crmkit_mongo._derived import codec_for
        from crmkit_mongo._documents import from_micros

        with self.errors("stage change"):
            if not self.db.list_collection_names(filter={"name": "stage_changes"}):
                return 0
            old, new = self.db.get_collection("stage_changes"), self.db.get_collection("state_changes")
            encode = codec_for(spec_of(StateChange)).encode
            moved = 0
            while True:
                docs = list(old.find({}, limit=batch_size))
                if not docs:
                    break
                writes = []
                for doc in docs:
                    change = StateChange(
                        record=Ref("customers", doc["customer_id"]),
                        stage_set=LIFECYCLE,
                        from_stage=doc.get("from_stage"),
                        to_stage=doc["to_stage"],
                        occurred_at=from_micros(doc["occurred_at"]),
                        rule=doc["rule"],
                        reason=doc.get("reason"),
                        id=doc["id"],
                        created_at=None if doc.get("created_at") is None else from_micros(doc["created_at"]),
                        updated_at=None if doc.get("updated_at") is None else from_micros(doc["updated_at"]),
                        version=int(doc["version"]),
                    )
                    key = {"tenant": doc["tenant"], "id": doc["id"]}
                    writes.append(ReplaceOne(key, encode(doc["tenant"], change), upsert=True))
                new.bulk_write(writes, ordered=False)
                old.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
                moved += len(docs)
            old.drop()
        return moved

    def fold_search_fields(self, batch_size: int = 1000) -> int:
        """Give stored customers the folded name they have been kept with since name search; return how many.

        Documents written before ``name`` was searchable have no ``_folded.name`` nor
        ``_words.name``: they are added here with the same function new documents get them
        from (``crmkit.search.fold``). Once done, a marker in ``crmkit_migrations`` says so,
        and opening a store costs one look-up. Idempotent (run when the store opens and by
        ``migrate``); a run cut short is finished by the next.
        """
        from pymongo import UpdateOne

        marker = {"_id": "search:customers.name"}
        with self.errors("customer"):
            migrations = self.db.get_collection("crmkit_migrations")
            if migrations.find_one(marker) is not None:
                return 0
            customers = self.db.get_collection(CUSTOMERS.name)
            folded = 0
            after: Any = None
            while True:  # in _id order, a batch at a time
                missing: dict[str, Any] = {f"{FOLDED}.name": {"$exists": False}}
                if after is not None:
                    missing["_id"] = {"$gt": after}
                docs = list(customers.find(missing, {"name": 1}, sort=[("_id", 1)], limit=batch_size))
                if not docs:
                    break
                after = docs[-1]["_id"]
                writes = []
                for doc in docs:
                    values: dict[str, Any] = {}
                    put_search(values, "name", doc["name"])
                    writes.append(UpdateOne({"_id": doc["_id"]}, {"$set": values}))
                customers.bulk_write(writes, ordered=False)
                folded += len(docs)
            migrations.update_one(marker, {"$set": {"done": True}}, upsert=True)
        return folded

    def _create_indexes_of(self, spec: EntitySpec, *, checked: bool = False) -> None:
        if not checked:
            self._check_unique_keys([spec])
        wanted = _indexes(spec)
        models = [IndexModel(keys, name=name, **options) for name, (keys, options) in wanted.items()]
        collection = self.db.get_collection(spec.name)
        with self.errors(spec.label):
            try:
                collection.create_indexes(models)  # one command per collection
            except OperationFailure as exc:
                if exc.code not in _INDEX_CHANGED:
                    raise
                # the declaration changed what an index of that name holds: built again as declared
                drop_changed(collection, wanted)
                collection.create_indexes(models)

    # -- the contract
    @property
    def url(self) -> str:
        return self._url.redacted

    @property
    def hosts(self) -> str:
        return self._url.hosts

    def repository(self, spec: EntitySpec) -> MongoRepository:
        repo = self._repos.get(spec.name)
        if repo is not None and (repo.spec is spec or repo.spec == spec):
            return repo
        if not (isinstance(spec, AggregateSpec) and spec.derived):
            raise PluginError(f"mongodb: {spec.name} is not an aggregate this store knows or can derive")
        # A declared aggregate that was not in the schema at connect: its collection and indexes now.
        with self._repos_lock:
            repo = self._repos.get(spec.name)
            if repo is None or repo.spec != spec:
                repo = MongoRepository(self, spec, self.db.get_collection(spec.name))
                self._repos[spec.name] = repo
                if self._create_indexes:
                    self._late_indexes(spec)
        return repo

    def _late_indexes(self, spec: EntitySpec) -> None:
        """Create the indexes of an aggregate met after connect: now, or when this thread's transaction ends.

        An index build waits for every open transaction that touched its collection: started
        inside one on this thread, it would wait for itself until the server aborts that
        transaction (60 s later, ``NoSuchTransaction``).
        """
        if self.session() is None:
            self._create_indexes_of(spec)
        else:
            self._local.__dict__.setdefault("late_indexes", []).append(spec)

    def _create_late_indexes(self) -> None:
        """The indexes deferred by ``_late_indexes`` (kept for the next transaction's end if one fails)."""
        late = self._local.__dict__.get("late_indexes")
        while late:
            try:
                self._create_indexes_of(late[0])
            except CRMError:
                return  # never hides the transaction's own outcome; tried again when the next one ends
            late.pop(0)

    def errors(self, label: str = "record", value_of: ValueOf | None = None) -> AbstractContextManager[None]:
        """A block whose pymongo errors come out as crmkit errors naming this store's hosts."""
        return translate_errors(self._url, label, value_of)

    def session(self) -> ClientSession | None:
        """The session of the calling thread's transaction, or None outside one."""
        return getattr(self._local, "session", None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A session transaction bound to the calling thread (snapshot reads, majority commit)."""
        local = self._local
        if getattr(local, "depth", 0):  # already inside one on this thread: join it
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
            return
        if not self.capabilities.transactions:
            if self._standalone and self._want_transactions:
                raise BackendError(self._standalone_message())
            local.depth = 1
            try:
                yield
            finally:
                local.depth = 0
            return
        with self.errors():
            session = self.client.start_session(causal_consistency=False)
            session.start_transaction(
                read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
                read_preference=ReadPreference.PRIMARY,
            )
        local.depth, local.session = 1, session
        try:
            try:
                yield
            finally:
                local.depth, local.session = 0, None
        except BaseException:
            with contextlib.suppress(PyMongoError):
                session.abort_transaction()
            session.end_session()
            self._create_late_indexes()
            raise
        try:
            self._commit(session)
        finally:
            session.end_session()
            self._create_late_indexes()

    def _commit(self, session: ClientSession) -> None:
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                with self.errors():
                    session.commit_transaction()
                return
            except BackendError as exc:
                cause = exc.__cause__
                unknown = isinstance(cause, PyMongoError) and cause.has_error_label("UnknownTransactionCommitResult")
                if not unknown or attempt == _COMMIT_ATTEMPTS:
                    raise
                # Committing again is safe: the server remembers a commit that went through.

    def _standalone_message(self) -> str:
        return (
            f"MongoDB at {self.hosts} is a standalone server, but crmkit writes in multi-document "
            "transactions, which need a replica set or a sharded cluster. Start mongod with "
            "--replSet NAME and run rs.initiate() once (a single-node replica set is enough), or "
            "connect with transactions=False to write without atomic units of work."
        )

    def close(self) -> None:
        self.client.close()

    # -- push-down
    def traverse(
        self,
        tenant: str,
        start: uuid.UUID,
        kinds: frozenset[str],
        direction: str,
        depth: int,
        as_of: dt.date | None,
    ) -> list[Reached]:
        """The same walk as ``Store.traverse``, as one ``$graphLookup`` over the relationships."""
        from crmkit_mongo._traverse import graph_pipeline, reached_from

        customers = self.repository(CUSTOMERS).collection
        with self.errors(RELATIONSHIPS.label):
            rows = list(
                customers.aggregate(
                    graph_pipeline(tenant, start, kinds, direction, depth, as_of), session=self.session()
                )
            )
        if not rows:  # the start customer is not stored: nothing leads anywhere from it
            return super().traverse(tenant, start, kinds, direction, depth, as_of)
        return reached_from(rows, start, direction, CODECS[RELATIONSHIPS.name].decode)


def open_store(url: MongoURL, options: Mapping[str, Any], schema: Schema | None = None) -> MongoStore:
    """Connect, learn the topology and create the indexes of every aggregate of ``schema``.

    BackendError when the server is unreachable.
    """
    client_options = {k: v for k, v in options.items() if k not in CRMKIT_OPTIONS}
    transactions = options.get("transactions", True)
    if not isinstance(transactions, bool):
        raise PluginError(f"mongodb: transactions= takes True or False, not {transactions!r}")
    create = options.get("create_indexes", True)
    client_options.setdefault("appname", "crmkit")
    client_options["uuidRepresentation"] = "standard"
    try:
        client: MongoClient[Any] = MongoClient(url.url, **client_options)
    except ConfigurationError as exc:
        raise PluginError(f"mongodb: bad URL or option for {url.redacted}: {url.scrub(str(exc))}") from None
    except (PyMongoError, TypeError, ValueError) as exc:
        raise PluginError(f"mongodb: cannot use {url.redacted}: {url.scrub(str(exc))}") from None
    store = MongoStore(url, client, transactions=transactions, schema=schema, create_indexes=bool(create))
    try:
        store.probe()
        store.move_stage_changes()
        store.fold_search_fields()
        if create:
            store.create_indexes()
    except BaseException:
        store.close()
        raise
    return store

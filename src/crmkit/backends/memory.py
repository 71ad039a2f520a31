"""The in-memory reference store (``memory://``): complete, thread-safe, transactional.

Every other backend is checked against it by the conformance suite. A transaction holds
the store's lock from start to end, so transactions are serialisable; an undo log rolls
back on exceptions. Lookups by id, external id and owning customer use indexes.

``memory://`` opens a private store; ``memory://NAME`` opens the store of that name, shared
by every connection of the process (for tenancy tests and several CRM objects).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from crmkit._errors import ConflictError, PluginError
from crmkit.aggregation import AggregateQuery, compute, select_values
from crmkit.entities import ENTITIES, TRANSACTIONS, EntitySpec
from crmkit.hookspecs import hookimpl
from crmkit.query import (
    Compare,
    Expr,
    In,
    Order,
    Select,
    attribute_rank,
    conjuncts,
    evaluate,
    has_select,
    resolve_selects,
)
from crmkit.schema import Schema
from crmkit.store import Capabilities, Repository, Store
from crmkit.summaries import PurchaseSummary, summarize
from crmkit.transactions import Transaction

__all__ = ["MemoryRepository", "MemoryStore"]

_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


class MemoryRepository(Repository[Any]):
    """One entity kind of a MemoryStore, with id, external id and owner indexes."""

    def __init__(self, store: MemoryStore, spec: EntitySpec) -> None:
        self.spec = spec
        self._store = store
        self._rows: dict[str, dict[uuid.UUID, Any]] = {}
        self._external: dict[str, dict[str, uuid.UUID]] = {}
        # owner field -> tenant -> owner id -> record ids: every reference field is indexed
        owners = [spec.customer_field] if spec.customer_field else []
        if spec.name == "relationships":
            owners = ["source_id", "target_id"]
        references = getattr(spec, "references", ())
        if references:
            owners = [r.field if r.target is not None else f"{r.field}.id" for r in references]
        if spec.name == "customers":
            owners = ["owner"]  # record-level access (crmkit.access.OwnerPolicy) reads customers by owner
        self._owners: dict[str, dict[str, dict[Any, set[uuid.UUID]]]] = {f: {} for f in owners}
        # unique key -> tenant -> key values -> record id (the database's unique index)
        self._unique: dict[tuple[str, ...], dict[str, dict[tuple[Any, ...], uuid.UUID]]] = {
            tuple(key): {} for key in getattr(spec, "unique", ())
        }
        # the natural key (EntitySpec.natural_key) is one more unique key, whose None parts clash
        self._natural = tuple(spec.natural_key)
        if self._natural:
            self._unique[self._natural] = {}

    # -- index maintenance (callers hold the store lock)
    def _put(self, tenant: str, record: Any) -> None:
        self._rows.setdefault(tenant, {})[record.id] = record
        external = getattr(record, "external_id", None) if self.spec.has_external_id else None
        if external is not None:
            self._external.setdefault(tenant, {})[external] = record.id
        for field, index in self._owners.items():
            owner = self.spec.record_value(record, field)
            if owner is not None:
                index.setdefault(tenant, {}).setdefault(owner, set()).add(record.id)
        for key, unique in self._unique.items():
            unique.setdefault(tenant, {})[self._key(record, key)] = record.id

    def _drop(self, tenant: str, record: Any) -> None:
        del self._rows[tenant][record.id]
        external = getattr(record, "external_id", None) if self.spec.has_external_id else None
        if external is not None:
            self._external[tenant].pop(external, None)
        for field, index in self._owners.items():
            owner = self.spec.record_value(record, field)
            if owner is None:
                continue
            ids = index[tenant][owner]
            ids.discard(record.id)
            if not ids:
                del index[tenant][owner]
        for key, unique in self._unique.items():
            unique[tenant].pop(self._key(record, key), None)

    def _key(self, record: Any, key: tuple[str, ...]) -> tuple[Any, ...]:
        return tuple(self.spec.record_value(record, name) for name in key)

    def _unique_clash(self, tenant: str, record: Any, batch: dict[tuple[str, ...], set[tuple[Any, ...]]]) -> None:
        """ConflictError if a unique key of ``record`` is held by another stored record or the batch."""
        for key, unique in self._unique.items():
            values = self._key(record, key)
            if key != self._natural and any(v is None for v in values):
                continue  # as in SQL, a key with a missing part is never a duplicate
            owner = unique.get(tenant, {}).get(values)
            if (owner is not None and owner != record.id) or values in batch.setdefault(key, set()):
                shown = ", ".join(f"{n}={v!r}" for n, v in zip(key, values, strict=True))
                raise ConflictError(
                    f"{self.spec.label} with {shown} already exists", entity=self.spec.label, key=values
                )
            batch[key].add(values)

    def _write(self, tenant: str, old: Any | None, new: Any | None) -> None:
        if old is not None:
            self._drop(tenant, old)
        if new is not None:
            self._put(tenant, new)
        self._store._log(lambda: self._undo(tenant, old, new))

    def _undo(self, tenant: str, old: Any | None, new: Any | None) -> None:
        if new is not None:
            self._drop(tenant, new)
        if old is not None:
            self._put(tenant, old)

    def _conflicts(self, tenant: str, records: Sequence[Any], *, skip_external: bool) -> list[Any]:
        """Check ids and external ids; return the records to write (those not skipped)."""
        rows = self._rows.get(tenant, {})
        external = self._external.get(tenant, {})
        batch_ids: set[uuid.UUID] = set()
        batch_ext: set[str] = set()
        batch_keys: dict[tuple[str, ...], set[tuple[Any, ...]]] = {}
        keep = []
        for record in records:
            ext = getattr(record, "external_id", None) if self.spec.has_external_id else None
            if ext is not None and (ext in external or ext in batch_ext):
                if skip_external:
                    continue
                raise ConflictError(
                    f"{self.spec.label} with external_id {ext!r} already exists", entity=self.spec.label, key=ext
                )
            if record.id in rows or record.id in batch_ids:
                raise ConflictError(
                    f"{self.spec.label} {record.id} already exists", entity=self.spec.label, key=record.id
                )
            if self._unique:
                self._unique_clash(tenant, record, batch_keys)
            batch_ids.add(record.id)
            if ext is not None:
                batch_ext.add(ext)
            keep.append(record)
        return keep

    # -- the contract
    def insert(self, tenant: str, records: Sequence[Any]) -> None:
        with self._store._lock:
            for record in self._conflicts(tenant, records, skip_external=False):
                self._write(tenant, None, record)

    def insert_new(self, tenant: str, records: Sequence[Any]) -> list[Any]:
        with self._store._lock:
            keep = self._conflicts(tenant, records, skip_external=True)
            for record in keep:
                self._write(tenant, None, record)
            return keep

    def get(self, tenant: str, id: uuid.UUID) -> Any | None:
        with self._store._lock:
            return self._rows.get(tenant, {}).get(id)

    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        with self._store._lock:
            rows = self._rows.get(tenant, {})
            return {i for i in ids if i in rows}

    def get_by_external_id(self, tenant: str, external_id: str) -> Any | None:
        with self._store._lock:
            rid = self._external.get(tenant, {}).get(external_id)
            return None if rid is None else self._rows[tenant][rid]

    def replace(self, tenant: str, record: Any, expected_version: int) -> bool:
        with self._store._lock:
            current = self._rows.get(tenant, {}).get(record.id)
            if current is None or current.version != expected_version:
                return False
            new_ext = getattr(record, "external_id", None) if self.spec.has_external_id else None
            if new_ext is not None and new_ext != getattr(current, "external_id", None):
                owner = self._external.get(tenant, {}).get(new_ext)
                if owner is not None and owner != record.id:
                    raise ConflictError(
                        f"{self.spec.label} with external_id {new_ext!r} already exists",
                        entity=self.spec.label,
                        key=new_ext,
                    )
            if self._unique:
                self._unique_clash(tenant, record, {})
            self._write(tenant, current, record)
            return True

    def delete(self, tenant: str, id: uuid.UUID, expected_version: int | None = None) -> bool:
        with self._store._lock:
            current = self._rows.get(tenant, {}).get(id)
            if current is None or (expected_version is not None and current.version != expected_version):
                return False
            self._write(tenant, current, None)
            return True

    def delete_where(self, tenant: str, where: Expr) -> int:
        with self._store._lock:
            doomed = list(self._matching(tenant, where))
            for record in doomed:
                self._write(tenant, record, None)
            return len(doomed)

    def count(self, tenant: str, where: Expr) -> int:
        with self._store._lock:
            return sum(1 for _ in self._matching(tenant, where))

    def aggregate(self, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
        with self._store._lock:
            return compute(self.spec, query, self._matching(tenant, where))

    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[Any]:
        with self._store._lock:
            found = list(self._matching(tenant, where))
        for name, desc in reversed(order.keys):  # stable sorts, least significant key first
            found.sort(key=partial(sort_key, self.spec, name=name), reverse=desc)
        return found if limit is None else found[:limit]

    def _matching(self, tenant: str, where: Expr) -> Iterator[Any]:
        if has_select(where):  # a sub-query: its values from the other aggregate first, then an in_ test
            where = resolve_selects(where, lambda select: self._values(tenant, select))
        rows = self._rows.get(tenant, {})
        for record in self._candidates(tenant, where, rows):
            if evaluate(where, self.spec, record):
                yield record

    def _values(self, tenant: str, select: Select) -> list[Any]:
        assert select.spec is not None, "a bound sub-query"
        return select_values(self._store.repository(select.spec), tenant, select)

    def _candidates(self, tenant: str, where: Expr, rows: Mapping[uuid.UUID, Any]) -> Iterable[Any]:
        """Use an index when a top-level condition pins id, external id or owner; else scan."""
        for part in conjuncts(where):
            keys: tuple[Any, ...] | None = None
            if isinstance(part, Compare) and part.op == "==" and part.value is not None:
                field, keys = part.field, (part.value,)
            elif isinstance(part, In):
                field, keys = part.field, part.values
            if keys is None:
                continue
            if field == "id":
                return [rows[k] for k in keys if isinstance(k, uuid.UUID) and k in rows]
            if field == "external_id" and self.spec.has_external_id:
                ext = self._external.get(tenant, {})
                return [rows[ext[k]] for k in keys if isinstance(k, str) and k in ext]
            if field in self._owners:
                index = self._owners[field].get(tenant, {})
                ids = {rid for k in keys for rid in index.get(k, ())}
                return [rows[rid] for rid in ids]
        return list(rows.values())

    def transactions_of(self, tenant: str, customer_ids: Sequence[uuid.UUID] | None) -> Iterator[Transaction]:
        """Transactions of some customers (all when None), read through the customer index."""
        with self._store._lock:
            rows = self._rows.get(tenant, {})
            if customer_ids is None:
                records = list(rows.values())
            else:
                index = self._owners["customer_id"].get(tenant, {})
                records = [rows[rid] for cid in dict.fromkeys(customer_ids) for rid in index.get(cid, ())]
        return iter(records)


def order_value(spec: EntitySpec, record: Any, *, name: str) -> Any:
    value = spec.record_value(record, name)
    if isinstance(value, str) and type(value) is not str:
        return str(value.value) if hasattr(value, "value") else str.__str__(value)
    return value


def sort_key(spec: EntitySpec, record: Any, *, name: str) -> tuple[int, Any]:
    """The key ``find`` sorts on: a missing value before every value (last when descending).

    A custom attribute may hold values of several kinds: they sort kind by kind
    (``crmkit.query.attribute_rank``), by value within a kind.
    """
    value = order_value(spec, record, name=name)
    if name.startswith("attributes."):
        return (attribute_rank(value), value)
    return (value is not None, value)


class MemoryStore(Store):
    """All data in Python dicts, guarded by one re-entrant lock."""

    capabilities = Capabilities(transactions=True, concurrent_writers=True, persistent=False)

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._undo: list[Callable[[], None]] | None = None
        self._owner: int | None = None
        self._repos = {spec.name: MemoryRepository(self, spec) for spec in ENTITIES.values()}
        self._closed = False

    def prepare(self, schema: Schema) -> None:
        """Make room for every aggregate of ``schema`` (a repository each, with its indexes)."""
        with self._lock:
            for name in schema:
                self.repository(schema[name])

    @property
    def url(self) -> str:
        return f"memory://{self.name or ''}"

    def repository(self, spec: EntitySpec) -> MemoryRepository:
        repo = self._repos.get(spec.name)
        if repo is None:
            with self._lock:
                repo = self._repos.get(spec.name) or self._repos.setdefault(spec.name, MemoryRepository(self, spec))
        return repo

    def _log(self, undo: Callable[[], None]) -> None:
        if self._undo is not None and self._owner == threading.get_ident():
            self._undo.append(undo)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._undo is not None:  # already inside one on this thread: join it
                yield
                return
            self._undo, self._owner = [], threading.get_ident()
            try:
                yield
            except BaseException:
                for undo in reversed(self._undo):
                    undo()
                raise
            finally:
                self._undo, self._owner = None, None

    def close(self) -> None:
        self._closed = True


@hookimpl(trylast=True)
def crmkit_open_store(url: str, options: Mapping[str, Any], schema: Schema) -> Store | None:
    """Open ``memory://`` (a private store) or ``memory://NAME`` (shared in this process)."""
    if not url.startswith("memory://"):
        return None
    name = url[len("memory://") :]
    if options:
        raise PluginError(f"memory:// takes no options (got {', '.join(sorted(options))})")
    if "/" in name or "?" in name:
        raise PluginError(f"memory URLs are memory:// or memory://NAME, not {url!r}")
    if not name:
        store = MemoryStore()
    else:
        with _NAMED_LOCK:
            store = _NAMED.setdefault(name, MemoryStore(name))
    store.prepare(schema)
    return store


@hookimpl
def crmkit_url_schemes() -> Iterable[str]:
    return ("memory",)


@hookimpl
def crmkit_purchase_summaries(
    store: Store, tenant: str, customer_ids: Sequence[uuid.UUID] | None, since: Any, until: Any
) -> list[PurchaseSummary] | None:
    """Summaries straight from the customer index of a MemoryStore."""
    if not isinstance(store, MemoryStore):
        return None
    repo = store.repository(TRANSACTIONS)
    return summarize(repo.transactions_of(tenant, customer_ids), since=since, until=until)

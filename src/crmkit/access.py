"""Record-level access: which records an actor may read and write, enforced in the store.

A plugin implements ``crmkit_access_filter`` (a condition per actor and aggregate) and
``crmkit_access_write`` (a veto with a reason). When any plugin of a connection does, the
connection reads and writes through a ``GuardedStore``: every repository read (get, find,
count, scan, group-by reports, and so every service built on them: timelines, traversal,
summaries, segments, marketing, privacy export, identity) gets the actor's condition
ANDed into the query the store runs, and every write is checked first.

``OwnerPolicy`` is the built-in policy: an actor sees the customers it owns (with
``teams``, those its team mates own; with ``managers``, those of the teams it manages) and
every record that hangs off them (``customer_scope`` says which, from the declarations).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import CRMError, ValidationError
from crmkit.aggregation import parse_aggregate, select_values
from crmkit.entities import CUSTOMERS, EntitySpec
from crmkit.hookspecs import hookimpl
from crmkit.query import (
    ALL,
    All,
    And,
    Compare,
    Const,
    Copy,
    Expr,
    In,
    InSelect,
    Not,
    Or,
    Order,
    Select,
    Test,
    Where,
    bind,
    evaluate,
    parse_order,
    resolve_selects,
)
from crmkit.store import Activity, Repository, Store

if TYPE_CHECKING:
    from crmkit.aggregation import AggregateQuery
    from crmkit.crm import CRM
    from crmkit.schema import Schema

__all__ = ["AccessDenied", "GuardedStore", "OwnerPolicy", "customer_scope"]


def _among(field: str, parent: EntitySpec, where: Expr) -> InSelect:
    """``F(field).among(parent, where)``, ``where`` bound already: the records that refer to one in scope."""
    return InSelect(field, Select(parent.name, "id", where, spec=parent))


class AccessDenied(CRMError, PermissionError):
    """A write the access policy refuses: who tried, on which aggregate, and why."""

    def __init__(self, actor: str | None, aggregate: str, reason: str) -> None:
        self.actor = actor
        self.aggregate = aggregate
        self.reason = reason
        super().__init__(f"{actor or 'no actor'} may not write {aggregate}: {reason}")


# --------------------------------------------------------------------------- the scope of customers


def customer_scope(schema: Schema, aggregate: str, customers: Where) -> Expr:
    """The condition "hangs off a customer matching ``customers``" for the records of ``aggregate``.

    * customers: ``customers`` itself;
    * an aggregate that names a ``customer_field``: that customer matches (a semi-join);
    * otherwise every set reference to an aggregate that is scoped itself (customers, and
      through them cases, opportunities, ...) points at a record in scope; a ``ref_any``
      (``about``), or an ``aggregate`` + ``record_id`` pair of fields (the audit trail),
      that points at a record of a scoped aggregate points at one in scope; an id field
      named in ``__crmkit_mentions__`` (a merge's survivor) counts as a reference;
    * an aggregate with no such reference (pipelines, products, calendars, teams, segments,
      campaigns, the event feed) is shared: ``ALL``.

    References that lead back to an aggregate already on the way (a case's parent case)
    are not followed. The condition is unbound (``crmkit.query.bind`` it against the aggregate).
    """
    root = customers if isinstance(customers, Expr) else bind(customers, CUSTOMERS)
    return _Scope(schema, root).of(aggregate, frozenset())


class _Scope:
    #: How many ``ref_any`` pointers a scope follows one after the other: a task about a deal
    #: (a task about a note about a deal is shared). The audit trail's pair adds one more:
    #: an audit entry about a task about a deal.
    DEPTH = 1

    def __init__(self, schema: Schema, root: Expr) -> None:
        self.schema = schema
        self.root = root
        self.known: dict[tuple[str, int], Expr] = {}

    def of(self, name: str, seen: frozenset[str], depth: int = DEPTH) -> Expr:
        found = self.known.get((name, depth))
        if found is None:
            found = self.known[name, depth] = self._of(name, seen | {name}, depth)
        return found

    def _of(self, name: str, seen: frozenset[str], depth: int) -> Expr:
        schema = self.schema
        if name == CUSTOMERS.name:
            return self.root
        spec = schema[name]
        if spec.customer_field is not None:
            return _among(spec.customer_field, schema[CUSTOMERS.name], self.root)
        parts: list[Expr] = []
        pointers: list[tuple[str, str]] = []
        for ref in schema.references_from(name):
            if ref.any:
                pointers.append((f"{ref.field}.aggregate", f"{ref.field}.id"))
                continue
            parent = ref.target
            if parent is None or parent in seen:
                continue
            inner = self.of(parent, seen, depth)
            if isinstance(inner, All):
                continue
            among = _among(ref.field, schema[parent], inner)
            parts.append(Or((Compare(ref.field, "==", None), among)) if ref.nullable else among)
        mentions = getattr(spec.cls, "__crmkit_mentions__", {})  # ids kept without a reference (merges)
        for field, parent in sorted(mentions.items()):
            declared = spec.field(field)
            if declared is None or declared.kind != "uuid" or parent not in schema or parent in seen:
                continue
            inner = self.of(parent, seen, depth)
            if not isinstance(inner, All):
                among = _among(field, schema[parent], inner)
                parts.append(Or((Compare(field, "==", None), among)) if declared.nullable else among)
        pair = not pointers and self._pair(name)
        if pair:
            pointers.append(("aggregate", "record_id"))
        for kind_field, id_field in pointers if depth > 0 else ():
            options: list[Expr] = []
            targets: list[str] = []
            for target in schema:
                if target in seen:
                    continue
                inner = self.of(target, seen, depth if pair else depth - 1)
                if isinstance(inner, All):
                    continue
                targets.append(target)
                among = _among(id_field, schema[target], inner)
                options.append(And((Compare(kind_field, "==", target), among)))
            if targets:
                parts.append(Or((Not(In(kind_field, tuple(targets))), *options)))
        return And(tuple(parts)) if parts else ALL

    def _pair(self, name: str) -> bool:
        """Whether an aggregate points at any record by ``aggregate`` (text) and ``record_id`` (the audit trail)."""
        spec = self.schema[name]
        kind, pointer = spec.field("aggregate"), spec.field("record_id")
        return kind is not None and kind.kind == "text" and pointer is not None and pointer.kind == "uuid"


# --------------------------------------------------------------------------- the built-in policy


class OwnerPolicy:
    """Owners see their customers and everything hanging off them; teams share, managers see their teams'.

    ``teams={"north": {"user:a", "user:b"}}``: members of a team see what any member owns.
    ``managers={"user:m": {"north"}}``: a manager sees what the members of those teams own.
    A customer without an owner is seen by no one under this policy (give it one), and a
    connection without an actor sees no customers. Writes are refused when the written
    record would be out of the actor's sight (a customer given to someone else's team, an
    interaction of a customer the actor does not see).
    """

    def __init__(
        self,
        teams: Mapping[str, Iterable[str]] | None = None,
        managers: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.teams = {str(k): frozenset(_names("teams", v)) for k, v in _mapping("teams", teams).items()}
        self.managers = {str(k): frozenset(_names("managers", v)) for k, v in _mapping("managers", managers).items()}
        for manager, names in self.managers.items():
            unknown = sorted(names - set(self.teams))
            if unknown:
                raise ValidationError("managers", f"{manager} manages unknown teams {', '.join(unknown)}", unknown)

    def __repr__(self) -> str:
        return f"OwnerPolicy(teams={self.teams!r}, managers={self.managers!r})"

    def owners_seen_by(self, actor: str | None) -> frozenset[str]:
        """The owners whose customers ``actor`` sees: itself, its team mates, the members of teams it manages."""
        if actor is None:
            return frozenset()
        seen = {actor}
        for members in self.teams.values():
            if actor in members:
                seen |= members
        for team in self.managers.get(actor, ()):
            seen |= self.teams[team]
        return frozenset(seen)

    @hookimpl
    def crmkit_access_filter(self, actor: str | None, aggregate: EntitySpec, schema: Schema) -> Expr:
        owners = In("owner", tuple(sorted(self.owners_seen_by(actor))))
        return customer_scope(schema, aggregate.name, owners)


def _mapping(field: str, value: object) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be a mapping of names to sets of names", value)
    return value


def _names(field: str, value: object) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError(field, "must map each name to a set of names", value)
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise ValidationError(field, "names are strings", names)
    return names


# --------------------------------------------------------------------------- enforcement


class GuardedStore(Store):
    """A store seen by one connection under its access policies: every read filtered, every write checked.

    The conditions come from ``crmkit_access_filter`` once per actor and aggregate and are
    ANDed into the queries the underlying store runs (semi-joins included), so nothing
    is filtered in Python. Traversal walks relationships a level at a time through the
    filtered repository (``Store.traverse``); purchase summaries and baskets are then
    computed by crmkit's streaming fallback from the filtered transactions.
    """

    def __init__(self, inner: Store, crm: CRM) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._crm = crm
        self._repos: dict[str, GuardedRepository] = {}
        self._conditions: dict[tuple[str | None, str], Expr] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def unrestricted(self) -> Iterator[None]:
        """Reads and writes of this thread unfiltered for the block: what follows from an allowed write.

        Deleting a record the actor may delete applies every reference's ``on_delete``
        (cascade, set_null, restrict) to *all* the records that point at it, seen or not
        (otherwise a relationship to another owner's customer would be left dangling), and
        ``crmkit_before_commit`` hooks and the audit trail derive their records from
        everything. The actor's own reads and writes never run in here;
        ``crmkit_access_write`` vetoes still apply.
        """
        self._local.free = getattr(self._local, "free", 0) + 1
        try:
            yield
        finally:
            self._local.free -= 1

    @property
    def url(self) -> str:
        return self.inner.url

    def repository(self, spec: EntitySpec) -> Repository[Any]:
        repo = self._repos.get(spec.name)
        if repo is None or repo.spec is not spec:
            repo = self._repos[spec.name] = GuardedRepository(self, self.inner.repository(spec))
        return repo

    def transaction(self) -> AbstractContextManager[None]:
        return self.inner.transaction()

    def close(self) -> None:
        self.inner.close()

    def migrate(self, schema: Schema) -> str:
        return self.inner.migrate(schema)

    def condition(self, spec: EntitySpec) -> Expr:
        """The bound condition the current actor's reads of ``spec`` get (``ALL``: unrestricted)."""
        if getattr(self._local, "free", 0):
            return ALL
        actor = self._crm.actor
        key = (actor, spec.name)
        found = self._conditions.get(key)
        if found is None:
            parts = [
                bind(where, spec)
                for where in self._crm._host.access_filters(actor, spec, self._crm.schema)
                if where is not None
            ]
            parts = [p for p in parts if not isinstance(p, All)]
            found = ALL if not parts else parts[0] if len(parts) == 1 else And(tuple(parts))
            with self._lock:
                self._conditions[key] = found
        return found

    def check(self, spec: EntitySpec, tenant: str, old: Any, new: Sequence[Any]) -> None:
        """Raise AccessDenied unless the current actor may write ``new`` (or delete ``old`` when new is empty)."""
        actor = self._crm.actor
        host = self._crm._host
        if host.has_access_vetoes:
            for record in new or (None,):
                reasons = host.access_vetoes(actor, spec, old, record)
                if reasons:
                    raise AccessDenied(actor, spec.name, "; ".join(reasons))
        condition = self.condition(spec)
        if isinstance(condition, All) or not new:
            return
        wanted = frozenset(
            v for r in new for name in spec.fields if isinstance(v := spec.record_value(r, name), uuid.UUID)
        )
        resolved = self._resolve(tenant, condition, wanted)
        for record in new:
            if not evaluate(resolved, spec, record):
                raise AccessDenied(
                    actor, spec.name, f"{spec.label} {record.id} would be out of the actor's sight (access policy)"
                )

    def _resolve(self, tenant: str, condition: Expr, wanted: frozenset[uuid.UUID]) -> Expr:
        """``condition`` with each sub-query replaced by ``in_`` of its values among the ids the new records
        hold (``wanted``): one query in the store each, reading only those ids."""
        if isinstance(condition, InSelect):
            select = condition.select
            assert select.spec is not None, "a bound sub-query"
            other = self.inner.repository(select.spec)
            inner = resolve_selects(select.where, lambda s: self._values(tenant, s))
            if select.spec.fields[select.field].kind == "uuid":
                inner = And((In(select.field, tuple(wanted)), inner)) if wanted else Not(ALL)
            return In(condition.field, tuple(select_values(other, tenant, attrs.evolve(select, where=inner))))
        if isinstance(condition, (And, Or)):
            return type(condition)(tuple(self._resolve(tenant, i, wanted) for i in condition.items))
        if isinstance(condition, Not):
            return Not(self._resolve(tenant, condition.item, wanted))
        return condition

    def _values(self, tenant: str, select: Select) -> list[Any]:
        assert select.spec is not None, "a bound sub-query"
        return select_values(self.inner.repository(select.spec), tenant, select)


class GuardedRepository(Repository[Any]):
    """A repository whose reads carry the actor's condition and whose writes are checked."""

    def __init__(self, store: GuardedStore, inner: Repository[Any]) -> None:
        self.spec = inner.spec
        self.inner = inner
        self._store = store

    def _where(self, where: Expr) -> Expr:
        condition = self._store.condition(self.spec)
        if isinstance(condition, All):
            return where
        return condition if isinstance(where, All) else And((where, condition))

    def _restricted(self) -> bool:
        return not isinstance(self._store.condition(self.spec), All)

    # -- reads
    def get(self, tenant: str, id: uuid.UUID) -> Any | None:
        if not self._restricted():
            return self.inner.get(tenant, id)
        found = self.find(tenant, Compare("id", "==", id), parse_order(None, self.spec), 1)
        return found[0] if found else None

    def get_by_external_id(self, tenant: str, external_id: str) -> Any | None:
        record = self.inner.get_by_external_id(tenant, external_id)
        if record is None or not self._restricted():
            return record
        return record if self.count(tenant, Compare("id", "==", record.id)) else None

    def count(self, tenant: str, where: Expr) -> int:
        return self.inner.count(tenant, self._where(where))

    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[Any]:
        return self.inner.find(tenant, self._where(where), order, limit)

    def aggregate(self, tenant: str, where: Expr, query: AggregateQuery) -> list[tuple[Any, ...]]:
        return self.inner.aggregate(tenant, self._where(where), query)

    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not self._restricted() or not ids:
            return self.inner.existing_ids(tenant, ids)
        return {r.id for r in self.find(tenant, In("id", tuple(ids)), parse_order(None, self.spec), None)}

    def activity(self, tenant: str, customer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Activity]:
        if not self._restricted():
            return self.inner.activity(tenant, customer_ids)
        field, time_field = self.spec.customer_field, self.spec.time_field
        if field is None or time_field is None:
            raise TypeError(f"{self.spec.name} are not kept per customer")
        query = parse_aggregate(
            self.spec,
            group_by=field,
            count=True,
            sum=None,
            min=time_field,
            max=time_field,
            mean=None,
            count_distinct=None,
        )
        rows = self.aggregate(tenant, In(field, tuple(customer_ids)), query) if customer_ids else []
        return {row[0]: Activity(row[1], row[2], row[3]) for row in rows}

    # -- writes
    def insert(self, tenant: str, records: Sequence[Any]) -> None:
        self._store.check(self.spec, tenant, None, records)
        self.inner.insert(tenant, records)

    def insert_new(self, tenant: str, records: Sequence[Any]) -> list[Any]:
        self._store.check(self.spec, tenant, None, records)
        return self.inner.insert_new(tenant, records)

    def insert_from(
        self,
        tenant: str,
        source: Repository[Any],
        where: Expr,
        values: Mapping[str, Copy | Const | Test],
        stamp: dt.datetime,
    ) -> list[Any]:
        """The store builds the records from the source records the actor sees; each is then checked as ``add``
        checks it (a refusal raises inside the caller's transaction, which undoes them all)."""
        if isinstance(source, GuardedRepository):
            where = source._where(where)
            source = source.inner
        made = self.inner.insert_from(tenant, source, where, values, stamp)
        if made:
            self._store.check(self.spec, tenant, None, made)
        return made

    def prepare_insert_new(self, tenant: str, records: Sequence[Any]) -> Callable[[], list[Any]]:
        self._store.check(self.spec, tenant, None, records)
        return self.inner.prepare_insert_new(tenant, records)

    def replace(self, tenant: str, record: Any, expected_version: int) -> bool:
        current = self.get(tenant, record.id)
        if current is None:
            return False  # not in sight: as if changed or deleted concurrently
        self._store.check(self.spec, tenant, current, [record])
        return self.inner.replace(tenant, record, expected_version)

    def delete(self, tenant: str, id: uuid.UUID, expected_version: int | None = None) -> bool:
        current = self.get(tenant, id)
        if current is None:
            return False
        self._store.check(self.spec, tenant, current, [])
        return self.inner.delete(tenant, id, expected_version)

    def delete_where(self, tenant: str, where: Expr) -> int:
        return self.inner.delete_where(tenant, self._where(where))

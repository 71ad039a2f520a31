"""``crm.identity``: likely duplicates among stored customers, merge with survivorship, un-merge."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, NotFound, ValidationError
from crmkit.aggregation import parse_aggregate
from crmkit.customers import Customer
from crmkit.events import event_for
from crmkit.identity import _codec
from crmkit.identity._contact import CALLING_CODES, email_key
from crmkit.identity._keys import BLOCKING, MERGED_INTO, keys_of, rekey
from crmkit.identity._matcher import KINDS, Match, Matcher
from crmkit.identity._records import IdentityKey, Merge, Moved
from crmkit.identity._rules import DuplicateRule, customer_fields, rules_of
from crmkit.query import And, Compare, In, bind, parse_order
from crmkit.schema import Ref, Reference
from crmkit.store import scan

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["Duplicate", "Identity", "Unmerged"]

#: The identity layer's own aggregates and the search terms: derived keys and texts (rewritten with the
#: customers they come from) and merge history are not re-pointed by merges.
_OWN = frozenset({"identity_keys", "identity_merges", "search_terms"})

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: How many keys or customer ids one look-up names (``IN (...)``).
_CHUNK = 500

#: Survivorship: given the customers survivor first, the value the survivor keeps for a field.
Rule = Callable[[Sequence[Customer]], Any]


@attrs.frozen
class Duplicate:
    """A group of customers that are likely one: ids (oldest first), the lowest pair probability, and why."""

    customer_ids: tuple[uuid.UUID, ...]
    probability: float
    #: Per matched pair of the group: ``(id, id, {field: agreement level})``.
    evidence: tuple[tuple[uuid.UUID, uuid.UUID, Mapping[str, str]], ...]


@attrs.frozen
class Unmerged:
    """What ``unmerge`` did: the merge undone, and the fields or references kept because they changed since."""

    merge_id: uuid.UUID
    conflicts: tuple[str, ...]


def _first(values: Sequence[Any]) -> Any:
    return next((v for v in values if v not in (None, "", (), frozenset())), values[0])


def _union(items: Sequence[tuple[Any, ...]], key: Callable[[Any], Any]) -> tuple[Any, ...]:
    seen: dict[Any, Any] = {}
    for group in items:
        for item in group:
            seen.setdefault(key(item), item)
    return tuple(seen.values())


def _email_identity(e: Any) -> Any:
    try:
        return email_key(e.address)
    except ValidationError:
        return e.address


def _merged_attributes(customers: Sequence[Customer]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for c in customers:
        for name, value in c.attributes.items():
            merged.setdefault(name, value)
    merged.pop(MERGED_INTO, None)
    return merged


#: The default survivorship rules: the survivor's value unless empty, then the others' in order;
#: contact points and tags united; attributes filled in from the others.
DEFAULT_RULES: Mapping[str, Rule] = {
    "name": lambda cs: _first([c.name for c in cs]),
    "owner": lambda cs: _first([c.owner for c in cs]),
    "emails": lambda cs: _union([c.emails for c in cs], _email_identity),
    "phones": lambda cs: _union([c.phones for c in cs], lambda p: "".join(ch for ch in p.number if ch.isdigit())),
    "addresses": lambda cs: _union(
        [c.addresses for c in cs], lambda a: (a.lines, a.city, a.postal_code, a.region, a.country)
    ),
    "handles": lambda cs: _union([c.handles for c in cs], lambda h: (h.network, h.handle.casefold())),
    "tags": lambda cs: frozenset().union(*(c.tags for c in cs)),
    "attributes": _merged_attributes,
}


def _first_of(field: str) -> Rule:
    """The rule "first non-empty value, survivor first" for one field."""

    def rule(cs: Sequence[Customer]) -> Any:
        return _first([getattr(c, field) for c in cs])

    return rule


def _most_complete_address(cs: Sequence[Customer]) -> Any:
    """Odoo's rule: the address block of the customer with the most filled-in address fields."""

    def filled(c: Customer) -> int:
        return sum(
            bool(a.lines) + bool(a.city) + bool(a.postal_code) + bool(a.region) + bool(a.country) for a in c.addresses
        )

    return max(cs, key=filled).addresses


#: Odoo's merge rules (``crm.lead._merge_data``): first non-empty head-first, tags united, the
#: address block of the most complete record.
ODOO_RULES: Mapping[str, Rule] = {
    **{name: _first_of(name) for name in ("name", "owner", "emails", "phones", "handles")},
    "addresses": _most_complete_address,
    "tags": lambda cs: frozenset().union(*(c.tags for c in cs)),
    "attributes": _merged_attributes,
}


class Identity:
    """``crm.identity``: duplicates among stored customers, merge and un-merge.

    ``region`` is the default region of national phone numbers on this connection
    (``crm.identity.region = "RO"``); without it a customer's first address country is used.
    """

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    @property
    def unique_emails(self) -> bool:
        """Whether an e-mail address may belong to one customer only on this connection (default False).

        True: adding or updating a customer with an address another (not merged-away)
        customer holds raises ConflictError naming that customer. False: a shared address
        is only a duplicate signal (``duplicates`` compares e-mails).
        """
        return bool(getattr(self._crm, "_identity_unique_emails", False))

    @unique_emails.setter
    def unique_emails(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValidationError("unique_emails", "must be True or False", value)
        self._crm._identity_unique_emails = value  # type: ignore[attr-defined]

    @property
    def rules(self) -> tuple[DuplicateRule, ...]:
        """The duplicate rules of this connection (``DuplicateRule``): by default those given as plugins.

        ``crm.identity.rules = [DuplicateRule(action="block", min_probability=0.95)]`` sets
        them for this connection; ``[]`` turns them off. They are checked whenever customers
        are added, imported, upserted or changed (see ``DuplicateRule``).
        """
        return rules_of(self._crm)

    @rules.setter
    def rules(self, value: Sequence[DuplicateRule]) -> None:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, set, frozenset)):
            raise ValidationError("rules", "must be a list of DuplicateRule", value)
        for rule in value:
            if not isinstance(rule, DuplicateRule):
                raise ValidationError("rules", "must be a list of DuplicateRule", rule)
        self._crm._identity_rules = tuple(value)  # type: ignore[attr-defined]

    @property
    def region(self) -> str | None:
        return getattr(self._crm, "_identity_region", None)

    @region.setter
    def region(self, value: str | None) -> None:
        if value is not None and value not in CALLING_CODES:
            raise ValidationError("region", "is not a region crmkit knows", value)
        self._crm._identity_region = value  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- keys

    def reindex(self, *, batch_size: int = 1000) -> int:
        """Rebuild every customer's contact-point keys (for customers stored before this feature).

        Returns how many customers were indexed. Existing customer records are not rewritten.
        """
        crm = self._crm
        count = 0
        batch: list[Customer] = []
        for customer in crm.customers.stream(batch_size=batch_size):
            batch.append(customer)
            if len(batch) >= batch_size:
                with crm.transaction():
                    rekey(crm, batch)
                count += len(batch)
                batch = []
        if batch:
            with crm.transaction():
                rekey(crm, batch)
            count += len(batch)
        return count

    # ----------------------------------------------------------------- duplicates

    def _row(self, c: Customer, attributes: Mapping[str, str]) -> dict[str, str | None]:
        keys = keys_of(self._crm, c)
        email = next((k for kind, k in keys if kind == "email"), None)
        phone = next((k for kind, k in keys if kind == "phone"), None)
        address = c.addresses[0] if c.addresses else None
        row: dict[str, str | None] = {
            "name": c.name,
            "email": email,
            "phone": phone,
            "address": " ".join(address.lines) if address else None,
            "postcode": address.postal_code if address else None,
            "city": address.city if address else None,
        }
        for name in attributes:
            value = c.attributes.get(name)
            row[f"attributes.{name}"] = None if value is None else str(value)
        return row

    def _candidates(self, block_limit: int) -> tuple[list[uuid.UUID], set[tuple[int, int]]]:
        """Blocking in the store: the customers sharing a key of ``identity_keys`` (``BLOCKING`` kinds).

        One group-by in the store counts each key's customers and keeps only the keys held
        by two customers or more, and by few enough that their block holds at most
        ``block_limit`` pairs (a key shared by hundreds separates nothing): the hundreds of
        thousands of keys held by one customer each never leave the store. The shared keys'
        entries are then read back through the (kind, key) index. Returns the customers
        involved and the candidate pairs, as indexes into them.
        """
        crm = self._crm
        spec = crm.schema.spec(IdentityKey)
        repo = crm.store.repository(spec)
        most = 2  # the largest block of at most block_limit pairs
        while (most + 1) * most // 2 <= block_limit:
            most += 1
        query = attrs.evolve(
            parse_aggregate(
                spec, group_by=("kind", "key"), count=True, sum=None, min=None, max=None, mean=None, count_distinct=None
            ),
            count_range=(2, most),
        )
        shared: dict[str, list[str]] = {}
        for kind, key, n in repo.aggregate(crm.tenant, bind(In("kind", BLOCKING), spec), query):
            if n >= 2 and n * (n - 1) // 2 <= block_limit:
                shared.setdefault(kind, []).append(key)
        ids: dict[uuid.UUID, int] = {}
        pairs: set[tuple[int, int]] = set()
        for kind, values in shared.items():
            for start in range(0, len(values), _CHUNK):
                chunk = tuple(values[start : start + _CHUNK])
                members: dict[str, list[int]] = {}
                where = And((Compare("kind", "==", kind), In("key", chunk)))
                # in the order of the (kind, key) index: ordered by id, SQLite walks every key of the tenant
                for found in repo.find(crm.tenant, bind(where, spec), parse_order(("kind", "key"), spec), None):
                    index = ids.setdefault(found.customer_id, len(ids))
                    members.setdefault(found.key, []).append(index)
                for block in members.values():
                    block = sorted(set(block))
                    pairs.update((a, b) for x, a in enumerate(block) for b in block[x + 1 :])
        return list(ids), pairs

    def duplicates(
        self,
        min_probability: float = 0.9,
        *,
        attributes: Mapping[str, str] | None = None,
        block_limit: int = 100,
    ) -> Iterator[Duplicate]:
        """Groups of likely duplicates among the customers (merged-away ones left out), best first.

        Blocking happens in the store: only customers sharing an e-mail, a phone, a name (its
        folded words, in any order) or a first address line and postcode are compared, and
        only they are read (``identity_keys`` holds these keys; ``reindex`` writes them for
        customers stored before). Customers are compared on name, e-mail, phone and first
        address (``attributes`` adds custom attributes by name and kind, e.g.
        ``{"date_of_birth": "date"}``). Pairs at or above ``min_probability`` are joined
        into groups (connected components). The model is trained on the compared pairs (EM)
        unless there are fewer than 1,000 of them, when the matcher's prior model is used.
        """
        extra = dict(attributes or {})
        for name, kind in extra.items():
            if kind not in KINDS:
                raise ValidationError(f"attributes.{name}", f"must be one of {', '.join(KINDS)}", kind)
        fields = customer_fields(extra)
        if isinstance(block_limit, bool) or not isinstance(block_limit, int) or block_limit < 1:
            raise ValidationError("block_limit", "must be a positive integer", block_limit)
        matcher = Matcher(fields, threshold=min_probability)
        blocked, candidates = self._candidates(block_limit)
        stored: dict[uuid.UUID, Customer] = {}
        for start in range(0, len(blocked), _CHUNK):
            for c in self._crm.customers.find(In("id", tuple(blocked[start : start + _CHUNK]))).items:
                stored[c.id] = c
        live = [i for i in blocked if i in stored and MERGED_INTO not in stored[i].attributes]
        ids = sorted(live, key=lambda i: (stored[i].created_at or _EPOCH, str(i)))  # a group lists the oldest first
        rows = [self._row(stored[i], extra) for i in ids]
        position = {c: k for k, c in enumerate(ids)}
        at = [position.get(c, -1) for c in blocked]  # each blocked customer's row (-1: merged away)
        pairs = set()
        for a, b in candidates:
            x, y = at[a], at[b]
            if x >= 0 and y >= 0:
                pairs.add((x, y) if x < y else (y, x))
        matches = matcher.deduplicate_pairs(rows, pairs)
        parent = list(range(len(rows)))

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for m in matches:
            parent[root(m.j)] = root(m.i)
        grouped: dict[int, list[Match]] = {}
        for m in matches:
            grouped.setdefault(root(m.i), []).append(m)
        levels = iter(matcher.explain_pairs(rows, [(m.i, m.j) for group in grouped.values() for m in group]))
        out = []
        for group in grouped.values():
            members = sorted({k for m in group for k in (m.i, m.j)})
            evidence = tuple((ids[m.i], ids[m.j], next(levels)) for m in group)
            out.append(Duplicate(tuple(ids[i] for i in members), min(m.probability for m in group), evidence))
        out.sort(key=lambda d: (-d.probability, d.customer_ids))
        return iter(out)

    # ----------------------------------------------------------------- merge

    def merge(
        self,
        survivor_id: uuid.UUID,
        duplicate_ids: Sequence[uuid.UUID],
        *,
        rules: Mapping[str, Rule] | str | None = None,
    ) -> Merge:
        """Merge customers into ``survivor_id``, in one transaction; returns the merge record.

        The survivor's fields follow the survivorship ``rules`` (field -> function of the
        customers, survivor first; ``"odoo"`` for Odoo's rules; default ``DEFAULT_RULES``).
        Every record of every aggregate that refers to a merged customer (found through
        ``crm.schema.references_to("customers")``, plugins' aggregates included) then
        refers to the survivor; relationships that would become self-loops or duplicates
        are deleted (and kept in the merge record). Merged customers stay, marked with the
        attribute ``merged_into``; ``unmerge(merge.id)`` undoes it all.
        """
        crm = self._crm
        chosen = ODOO_RULES if rules == "odoo" else DEFAULT_RULES if rules is None else rules
        if isinstance(chosen, str) or not isinstance(chosen, Mapping):
            raise ValidationError("rules", "must be a mapping of field to rule, or 'odoo'", rules)
        if not isinstance(survivor_id, uuid.UUID):
            raise ValidationError("survivor_id", "must be a uuid.UUID", survivor_id)
        if isinstance(duplicate_ids, (str, bytes)) or not all(isinstance(i, uuid.UUID) for i in duplicate_ids):
            raise ValidationError("duplicate_ids", "must be a sequence of uuid.UUID", duplicate_ids)
        losers_ids = list(dict.fromkeys(duplicate_ids))
        if not losers_ids or survivor_id in losers_ids:
            raise ValidationError("duplicate_ids", "must name other customers than the survivor", duplicate_ids)
        with crm._unless_caused("merge"), crm.transaction():
            survivor = crm.customers.get(survivor_id)
            losers = [crm.customers.get(i) for i in losers_ids]
            for c in (survivor, *losers):
                if MERGED_INTO in c.attributes:
                    raise ConflictError(f"customer {c.id} is merged already", entity="customer", key=c.id)
            everyone = [survivor, *losers]
            changes = {}
            for field, rule in chosen.items():
                if field not in attrs.fields_dict(Customer) or field in ("id", "version", "created_at", "updated_at"):
                    raise ValidationError("rules", f"names {field!r}, which is not a field a merge may set", field)
                changes[field] = rule(everyone)
            merged_survivor = attrs.evolve(survivor, **changes)
            moved, removed = self._repoint(set(losers_ids), survivor_id)
            after_losers = []
            for loser in losers:
                marked = attrs.evolve(loser, attributes={**loser.attributes, MERGED_INTO: str(survivor_id)})
                after_losers.append(self._write_customer(loser, marked))
            after_survivor = self._write_customer(survivor, merged_survivor)
            now = crm.now()
            record = Merge(
                survivor_id=survivor_id,
                merged_ids=frozenset(str(i) for i in losers_ids),
                merged_at=now,
                moved=tuple(moved),
                before=_codec.dumps([survivor, *losers]),
                after=_codec.dumps([after_survivor, *after_losers]),
                removed=_codec.dumps(removed),
            )
            return crm.records(Merge).add(record)

    def _write_customer(self, current: Customer, new: Customer) -> Customer:
        service = self._crm.customers
        bumped = service._bumped(current, new)
        service._before_replace(current, bumped)
        service._replace(current, bumped)
        service._after_replace(current, bumped, rule="merge", reason=None)
        return bumped

    def _referring(self, ids: set[uuid.UUID]) -> Iterator[tuple[Reference, Any]]:
        crm = self._crm
        for ref in crm.schema.references_to("customers"):
            if ref.source in _OWN:
                continue
            source = crm.schema[ref.source]
            if ref.any:
                where: Any = And(
                    (Compare(f"{ref.field}.aggregate", "==", "customers"), In(f"{ref.field}.id", tuple(ids)))
                )
            else:
                where = In(ref.field, tuple(ids))
            for record in list(scan(crm.store.repository(source), crm.tenant, where, parse_order(None, source))):
                yield ref, record

    def _rewrite(self, aggregate: str, current: Any, new: Any) -> Any:
        crm = self._crm
        spec = crm.schema[aggregate]
        bumped = attrs.evolve(new, updated_at=crm.now(), version=current.version + 1)
        if not crm.store.repository(spec).replace(crm.tenant, bumped, current.version):
            raise ConflictError(f"{spec.label} {current.id} changed concurrently", entity=spec.label, key=current.id)
        crm._emit(event_for(spec.name, "updated", spec.label), current, bumped)
        return bumped

    def _repoint(self, losers: set[uuid.UUID], survivor: uuid.UUID) -> tuple[list[Moved], list[Any]]:
        crm = self._crm
        moved: list[Moved] = []
        removed: list[Any] = []
        latest: dict[tuple[str, uuid.UUID], Any] = {}
        for ref, record in self._referring(losers):
            current = latest.get((ref.source, record.id)) or crm.store.repository(crm.schema[ref.source]).get(
                crm.tenant, record.id
            )
            if current is None:
                continue
            if ref.source == "relationships":  # both ends at once: an edge may become a loop or a repeat
                ends = {f: getattr(current, f) for f in ("source_id", "target_id")}
                changed = {f: survivor for f, v in ends.items() if v in losers}
                if not changed:
                    continue
                if {**ends, **changed}["source_id"] == {**ends, **changed}["target_id"] or self._redundant_edge(
                    current, {**ends, **changed}
                ):
                    crm.store.repository(crm.schema["relationships"]).delete(crm.tenant, current.id, current.version)
                    crm._emit(event_for("relationships", "deleted", "relationship"), current, None)
                    removed.append(current)
                    continue
                latest[(ref.source, record.id)] = self._rewrite(ref.source, current, attrs.evolve(current, **changed))
                moved.extend(
                    Moved(aggregate=ref.source, record_id=current.id, field=f, from_id=ends[f]) for f in changed
                )
                continue
            value = getattr(current, ref.field)
            from_id = value.id if ref.any else value
            if from_id not in losers:
                continue
            new_value = Ref("customers", survivor) if ref.any else survivor
            new = attrs.evolve(current, **{ref.field: new_value})
            latest[(ref.source, record.id)] = self._rewrite(ref.source, current, new)
            moved.append(Moved(aggregate=ref.source, record_id=current.id, field=ref.field, from_id=from_id))
        return moved, removed

    def _redundant_edge(self, edge: Any, ends: Mapping[str, uuid.UUID]) -> bool:
        """Whether a relationship re-pointed to ``ends`` would repeat another edge (same ends, kind, since)."""
        crm = self._crm
        spec = crm.schema["relationships"]
        where = And(
            (
                Compare("source_id", "==", ends["source_id"]),
                Compare("target_id", "==", ends["target_id"]),
                Compare("kind", "==", edge.kind),
            )
        )
        others = crm.store.repository(spec).find(crm.tenant, where, parse_order(None, spec), None)
        return any(o.id != edge.id and o.since == edge.since for o in others)

    # ----------------------------------------------------------------- un-merge

    def unmerge(self, merge_id: uuid.UUID, *, strict: bool = False, force: bool = False) -> Unmerged:
        """Undo a merge: customers, fields and every re-pointed reference as they were before it.

        Values changed since the merge are kept where they do not conflict; each conflict
        (a field or reference changed since, whose pre-merge value differs) is reported, and
        with ``strict=True`` nothing is changed then (ConflictError). A merge is undone only
        while no later merge involving its customers is active (undo the latest first),
        unless ``force=True``.
        """
        crm = self._crm
        merges = crm.records(Merge)
        with crm._unless_caused("unmerge"), crm.transaction():
            try:
                merge = merges.get(merge_id)
            except NotFound:
                raise
            if merge.undone_at is not None:
                raise ConflictError(f"merge {merge_id} is undone already", entity="merge", key=merge_id)
            involved = {merge.survivor_id, *(uuid.UUID(i) for i in merge.merged_ids)}
            later = merges.scan(Compare("merged_at", ">=", merge.merged_at))
            for other in later:
                if other.id == merge.id or other.undone_at is not None:
                    continue
                if (other.merged_at, other.id) < (merge.merged_at, merge.id):
                    continue
                if not force and {other.survivor_id, *(uuid.UUID(i) for i in other.merged_ids)} & involved:
                    raise ConflictError(
                        f"merge {other.id} is later and involves the same customers: undo it first",
                        entity="merge",
                        key=merge_id,
                    )
            before: list[Customer] = _codec.loads(merge.before)
            after: list[Customer] = _codec.loads(merge.after)
            conflicts: list[str] = []
            plans: list[tuple[Customer, Customer]] = []
            for old, merged in zip(before, after, strict=True):
                current = crm.customers.get(old.id)
                changes: dict[str, Any] = {}
                for a in attrs.fields(Customer):
                    if a.name in ("id", "version", "created_at", "updated_at"):
                        continue
                    now_value, merged_value, old_value = (getattr(x, a.name) for x in (current, merged, old))
                    if now_value == merged_value:
                        changes[a.name] = old_value
                    elif a.name == "attributes":
                        changes[a.name] = _restore_attributes(old_value, merged_value, now_value, conflicts, old.id)
                    elif merged_value != old_value and now_value != old_value:
                        conflicts.append(f"customer {old.id}: {a.name} changed since the merge; kept")
                plans.append((current, attrs.evolve(current, **changes)))
            grouped: dict[tuple[str, uuid.UUID], list[Moved]] = {}
            for m in merge.moved:
                grouped.setdefault((m.aggregate, m.record_id), []).append(m)
            moves: list[tuple[str, Any, dict[str, Any]]] = []
            for (aggregate, record_id), items in grouped.items():
                spec = crm.schema.aggregates.get(aggregate)
                record = None if spec is None else crm.store.repository(spec).get(crm.tenant, record_id)
                if record is None:
                    conflicts.append(f"{aggregate} {record_id}: deleted since the merge; not restored")
                    continue
                back: dict[str, Any] = {}
                for m in items:
                    value = getattr(record, m.field)
                    pointed = value.id if isinstance(value, Ref) else value
                    if pointed != merge.survivor_id:
                        conflicts.append(f"{aggregate} {record_id}: {m.field} changed since the merge; kept")
                        continue
                    back[m.field] = Ref("customers", m.from_id) if isinstance(value, Ref) else m.from_id
                if back:
                    moves.append((aggregate, record, back))
            removed: list[Any] = _codec.loads(merge.removed)
            if strict and conflicts:
                raise ConflictError("; ".join(conflicts), entity="merge", key=merge_id)
            for aggregate, record, back in moves:
                self._rewrite(aggregate, record, attrs.evolve(record, **back))
            for edge in removed:
                spec = crm.schema["relationships"]
                if crm.store.repository(spec).get(crm.tenant, edge.id) is None:
                    crm.store.repository(spec).insert(crm.tenant, [edge])
                    crm._emit(event_for("relationships", "created", "relationship"), None, edge)
            for current, restored in plans:
                if restored != current:
                    self._write_customer(current, restored)
            merges.update(attrs.evolve(merge, undone_at=crm.now()))
        return Unmerged(merge_id, tuple(conflicts))


def _restore_attributes(
    old: Mapping[str, Any], merged: Mapping[str, Any], now: Mapping[str, Any], conflicts: list[str], id: uuid.UUID
) -> dict[str, Any]:
    """Per attribute: back to the pre-merge value unless it changed since the merge."""
    out: dict[str, Any] = {}
    for name in set(old) | set(merged) | set(now):
        if now.get(name) == merged.get(name):
            if name in old:
                out[name] = old[name]
        else:
            if name in now:
                out[name] = now[name]
            if merged.get(name) != old.get(name) and now.get(name) != old.get(name):
                conflicts.append(f"customer {id}: attributes.{name} changed since the merge; kept")
    return out

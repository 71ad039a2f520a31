"""Duplicate rules: a customer added or changed who is likely another one is refused, or stored with an alert.

A rule is checked in the transaction that writes the customers, after their identity keys
are written: the customers holding one of their keys (e-mail, phone, folded name, first
address line and postcode) are found through the ``(kind, key)`` index of
``identity_keys``, one look-up per kind of key for a whole batch, and only they are read
and compared with the matcher. A bulk import therefore pays a few queries per batch, not
per row, and nothing at all while no rule is set.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, ValidationError
from crmkit.customers import Customer
from crmkit.entities import CUSTOMERS
from crmkit.events import event_for
from crmkit.identity._keys import MERGED_INTO, blocking_keys_of, keys_of
from crmkit.identity._matcher import KINDS, Matcher, prior_parameters
from crmkit.identity._records import DuplicateAlert, IdentityKey
from crmkit.query import And, Compare, In, bind, parse_order
from crmkit.services.records import _stamped

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["ACTIONS", "DuplicateRule", "apply_rules", "customer_fields", "rules_of"]

#: What a rule does with a likely duplicate: refuse the write, or store it and record an alert.
ACTIONS = ("block", "alert")
#: How many keys one look-up names (``IN (...)``).
_CHUNK = 500
#: A key held by more customers than this separates nothing (a common name): it finds no candidates.
_KEY_LIMIT = 100


def customer_fields(attributes: Mapping[str, str]) -> dict[str, str]:
    """The fields customers are compared on (``duplicates`` and rules), with custom attributes by kind."""
    return {
        "name": "name",
        "email": "identifier",
        "phone": "identifier",
        "address": "address",
        "postcode": "postcode",
        "city": "text",
        **{f"attributes.{n}": k for n, k in attributes.items()},
    }


def _action(instance: Any, attribute: Any, value: Any) -> None:
    if value not in ACTIONS:
        raise ValidationError("action", f"must be one of {', '.join(ACTIONS)}", value)


def _probability(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValidationError("min_probability", "must be a probability above 0 and at most 1", value)


def _name(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("name", "must be non-empty text", value)


def _attributes(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError("attributes", "must map attribute names to matcher kinds", value)
    for name, kind in value.items():
        if kind not in KINDS:
            raise ValidationError(f"attributes.{name}", f"must be one of {', '.join(KINDS)}", kind)
    return dict(value)


@attrs.frozen
class DuplicateRule:
    """Salesforce's duplicate rule: what adding or changing a likely duplicate customer does.

    Checked on ``crm.customers.add``, ``add_many``, ``upsert_many`` and ``update`` (a
    change of name, contact points, addresses or attributes). A stored customer who
    matches the written one with at least ``min_probability`` (the matcher's prior model,
    on name, e-mail, phone, first address and the named custom ``attributes``) makes
    ``action="block"`` refuse the write with a ConflictError naming that customer, nothing
    written, and ``action="alert"`` store it and record a ``DuplicateAlert``. Set rules per
    connection (``crm.identity.rules = [...]``) or pass them to ``crmkit.connect(...,
    plugins=[DuplicateRule(...)])``.
    """

    action: str = attrs.field(default="alert", validator=_action)
    min_probability: float = attrs.field(default=0.9, validator=_probability)
    name: str = attrs.field(default="duplicates", validator=_name)
    attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_attributes, hash=False)


def rules_of(crm: CRM) -> tuple[DuplicateRule, ...]:
    """The duplicate rules of a connection: those set on ``crm.identity.rules``, else those given as plugins."""
    rules: tuple[DuplicateRule, ...] | None = getattr(crm, "_identity_rules", None)
    if rules is None:
        rules = tuple(p for p in crm._host.pm.get_plugins() if isinstance(p, DuplicateRule))
        crm._identity_rules = rules  # type: ignore[attr-defined]
    return rules


def _holders(crm: CRM, wanted: Mapping[str, set[str]]) -> dict[tuple[str, str], list[uuid.UUID]]:
    """The customers holding each (kind, key), read on the ``(kind, key)`` index, a chunk of keys per query."""
    spec = crm.schema.spec(IdentityKey)
    repo = crm.store.repository(spec)
    order = parse_order(None, spec)
    found: dict[tuple[str, str], list[uuid.UUID]] = {}
    for kind, keys in wanted.items():
        values = sorted(keys)
        for start in range(0, len(values), _CHUNK):
            where = And((Compare("kind", "==", kind), In("key", tuple(values[start : start + _CHUNK]))))
            for row in repo.find(crm.tenant, bind(where, spec), order, None):
                found.setdefault((kind, row.key), []).append(row.customer_id)
    return found


def apply_rules(crm: CRM, customers: Sequence[Customer]) -> None:
    """Check the customers just written (their keys stored) against the connection's duplicate rules.

    Inside the writing transaction: a block rule raises ConflictError (``key``: the
    refused customer's id) and the caller's transaction is undone; alert rules add
    ``DuplicateAlert`` records. Within one batch, a customer is compared with the
    batch's earlier customers and with stored ones.
    """
    rules = rules_of(crm)
    if not rules or not customers or crm.schema.declared.get("identity_keys") is None:
        return
    position = {c.id: k for k, c in enumerate(customers)}
    mine: dict[uuid.UUID, list[tuple[str, str]]] = {}
    wanted: dict[str, set[str]] = {}
    for c in customers:
        keys = [*keys_of(crm, c), *blocking_keys_of(c)]
        mine[c.id] = keys
        for kind, key in keys:
            wanted.setdefault(kind, set()).add(key)
    if not wanted:
        return
    holders = _holders(crm, wanted)
    candidates: dict[uuid.UUID, set[uuid.UUID]] = {}
    for c in customers:
        for held in mine[c.id]:
            others = holders.get(held, [])
            if len(others) > _KEY_LIMIT:
                continue
            for other in others:
                if other != c.id and position.get(other, -1) < position[c.id]:  # stored, or earlier in the batch
                    candidates.setdefault(c.id, set()).add(other)
    if not candidates:
        return
    stored = _read(crm, {o for found in candidates.values() for o in found if o not in position})
    everyone = {**stored, **{c.id: c for c in customers}}
    caught = [(rule, _matches(crm, rule, customers, candidates, everyone)) for rule in rules]
    blocked = [
        (position[cid], p, others, rule) for rule, hits in caught if rule.action == "block" for cid, p, others in hits
    ]
    if blocked:
        index, p, others, rule = min(blocked, key=lambda hit: hit[0])
        customer = customers[index]
        named = ", ".join(str(o) for o in others)
        err = ConflictError(
            f"customer {customer.id} ({customer.name!r}) is likely a duplicate of "
            f"{'customer' if len(others) == 1 else 'customers'} {named} "
            f"(probability {p:.4f}, duplicate rule {rule.name!r})",
            entity="customer",
            key=customer.id,
        )
        err.field = "customer"  # type: ignore[attr-defined]
        raise err
    alerts = []
    for rule, hits in caught:
        for cid, p, others in hits:
            at = everyone[cid].updated_at or crm.now()  # the customer's own write time: no extra clock reading
            alert = DuplicateAlert(
                customer_id=cid,
                duplicate_of=frozenset(str(o) for o in others),
                probability=Decimal(f"{p:.4f}"),
                rule=rule.name,
                raised_at=at,
            )
            alerts.append(_stamped(alert, at))
    spec = crm.schema.declared.get("identity_alerts")
    if alerts and spec is not None:
        crm.store.repository(spec).insert(crm.tenant, alerts)
        if crm._wants_events(spec.name):
            created = event_for(spec.name, "created", spec.label)
            for alert in alerts:
                crm._emit(created, None, alert)


def _read(crm: CRM, ids: set[uuid.UUID]) -> dict[uuid.UUID, Customer]:
    repo = crm.store.repository(CUSTOMERS)
    order = parse_order(None, CUSTOMERS)
    wanted = sorted(ids)
    out: dict[uuid.UUID, Customer] = {}
    for start in range(0, len(wanted), _CHUNK):
        for c in repo.find(crm.tenant, In("id", tuple(wanted[start : start + _CHUNK])), order, None):
            if MERGED_INTO not in c.attributes:
                out[c.id] = c
    return out


def _matches(
    crm: CRM,
    rule: DuplicateRule,
    customers: Sequence[Customer],
    candidates: Mapping[uuid.UUID, set[uuid.UUID]],
    everyone: Mapping[uuid.UUID, Customer],
) -> list[tuple[uuid.UUID, float, list[uuid.UUID]]]:
    """Per written customer that a rule catches: its id, the highest probability and the customers it matches."""
    fields = customer_fields(rule.attributes)
    matcher = Matcher(fields, threshold=rule.min_probability, parameters=prior_parameters(fields))
    index: dict[uuid.UUID, int] = {}
    pairs: set[tuple[int, int]] = set()
    for cid, others in candidates.items():
        for other in others:
            if other not in everyone:
                continue
            a, b = (index.setdefault(x, len(index)) for x in (cid, other))
            pairs.add((min(a, b), max(a, b)))
    ids: list[uuid.UUID] = list(index)
    rows = [crm.identity._row(everyone[i], rule.attributes) for i in ids]
    found: dict[uuid.UUID, dict[uuid.UUID, float]] = {}
    for m in matcher.deduplicate(rows, pairs=pairs):
        for me, other in ((ids[m.i], ids[m.j]), (ids[m.j], ids[m.i])):
            if other in candidates.get(me, ()):
                found.setdefault(me, {})[other] = m.probability
    order = {c.id: k for k, c in enumerate(customers)}
    return [
        (cid, max(hits.values()), sorted(hits, key=lambda o: (-hits[o], str(o))))
        for cid, hits in sorted(found.items(), key=lambda item: order[item[0]])
    ]

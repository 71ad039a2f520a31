"""``crm.customers`` and ``crm.stage_changes``: people and organisations, and their life-cycle history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ConflictError, ValidationError
from crmkit.customers import Customer
from crmkit.entities import (
    CUSTOMERS,
    INTERACTIONS,
    RELATIONSHIPS,
    STAGE_CHANGES,
    TRANSACTIONS,
)
from crmkit.events import StageChanged
from crmkit.lifecycle_model import Stage, StageChange
from crmkit.query import (
    ALL,
    And,
    Compare,
    Contains,
    Expr,
    In,
    Not,
    Or,
    Order,
    parse_order,
)
from crmkit.state_changes import LIFECYCLE, StateChange
from crmkit.store import Repository, scan

if TYPE_CHECKING:
    from crmkit.crm import CRM

from crmkit.services.records import _ReadRecords, _Records

__all__ = ["Customers", "StageChanges"]


class Customers(_Records[Customer]):
    """``crm.customers``: people and organisations."""

    spec = CUSTOMERS

    def _check_references(self, records: Sequence[Customer], first_row: int | None) -> None:
        stages = self._crm.lifecycle.stages
        for i, record in enumerate(records):
            if record.stage not in stages:
                err = ValidationError(
                    "stage", f"is not a stage of this connection's life cycle ({', '.join(stages.names)})", record.stage
                )
                raise err if first_row is None else err.at_row(first_row + i)

    def _before_replace(self, current: Customer, new: Customer) -> None:
        if new.stage != current.stage:
            self._crm.lifecycle.guard(current, new.stage, "manual")

    def _after_insert(self, records: Sequence[Customer]) -> None:
        from crmkit.identity._keys import write_keys
        from crmkit.identity._rules import apply_rules

        write_keys(self._crm, records)
        super()._after_insert(records)  # the search terms (e-mail addresses)
        apply_rules(self._crm, records)  # the duplicate rules of the connection, if any

    def find_by_email(self, address: str) -> list[Customer]:
        """The customers with this e-mail address, matched as a whole, case-insensitively (oldest first).

        The address is compared in its normalised form (trimmed, case-folded, IDNA domain),
        looked up on an index in the store; the customers keep their addresses as typed.
        """
        from crmkit.identity._contact import email_key
        from crmkit.identity._keys import customers_by_key

        return customers_by_key(self._crm, "email", email_key(address))

    def find_by_phone(self, number: str, *, region: str | None = None) -> list[Customer]:
        """The customers with this phone number, compared in E.164 form (oldest first).

        A national number (``0721 234 567``) needs ``region`` (``RO``) or the connection's
        default (``crm.identity.region``); an international one (``+40 721 234 567``) none.
        """
        from crmkit.identity._contact import phone_key
        from crmkit.identity._keys import customers_by_key

        return customers_by_key(
            self._crm, "phone", phone_key(number, region=region or getattr(self._crm, "_identity_region", None))
        )

    def _after_replace(self, current: Customer, new: Customer, *, rule: str, reason: str | None) -> StageChange | None:
        from crmkit.identity._keys import rekey_changed

        rekey_changed(self._crm, [(current, new)], rules=rule != "merge")
        super()._after_replace(current, new, rule=rule, reason=reason)  # the search terms
        return self._stage_changed(current, new, rule=rule, reason=reason)

    def _after_replace_many(self, pairs: Sequence[tuple[Customer, Customer]], *, rule: str) -> None:
        from crmkit.identity._keys import rekey_changed
        from crmkit.search_terms import rewrite_terms

        rekey_changed(self._crm, pairs, rules=rule != "merge")  # the keys of a batch in a few writes
        rewrite_terms(self._crm, self.spec.name, pairs)  # and the search terms
        for current, new in pairs:
            self._stage_changed(current, new, rule=rule, reason=None)

    def _stage_changed(self, current: Customer, new: Customer, *, rule: str, reason: str | None) -> StageChange | None:
        """Record a change of life-cycle stage (and announce it); None when the stage is the same."""
        if new.stage == current.stage:
            return None
        change = self._crm.state_changes.record_change(
            (CUSTOMERS.name, new.id),
            stage_set=LIFECYCLE,
            from_stage=current.stage.value,
            to_stage=new.stage.value,
            rule=rule,
            reason=reason,
        )
        stage_change = stage_change_of(change)
        self._crm._emit(StageChanged, None, stage_change)
        return stage_change

    def _move(self, customer: Customer, stage: Stage, *, rule: str, reason: str | None) -> StageChange | None:
        """Change the stage of a stored customer (guards already passed) and record why."""
        with self._crm.transaction():
            current = self._current(customer)
            new = self._bumped(current, attrs.evolve(current, stage=stage))
            self._replace(current, new)
            return self._after_replace(current, new, rule=rule, reason=reason)

    def may_contact(self, customer: Customer | uuid.UUID, channel: str) -> bool:
        """Whether outbound contact with the customer on ``channel`` is allowed now.

        A channel whose type does not need consent (``ChannelType.needs_consent`` false: the
        web, meetings, face to face) is always allowed; on any other channel some contact
        point must record granted consent for it and none may deny it. ValidationError for a
        channel no plugin registered.
        """
        ctype = self._crm.channels.get(str(channel)) if isinstance(channel, str) else None
        if ctype is None:
            known = ", ".join(sorted(self._crm.channels))
            raise ValidationError("channel", f"is not a registered channel (known: {known})", channel)
        record = customer if isinstance(customer, Customer) else self.get(customer)
        return not ctype.needs_consent or record.may_contact(ctype.name)

    def _cascade(self, current: Customer) -> None:
        from crmkit.identity._keys import drop_keys

        drop_keys(self._crm, current.id)  # derived keys go quietly, as they came
        super()._cascade(current)  # the declared aggregates' references to customers
        tenant, crm = self._crm.tenant, self._crm
        mine = Compare("customer_id", "==", current.id)
        edges = Or((Compare("source_id", "==", current.id), Compare("target_id", "==", current.id)))
        for spec, where in (
            (RELATIONSHIPS, edges),
            (INTERACTIONS, mine),
            (TRANSACTIONS, mine),
        ):
            if crm._referred_to(spec):  # some declared aggregate may point at these records: one by one
                repo = crm.store.repository(spec)
                for record in list(scan(repo, tenant, where, parse_order(None, spec))):
                    crm._delete_dependent(spec, record)
            else:
                crm.store.repository(spec).delete_where(tenant, where)


def stage_change_of(change: StateChange) -> StageChange:
    """A life-cycle change of a customer as ``crm.stage_changes`` shows it."""
    return StageChange(
        customer_id=change.record.id,
        from_stage=change.from_stage,
        to_stage=change.to_stage,
        occurred_at=change.occurred_at,
        rule=change.rule,
        reason=change.reason,
        id=change.id,
        created_at=change.created_at,
        updated_at=change.updated_at,
        version=change.version,
    )


#: Query fields of ``crm.stage_changes`` named otherwise in ``state_changes``.
_RENAMED = {"customer_id": "record.id"}


def _renamed(expr: Expr) -> Expr:
    """A condition on stage changes as the same condition on state changes."""
    if isinstance(expr, Compare):
        return Compare(_RENAMED.get(expr.field, expr.field), expr.op, expr.value)
    if isinstance(expr, In):
        return In(_RENAMED.get(expr.field, expr.field), expr.values)
    if isinstance(expr, Contains):
        return Contains(_RENAMED.get(expr.field, expr.field), expr.value)
    if isinstance(expr, And):
        return And(tuple(_renamed(e) for e in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(_renamed(e) for e in expr.items))
    if isinstance(expr, Not):
        return Not(_renamed(expr.item))
    return expr


class _LifecycleView(Repository[StageChange]):
    """Customers' life-cycle changes read from the state changes: a read-only repository of StageChange."""

    spec = STAGE_CHANGES

    def __init__(self, repo: Repository[StateChange]) -> None:
        self._repo = repo
        self._mine: Expr = And(
            (Compare("record.aggregate", "==", CUSTOMERS.name), Compare("stage_set", "==", LIFECYCLE))
        )

    def _where(self, where: Expr) -> Expr:
        return self._mine if isinstance(where, type(ALL)) else And((self._mine, _renamed(where)))

    def _order(self, order: Order) -> Order:
        keys = tuple((_RENAMED.get(name, name), desc) for name, desc in order.keys)
        return Order(keys, frozenset(_RENAMED.get(name, name) for name in order.nullable))

    def get(self, tenant: str, id: uuid.UUID) -> StageChange | None:
        found = self._repo.get(tenant, id)
        if found is None or found.record.aggregate != CUSTOMERS.name or found.stage_set != LIFECYCLE:
            return None
        return stage_change_of(found)

    def count(self, tenant: str, where: Expr) -> int:
        return self._repo.count(tenant, self._where(where))

    def find(self, tenant: str, where: Expr, order: Order, limit: int | None) -> list[StageChange]:
        return [stage_change_of(c) for c in self._repo.find(tenant, self._where(where), self._order(order), limit)]

    def existing_ids(self, tenant: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return {c.id for c in self.find(tenant, In("id", tuple(ids)), parse_order(None, self.spec), None)}

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise ConflictError("stage changes are written by the life cycle (crm.state_changes records them)")

    insert = insert_new = replace = delete = delete_where = _read_only

    def get_by_external_id(self, tenant: str, external_id: str) -> StageChange | None:
        return None


class StageChanges(_ReadRecords[StageChange]):
    """``crm.stage_changes``: the customers' life-cycle changes, as StageChange records (read only).

    They are stored as state changes of stage set ``lifecycle`` (``crm.state_changes``);
    this service reads them with the query fields of ``StageChange`` (``customer_id`` is
    the changed record's id).
    """

    spec = STAGE_CHANGES

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        self._repo = _LifecycleView(crm.state_changes._repo)

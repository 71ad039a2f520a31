"""``crm.customers`` and ``crm.stage_changes``: people and organisations, and their life-cycle history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from crmkit._errors import ValidationError
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
    Compare,
    Or,
    parse_order,
)
from crmkit.store import scan

if TYPE_CHECKING:
    pass

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

        write_keys(self._crm, records)

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
        if (current.emails, current.phones, current.addresses, current.attributes) != (
            new.emails,
            new.phones,
            new.addresses,
            new.attributes,
        ):
            from crmkit.identity._keys import rekey

            rekey(self._crm, [new])
        if new.stage == current.stage:
            return None
        now = self._crm.now()  # read once: the change happened at one moment
        change = StageChange(
            customer_id=new.id,
            from_stage=current.stage,
            to_stage=new.stage,
            occurred_at=now,
            rule=rule,
            reason=reason,
            created_at=now,
            updated_at=now,
            version=1,
        )
        self._crm.store.repository(STAGE_CHANGES).insert(self._crm.tenant, [change])
        self._crm._emit(StageChanged, None, change)
        return change

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
        super()._cascade(current)  # the declared aggregates' references to customers
        tenant, crm = self._crm.tenant, self._crm
        mine = Compare("customer_id", "==", current.id)
        edges = Or((Compare("source_id", "==", current.id), Compare("target_id", "==", current.id)))
        for spec, where in (
            (RELATIONSHIPS, edges),
            (INTERACTIONS, mine),
            (TRANSACTIONS, mine),
            (STAGE_CHANGES, mine),
        ):
            if crm._referred_to(spec):  # some declared aggregate may point at these records: one by one
                repo = crm.store.repository(spec)
                for record in list(scan(repo, tenant, where, parse_order(None, spec))):
                    crm._delete_dependent(spec, record)
            else:
                crm.store.repository(spec).delete_where(tenant, where)


class StageChanges(_ReadRecords[StageChange]):
    """``crm.stage_changes``: the record of every stage change (written by the life cycle only)."""

    spec = STAGE_CHANGES

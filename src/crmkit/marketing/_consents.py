"""``crm.consents``: consent with purpose and history; what is allowed at any moment is read from the records."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from crmkit._errors import ValidationError
from crmkit._validation import check_identifier, utc
from crmkit.channels import Channel
from crmkit.customers import Consent, Customer
from crmkit.marketing._model import ConsentRecord
from crmkit.query import Expr, F
from crmkit.services.records import Records, _uuids
from crmkit.store import iter_batches

__all__ = ["LATEST_FIRST", "Consents", "addresses_for", "decide"]

#: Purposes that need no consent of their own: the contract is the legal basis (an order confirmation).
NEEDS_NO_CONSENT = frozenset({"transactional"})
#: The purpose the consent flags on contact points stand for.
FLAG_PURPOSE = "marketing"


#: The contact-point field of a customer through which each channel reaches it (other channels need none).
CHANNEL_POINTS = {
    "email": "emails",
    "sms": "phones",
    "phone": "phones",
    "fax": "phones",
    "letter": "addresses",
    "social": "handles",
    "chat": "handles",
}

#: The part of a contact point that is its address, per contact-point field (postal addresses have none).
POINT_ADDRESS = {"emails": "address", "phones": "number", "handles": "handle"}

#: The order that makes a customer's consent record the latest for a channel and purpose: the
#: latest ``at``, then the latest written (``created_at``), then the highest (latest made) id.
#: Targeting (``Select(..., first_by=LATEST_FIRST)``) and every per-customer check use this one.
LATEST_FIRST = ("-at", "-created_at", "-id")


def _points(customer: Customer, channel: str) -> tuple[str, tuple[object, ...]]:
    """The contact-point field of a customer that a channel reaches, and its points."""
    field = CHANNEL_POINTS.get(channel, "")
    points: tuple[object, ...] = getattr(customer, field) if field else ()
    return field, points


def addresses_for(customer: Customer, channel: str) -> tuple[str, ...]:
    """The customer's addresses on a channel (e-mail addresses, phone numbers), normalised as suppressions keep them."""
    field, points = _points(customer, channel)
    part = POINT_ADDRESS.get(field)
    if part is None:
        return ()
    return tuple(str(getattr(point, part)).strip().lower() for point in points)


def _flag(customer: Customer, channel: str, at: dt.datetime) -> bool:
    """The contact points' consent flags for a channel, for a customer without consent records:
    granted on some point and refused on none, counting only flags set at or before ``at``."""
    found = [
        c
        for point in customer.contact_points()
        if (c := point.consent_for(channel)) is not None and (c.at is None or c.at <= at)
    ]
    return bool(found) and all(c.granted for c in found)


def decide(
    latest: ConsentRecord | None,
    at: dt.datetime,
    *,
    purpose: str,
    needs_consent: bool,
    flag: bool | None = None,
) -> bool:
    """Whether contact is allowed at ``at`` given the latest consent record at or before it.

    A confirmed grant that has not expired allows; a withdrawal, a pending (unconfirmed)
    grant or an expired one does not. Without a record: a channel that needs no consent,
    or a purpose that needs none (transactional), allows; for marketing, a customer who has
    no consent record for the channel at all is judged by the contact points' consent flags
    (data from before consent records); else no.
    """
    if latest is not None:
        if not latest.granted or latest.pending:
            return False
        return latest.expires_at is None or at < latest.expires_at
    if not needs_consent or purpose in NEEDS_NO_CONSENT:
        return True
    return bool(flag) if purpose == FLAG_PURPOSE else False


class Consents(Records[ConsentRecord]):
    """``crm.consents``: every method of ``crm.records(ConsentRecord)``, plus record, confirm, allowed and history.

    Every grant or withdrawal is a new record, never an edit; ``allowed(..., at=t)`` reads the
    latest record at or before ``t`` for that customer, channel and purpose. The consent flags on
    a customer's contact points are the current state for purpose ``marketing`` and are updated
    with every confirmed marketing record, in the same transaction.
    """

    def record(
        self,
        customer_id: uuid.UUID,
        *,
        channel: str,
        purpose: str,
        granted: bool,
        at: dt.datetime | None = None,
        legal_basis: str = "consent",
        source: str | None = None,
        expires_at: dt.datetime | None = None,
        pending: bool = False,
        address: str | None = None,
    ) -> ConsentRecord:
        """Record a grant (``pending=True`` for double opt-in until ``confirm``) or a withdrawal."""
        when = self._crm.now() if at is None else utc(at, "at")
        item = ConsentRecord(
            customer_id=customer_id,
            channel=channel,
            purpose=purpose,
            granted=granted,
            at=when,
            legal_basis=legal_basis,
            source=source,
            expires_at=expires_at,
            pending=pending,
            address=address,
        )
        with self._crm.transaction():
            stored = self.add(item)
            if stored.purpose == FLAG_PURPOSE and not stored.pending:
                self._keep_flags_in_step(stored)
        return stored

    def confirm(
        self, customer_id: uuid.UUID, *, channel: str, purpose: str, at: dt.datetime | None = None
    ) -> ConsentRecord:
        """Confirm a pending grant (double opt-in): a confirmed grant with the pending one's basis and expiry."""
        when = self._crm.now() if at is None else utc(at, "at")
        latest = self.latest(customer_id, channel=channel, purpose=purpose, at=when)
        if latest is None or not latest.pending:
            raise ValidationError("purpose", "has no pending grant to confirm", purpose)
        return self.record(
            customer_id,
            channel=channel,
            purpose=purpose,
            granted=True,
            at=when,
            legal_basis=latest.legal_basis,
            source=latest.source,
            expires_at=latest.expires_at,
            address=latest.address,
        )

    def latest(
        self, customer_id: uuid.UUID, *, channel: str, purpose: str, at: dt.datetime | None = None
    ) -> ConsentRecord | None:
        """The last record for this channel and purpose at or before ``at`` (now), found in the store."""
        when = self._crm.now() if at is None else utc(at, "at")
        where = (
            (F("customer_id") == customer_id)
            & (F("channel") == Channel(channel))
            & (F("purpose") == check_identifier("purpose", purpose))
            & (F("at") <= when)
        )
        found = self.find(where, order_by=LATEST_FIRST, limit=1).items
        return found[0] if found else None

    def needs_consent(self, channel: str) -> bool:
        """Whether the channel's type asks for consent before outbound contact (unknown channels do)."""
        kind = self._crm.channels.get(Channel(channel))
        return True if kind is None else kind.needs_consent

    def allowed(self, customer_id: uuid.UUID, *, channel: str, purpose: str, at: dt.datetime | None = None) -> bool:
        """Whether the customer may be contacted on ``channel`` for ``purpose`` at ``at`` (now)."""
        when = self._crm.now() if at is None else utc(at, "at")
        return customer_id in self.allowed_among(
            [self._crm.customers.get(customer_id)], channel=channel, purpose=purpose, at=when
        )

    def allowed_among(
        self, customers: Sequence[Customer], *, channel: str, purpose: str, at: dt.datetime
    ) -> set[uuid.UUID]:
        """Which of these customers may be contacted: one query per 1,000 customers, latest record each."""
        when = utc(at, "at")
        needs = self.needs_consent(channel)
        allowed: set[uuid.UUID] = set()
        for batch in iter_batches(iter(customers), 1000):
            latest: dict[uuid.UUID, ConsentRecord] = {}
            recorded: set[uuid.UUID] = set()
            where = (
                F("customer_id").in_([c.id for c in batch])
                & (F("channel") == Channel(channel))
                & (F("purpose") == check_identifier("purpose", purpose))
            )
            for rec in self.stream(where, order_by=("customer_id", *LATEST_FIRST)):
                recorded.add(rec.customer_id)
                if rec.at <= when and rec.customer_id not in latest:
                    latest[rec.customer_id] = rec  # the first at or before the moment, in LATEST_FIRST order
            for customer in batch:
                found = latest.get(customer.id)
                flag = None
                if customer.id not in recorded and purpose == FLAG_PURPOSE:
                    flag = _flag(customer, channel, when)
                if decide(found, when, purpose=purpose, needs_consent=needs, flag=flag):
                    allowed.add(customer.id)
        return allowed

    def history(
        self, customer_id: uuid.UUID, *, channel: str | None = None, purpose: str | None = None
    ) -> list[ConsentRecord]:
        """Every consent record of the customer (of one channel or purpose when given), oldest first."""
        where: Expr = F("customer_id") == _uuids("customer_id", [customer_id])[0]
        if channel is not None:
            where = where & (F("channel") == Channel(channel))
        if purpose is not None:
            where = where & (F("purpose") == check_identifier("purpose", purpose))
        return list(self.stream(where, order_by=("at", "created_at")))

    def _keep_flags_in_step(self, rec: ConsentRecord) -> None:
        """Set the consent flag of the contact points the record is about (all on its channel, or its address)."""
        customer = self._crm.customers.get(rec.customer_id)
        field, points = _points(customer, rec.channel)
        if not points:
            return
        changed = False
        updated: list[object] = []
        for point in points:
            key = getattr(point, "address", None) or getattr(point, "number", None) or getattr(point, "handle", None)
            if rec.address is not None and (key is None or str(key).strip().lower() != rec.address):
                updated.append(point)
                continue
            current = point.consent_for(rec.channel)  # type: ignore[attr-defined]
            if current is not None and current.at is not None and current.at > rec.at:
                updated.append(point)  # a later flag stays: the flags are the current state
                continue
            flag = Consent(rec.channel, rec.granted, rec.at, rec.source)
            others = tuple(c for c in point.consent if c.channel != rec.channel)  # type: ignore[attr-defined]
            updated.append(attrs.evolve(point, consent=(*others, flag)))  # type: ignore[misc]
            changed = True
        if changed:
            changes: dict[str, Any] = {field: tuple(updated)}
            self._crm.customers.update(attrs.evolve(customer, **changes))

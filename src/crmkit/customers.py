"""Customers (people and organisations) and their contact points with per-channel consent."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Literal

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit._validation import AttributeValue
from crmkit.channels import Channel
from crmkit.lifecycle_model import Stage, to_stage
from crmkit.schema._registry import hand_tuned

__all__ = [
    "Consent",
    "Customer",
    "CustomerKind",
    "EmailAddress",
    "Handle",
    "Phone",
    "PostalAddress",
]

CustomerKind = Literal["person", "organization"]
CUSTOMER_KINDS = ("person", "organization")

# Deliberately simple: one @, no spaces, a dot in the domain; full RFC 5322 is not worth its cost here.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{3,32}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@schema.value_object(kw_only=False)
class Consent:
    """Whether the customer agreed to be contacted on a channel, when, and how we know."""

    channel: str = schema.text(check=Channel, personal=False)
    granted: bool = schema.boolean(personal=False)
    at: dt.datetime | None = schema.instant(default=None, personal=False)
    source: str | None = schema.text(default=None, blank=True, personal=False)


def _one_per_channel(items: tuple[Consent, ...]) -> tuple[Consent, ...]:
    seen: set[str] = set()
    for item in items:
        if item.channel in seen:
            raise ValidationError("consent", "has two entries for one channel", str(item.channel))
        seen.add(item.channel)
    return items


def _email_address(value: str) -> str:
    if not _EMAIL.fullmatch(value) or len(value) > 320:
        raise ValidationError("email", "is not a valid e-mail address", value)
    return value


def _phone_number(value: str) -> str:
    if not _PHONE.fullmatch(value) or sum(c.isdigit() for c in value) < 3:
        raise ValidationError("phone", "is not a valid phone number", value)
    return value


def _iso_country(value: str) -> str:
    if not _COUNTRY.fullmatch(value):
        raise ValidationError("country", "must be an ISO 3166-1 alpha-2 code such as DE", value)
    return value


def _at_least_one_line(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValidationError("lines", "an address needs at least one line", value)
    return value


class _ContactPoint:
    """Shared behaviour of contact points: consent lookup per channel."""

    __slots__ = ()

    consent: tuple[Consent, ...]

    def consent_for(self, channel: str) -> Consent | None:
        """The consent recorded for a channel, or None when nobody asked."""
        for item in self.consent:
            if item.channel == channel:
                return item
        return None


@schema.value_object(kw_only=False)
class EmailAddress(_ContactPoint):
    """An e-mail address; its consent usually covers the ``email`` channel."""

    address: str = schema.text(check=_email_address, personal="contact")
    label: str | None = schema.text(default=None, blank=True, personal=False)
    consent: tuple[Consent, ...] = schema.many(Consent, default=(), check=_one_per_channel, personal=False)


@schema.value_object(kw_only=False)
class Phone(_ContactPoint):
    """A phone number; consent may differ for ``phone`` and ``sms``."""

    number: str = schema.text(check=_phone_number, personal="contact")
    label: str | None = schema.text(default=None, blank=True, personal=False)
    consent: tuple[Consent, ...] = schema.many(Consent, default=(), check=_one_per_channel, personal=False)


@schema.value_object(kw_only=False)
class PostalAddress(_ContactPoint):
    """A postal address; consent covers the ``letter`` channel."""

    lines: tuple[str, ...] = schema.text_list(check=_at_least_one_line, personal="contact")
    city: str | None = schema.text(default=None, blank=True, personal="contact")
    postal_code: str | None = schema.text(default=None, blank=True, personal="contact")
    region: str | None = schema.text(default=None, blank=True, personal="contact")
    country: str | None = schema.text(default=None, check=_iso_country, personal=False)
    label: str | None = schema.text(default=None, blank=True, personal=False)
    consent: tuple[Consent, ...] = schema.many(Consent, default=(), check=_one_per_channel, personal=False)


@schema.value_object(kw_only=False)
class Handle(_ContactPoint):
    """A web or social-media handle (``network`` such as "linkedin", "web", "mastodon")."""

    network: str = schema.text(personal=False)
    handle: str = schema.text(personal="contact")
    consent: tuple[Consent, ...] = schema.many(Consent, default=(), check=_one_per_channel, personal=False)


@schema.aggregate("customers", kw_only=False)
class Customer(schema.Record):
    """A person or an organisation the business deals with, one to one.

    ``created_at``, ``updated_at`` and ``version`` are set by the store: a customer built
    in code has version 0 until it is added.
    """

    kind: CustomerKind = schema.text(choices=CUSTOMER_KINDS, sortable=True, personal=False)
    name: str = schema.text(sortable=True, personal="identity", search=True)
    emails: tuple[EmailAddress, ...] = schema.many(EmailAddress, default=(), personal="contact")
    phones: tuple[Phone, ...] = schema.many(Phone, default=(), personal="contact")
    addresses: tuple[PostalAddress, ...] = schema.many(PostalAddress, default=(), personal="contact")
    handles: tuple[Handle, ...] = schema.many(Handle, default=(), personal="contact")
    tags: frozenset[str] = schema.text_set(default=frozenset(), personal=False)
    owner: str | None = schema.text(default=None, blank=True, personal=False)
    attributes: Mapping[str, AttributeValue] = schema.attributes(personal="free_text")
    stage: Stage = schema.text(default=Stage.LEAD, check=to_stage, sortable=True, personal=False)

    def may_contact(self, channel: str) -> bool:
        """True when some contact point records granted consent for the channel (and none denies it)."""
        found = [c for point in self.contact_points() if (c := point.consent_for(channel)) is not None]
        return bool(found) and all(c.granted for c in found)

    def contact_points(self) -> tuple[_ContactPoint, ...]:
        """Every contact point, e-mails first, then phones, addresses and handles."""
        return (*self.emails, *self.phones, *self.addresses, *self.handles)


hand_tuned(Customer)

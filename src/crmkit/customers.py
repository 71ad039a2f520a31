"""Customers (people and organisations) and their contact points with per-channel consent."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit._validation import (
    AttributeValue,
    frozen_attributes,
    frozen_tuple,
    nonempty_text,
    of_type,
    one_of,
    optional_aware,
    optional_text,
    positive_int,
    text_of,
    text_set,
    uuid_field,
    valid_external_id,
)
from crmkit.channels import Channel
from crmkit.lifecycle_model import Stage, to_stage

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


def _to_lines(value: Any) -> Any:
    return frozen_tuple("lines", str)(value)


def _to_emails(value: Any) -> Any:
    return frozen_tuple("emails", EmailAddress)(value)


def _to_phones(value: Any) -> Any:
    return frozen_tuple("phones", Phone)(value)


def _to_addresses(value: Any) -> Any:
    return frozen_tuple("addresses", PostalAddress)(value)


def _to_handles(value: Any) -> Any:
    return frozen_tuple("handles", Handle)(value)


def _to_tags(value: Any) -> Any:
    return text_set("tags")(value)


@attrs.frozen
class Consent:
    """Whether the customer agreed to be contacted on a channel, when, and how we know."""

    channel: Channel = attrs.field(converter=Channel)
    granted: bool = attrs.field(validator=of_type(bool))
    at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    source: str | None = attrs.field(default=None, validator=optional_text)


def _consents(value: object) -> tuple[Consent, ...]:
    items = frozen_tuple("consent", Consent)(value)
    seen: set[str] = set()
    for item in items:
        if item.channel in seen:
            raise ValidationError("consent", "has two entries for one channel", str(item.channel))
        seen.add(item.channel)
    return items


def _email(value: object) -> str:
    text = text_of("email", value)
    if not _EMAIL.fullmatch(text) or len(text) > 320:
        raise ValidationError("email", "is not a valid e-mail address", value)
    return text


def _phone(value: object) -> str:
    text = text_of("phone", value)
    if not _PHONE.fullmatch(text) or sum(c.isdigit() for c in text) < 3:
        raise ValidationError("phone", "is not a valid phone number", value)
    return text


def _country(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
        raise ValidationError("country", "must be an ISO 3166-1 alpha-2 code such as DE", value)
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


@attrs.frozen
class EmailAddress(_ContactPoint):
    """An e-mail address; its consent usually covers the ``email`` channel."""

    address: str = attrs.field(converter=_email)
    label: str | None = attrs.field(default=None, validator=optional_text)
    consent: tuple[Consent, ...] = attrs.field(default=(), converter=_consents)


@attrs.frozen
class Phone(_ContactPoint):
    """A phone number; consent may differ for ``phone`` and ``sms``."""

    number: str = attrs.field(converter=_phone)
    label: str | None = attrs.field(default=None, validator=optional_text)
    consent: tuple[Consent, ...] = attrs.field(default=(), converter=_consents)


@attrs.frozen
class PostalAddress(_ContactPoint):
    """A postal address; consent covers the ``letter`` channel."""

    lines: tuple[str, ...] = attrs.field(converter=_to_lines)
    city: str | None = attrs.field(default=None, validator=optional_text)
    postal_code: str | None = attrs.field(default=None, validator=optional_text)
    region: str | None = attrs.field(default=None, validator=optional_text)
    country: str | None = attrs.field(default=None, converter=_country)
    label: str | None = attrs.field(default=None, validator=optional_text)
    consent: tuple[Consent, ...] = attrs.field(default=(), converter=_consents)

    @lines.validator
    def _check_lines(self, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
        if not value:
            raise ValidationError("lines", "an address needs at least one line", value)
        for line in value:
            text_of("lines", line)


@attrs.frozen
class Handle(_ContactPoint):
    """A web or social-media handle (``network`` such as "linkedin", "web", "mastodon")."""

    network: str = attrs.field(validator=nonempty_text)
    handle: str = attrs.field(validator=nonempty_text)
    consent: tuple[Consent, ...] = attrs.field(default=(), converter=_consents)


@attrs.frozen
class Customer:
    """A person or an organisation the business deals with, one to one.

    ``created_at``, ``updated_at`` and ``version`` are set by the store: a customer built
    in code has version 0 until it is added.
    """

    kind: CustomerKind = attrs.field(validator=one_of("kind", CUSTOMER_KINDS))
    name: str = attrs.field(validator=nonempty_text)
    emails: tuple[EmailAddress, ...] = attrs.field(default=(), converter=_to_emails)
    phones: tuple[Phone, ...] = attrs.field(default=(), converter=_to_phones)
    addresses: tuple[PostalAddress, ...] = attrs.field(default=(), converter=_to_addresses)
    handles: tuple[Handle, ...] = attrs.field(default=(), converter=_to_handles)
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_to_tags)
    owner: str | None = attrs.field(default=None, validator=optional_text)
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=frozen_attributes, hash=False)
    stage: Stage = attrs.field(default=Stage.LEAD, converter=to_stage)
    external_id: str | None = attrs.field(default=None, validator=valid_external_id)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)

    def may_contact(self, channel: str) -> bool:
        """True when some contact point records granted consent for the channel (and none denies it)."""
        found = [c for point in self.contact_points() if (c := point.consent_for(channel)) is not None]
        return bool(found) and all(c.granted for c in found)

    def contact_points(self) -> tuple[_ContactPoint, ...]:
        """Every contact point, e-mails first, then phones, addresses and handles."""
        return (*self.emails, *self.phones, *self.addresses, *self.handles)

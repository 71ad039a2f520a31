"""Marketing's declared aggregates: segments and their members, consent records, suppressions,
campaigns with their status sets, and campaign members with their status history."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit._validation import check_identifier
from crmkit.channels import Channel
from crmkit.query import Expr
from crmkit.schema._condition import condition_text

__all__ = [
    "AGGREGATES",
    "LEGAL_BASES",
    "SEGMENT_KINDS",
    "Campaign",
    "CampaignMember",
    "ConsentRecord",
    "MemberStatus",
    "Segment",
    "SegmentMember",
    "StatusChange",
    "Suppression",
]

SEGMENT_KINDS = ("dynamic", "static", "snapshot")
#: The lawful bases of GDPR article 6(1), as the consent records name them.
LEGAL_BASES = ("consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests")

_EXAMPLE_WHERE = schema.parse_condition('{"contains":"vip","field":"tags"}')


def _purpose(value: str) -> str:
    """A purpose is a name: ``marketing``, ``transactional``, ``profiling``..."""
    return check_identifier("purpose", value)


def _address(value: str) -> str:
    """Addresses are compared case-blind and without surrounding blanks (``Ada@X.org `` is ``ada@x.org``)."""
    return value.strip().lower()


@schema.aggregate("segments", indexes=[("name",)])
class Segment(schema.Record):
    """A set of customers: ``dynamic`` (a saved query evaluated in the store at every read),
    ``static`` (members added and removed explicitly) or ``snapshot`` (a dynamic one frozen at a moment)."""

    name: str = schema.text(sortable=True, personal=False)
    where: str | Expr | None = schema.condition(default=None, personal=False)
    kind: str = schema.text(default="dynamic", choices=SEGMENT_KINDS, sortable=True, personal=False)
    description: str | None = schema.text(default=None, blank=True, personal=False)
    #: ``snapshot``: the segment it froze, and when.
    source_id: uuid.UUID | None = schema.ref("segments", on_delete="set_null", default=None, personal=False)
    frozen_at: dt.datetime | None = schema.instant(default=None, personal=False)

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "kind": ("static", "dynamic"),
        "where": (condition_text(_EXAMPLE_WHERE),),
        "source_id": (None,),
        "frozen_at": (None,),
    }

    def __attrs_post_init__(self) -> None:
        if self.kind == "dynamic" and self.where is None:
            raise ValidationError("where", "a dynamic segment needs a condition (or kind='static')", None)
        if self.kind == "snapshot" and self.frozen_at is None:
            raise ValidationError("frozen_at", "a snapshot says when it was taken", None)

    @property
    def condition(self) -> Expr | None:
        """The saved query as an expression (None for a static segment without one)."""
        return None if self.where is None else schema.parse_condition(str(self.where))


@schema.aggregate("segment_members", time_field="added_at", indexes=[("segment_id", "customer_id")])
class SegmentMember(schema.Record):
    """A customer of a static or snapshot segment."""

    segment_id: uuid.UUID = schema.ref("segments", on_delete="cascade", personal=False)
    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    added_at: dt.datetime = schema.instant(sortable=True, personal=False)


@schema.aggregate(
    "consents",
    label="consent record",
    time_field="at",
    indexes=[("customer_id", "channel", "purpose", "at")],
)
class ConsentRecord(schema.Record):
    """One grant or withdrawal of consent to be contacted on a channel for a purpose: never edited,
    the history of a customer's consent is the list of these records."""

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    channel: str = schema.text(check=Channel, sortable=True, personal=False)
    purpose: str = schema.text(check=_purpose, sortable=True, personal=False)
    granted: bool = schema.boolean(personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    legal_basis: str = schema.text(default="consent", choices=LEGAL_BASES, personal=False)
    source: str | None = schema.text(default=None, blank=True, personal=False)
    expires_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    #: Double opt-in: a grant is ``pending`` until the customer confirms it (a later record).
    pending: bool = schema.boolean(default=False, personal=False)
    #: The contact point the record is about (an e-mail address, a number), when it is one.
    address: str | None = schema.text(default=None, check=_address, personal="contact")

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "channel": ("email", "sms"),
        "purpose": ("marketing", "transactional", "profiling"),
        "pending": (False,),
        "expires_at": (None,),
    }

    def __attrs_post_init__(self) -> None:
        if self.pending and not self.granted:
            raise ValidationError("pending", "only a grant waits for confirmation", self.pending)
        if self.expires_at is not None and self.expires_at <= self.at:
            raise ValidationError("expires_at", "must come after the consent was given", self.expires_at)


@schema.aggregate("suppressions", time_field="at", indexes=[("address",), ("customer_id",)])
class Suppression(schema.Record):
    """An address or customer not to contact: on every list (``list_name`` None: the global block
    list, kept by address so it survives re-imports) or only on one list (an opt-out)."""

    channel: str = schema.text(check=Channel, sortable=True, personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    address: str | None = schema.text(default=None, check=_address, sortable=True, personal="contact")
    customer_id: uuid.UUID | None = schema.ref("customers", on_delete="cascade", default=None, personal=False)
    list_name: str | None = schema.text(default=None, sortable=True, personal=False)
    reason: str | None = schema.text(default=None, blank=True, personal="free_text")

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "channel": ("email",),
        "address": ("someone@example.com", "+40 721 000 000"),
    }

    def __attrs_post_init__(self) -> None:
        if self.address is None and self.customer_id is None:
            raise ValidationError("address", "a suppression names an address, a customer or both", None)


@schema.value_object(kw_only=False)
class MemberStatus:
    """One status a campaign's members can have (Salesforce's CampaignMemberStatus): exactly one
    is the default a new member gets; ``responded`` ones count as responses; ``sends`` marks the
    status that says the member was contacted (a status named ``sent`` does so too)."""

    name: str = schema.text(personal=False)
    default: bool = schema.boolean(default=False, personal=False)
    responded: bool = schema.boolean(default=False, personal=False)
    sends: bool = schema.boolean(default=False, personal=False)

    @property
    def contacts(self) -> bool:
        """Whether giving a member this status means the member was contacted."""
        return self.sends or self.name == "sent"


def _status_set(statuses: tuple[MemberStatus, ...]) -> tuple[MemberStatus, ...]:
    names = [s.name for s in statuses]
    if len(set(names)) != len(names):
        raise ValidationError("statuses", "status names must differ", names)
    if sum(s.default for s in statuses) != 1:
        raise ValidationError("statuses", "exactly one status is the default", names)
    if not any(s.responded for s in statuses):
        raise ValidationError("statuses", "at least one status is a response (responded=True)", names)
    if any(s.default and (s.responded or s.contacts) for s in statuses):
        raise ValidationError("statuses", "the default status is neither a response nor a send", names)
    return statuses


_EXAMPLE_STATUSES = (
    MemberStatus("planned", default=True),
    MemberStatus("sent"),
    MemberStatus("responded", responded=True),
)


@schema.aggregate("campaigns", indexes=[("name",)])
class Campaign(schema.Record):
    """A marketing campaign: its channel and purpose, member statuses, parent, budget and dates."""

    name: str = schema.text(sortable=True, personal=False)
    channel: str = schema.text(check=Channel, sortable=True, personal=False)
    purpose: str = schema.text(default="marketing", check=_purpose, sortable=True, personal=False)
    statuses: tuple[MemberStatus, ...] = schema.many(
        MemberStatus, default=_EXAMPLE_STATUSES, check=_status_set, personal=False
    )
    #: The list its members opt out of (None: the campaign's own name).
    list_name: str | None = schema.text(default=None, sortable=True, personal=False)
    parent_id: uuid.UUID | None = schema.ref("campaigns", on_delete="set_null", default=None, personal=False)
    budget: Decimal | None = schema.money(default=None, personal=False)
    actual_cost: Decimal | None = schema.money(default=None, personal=False)
    currency: str | None = schema.currency(default=None, personal=False)
    starts_on: dt.date | None = schema.date(default=None, sortable=True, personal=False)
    ends_on: dt.date | None = schema.date(default=None, sortable=True, personal=False)

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "statuses": (_EXAMPLE_STATUSES,),
        "parent_id": (None,),
        "channel": ("email", "sms"),
        "purpose": ("marketing",),
    }

    @property
    def default_status(self) -> MemberStatus:
        """The status a new member gets."""
        return next(s for s in self.statuses if s.default)

    @property
    def opt_out_list(self) -> str:
        """The list an opt-out from this campaign applies to."""
        return self.list_name or self.name

    def status(self, name: str) -> MemberStatus:
        """The status of this name; ValidationError naming ``status`` when the campaign has none."""
        for s in self.statuses:
            if s.name == name:
                return s
        raise ValidationError("status", f"is not a status of campaign {self.name!r}", name)


@schema.value_object(kw_only=False)
class StatusChange:
    """A member's move to a status, and when."""

    status: str = schema.text(personal=False)
    at: dt.datetime = schema.instant(personal=False)


@schema.aggregate(
    "campaign_members",
    time_field="added_at",
    unique=[("campaign_id", "customer_id")],
    indexes=[("customer_id", "added_at"), ("campaign_id", "status")],
)
class CampaignMember(schema.Record):
    """A customer's membership of a campaign: the current status, its history and the first response."""

    campaign_id: uuid.UUID = schema.ref("campaigns", on_delete="cascade", personal=False)
    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    status: str = schema.text(sortable=True, personal=False)
    added_at: dt.datetime = schema.instant(sortable=True, personal=False)
    status_at: dt.datetime = schema.instant(sortable=True, personal=False)
    first_responded_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    #: When the member was first given a status that contacts (``sent``): set once, never moves.
    contacted_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    #: Every status the member had, oldest first (the first is the one it was added with).
    history: tuple[StatusChange, ...] = schema.many(StatusChange, default=(), personal=False)
    #: Held out at random by ``target`` as a control group: never contacted.
    control: bool = schema.boolean(default=False, personal=False)
    #: The address the member was (or will be) contacted at, as its contact point has it (``target``
    #: copies it in the store): compare it with suppressions and other addresses case-blind.
    address: str | None = schema.text(default=None, personal="contact")

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "status": ("planned",),
        "first_responded_at": (None,),
        "contacted_at": (None,),
        "history": ((),),
    }

    @property
    def responded(self) -> bool:
        """Whether the member ever had a responded status."""
        return self.first_responded_at is not None


AGGREGATES: tuple[type, ...] = (Segment, SegmentMember, ConsentRecord, Suppression, Campaign, CampaignMember)

"""Hypothesis strategies for crmkit's domain: valid customers, histories, money, hostile input.

Every strategy takes keyword-only arguments, and arguments that stand for a field take a
*strategy* for that field (``customers(kind=st.just("person"))``), so a test pins what it
cares about and leaves the rest random. Every value generated is valid for the domain
classes and can be added to a CRM as it is (version 0, no timestamps), with text in any
script (Persian, Romanian diacritics, emoji, combining marks), timezone-aware datetimes
in many offsets, exact Decimal money with up to six places and custom attributes of every
allowed type.

Installed with the ``testing`` extra, these strategies are also registered with
Hypothesis, so ``st.from_type(crmkit.Customer)`` works in any test suite.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crmkit._currencies import ISO_4217
from crmkit._errors import ValidationError
from crmkit._validation import MAX_MONEY, MAX_TEXT, MONEY_PLACES, AttributeValue
from crmkit.channels import BUILTIN_CHANNELS, Channel
from crmkit.crm import CRM
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.interactions import Interaction
from crmkit.lifecycle_model import Stage
from crmkit.relationships import BUILTIN_RELATIONSHIP_TYPES, Relationship
from crmkit.schema import AggregateSpec, FieldDef, Ref, declared_fields
from crmkit.testing.aggregates import REF_ANY_TARGETS, Targets, aggregate_spec, declared_examples
from crmkit.transactions import LineItem, Transaction

__all__ = [
    "CRMHistory",
    "OFFSETS",
    "UNICODE_SAMPLES",
    "attribute_values",
    "attributes",
    "aware_datetimes",
    "channels",
    "consents",
    "crm_histories",
    "currencies",
    "customers",
    "email_addresses",
    "external_ids",
    "field_values",
    "handles",
    "hostile_values",
    "identifiers",
    "interactions",
    "line_items",
    "money",
    "phones",
    "postal_addresses",
    "record_lists",
    "records",
    "relationship_kinds",
    "relationships",
    "stages",
    "tags",
    "texts",
    "transactions",
    "uuids",
    "value_objects",
]

T = TypeVar("T")

#: Text that has broken CRMs before: scripts, diacritics (comma-below and cedilla forms of
#: Romanian letters are different code points), zero-width joiners, emoji sequences,
#: right-to-left marks, characters outside the BMP, and strings that look like query syntax.
UNICODE_SAMPLES: tuple[str, ...] = (
    "Ada Lovelace",
    "Ștefan Țărănescu",
    "Şerban Ţepeş",
    "îngheţată şi ciocolată, mâine",
    "زهرا محمدی",
    "شرکت پارس\u200cنوین",
    "۱۲۳۴۵۶۷۸۹۰",
    "مشتری ویژه 😀",
    "😀",
    "👩\u200d👩\u200d👧\u200d👦 family",
    "🇮🇷🇷🇴",
    "e\u0301te\u0301",
    "Å Å",
    "ﬃ Straße İstanbul",
    "\u202eevil\u202c",
    "line one\nline two\ttabbed\r",
    "'; DROP TABLE customers; --",
    '{"$gt": ""}',
    "%_\\*?[]",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 \U0010fffd",
    "\uffe0\uffff",
    "中文客户",
    "Ελληνικά кириллица",
)

#: UTC offsets datetimes are generated in (Tehran, Bucharest, Kathmandu, the date line,
#: and a historical offset with seconds); the instant is what must survive a round trip.
OFFSETS: tuple[dt.timezone, ...] = (
    dt.timezone.utc,
    dt.timezone(dt.timedelta(hours=3, minutes=30)),
    dt.timezone(dt.timedelta(hours=2)),
    dt.timezone(dt.timedelta(hours=3)),
    dt.timezone(dt.timedelta(hours=5, minutes=45)),
    dt.timezone(dt.timedelta(hours=14)),
    dt.timezone(dt.timedelta(hours=-12)),
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=3, minutes=25, seconds=44)),
)

_ALPHABET = st.characters(codec=None, exclude_categories=["Cs"], exclude_characters="\x00")
_IDENT_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_COMMON_CURRENCIES = ("EUR", "USD", "RON", "IRR", "JPY", "GBP", "BHD", "CHF")
_MAX_AMOUNT = MAX_MONEY - Decimal(1).scaleb(-MONEY_PLACES)


def _or_default(value: SearchStrategy[T] | None, default: SearchStrategy[T]) -> SearchStrategy[T]:
    if value is None:
        return default
    if not isinstance(value, SearchStrategy):
        raise TypeError(f"expected a Hypothesis strategy (for example st.just({value!r})), got {value!r}")
    return value


# --------------------------------------------------------------------------- building blocks


def texts(*, min_size: int = 0, max_size: int = 60, blank: bool = True) -> SearchStrategy[str]:
    """Valid crmkit text: any Unicode except NUL and lone surrogates, often from UNICODE_SAMPLES.

    ``blank=False`` gives text with at least one non-whitespace character (names, products).
    """
    if max_size > MAX_TEXT or max_size < max(min_size, 1):
        raise ValueError(f"texts need 1 <= max_size <= {MAX_TEXT} and min_size <= max_size")
    parts = [st.text(_ALPHABET, min_size=min_size, max_size=max_size)]
    fitting = [s for s in UNICODE_SAMPLES if min_size <= len(s) <= max_size]
    if fitting:
        parts.append(st.sampled_from(fitting))
    if max_size >= 20:
        words = st.sampled_from(UNICODE_SAMPLES) | st.text(_ALPHABET, max_size=8)
        joined = st.lists(words, min_size=1, max_size=4).map(lambda w: " ".join(w)[:max_size])
        parts.append(joined.filter(lambda s: len(s) >= min_size) if min_size else joined)
    strategy = st.one_of(parts)
    if not blank:
        strategy = strategy.map(lambda s: s if s.strip() else ("_" + s)[:max_size])
    return strategy


def identifiers(*, max_size: int = 20) -> SearchStrategy[str]:
    """Attribute keys, channel and relationship names: ASCII letters, digits and _ (often a few common keys)."""
    if not 1 <= max_size <= 63:
        raise ValueError("identifiers are 1 to 63 characters")
    first = st.sampled_from(_IDENT_START)
    rest = st.text(_IDENT_START + "0123456789", max_size=max_size - 1)
    common = st.sampled_from([k for k in ("score", "tier", "a", "b", "_x", "Zeta") if len(k) <= max_size])
    return common | st.tuples(first, rest).map("".join)


def uuids() -> SearchStrategy[uuid.UUID]:
    """Record ids: any UUID (crmkit creates version 7 ones, stores must accept every version)."""
    return st.uuids() | st.integers(0, 2**128 - 1).map(lambda n: uuid.UUID(int=n))


def aware_datetimes(
    *,
    min_value: dt.datetime = dt.datetime(1, 1, 2),
    max_value: dt.datetime = dt.datetime(9999, 12, 30),
    timezones: SearchStrategy[dt.tzinfo] | None = None,
) -> SearchStrategy[dt.datetime]:
    """Timezone-aware datetimes with microseconds, in the fixed OFFSETS (or ``timezones``).

    Bounds are naive wall-clock times; the defaults stay a day inside Python's range so
    every offset converts to UTC.
    """
    zones = _or_default(timezones, st.sampled_from(OFFSETS))
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=zones)


def money(
    *,
    min_value: Decimal | int = 0,
    max_value: Decimal | int = _MAX_AMOUNT,
    places: int = MONEY_PLACES,
) -> SearchStrategy[Decimal]:
    """Exact Decimal amounts with 0 to ``places`` decimal places, |amount| < 10**15."""
    if not 0 <= places <= MONEY_PLACES:
        raise ValueError(f"money has 0 to {MONEY_PLACES} decimal places")
    low, high = Decimal(min_value), Decimal(max_value)
    if low <= -MAX_MONEY or high >= MAX_MONEY or low > high:
        raise ValueError(f"money bounds must satisfy -{MAX_MONEY} < min_value <= max_value < {MAX_MONEY}")

    def with_places(p: int) -> SearchStrategy[Decimal]:
        return st.decimals(min_value=low, max_value=high, places=p, allow_nan=False, allow_infinity=False)

    return st.integers(0, places).flatmap(with_places)


def attribute_values() -> SearchStrategy[AttributeValue]:
    """One custom attribute value of each allowed type: str, int, float, bool, date, datetime, Decimal."""
    return st.one_of(
        texts(max_size=40),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.dates(),
        aware_datetimes(),
        money(min_value=-_MAX_AMOUNT),
    )


def attributes(
    *,
    keys: SearchStrategy[str] | None = None,
    values: SearchStrategy[AttributeValue] | None = None,
    min_size: int = 0,
    max_size: int = 5,
) -> SearchStrategy[dict[str, AttributeValue]]:
    """Custom attribute mappings (identifier keys, values of every allowed type)."""
    return st.dictionaries(
        _or_default(keys, identifiers()), _or_default(values, attribute_values()), min_size=min_size, max_size=max_size
    )


def tags(*, min_size: int = 0, max_size: int = 4) -> SearchStrategy[frozenset[str]]:
    """Sets of tags: non-blank text of at most 200 characters."""
    tag = st.sampled_from(("vip", "VIP", "vip2", "مشتری", "ș", "😀", "b2b")) | texts(max_size=30, blank=False)
    return st.frozensets(tag, min_size=min_size, max_size=max_size)


_attributes = attributes
_tags = tags


def external_ids() -> SearchStrategy[str]:
    """External ids (keys from another system): 1 to 200 characters, not blank."""
    return texts(min_size=1, max_size=200, blank=False)


def channels() -> SearchStrategy[Channel]:
    """The built-in interaction channels (always registered)."""
    return st.sampled_from([c.name for c in BUILTIN_CHANNELS])


def currencies() -> SearchStrategy[str]:
    """ISO 4217 currency codes, common ones first."""
    return st.sampled_from(_COMMON_CURRENCIES) | st.sampled_from(sorted(ISO_4217))


def stages() -> SearchStrategy[Stage]:
    """Life-cycle stages."""
    return st.sampled_from(tuple(Stage))


def relationship_kinds() -> SearchStrategy[str]:
    """Built-in relationship type names, as stored (never the inverse names)."""
    return st.sampled_from([t.name for t in BUILTIN_RELATIONSHIP_TYPES])


def _optional(strategy: SearchStrategy[T]) -> SearchStrategy[T | None]:
    return st.none() | strategy


# --------------------------------------------------------------------------- contact points


def consents(
    *,
    channel: SearchStrategy[str] | None = None,
    granted: SearchStrategy[bool] | None = None,
    at: SearchStrategy[dt.datetime | None] | None = None,
    source: SearchStrategy[str | None] | None = None,
) -> SearchStrategy[Consent]:
    """Consent to be contacted on a channel, granted or refused, with when and how we know."""
    return st.builds(
        Consent,
        channel=_or_default(channel, channels()),
        granted=_or_default(granted, st.booleans()),
        at=_or_default(at, _optional(aware_datetimes())),
        source=_or_default(source, _optional(texts(max_size=30))),
    )


def _consent_lists() -> SearchStrategy[list[Consent]]:
    return st.lists(consents(), max_size=3, unique_by=lambda c: str(c.channel))


def _email_text() -> SearchStrategy[str]:
    part = st.text(
        st.characters(codec=None, exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters="@.\x00"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: not any(c.isspace() for c in s))
    samples = st.sampled_from(("ada@example.com", "ștefan.țărănescu@exemplu.ro", "زهرا@مثال.ایران", "😀+tag@x.io"))
    built = st.tuples(part, part, part).map(lambda p: f"{p[0]}@{p[1]}.{p[2]}")
    return samples | built


def email_addresses(
    *,
    address: SearchStrategy[str] | None = None,
    label: SearchStrategy[str | None] | None = None,
    consent: SearchStrategy[Sequence[Consent]] | None = None,
) -> SearchStrategy[EmailAddress]:
    """E-mail addresses, international ones included, with consent per channel."""
    return st.builds(
        EmailAddress,
        address=_or_default(address, _email_text()),
        label=_or_default(label, _optional(texts(max_size=20))),
        consent=_or_default(consent, _consent_lists()),
    )


def phones(
    *,
    number: SearchStrategy[str] | None = None,
    label: SearchStrategy[str | None] | None = None,
    consent: SearchStrategy[Sequence[Consent]] | None = None,
) -> SearchStrategy[Phone]:
    """Phone numbers (digits, spaces, + ( ) . - /) with consent per channel."""
    number_text = st.tuples(
        st.sampled_from(("", "+")),
        st.text("0123456789", min_size=3, max_size=3),
        st.text("0123456789 ().-/", max_size=28),
    ).map("".join)
    return st.builds(
        Phone,
        number=_or_default(number, st.sampled_from(("+40 21 123 4567", "+98 (21) 8888-0000")) | number_text),
        label=_or_default(label, _optional(texts(max_size=20))),
        consent=_or_default(consent, _consent_lists()),
    )


def postal_addresses(
    *,
    lines: SearchStrategy[Sequence[str]] | None = None,
    city: SearchStrategy[str | None] | None = None,
    postal_code: SearchStrategy[str | None] | None = None,
    region: SearchStrategy[str | None] | None = None,
    country: SearchStrategy[str | None] | None = None,
    label: SearchStrategy[str | None] | None = None,
    consent: SearchStrategy[Sequence[Consent]] | None = None,
) -> SearchStrategy[PostalAddress]:
    """Postal addresses: at least one line, any script, ISO country code or none."""
    return st.builds(
        PostalAddress,
        lines=_or_default(lines, st.lists(texts(max_size=40, blank=False), min_size=1, max_size=3)),
        city=_or_default(city, _optional(texts(max_size=30))),
        postal_code=_or_default(postal_code, _optional(texts(max_size=10))),
        region=_or_default(region, _optional(texts(max_size=30))),
        country=_or_default(country, _optional(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2))),
        label=_or_default(label, _optional(texts(max_size=20))),
        consent=_or_default(consent, _consent_lists()),
    )


def handles(
    *,
    network: SearchStrategy[str] | None = None,
    handle: SearchStrategy[str] | None = None,
    consent: SearchStrategy[Sequence[Consent]] | None = None,
) -> SearchStrategy[Handle]:
    """Web and social-media handles with consent per channel."""
    return st.builds(
        Handle,
        network=_or_default(
            network, st.sampled_from(("linkedin", "web", "mastodon")) | texts(max_size=20, blank=False)
        ),
        handle=_or_default(handle, texts(max_size=40, blank=False)),
        consent=_or_default(consent, _consent_lists()),
    )


_phones = phones
_handles = handles


# --------------------------------------------------------------------------- aggregates


def customers(
    *,
    kind: SearchStrategy[str] | None = None,
    name: SearchStrategy[str] | None = None,
    emails: SearchStrategy[Sequence[EmailAddress]] | None = None,
    phones: SearchStrategy[Sequence[Phone]] | None = None,
    addresses: SearchStrategy[Sequence[PostalAddress]] | None = None,
    handles: SearchStrategy[Sequence[Handle]] | None = None,
    tags: SearchStrategy[frozenset[str]] | None = None,
    owner: SearchStrategy[str | None] | None = None,
    attributes: SearchStrategy[dict[str, AttributeValue]] | None = None,
    stage: SearchStrategy[Stage] | None = None,
    external_id: SearchStrategy[str | None] | None = None,
    id: SearchStrategy[uuid.UUID] | None = None,
    created_at: SearchStrategy[dt.datetime | None] | None = None,
) -> SearchStrategy[Customer]:
    """New customers (version 0), people and organisations, with contact points and consent."""
    return st.builds(
        Customer,
        kind=_or_default(kind, st.sampled_from(("person", "organization"))),
        name=_or_default(name, texts(max_size=80, blank=False)),
        emails=_or_default(emails, st.lists(email_addresses(), max_size=2)),
        phones=_or_default(phones, st.lists(_phones(), max_size=2)),
        addresses=_or_default(addresses, st.lists(postal_addresses(), max_size=2)),
        handles=_or_default(handles, st.lists(_handles(), max_size=2)),
        tags=_or_default(tags, _tags()),
        owner=_or_default(owner, _optional(texts(max_size=30))),
        attributes=_or_default(attributes, _attributes()),
        stage=_or_default(stage, stages()),
        external_id=_or_default(external_id, _optional(external_ids())),
        id=_or_default(id, uuids()),
        created_at=_or_default(created_at, st.none()),
    )


def line_items(
    *,
    product: SearchStrategy[str] | None = None,
    quantity: SearchStrategy[Decimal] | None = None,
    unit_price: SearchStrategy[Decimal] | None = None,
) -> SearchStrategy[LineItem]:
    """Product lines: positive quantity, non-negative unit price, both exact Decimals."""
    return st.builds(
        LineItem,
        product=_or_default(product, texts(max_size=40, blank=False)),
        quantity=_or_default(quantity, money(min_value=Decimal("0.000001"), max_value=10**6)),
        unit_price=_or_default(unit_price, money(max_value=10**9)),
    )


_customers = customers
_line_items = line_items


def interactions(
    *,
    customer_id: SearchStrategy[uuid.UUID] | None = None,
    channel: SearchStrategy[str] | None = None,
    direction: SearchStrategy[str] | None = None,
    occurred_at: SearchStrategy[dt.datetime] | None = None,
    subject: SearchStrategy[str | None] | None = None,
    summary: SearchStrategy[str | None] | None = None,
    outcome: SearchStrategy[str | None] | None = None,
    participants: SearchStrategy[frozenset[str]] | None = None,
    attributes: SearchStrategy[dict[str, AttributeValue]] | None = None,
    external_id: SearchStrategy[str | None] | None = None,
    id: SearchStrategy[uuid.UUID] | None = None,
) -> SearchStrategy[Interaction]:
    """New interactions on built-in channels (pass ``customer_id`` to attach them to a customer)."""
    return st.builds(
        Interaction,
        customer_id=_or_default(customer_id, uuids()),
        channel=_or_default(channel, channels()),
        direction=_or_default(direction, st.sampled_from(("inbound", "outbound"))),
        occurred_at=_or_default(occurred_at, aware_datetimes()),
        subject=_or_default(subject, _optional(texts(max_size=60))),
        summary=_or_default(summary, _optional(texts(max_size=400))),
        outcome=_or_default(outcome, _optional(texts(max_size=30))),
        participants=_or_default(participants, tags()),
        attributes=_or_default(attributes, _attributes()),
        external_id=_or_default(external_id, _optional(external_ids())),
        id=_or_default(id, uuids()),
    )


def transactions(
    *,
    customer_id: SearchStrategy[uuid.UUID] | None = None,
    occurred_at: SearchStrategy[dt.datetime] | None = None,
    amount: SearchStrategy[Decimal] | None = None,
    currency: SearchStrategy[str] | None = None,
    kind: SearchStrategy[str] | None = None,
    line_items: SearchStrategy[Sequence[LineItem]] | None = None,
    attributes: SearchStrategy[dict[str, AttributeValue]] | None = None,
    external_id: SearchStrategy[str | None] | None = None,
    id: SearchStrategy[uuid.UUID] | None = None,
    order_id: SearchStrategy[uuid.UUID | None] | None = None,
) -> SearchStrategy[Transaction]:
    """New purchases and refunds in exact money (pass ``customer_id`` to attach them to a customer).

    They are for no order unless ``order_id`` draws the ids of stored orders (a random id
    would name an order the store does not hold).
    """
    return st.builds(
        Transaction,
        customer_id=_or_default(customer_id, uuids()),
        occurred_at=_or_default(occurred_at, aware_datetimes()),
        amount=_or_default(amount, money()),
        currency=_or_default(currency, currencies()),
        kind=_or_default(kind, st.sampled_from(("purchase", "refund"))),
        line_items=_or_default(line_items, st.lists(_line_items(), max_size=3)),
        attributes=_or_default(attributes, _attributes()),
        external_id=_or_default(external_id, _optional(external_ids())),
        id=_or_default(id, uuids()),
        order_id=_or_default(order_id, st.none()),
    )


@st.composite
def _relationship(
    draw: st.DrawFn,
    source_id: SearchStrategy[uuid.UUID],
    target_id: SearchStrategy[uuid.UUID],
    kind: SearchStrategy[str],
    role: SearchStrategy[str | None],
    since: SearchStrategy[dt.date | None],
    until: SearchStrategy[dt.date | None],
    attributes: SearchStrategy[dict[str, AttributeValue]],
    id: SearchStrategy[uuid.UUID],
) -> Relationship:
    source = draw(source_id)
    target = draw(target_id.filter(lambda t: t != source))
    start, end = draw(since), draw(until)
    if start is not None and end is not None and end < start:
        start, end = end, start
    return Relationship(
        source_id=source,
        target_id=target,
        kind=draw(kind),
        role=draw(role),
        since=start,
        until=end,
        attributes=draw(attributes),
        id=draw(id),
    )


def relationships(
    *,
    source_id: SearchStrategy[uuid.UUID] | None = None,
    target_id: SearchStrategy[uuid.UUID] | None = None,
    kind: SearchStrategy[str] | None = None,
    role: SearchStrategy[str | None] | None = None,
    since: SearchStrategy[dt.date | None] | None = None,
    until: SearchStrategy[dt.date | None] | None = None,
    attributes: SearchStrategy[dict[str, AttributeValue]] | None = None,
    id: SearchStrategy[uuid.UUID] | None = None,
) -> SearchStrategy[Relationship]:
    """New relationships of built-in types between two different customers, ``since <= until``."""
    day = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
    return _relationship(
        _or_default(source_id, uuids()),
        _or_default(target_id, uuids()),
        _or_default(kind, relationship_kinds()),
        _or_default(role, _optional(texts(max_size=30))),
        _or_default(since, _optional(day)),
        _or_default(until, _optional(day)),
        _or_default(attributes, _attributes(max_size=3)),
        _or_default(id, uuids()),
    )


# --------------------------------------------------------------------------- histories


@attrs.frozen
class CRMHistory:
    """A consistent set of records: every interaction, transaction and relationship refers to one of ``customers``."""

    customers: tuple[Customer, ...]
    relationships: tuple[Relationship, ...]
    interactions: tuple[Interaction, ...]
    transactions: tuple[Transaction, ...]

    def load(self, crm: CRM) -> CRMHistory:
        """Add everything to ``crm`` (customers first) and return the stored copies."""
        return CRMHistory(
            customers=tuple(crm.customers.add(c) for c in self.customers),
            relationships=tuple(crm.relationships.add(r) for r in self.relationships),
            interactions=tuple(crm.interactions.add(i) for i in self.interactions),
            transactions=tuple(crm.transactions.add(t) for t in self.transactions),
        )

    def of(self, customer_id: uuid.UUID) -> tuple[list[Interaction], list[Transaction]]:
        """The interactions and transactions of one customer."""
        return (
            [i for i in self.interactions if i.customer_id == customer_id],
            [t for t in self.transactions if t.customer_id == customer_id],
        )


def _unique_key(record: Any) -> Any:
    return record.external_id if record.external_id is not None else record.id


@st.composite
def _histories(
    draw: st.DrawFn,
    min_size: int,
    max_size: int,
    max_relationships: int,
    max_interactions: int,
    max_transactions: int,
    customer: SearchStrategy[Customer],
    occurred_at: SearchStrategy[dt.datetime],
    currency: SearchStrategy[str],
    amount: SearchStrategy[Decimal],
) -> CRMHistory:
    people = draw(st.lists(customer, min_size=min_size, max_size=max_size, unique_by=(lambda c: c.id, _unique_key)))
    if not people:
        return CRMHistory((), (), (), ())
    owner = st.sampled_from([c.id for c in people])
    edges: list[Relationship] = []
    if len(people) >= 2:
        edges = draw(
            st.lists(
                relationships(source_id=owner, target_id=owner, attributes=attributes(max_size=2)),
                max_size=max_relationships,
                # one edge per natural key, as the stores keep them
                unique_by=(lambda r: r.id, lambda r: (r.source_id, r.target_id, r.kind, r.since)),
            )
        )
    contacts = draw(
        st.lists(
            interactions(customer_id=owner, occurred_at=occurred_at, attributes=attributes(max_size=2)),
            max_size=max_interactions,
            unique_by=(lambda i: i.id, _unique_key),
        )
    )
    money_moves = draw(
        st.lists(
            transactions(
                customer_id=owner,
                occurred_at=occurred_at,
                currency=currency,
                amount=amount,
                attributes=attributes(max_size=2),
                line_items=st.lists(line_items(), max_size=2),
            ),
            max_size=max_transactions,
            unique_by=(lambda t: t.id, _unique_key),
        )
    )
    return CRMHistory(tuple(people), tuple(edges), tuple(contacts), tuple(money_moves))


def crm_histories(
    *,
    min_size: int = 0,
    max_size: int = 5,
    max_relationships: int = 6,
    max_interactions: int = 10,
    max_transactions: int = 10,
    customers: SearchStrategy[Customer] | None = None,
    occurred_at: SearchStrategy[dt.datetime] | None = None,
    currency: SearchStrategy[str] | None = None,
    amount: SearchStrategy[Decimal] | None = None,
) -> SearchStrategy[CRMHistory]:
    """Consistent CRM data: ``min_size`` to ``max_size`` customers with their relationships,
    interactions and transactions, which refer only to those customers.

    Ids and external ids are unique per kind, so ``history.load(crm)`` always succeeds on
    an empty tenant. ``occurred_at``, ``currency`` and ``amount`` shape the interactions
    and transactions (e.g. a few currencies and recent dates for purchase summaries).
    """
    return _histories(
        min_size,
        max_size,
        max_relationships,
        max_interactions,
        max_transactions,
        _or_default(customers, _customers(emails=st.lists(email_addresses(), max_size=1))),
        _or_default(occurred_at, aware_datetimes()),
        _or_default(currency, currencies()),
        _or_default(amount, money()),
    )


# --------------------------------------------------------------------------- hostile input


class _StrSubclass(str):
    """A str subclass: crmkit must treat it as text or refuse it cleanly."""


def _too_long_text() -> str:
    return "x" * (MAX_TEXT + 1)


def hostile_values() -> SearchStrategy[Any]:
    """Values of the wrong type, size or shape for almost any field.

    Constructors and queries must either accept them or raise ``crmkit.ValidationError``
    (any ``crmkit.CRMError``); nothing else may escape.
    """
    plus14 = dt.timezone(dt.timedelta(hours=14))
    minus12 = dt.timezone(dt.timedelta(hours=-12))
    fixed = [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        -(2**64),
        1.5,
        math.nan,
        math.inf,
        -math.inf,
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("1E+30"),
        Decimal("1E-7"),
        Decimal("-0.5"),
        "",
        " \t\n",
        "\x00",
        "a\x00b",
        "\ud800",
        "not-an-identifier!",
        _StrSubclass("subclass"),
        b"bytes",
        bytearray(b"x"),
        [],
        [1, 2],
        ["\x00"],
        [["nested"]],
        (),
        {},
        {"ok": 1},
        {"bad key": 1},
        {1: 2},
        {"nested": {"a": 1}},
        {"x": [1]},
        set(),
        frozenset({1}),
        object(),
        dt.datetime(2020, 1, 1, 12, 0),
        dt.datetime(1, 1, 1, tzinfo=plus14),
        dt.datetime(9999, 12, 31, 23, 59, tzinfo=minus12),
        dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
        dt.date(2020, 1, 1),
        dt.time(12, 0),
        dt.timedelta(days=-1),
        uuid.UUID(int=0),
        "2020-01-01",
        "0e0b7b5e-6f0c-4a53-9c8d-5a6c1d2f3e4a",
        Stage.LEAD,
        "lead",
        "person",
        "EUR",
        "eur",
        "works_for",
        "employs",
        "email",
    ]
    return st.one_of(
        st.sampled_from(fixed),
        st.builds(_too_long_text),
        st.text(max_size=5),
        st.integers(),
        st.floats(),
        st.decimals(),
        st.datetimes(),
    )


# --------------------------------------------------------------------------- declared aggregates


def field_values(fd: FieldDef, *, targets: Targets | None = None) -> SearchStrategy[Any]:
    """Valid values of one declared field (``schema.text()``, ``schema.many(Seat)``...), None at times when it may be.

    Text, money, datetimes and attributes come from the strategies above; a ``ref`` takes
    one of ``targets`` (``crmkit.testing.aggregates.add_targets``), else any UUID.
    """
    kind = fd.kind
    strategy: SearchStrategy[Any]
    if fd.choices is not None:
        strategy = st.sampled_from(fd.choices)
    elif kind == "text":
        strategy = texts(max_size=60, blank=fd.blank)
    elif kind == "integer":
        strategy = st.integers(-(2**63), 2**63 - 1)
    elif kind == "boolean":
        strategy = st.booleans()
    elif kind == "money":
        strategy = money(min_value=-_MAX_AMOUNT if fd.negative else 0)
    elif kind == "currency":
        strategy = currencies()
    elif kind == "instant":
        strategy = aware_datetimes()
    elif kind == "date":
        strategy = st.dates()
    elif kind == "uuid":
        strategy = uuids()
    elif kind == "enum":
        strategy = st.sampled_from(list(fd.type))
    elif kind == "text_set":
        strategy = tags()
    elif kind == "text_list":
        strategy = st.lists(texts(min_size=1, max_size=30, blank=False), max_size=3).map(tuple)
    elif kind == "many":
        strategy = st.lists(value_objects(fd.type), max_size=3).map(tuple)
    elif kind == "attributes":
        strategy = attributes(max_size=4)
    elif kind == "binary":
        strategy = st.binary(max_size=16)
    elif kind == "ref":
        assert fd.target is not None
        ids = targets.of(fd.target) if targets is not None else ()
        if not ids and targets is not None and fd.nullable:
            return st.none()  # nothing to point at (the aggregate itself, say): the field stays empty
        strategy = st.sampled_from(ids) if ids else uuids()
    elif kind == "ref_any":
        refs = targets.refs if targets is not None else ()
        strategy = st.sampled_from(refs) if refs else st.builds(Ref, st.sampled_from(REF_ANY_TARGETS), uuids())
    else:
        raise ValueError(f"{fd.name or 'field'}: no strategy for {kind} fields")
    if fd.check is not None:  # a field's own check (an e-mail address, say): keep the values it accepts
        strategy = strategy.filter(partial(_passes, fd.check))
    return _optional(strategy) if fd.nullable else strategy


def _drawn(fd: FieldDef, examples: Mapping[str, tuple[Any, ...]], targets: Targets | None) -> SearchStrategy[Any]:
    """A field's values: those its declaration lists (``__crmkit_examples__``), else any of its kind."""
    values = examples.get(fd.name)
    return st.sampled_from(values) if values else field_values(fd, targets=targets)


def _passes(check: Callable[[Any], Any], value: Any) -> bool:
    try:
        check(value)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


_VALUE_OBJECTS: dict[type, SearchStrategy[Any]] = {}


def value_objects(cls: type, **fields: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """Instances of a ``@schema.value_object`` class, each field drawn from its kind (nested ``many`` too).

    ``fields`` pins fields with strategies of their own (``value_objects(Seat, email=st.just("a@b.c"))``).
    """
    if not getattr(cls, "__crmkit_value_object__", False):
        raise TypeError(f"{cls!r} is not declared with @schema.value_object")
    defs = {fd.name: fd for fd in declared_fields(cls)}
    unknown = set(fields) - set(defs)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    if not fields and cls in _VALUE_OBJECTS:
        return _VALUE_OBJECTS[cls]
    if cls in _BUILTIN_VALUE_OBJECTS:  # crmkit's own, whose checks random text would rarely pass
        return _BUILTIN_VALUE_OBJECTS[cls](**fields)
    examples = declared_examples(cls)
    strategy = st.builds(
        cls, **{name: _or_default(fields.get(name), _drawn(fd, examples, None)) for name, fd in defs.items()}
    )
    if not fields:
        _VALUE_OBJECTS[cls] = strategy
    return strategy


def records(
    aggregate: AggregateSpec | type,
    *,
    targets: Targets | None = None,
    id: SearchStrategy[uuid.UUID] | None = None,
    external_id: SearchStrategy[str | None] | None = None,
    **fields: SearchStrategy[Any],
) -> SearchStrategy[Any]:
    """New records (version 0) of any declared aggregate, by class or AggregateSpec, derived from its fields.

    Every kind of field gets valid values (value objects through ``value_objects``,
    nullable fields None at times). References point at ``targets``, the records
    ``crmkit.testing.aggregates.add_targets(crm, aggregate)`` stored, so the records can
    be added to that CRM; without targets they hold random ids. ``fields`` pin fields
    with strategies (``records(Subscription, plan=st.just("pro"))``).
    """
    spec = aggregate_spec(aggregate)
    unknown = set(fields) - set(spec.declared)
    if unknown:
        raise TypeError(f"{spec.cls.__name__} has no field {', '.join(sorted(unknown))}")
    if spec.cls in _BUILTIN_RECORDS:  # crmkit's own: their strategies know channels, stages, e-mails...
        for name, fd in spec.declared.items():
            if fd.kind == "ref" and name not in fields and targets is not None and targets.of(fd.target or ""):
                stored = st.sampled_from(targets.of(fd.target or ""))
                fields[name] = _optional(stored) if fd.nullable else stored
        built = _BUILTIN_RECORDS[spec.cls](**fields)
        if id is not None or external_id is not None:
            return st.tuples(built, _or_default(id, uuids()), _or_default(external_id, _optional(external_ids()))).map(
                lambda t: attrs.evolve(t[0], id=t[1], external_id=t[2])
            )
        return built
    examples = declared_examples(spec.cls)
    drawn = {
        name: _or_default(fields.get(name), _drawn(fd, examples, targets)) for name, fd in spec.declared.items()
    }
    return st.builds(
        spec.cls, id=_or_default(id, uuids()), external_id=_or_default(external_id, _optional(external_ids())), **drawn
    )


def record_lists(
    aggregate: AggregateSpec | type,
    *,
    targets: Targets | None = None,
    min_size: int = 0,
    max_size: int = 5,
    **fields: SearchStrategy[Any],
) -> SearchStrategy[list[Any]]:
    """Lists of new records that can all be added to one tenant: ids, external ids and unique keys differ."""
    spec = aggregate_spec(aggregate)
    keyed: list[Callable[[Any], Any]] = [lambda r: r.id, _unique_key]
    keyed += [partial(_declared_key, spec, key) for key in spec.unique]
    return st.lists(
        records(spec, targets=targets, **fields), min_size=min_size, max_size=max_size, unique_by=tuple(keyed)
    )


_BUILTIN_VALUE_OBJECTS: dict[type, Callable[..., SearchStrategy[Any]]] = {
    Consent: consents,
    EmailAddress: email_addresses,
    Phone: phones,
    PostalAddress: postal_addresses,
    Handle: handles,
    LineItem: line_items,
}
_BUILTIN_RECORDS: dict[type, Callable[..., SearchStrategy[Any]]] = {
    Customer: customers,
    Interaction: interactions,
    Transaction: transactions,
    Relationship: relationships,
}


def _declared_key(spec: AggregateSpec, key: tuple[str, ...], record: Any) -> Any:
    values = tuple(spec.record_value(record, name) for name in key)
    return values if all(v is not None for v in values) else ("no key", record.id)

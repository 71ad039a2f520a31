"""Domain records to BSON documents and back: the only place that knows the stored shapes.

Choices (the storage chapter of the docs explains them for users):

* datetimes are Int64 microseconds since the Unix epoch (UTC). BSON dates hold only
  milliseconds; an integer keeps every microsecond, sorts and compares exactly in one
  field (keyset pagination needs that), and splits into UTC days with integer arithmetic;
* dates (``since``, ``until``) are BSON dates at UTC midnight;
* money and other Decimals are Decimal128, which keeps value and exponent exactly;
* UUIDs are BSON Binary subtype 4 (the standard representation);
* attribute values keep their Python type: str, bool, float, Int64, Decimal128 and BSON
  date (for a ``date``) are distinct BSON types already; a ``datetime`` becomes the
  sub-document ``{"us": Int64}``, the only sub-documents attributes ever hold, so
  comparisons never mix kinds (BSON compares values of one type bracket only);
* None and empty collections are left out of the document.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from bson import Decimal128, Int64
from bson.binary import Binary

from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.entities import CUSTOMERS, INTERACTIONS, RELATIONSHIPS, TRANSACTIONS, EntitySpec
from crmkit.interactions import Interaction
from crmkit.relationships import Relationship
from crmkit.search import fold
from crmkit.transactions import LineItem, Transaction

__all__ = [
    "CODECS",
    "Codec",
    "as_binary",
    "bson_date",
    "decimal",
    "decimal128",
    "encode_attribute",
    "from_bson_date",
    "from_micros",
    "micros",
]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DAY_US = 86_400_000_000


def micros(value: dt.datetime) -> Int64:
    """Microseconds since the epoch of an aware datetime, exactly."""
    delta = value - EPOCH
    return Int64((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def from_micros(value: int) -> dt.datetime:
    """The aware UTC datetime of microseconds since the epoch."""
    days, rest = divmod(int(value), _DAY_US)
    return EPOCH + dt.timedelta(days=days, microseconds=rest)


def bson_date(value: dt.date) -> dt.datetime:
    """A date as the naive UTC midnight pymongo writes as a BSON date."""
    return dt.datetime(value.year, value.month, value.day)


def from_bson_date(value: dt.datetime) -> dt.date:
    return value.date()


_BIAS = 6176
_LOW64 = (1 << 64) - 1
_MAX_COEFFICIENT = 1 << 113


def decimal128(value: Decimal) -> Decimal128:
    """A Decimal as Decimal128 (value and exponent kept), built from its BID bits.

    Same result as ``Decimal128(value)``, which spends most of bulk encoding time in a
    decimal context; the BID layout is IEEE 754-2008: sign, biased exponent, coefficient.
    """
    sign, _, exponent = value.as_tuple()
    if not isinstance(exponent, int) or not -_BIAS <= exponent <= 6111:
        return Decimal128(value)
    coefficient = int(value.scaleb(-exponent).copy_abs())
    if coefficient >= _MAX_COEFFICIENT:
        return Decimal128(value)
    high = ((exponent + _BIAS) << 49) | (coefficient >> 64)
    if sign:
        high |= 1 << 63
    # pymongo documents a (high, low) pair of 64-bit BID words as a Decimal128 value; its stubs omit it.
    return Decimal128((high, coefficient & _LOW64))  # type: ignore[arg-type]


def decimal(value: Any) -> Decimal:
    """A Decimal from a Decimal128 (or a number MongoDB summed from integers)."""
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return Decimal(int(value)) if not isinstance(value, Decimal) else value


def as_binary(value: uuid.UUID) -> Binary:
    """A UUID as BSON Binary subtype 4 (what the driver writes for it, without its slower path)."""
    binary: Binary = Binary(value.bytes, 4)
    return binary


def _optional_micros(value: dt.datetime | None) -> Int64 | None:
    return None if value is None else micros(value)


def _optional_datetime(value: Any) -> dt.datetime | None:
    return None if value is None else from_micros(value)


# --------------------------------------------------------------------------- attributes


def encode_attribute(value: Any) -> Any:
    """One attribute value in its BSON form (also used for query values on attributes)."""
    if isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return Int64(value)
    if isinstance(value, Decimal):
        return decimal128(value)
    if isinstance(value, dt.datetime):
        return {"us": micros(value)}
    if isinstance(value, dt.date):
        return bson_date(value)
    raise TypeError(f"not an attribute value: {value!r}")


def _decode_attribute(value: Any) -> Any:
    if isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Mapping):
        return from_micros(value["us"])
    if isinstance(value, dt.datetime):
        return value.date()
    raise TypeError(f"unexpected stored attribute value: {value!r}")


def _encode_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: encode_attribute(value) for key, value in values.items()}


def _decode_attributes(doc: Mapping[str, Any]) -> dict[str, Any]:
    stored = doc.get("attributes")
    if not stored:
        return {}
    return {key: _decode_attribute(value) for key, value in stored.items()}


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    """Set a key only when there is something to store (None and empty collections are left out)."""
    if value is not None and value != () and value != [] and value != {}:
        doc[key] = value


def _common(doc: dict[str, Any], record: Any) -> None:
    created, updated = record.created_at, record.updated_at
    doc["created_at"] = _optional_micros(created)
    # New records usually carry one timestamp object for both: convert it once.
    doc["updated_at"] = doc["created_at"] if updated is created else _optional_micros(updated)
    doc["version"] = record.version


def _common_back(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "created_at": _optional_datetime(doc.get("created_at")),
        "updated_at": _optional_datetime(doc.get("updated_at")),
        "version": int(doc["version"]),
    }


# --------------------------------------------------------------------------- customers


def _consent(items: tuple[Consent, ...]) -> list[dict[str, Any]]:
    out = []
    for c in items:
        doc: dict[str, Any] = {"channel": str(c.channel), "granted": c.granted}
        _put(doc, "at", _optional_micros(c.at))
        _put(doc, "source", c.source)
        out.append(doc)
    return out


def _consent_back(items: Any) -> tuple[Consent, ...]:
    return tuple(
        Consent(
            channel=c["channel"], granted=c["granted"], at=_optional_datetime(c.get("at")), source=c.get("source")
        )
        for c in items or ()
    )


#: Sub-documents holding, per searchable text field (``schema.text(search=True)``), its folded
#: form (``crmkit.search.fold``: prefix search) and its folded words (``matches``), both indexed.
FOLDED, WORDS = "_folded", "_words"


def put_search(doc: dict[str, Any], field: str, value: str | None) -> None:
    """Keep the folded form and the folded words of a searchable text field in ``doc`` (nothing for None)."""
    if value is None:
        return
    folded = fold(value)
    doc.setdefault(FOLDED, {})[field] = folded
    doc.setdefault(WORDS, {})[field] = sorted(set(folded.split()))


def search_indexes(spec: EntitySpec) -> dict[str, tuple[list[tuple[str, int]], dict[str, Any]]]:
    """The indexes of the searchable fields of an aggregate: (tenant, folded form) and (tenant, words)."""
    out: dict[str, tuple[list[tuple[str, int]], dict[str, Any]]] = {}
    for name, field in spec.fields.items():
        if field.search:
            out[f"search_{name}"] = ([("tenant", 1), (f"{FOLDED}.{name}", 1)], {})
            out[f"words_{name}"] = ([("tenant", 1), (f"{WORDS}.{name}", 1)], {})
    return out


def _encode_customer(tenant: str, c: Customer) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenant": tenant,
        "id": as_binary(c.id),
        "kind": c.kind,
        "name": c.name,
        "stage": c.stage.value,
    }
    _put(doc, "owner", c.owner)
    _put(doc, "external_id", c.external_id)
    _put(doc, "tags", sorted(c.tags))
    emails = []
    for e in c.emails:
        item: dict[str, Any] = {"address": e.address}
        _put(item, "label", e.label)
        _put(item, "consent", _consent(e.consent))
        emails.append(item)
    _put(doc, "emails", emails)
    phones = []
    for p in c.phones:
        item = {"number": p.number}
        _put(item, "label", p.label)
        _put(item, "consent", _consent(p.consent))
        phones.append(item)
    _put(doc, "phones", phones)
    addresses = []
    for a in c.addresses:
        item = {"lines": list(a.lines)}
        for key in ("city", "postal_code", "region", "country", "label"):
            _put(item, key, getattr(a, key))
        _put(item, "consent", _consent(a.consent))
        addresses.append(item)
    _put(doc, "addresses", addresses)
    handles = []
    for h in c.handles:
        item = {"network": h.network, "handle": h.handle}
        _put(item, "consent", _consent(h.consent))
        handles.append(item)
    _put(doc, "handles", handles)
    _put(doc, "attributes", _encode_attributes(c.attributes))
    _common(doc, c)
    put_search(doc, "name", c.name)
    return doc


def _decode_customer(doc: Mapping[str, Any]) -> Customer:
    return Customer(
        kind=doc["kind"],
        name=doc["name"],
        emails=tuple(
            EmailAddress(address=e["address"], label=e.get("label"), consent=_consent_back(e.get("consent")))
            for e in doc.get("emails", ())
        ),
        phones=tuple(
            Phone(number=p["number"], label=p.get("label"), consent=_consent_back(p.get("consent")))
            for p in doc.get("phones", ())
        ),
        addresses=tuple(
            PostalAddress(
                lines=tuple(a["lines"]),
                city=a.get("city"),
                postal_code=a.get("postal_code"),
                region=a.get("region"),
                country=a.get("country"),
                label=a.get("label"),
                consent=_consent_back(a.get("consent")),
            )
            for a in doc.get("addresses", ())
        ),
        handles=tuple(
            Handle(network=h["network"], handle=h["handle"], consent=_consent_back(h.get("consent")))
            for h in doc.get("handles", ())
        ),
        tags=frozenset(doc.get("tags", ())),
        owner=doc.get("owner"),
        attributes=_decode_attributes(doc),
        stage=doc["stage"],
        external_id=doc.get("external_id"),
        **_common_back(doc),
    )


# --------------------------------------------------------------------------- relationships


def _encode_relationship(tenant: str, r: Relationship) -> dict[str, Any]:
    # ``ends`` lets one $graphLookup walk edges in both directions (and an index serve it).
    doc: dict[str, Any] = {
        "tenant": tenant,
        "id": as_binary(r.id),
        "source_id": as_binary(r.source_id),
        "target_id": as_binary(r.target_id),
        "ends": [as_binary(r.source_id), as_binary(r.target_id)],
        "kind": r.kind,
    }
    _put(doc, "role", r.role)
    _put(doc, "since", None if r.since is None else bson_date(r.since))
    _put(doc, "until", None if r.until is None else bson_date(r.until))
    _put(doc, "attributes", _encode_attributes(r.attributes))
    _put(doc, "external_id", r.external_id)
    _common(doc, r)
    return doc


def _decode_relationship(doc: Mapping[str, Any]) -> Relationship:
    since, until = doc.get("since"), doc.get("until")
    return Relationship(
        source_id=doc["source_id"],
        target_id=doc["target_id"],
        kind=doc["kind"],
        role=doc.get("role"),
        since=None if since is None else since.date(),
        until=None if until is None else until.date(),
        attributes=_decode_attributes(doc),
        external_id=doc.get("external_id"),
        **_common_back(doc),
    )


# --------------------------------------------------------------------------- interactions


def _encode_interaction(tenant: str, i: Interaction) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenant": tenant,
        "id": as_binary(i.id),
        "customer_id": as_binary(i.customer_id),
        "channel": str(i.channel),
        "direction": i.direction,
        "occurred_at": micros(i.occurred_at),
    }
    _put(doc, "subject", i.subject)
    _put(doc, "summary", i.summary)
    _put(doc, "outcome", i.outcome)
    _put(doc, "participants", sorted(i.participants))
    _put(doc, "attributes", _encode_attributes(i.attributes))
    _put(doc, "external_id", i.external_id)
    _common(doc, i)
    return doc


def _decode_interaction(doc: Mapping[str, Any]) -> Interaction:
    return Interaction(
        customer_id=doc["customer_id"],
        channel=doc["channel"],
        direction=doc["direction"],
        occurred_at=from_micros(doc["occurred_at"]),
        subject=doc.get("subject"),
        summary=doc.get("summary"),
        outcome=doc.get("outcome"),
        participants=frozenset(doc.get("participants", ())),
        attributes=_decode_attributes(doc),
        external_id=doc.get("external_id"),
        **_common_back(doc),
    )


# --------------------------------------------------------------------------- transactions


def _encode_transaction(tenant: str, t: Transaction) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenant": tenant,
        "id": as_binary(t.id),
        "customer_id": as_binary(t.customer_id),
        "occurred_at": micros(t.occurred_at),
        "amount": decimal128(t.amount),
        "currency": t.currency,
        "kind": t.kind,
    }
    if t.line_items:
        doc["line_items"] = [
            {"product": li.product, "quantity": decimal128(li.quantity), "unit_price": decimal128(li.unit_price)}
            for li in t.line_items
        ]
    if t.attributes:
        doc["attributes"] = _encode_attributes(t.attributes)
    if t.external_id is not None:
        doc["external_id"] = t.external_id
    if t.order_id is not None:
        doc["order_id"] = as_binary(t.order_id)
    _common(doc, t)
    return doc


def _decode_transaction(doc: Mapping[str, Any]) -> Transaction:
    return Transaction(
        customer_id=doc["customer_id"],
        occurred_at=from_micros(doc["occurred_at"]),
        amount=doc["amount"].to_decimal(),
        currency=doc["currency"],
        kind=doc["kind"],
        line_items=tuple(
            LineItem(li["product"], li["quantity"].to_decimal(), li["unit_price"].to_decimal())
            for li in doc.get("line_items", ())
        ),
        attributes=_decode_attributes(doc),
        external_id=doc.get("external_id"),
        order_id=doc.get("order_id"),
        **_common_back(doc),
    )


class Codec:
    """How one entity kind is written and read."""

    def __init__(
        self,
        spec: EntitySpec,
        encode: Callable[[str, Any], dict[str, Any]],
        decode: Callable[[Mapping[str, Any]], Any],
    ) -> None:
        self.spec = spec
        self.encode = encode
        self.decode = decode


CODECS: Mapping[str, Codec] = {
    c.spec.name: c
    for c in (
        Codec(CUSTOMERS, _encode_customer, _decode_customer),
        Codec(RELATIONSHIPS, _encode_relationship, _decode_relationship),
        Codec(INTERACTIONS, _encode_interaction, _decode_interaction),
        Codec(TRANSACTIONS, _encode_transaction, _decode_transaction),
    )
}

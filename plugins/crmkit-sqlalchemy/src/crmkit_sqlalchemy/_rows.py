"""Converters between crmkit's frozen domain objects and table rows (plain dicts), both ways.

The domain classes never learn about rows: each entity has a ``to_row`` and a
``from_row`` here. JSON columns hold contact points, line items, tags and the typed
attribute encoding of ``_encoding``.

Rows are trusted on the way back: every one was validated by the domain classes when it
was written, so records are rebuilt without running the validators again (``_trusted``),
from values already in the exact form the classes' converters produce (UTC datetimes,
frozensets, read-only attribute maps in key order, enums). A test compares every field,
type included, with records built the validating way. Nested contact points and line
items are rare and small, and go through their constructors.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from crmkit.channels import Channel
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.interactions import Interaction
from crmkit.lifecycle_model import Stage, StageChange
from crmkit.relationships import Relationship
from crmkit.transactions import LineItem, Transaction
from crmkit_sqlalchemy._encoding import decode_attributes, encode_attributes

__all__ = ["CONVERTERS", "Converter"]

Row = dict[str, Any]


T = TypeVar("T")


def _trusted(cls: type[T]) -> Callable[..., T]:
    """A constructor that sets every attrs field of ``cls`` without validators or converters."""
    names = frozenset(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]
    new, setter = object.__new__, object.__setattr__

    def build(**values: Any) -> T:
        if values.keys() != names:
            raise TypeError(f"{cls.__name__} needs exactly the fields {sorted(names)}, got {sorted(values)}")
        obj = new(cls)
        for name, value in values.items():
            setter(obj, name, value)
        return obj

    return build


_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


def _attributes(stored: Any) -> Mapping[str, Any]:
    """Attributes as ``frozen_attributes`` makes them: a read-only map in key order."""
    decoded = decode_attributes(_json_value(stored))
    return types.MappingProxyType(dict(sorted(decoded.items()))) if decoded else _EMPTY


def _json_value(value: Any) -> Any:
    """JSON columns may come back as text (SQLite raw reads) or already parsed."""
    return json.loads(value) if isinstance(value, str) else value


def _consent_doc(c: Consent) -> dict[str, Any]:
    doc: dict[str, Any] = {"channel": str(c.channel), "granted": c.granted}
    if c.at is not None:
        doc["at"] = c.at.isoformat(timespec="microseconds")
    if c.source is not None:
        doc["source"] = c.source
    return doc


def _consent(doc: Mapping[str, Any]) -> Consent:
    at = doc.get("at")
    return Consent(
        channel=Channel(doc["channel"]),
        granted=doc["granted"],
        at=None if at is None else dt.datetime.fromisoformat(at),
        source=doc.get("source"),
    )


def _with_consent(doc: dict[str, Any], consent: Sequence[Consent]) -> dict[str, Any]:
    if consent:
        doc["consent"] = [_consent_doc(c) for c in consent]
    return doc


def _optional(doc: dict[str, Any], **values: Any) -> dict[str, Any]:
    doc.update({k: v for k, v in values.items() if v is not None})
    return doc


def _email_doc(e: EmailAddress) -> dict[str, Any]:
    return _with_consent(_optional({"address": e.address}, label=e.label), e.consent)


def _phone_doc(p: Phone) -> dict[str, Any]:
    return _with_consent(_optional({"number": p.number}, label=p.label), p.consent)


def _address_doc(a: PostalAddress) -> dict[str, Any]:
    doc = _optional(
        {"lines": list(a.lines)},
        city=a.city,
        postal_code=a.postal_code,
        region=a.region,
        country=a.country,
        label=a.label,
    )
    return _with_consent(doc, a.consent)


def _handle_doc(h: Handle) -> dict[str, Any]:
    return _with_consent({"network": h.network, "handle": h.handle}, h.consent)


def _consents(doc: Mapping[str, Any]) -> tuple[Consent, ...]:
    return tuple(_consent(c) for c in doc.get("consent", ()))


def _email(doc: Mapping[str, Any]) -> EmailAddress:
    return EmailAddress(address=doc["address"], label=doc.get("label"), consent=_consents(doc))


def _phone(doc: Mapping[str, Any]) -> Phone:
    return Phone(number=doc["number"], label=doc.get("label"), consent=_consents(doc))


def _address(doc: Mapping[str, Any]) -> PostalAddress:
    return PostalAddress(
        lines=tuple(doc["lines"]),
        city=doc.get("city"),
        postal_code=doc.get("postal_code"),
        region=doc.get("region"),
        country=doc.get("country"),
        label=doc.get("label"),
        consent=_consents(doc),
    )


def _handle(doc: Mapping[str, Any]) -> Handle:
    return Handle(network=doc["network"], handle=doc["handle"], consent=_consents(doc))


def _stamps(record: Any) -> Row:
    return {"created_at": record.created_at, "updated_at": record.updated_at, "version": record.version}


def _texts(values: frozenset[str]) -> list[str]:
    return sorted(values)


# --------------------------------------------------------------------------- customers


def customer_row(c: Customer) -> Row:
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "stage": c.stage.value,
        "owner": c.owner,
        "external_id": c.external_id,
        "tags": _texts(c.tags),
        "emails": [_email_doc(e) for e in c.emails],
        "phones": [_phone_doc(p) for p in c.phones],
        "addresses": [_address_doc(a) for a in c.addresses],
        "handles": [_handle_doc(h) for h in c.handles],
        "attributes": encode_attributes(c.attributes),
        **_stamps(c),
    }


_customer = _trusted(Customer)


def customer_of(row: Mapping[str, Any]) -> Customer:
    return _customer(
        kind=row["kind"],
        name=row["name"],
        emails=tuple(_email(d) for d in _json_value(row["emails"])),
        phones=tuple(_phone(d) for d in _json_value(row["phones"])),
        addresses=tuple(_address(d) for d in _json_value(row["addresses"])),
        handles=tuple(_handle(d) for d in _json_value(row["handles"])),
        tags=frozenset(_json_value(row["tags"])),
        owner=row["owner"],
        attributes=_attributes(row["attributes"]),
        stage=Stage(row["stage"]),
        external_id=row["external_id"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


# --------------------------------------------------------------------------- relationships


def relationship_row(r: Relationship) -> Row:
    return {
        "id": r.id,
        "source_id": r.source_id,
        "target_id": r.target_id,
        "kind": r.kind,
        "role": r.role,
        "since": r.since,
        "until": r.until,
        "attributes": encode_attributes(r.attributes),
        **_stamps(r),
    }


_relationship = _trusted(Relationship)


def relationship_of(row: Mapping[str, Any]) -> Relationship:
    return _relationship(
        source_id=row["source_id"],
        target_id=row["target_id"],
        kind=row["kind"],
        role=row["role"],
        since=row["since"],
        until=row["until"],
        attributes=_attributes(row["attributes"]),
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


# --------------------------------------------------------------------------- interactions


def interaction_row(i: Interaction) -> Row:
    return {
        "id": i.id,
        "customer_id": i.customer_id,
        "channel": str(i.channel),
        "direction": i.direction,
        "occurred_at": i.occurred_at,
        "subject": i.subject,
        "summary": i.summary,
        "outcome": i.outcome,
        "participants": _texts(i.participants),
        "attributes": encode_attributes(i.attributes),
        "external_id": i.external_id,
        **_stamps(i),
    }


_interaction = _trusted(Interaction)


def interaction_of(row: Mapping[str, Any]) -> Interaction:
    return _interaction(
        customer_id=row["customer_id"],
        channel=Channel(row["channel"]),
        direction=row["direction"],
        occurred_at=row["occurred_at"],
        subject=row["subject"],
        summary=row["summary"],
        outcome=row["outcome"],
        participants=frozenset(_json_value(row["participants"])),
        attributes=_attributes(row["attributes"]),
        external_id=row["external_id"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


# --------------------------------------------------------------------------- transactions


def _line_doc(item: LineItem) -> dict[str, Any]:
    return {"product": item.product, "quantity": str(item.quantity), "unit_price": str(item.unit_price)}


def _line(doc: Mapping[str, Any]) -> LineItem:
    return LineItem(product=doc["product"], quantity=Decimal(doc["quantity"]), unit_price=Decimal(doc["unit_price"]))


def transaction_row(t: Transaction) -> Row:
    return {
        "id": t.id,
        "customer_id": t.customer_id,
        "occurred_at": t.occurred_at,
        "amount": t.amount,
        "currency": t.currency,
        "kind": t.kind,
        "line_items": [_line_doc(li) for li in t.line_items],
        "attributes": encode_attributes(t.attributes),
        "external_id": t.external_id,
        **_stamps(t),
    }


_transaction = _trusted(Transaction)


def transaction_of(row: Mapping[str, Any]) -> Transaction:
    return _transaction(
        customer_id=row["customer_id"],
        occurred_at=row["occurred_at"],
        amount=row["amount"],
        currency=row["currency"],
        kind=row["kind"],
        line_items=tuple(_line(d) for d in _json_value(row["line_items"])),
        attributes=_attributes(row["attributes"]),
        external_id=row["external_id"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


# --------------------------------------------------------------------------- stage changes


def stage_change_row(s: StageChange) -> Row:
    return {
        "id": s.id,
        "customer_id": s.customer_id,
        "from_stage": None if s.from_stage is None else s.from_stage.value,
        "to_stage": s.to_stage.value,
        "occurred_at": s.occurred_at,
        "rule": s.rule,
        "reason": s.reason,
        **_stamps(s),
    }


_stage_change = _trusted(StageChange)


def stage_change_of(row: Mapping[str, Any]) -> StageChange:
    return _stage_change(
        customer_id=row["customer_id"],
        from_stage=None if row["from_stage"] is None else Stage(row["from_stage"]),
        to_stage=Stage(row["to_stage"]),
        occurred_at=row["occurred_at"],
        rule=row["rule"],
        reason=row["reason"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


class Converter:
    """The pair of converters of one entity."""

    __slots__ = ("from_row", "to_row")

    def __init__(self, to_row: Callable[[Any], Row], from_row: Callable[[Any], Any]) -> None:
        self.to_row = to_row
        self.from_row = from_row


#: Converters per entity name.
CONVERTERS: dict[str, Converter] = {
    "customers": Converter(customer_row, customer_of),
    "relationships": Converter(relationship_row, relationship_of),
    "interactions": Converter(interaction_row, interaction_of),
    "transactions": Converter(transaction_row, transaction_of),
    "stage_changes": Converter(stage_change_row, stage_change_of),
}

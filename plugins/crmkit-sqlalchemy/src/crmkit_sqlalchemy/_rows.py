"""Converters between crmkit's frozen domain objects and table rows (plain dicts), both ways.

The domain classes never learn about rows: each entity has a ``to_row`` and a
``from_row`` here. ``to_row`` is generated from ``ENCODERS`` (which field goes to which
column, through which function), as are the bulk paths' row tuples. JSON columns hold
contact points, line items, tags and the typed attribute encoding of ``_encoding``.

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
import sqlalchemy as sa

from crmkit.channels import Channel
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.interactions import Interaction
from crmkit.lifecycle_model import Stage, StageChange
from crmkit.relationships import Relationship
from crmkit.transactions import LineItem, Transaction
from crmkit_sqlalchemy._encoding import decode_attributes, encode_attributes
from crmkit_sqlalchemy._schema import TABLES

__all__ = ["CONVERTERS", "ENCODERS", "Converter", "record_expressions"]

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


def _texts(values: frozenset[str]) -> list[str]:
    return sorted(values)


# --------------------------------------------------------------------------- customers


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
        external_id=row["external_id"],
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


# --------------------------------------------------------------------------- interactions


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


# --------------------------------------------------------------------------- records to rows


def _value(member: Any) -> Any:
    return member.value


def _optional_value(member: Any) -> Any:
    return None if member is None else member.value


def _line_docs(items: Sequence[LineItem]) -> list[dict[str, Any]]:
    return [_line_doc(li) for li in items]


def _email_docs(items: Sequence[EmailAddress]) -> list[dict[str, Any]]:
    return [_email_doc(e) for e in items]


def _phone_docs(items: Sequence[Phone]) -> list[dict[str, Any]]:
    return [_phone_doc(p) for p in items]


def _address_docs(items: Sequence[PostalAddress]) -> list[dict[str, Any]]:
    return [_address_doc(a) for a in items]


def _handle_docs(items: Sequence[Handle]) -> list[dict[str, Any]]:
    return [_handle_doc(h) for h in items]


#: How a record's field becomes its column, per entity: every column but ``tenant`` holds the
#: field of the same name, through the function given here, or as it is when none is given.
ENCODERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "customers": {
        "stage": _value,
        "tags": _texts,
        "emails": _email_docs,
        "phones": _phone_docs,
        "addresses": _address_docs,
        "handles": _handle_docs,
        "attributes": encode_attributes,
    },
    "relationships": {"attributes": encode_attributes},
    "interactions": {"channel": str, "participants": _texts, "attributes": encode_attributes},
    "transactions": {"line_items": _line_docs, "attributes": encode_attributes},
    "stage_changes": {"from_stage": _optional_value, "to_stage": _value},
}


def record_expressions(table: sa.Table | str, namespace: dict[str, Any]) -> list[tuple[sa.Column[Any], str]]:
    """Each column of a table (or of an entity's table) with the Python expression of its value from record ``r``.

    Used to generate the converters (here, and the bulk paths' in ``_ingest``), so that the
    mapping is written once; the encoders the expressions call are added to ``namespace``.
    Tables derived from a declared aggregate carry their expressions in ``table.info``
    (``_derived.EXPRESSIONS``); crmkit's own five are described by ``ENCODERS``.
    """
    if isinstance(table, str):
        table = TABLES[table]
    derived = table.info.get("crmkit_expressions")
    if derived is not None:
        for _, helpers in derived.values():
            namespace.update(helpers)
        return [(column, derived[column.name][0]) for column in table.c]
    encoders = ENCODERS[table.name]
    out = []
    for column in table.c:
        if column.name == "tenant":
            out.append((column, "tenant"))
        elif column.name in encoders:
            namespace[f"encode_{column.name}"] = encoders[column.name]
            out.append((column, f"encode_{column.name}(r.{column.name})"))
        else:
            out.append((column, f"r.{column.name}"))
    return out


def _to_row(entity: str) -> Callable[[Any], Row]:
    namespace: dict[str, Any] = {}
    items = [f"{c.name!r}: {e}" for c, e in record_expressions(entity, namespace) if c.name != "tenant"]
    source = f"def to_row(r):\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, f"<crmkit_sqlalchemy rows of {entity}>", "exec"), namespace)
    return namespace["to_row"]  # type: ignore[no-any-return]


class Converter:
    """The pair of converters of one entity."""

    __slots__ = ("from_row", "to_row")

    def __init__(self, to_row: Callable[[Any], Row], from_row: Callable[[Any], Any]) -> None:
        self.to_row = to_row
        self.from_row = from_row


#: Converters per entity name.
CONVERTERS: dict[str, Converter] = {
    "customers": Converter(_to_row("customers"), customer_of),
    "relationships": Converter(_to_row("relationships"), relationship_of),
    "interactions": Converter(_to_row("interactions"), interaction_of),
    "transactions": Converter(_to_row("transactions"), transaction_of),
    "stage_changes": Converter(_to_row("stage_changes"), stage_change_of),
}

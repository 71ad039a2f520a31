"""Converters between crmkit's frozen domain objects and table rows (plain dicts), both ways.

The domain classes never learn about rows: each entity has a ``to_row`` and a
``from_row`` here. ``to_row`` is generated from ``ENCODERS`` (which field goes to which
column, through which function), as are the bulk paths' row tuples. JSON columns hold
contact points, line items, tags and the typed attribute encoding of ``_encoding``.

Rows are trusted on the way back: every one was validated by the domain classes when it
was written, so records are rebuilt without running the validators again, from values
already in the exact form the classes' converters produce (UTC datetimes, frozensets,
read-only attribute maps in key order, enums). A test compares every field, type included,
with records built the validating way. Nested contact points and line items are rare and
small, and go through their constructors. ``from_row`` is generated from a ``RecordPlan``
(each field's expression over the row's columns), which ``_fastread`` also compiles into
decoders that go from a DBAPI row straight to the record.
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
from crmkit.lifecycle_model import Stage
from crmkit.relationships import Relationship
from crmkit.search import fold
from crmkit.transactions import LineItem, Transaction
from crmkit_sqlalchemy._encoding import decode_attributes, encode_attributes
from crmkit_sqlalchemy._schema import SHADOW, TABLES

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


#: How a record comes back from its row: per attrs field, a Python expression of its value
#: that reads columns as ``row['column']``. ``record_builder`` turns it into the ``from_row``
#: of the dict paths, and ``_fastread`` into decoders straight from DBAPI rows.
Plan = tuple[tuple[str, str], ...]


class RecordPlan:
    """A record class, the plan of its fields and the helpers the plan's expressions call."""

    __slots__ = ("cls", "fields", "helpers")

    def __init__(self, cls: type, fields: Plan, helpers: Mapping[str, Any]) -> None:
        names = sorted(a.name for a in attrs.fields(cls))
        if sorted(name for name, _ in fields) != names:
            raise TypeError(f"{cls.__name__} needs exactly the fields {names}, got {sorted(n for n, _ in fields)}")
        self.cls, self.fields = cls, fields
        self.helpers: dict[str, Any] = {
            "_new": object.__new__,
            "_set": object.__setattr__,
            "cls": cls,
            "json_value": _json_value,
            "attributes_of": _attributes,
            **helpers,
        }
        # a slot's own setter is faster than object.__setattr__ looking the name up each time
        for name, _ in fields:
            slot = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__), None)
            if isinstance(slot, types.MemberDescriptorType):
                self.helpers[f"_set_{name}"] = slot.__set__

    def assign(self, name: str, value: str) -> str:
        """The statement that sets field ``name`` of record ``new`` to the expression ``value``."""
        if f"_set_{name}" in self.helpers:
            return f"_set_{name}(new, {value})"
        return f"_set(new, {name!r}, {value})"


def record_builder(plan: RecordPlan) -> Callable[[Mapping[str, Any]], Any]:
    """A generated ``from_row``: a new record with each field set from ``plan``, nothing re-validated."""
    namespace = dict(plan.helpers)
    lines = ["def from_row(row):", "    new = _new(cls)"]
    lines += [f"    {plan.assign(name, value)}" for name, value in plan.fields]
    lines.append("    return new")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<crmkit_sqlalchemy records of {plan.cls.__name__}>", "exec"), namespace)
    return namespace["from_row"]  # type: ignore[no-any-return]


def _plan(fields: str, **values: str) -> Plan:
    """``fields`` (names, space-separated) read as they are from the column of the same name, then ``values``."""
    return (*((name, f"row[{name!r}]") for name in fields.split()), *values.items())


_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


def _attributes(stored: Any) -> Mapping[str, Any]:
    """Attributes as ``frozen_attributes`` makes them: a read-only map in key order."""
    if not stored:  # {} (parsed) or "" never hold attributes; "{}" takes the long way
        return _EMPTY
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


def _objects(decode: Callable[[Mapping[str, Any]], T]) -> Callable[[Any], tuple[T, ...]]:
    """A JSON list of objects (parsed or text) to a tuple of value objects, empty lists taking no time."""

    def objects(stored: Any) -> tuple[T, ...]:
        return tuple(decode(d) for d in _json_value(stored)) if stored else ()

    return objects


_CUSTOMER_PLAN = _plan(
    "kind name owner external_id id created_at updated_at version",
    emails="emails_of(row['emails'])",
    phones="phones_of(row['phones'])",
    addresses="addresses_of(row['addresses'])",
    handles="handles_of(row['handles'])",
    tags="frozenset(json_value(row['tags']))",
    attributes="attributes_of(row['attributes'])",
    stage="Stage(row['stage'])",
)
_CUSTOMER = RecordPlan(
    Customer,
    _CUSTOMER_PLAN,
    {
        "emails_of": _objects(_email),
        "phones_of": _objects(_phone),
        "addresses_of": _objects(_address),
        "handles_of": _objects(_handle),
        "Stage": Stage,
    },
)
customer_of = record_builder(_CUSTOMER)


# --------------------------------------------------------------------------- relationships


_RELATIONSHIP_PLAN = _plan(
    "source_id target_id kind role since until external_id id created_at updated_at version",
    attributes="attributes_of(row['attributes'])",
)
_RELATIONSHIP = RecordPlan(Relationship, _RELATIONSHIP_PLAN, {})
relationship_of = record_builder(_RELATIONSHIP)


# --------------------------------------------------------------------------- interactions


_CHANNELS: dict[str, Channel] = {}


def _channel(value: str) -> Channel:
    """``Channel(value)``, each name checked once (a handful of names make up every row)."""
    found = _CHANNELS.get(value)
    if found is None:
        found = Channel(value)
        if len(_CHANNELS) < 1024:
            _CHANNELS[value] = found
    return found


_INTERACTION_PLAN = _plan(
    "customer_id direction occurred_at subject summary outcome external_id id created_at updated_at version",
    channel="channel_of(row['channel'])",
    participants="frozenset(json_value(row['participants']))",
    attributes="attributes_of(row['attributes'])",
)
_INTERACTION = RecordPlan(Interaction, _INTERACTION_PLAN, {"channel_of": _channel})
interaction_of = record_builder(_INTERACTION)


# --------------------------------------------------------------------------- transactions


def _line_doc(item: LineItem) -> dict[str, Any]:
    return {"product": item.product, "quantity": str(item.quantity), "unit_price": str(item.unit_price)}


def _line(doc: Mapping[str, Any]) -> LineItem:
    return LineItem(product=doc["product"], quantity=Decimal(doc["quantity"]), unit_price=Decimal(doc["unit_price"]))


_TRANSACTION_PLAN = _plan(
    "customer_id occurred_at amount currency kind external_id id created_at updated_at version order_id",
    line_items="line_items_of(row['line_items'])",
    attributes="attributes_of(row['attributes'])",
)
_TRANSACTION = RecordPlan(Transaction, _TRANSACTION_PLAN, {"line_items_of": _objects(_line)})
transaction_of = record_builder(_TRANSACTION)


# --------------------------------------------------------------------------- records to rows


def _value(member: Any) -> Any:
    return member.value


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
        elif SHADOW in column.info:
            namespace["fold"] = fold
            out.append((column, shadow_expression(column.info[SHADOW], nullable=bool(column.nullable))))
        elif column.name in encoders:
            namespace[f"encode_{column.name}"] = encoders[column.name]
            out.append((column, f"encode_{column.name}(r.{column.name})"))
        else:
            out.append((column, f"r.{column.name}"))
    return out


def shadow_expression(field: str, *, nullable: bool) -> str:
    """The Python expression (of record ``r``, calling ``fold``) of a searchable field's folded form."""
    return f"(None if r.{field} is None else fold(r.{field}))" if nullable else f"fold(r.{field})"


def _to_row(entity: str) -> Callable[[Any], Row]:
    namespace: dict[str, Any] = {}
    items = [f"{c.name!r}: {e}" for c, e in record_expressions(entity, namespace) if c.name != "tenant"]
    source = f"def to_row(r):\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, f"<crmkit_sqlalchemy rows of {entity}>", "exec"), namespace)
    return namespace["to_row"]  # type: ignore[no-any-return]


class Converter:
    """The pair of converters of one entity, and the plan ``from_row`` was generated from (if it was)."""

    __slots__ = ("from_row", "plan", "to_row")

    def __init__(
        self, to_row: Callable[[Any], Row], from_row: Callable[[Any], Any], plan: RecordPlan | None = None
    ) -> None:
        self.to_row = to_row
        self.from_row = from_row
        self.plan = plan


#: Converters per entity name.
CONVERTERS: dict[str, Converter] = {
    "customers": Converter(_to_row("customers"), customer_of, _CUSTOMER),
    "relationships": Converter(_to_row("relationships"), relationship_of, _RELATIONSHIP),
    "interactions": Converter(_to_row("interactions"), interaction_of, _INTERACTION),
    "transactions": Converter(_to_row("transactions"), transaction_of, _TRANSACTION),
}

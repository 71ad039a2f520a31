"""Records of any declared aggregate for tests: the records they refer to, and hard example records.

Nothing here imports Hypothesis: ``add_targets`` stores what the references of an aggregate
need (customers, records of the aggregates it refers to, something for a ``ref_any`` to
point at) and ``example_record`` builds record number ``n`` of an aggregate from its
declaration, with values that have broken stores before (Decimal exponents, microseconds
in odd offsets, the edges of the date range, text in many scripts, nested value objects,
attributes of every type). ``crmkit.testing.strategies.records`` draws random ones::

    targets = add_targets(crm, Subscription)
    first = crm.records(Subscription).add(example_record(Subscription, 0, targets=targets))
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from crmkit.crm import CRM, Records
from crmkit.customers import Customer
from crmkit.interactions import Interaction
from crmkit.schema import AggregateSpec, FieldDef, Ref, declared_fields, spec_of

__all__ = [
    "REF_ANY_TARGETS",
    "Targets",
    "add_targets",
    "aggregate_spec",
    "example_record",
    "example_value",
    "example_value_object",
    "unique_keys_of",
]

#: The aggregates a ``ref_any`` field points at in tests: customers, and one of crmkit's own
#: aggregates other than customers (deleting it must cascade as deleting a customer does).
REF_ANY_TARGETS: tuple[str, ...] = ("customers", "interactions")

_UTC = dt.timezone.utc


def _tz(hours: int, minutes: int = 0) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


_TEXTS = (
    "Ștefan Țărănescu",
    "زهرا محمدی",
    "👩\u200d👩\u200d👧\u200d👦 family",
    "'; DROP TABLE x; --",
    '{"$gt": ""}',
    "e\u0301te\u0301 Ada",
    "\U0010fffd \U0001d518",
    "Şerban\tline\nbreak",
)
_INTEGERS = (0, -1, 2**63 - 1, -(2**63), 7, 1_000_000_007)
_MONEY = (
    Decimal("10.00"),
    Decimal("0.000001"),
    Decimal("999999999999999.999999"),
    Decimal("0.000000"),
    Decimal("12.5"),
    Decimal("3"),
)
_NEGATIVE_MONEY = (Decimal("-0.50"), Decimal("-999999999999999.999999"))
_CURRENCIES = ("EUR", "BHD", "JPY", "IRR", "RON", "USD")
_INSTANTS = (
    dt.datetime(2024, 1, 1, 3, 30, 0, 1, tzinfo=_tz(3, 30)),
    dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=_UTC),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=_tz(-9, -30)),
    dt.datetime(1, 1, 2, 0, 0, 0, 1, tzinfo=_UTC),
    dt.datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=_tz(14)),
    dt.datetime(2026, 3, 29, 3, 0, 0, 123456, tzinfo=_tz(5, 45)),
)
_DATES = (dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1))
_UUIDS = (
    uuid.UUID("018f0000-0000-7000-8000-0000000000a1"),
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
    uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
)
_TEXT_SETS: tuple[frozenset[str], ...] = (frozenset(), frozenset({"vip"}), frozenset({"ș", "😀", "VIP", "vip"}))
_ATTRIBUTES: tuple[Mapping[str, Any], ...] = (
    {},
    {
        "d": Decimal("1.000010"),
        "t": dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=_UTC),
        "f": 0.5,
        "b": True,
        "i": 2**63 - 1,
        "s": "ș 😀",
        "day": dt.date(2024, 1, 1),
    },
    {"d": 10, "b": False, "s": ""},
)


def aggregate_spec(aggregate: AggregateSpec | type) -> AggregateSpec:
    """The AggregateSpec of a declared class, or the spec itself."""
    if isinstance(aggregate, AggregateSpec):
        return aggregate
    return spec_of(aggregate)


def unique_keys_of(spec: AggregateSpec, record: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The unique keys a record holds: ``external_id`` and each declared key with no missing part."""
    keys: list[tuple[str, tuple[Any, ...]]] = [("id", (record.id,))]
    if record.external_id is not None:
        keys.append(("external_id", (record.external_id,)))
    for key in spec.unique:
        values = tuple(spec.record_value(record, name) for name in key)
        if all(v is not None for v in values):
            keys.append((",".join(key), values))
    return keys


@attrs.frozen
class Targets:
    """Stored records the references of an aggregate may point at, by aggregate name."""

    ids: Mapping[str, tuple[uuid.UUID, ...]] = attrs.field(factory=dict)

    def of(self, aggregate: str) -> tuple[uuid.UUID, ...]:
        """The stored ids of ``aggregate`` (none when it has no targets)."""
        return self.ids.get(aggregate, ())

    @property
    def refs(self) -> tuple[Ref, ...]:
        """Every target as a ``schema.Ref``, for ``ref_any`` fields."""
        return tuple(Ref(name, id) for name in REF_ANY_TARGETS for id in self.of(name))


def add_targets(
    crm: CRM, aggregate: AggregateSpec | type, *, count: int = 2, _seen: frozenset[str] = frozenset()
) -> Targets:
    """Store ``count`` records of every aggregate the references of ``aggregate`` point at.

    Customers are added for ``ref`` fields to customers and for ``ref_any`` fields (which
    also get interactions of a customer of their own); records of a declared target
    aggregate are ``example_record``s whose own references get targets the same way. A
    nullable reference to the aggregate itself gets none (the field stays None);
    a required one cannot be satisfied and is a ValueError.

    The records of each aggregate are written with one ``add_many`` and all of them in one
    ``crm.transaction()`` (a store's commits and per-call checks are what tests pay for
    here): stored as ``add`` stores them (version 1, stamped with the connection's clock),
    with the cause ``add`` gives their events (the caller's, else ``api``), and either all
    of them or, if one is refused, none.
    """
    spec = aggregate_spec(aggregate)
    wanted: dict[str, None] = {}
    for ref in spec.references:
        for name in (ref.target,) if ref.target is not None else REF_ANY_TARGETS:
            if name == spec.name or name in _seen:
                if not ref.nullable:
                    raise ValueError(f"{spec.name}.{ref.field} must refer to a {name} record that needs itself first")
                continue
            wanted.setdefault(name, None)
    ids: dict[str, tuple[uuid.UUID, ...]] = {}
    with crm.caused_by(crm.cause), crm.transaction():  # add_many's own cause would be "import"
        for name in wanted:
            ids[name] = _add_records(crm, name, count, _seen | {spec.name})
    return Targets(ids)


def _add_records(crm: CRM, name: str, count: int, seen: frozenset[str]) -> tuple[uuid.UUID, ...]:
    if name == "customers":
        people = [Customer(kind="person", name=f"{_TEXTS[i % len(_TEXTS)]} {i}") for i in range(count)]
        return _added(crm.customers, people)
    if name == "interactions":
        owner = crm.customers.add(Customer(kind="organization", name="Interactions owner"))
        return _added(
            crm.interactions,
            [
                Interaction(customer_id=owner.id, channel="email", direction="inbound", occurred_at=_INSTANTS[i % 6])
                for i in range(count)
            ],
        )
    declared = crm.schema.derived.get(name)
    if declared is None:
        raise ValueError(f"add_targets cannot make records of {name!r}: add them yourself and pass Targets")
    targets = add_targets(crm, declared, count=1, _seen=seen)
    service: Records[Any] = crm.records(declared.name)
    return _added(service, [example_record(declared, i, targets=targets) for i in range(count)])


def _added(service: Any, records: list[Any]) -> tuple[uuid.UUID, ...]:
    """The ids of ``records``, new records of one service, stored with one ``add_many``."""
    result = service.add_many(records)
    if result.added != len(records):  # they hold no external id: add_many skips none of them
        raise AssertionError(f"add_many stored {result.added} of {len(records)} {service.spec.name} records")
    return tuple(record.id for record in records)


def example_value(fd: FieldDef, n: int, *, targets: Targets | None = None) -> Any:
    """Value number ``n`` of a field: hard cases first, None every third time for a nullable field."""
    if fd.nullable and n % 3 == 2 and fd.kind not in ("many", "text_set", "attributes"):
        return None
    kind = fd.kind
    if fd.choices is not None:
        return fd.choices[n % len(fd.choices)]
    if kind == "text":
        if fd.blank and n % 4 == 1:
            return ("", " ")[n // 4 % 2]
        return f"{_TEXTS[n % len(_TEXTS)]} {n}"
    if kind == "integer":
        return _INTEGERS[n] if n < len(_INTEGERS) else 1_000 + n  # then no value repeats
    if kind == "boolean":
        return n % 2 == 0
    if kind == "money":
        pool = _MONEY + _NEGATIVE_MONEY if fd.negative else _MONEY
        return pool[n % len(pool)]
    if kind == "currency":
        return _CURRENCIES[n % len(_CURRENCIES)]
    if kind == "instant":
        return _INSTANTS[n % len(_INSTANTS)]
    if kind == "date":
        return _DATES[n % len(_DATES)]
    if kind == "uuid":
        return _UUIDS[n % len(_UUIDS)]
    if kind == "enum":
        members = list(fd.type)
        return members[n % len(members)]
    if kind == "text_set":
        return _TEXT_SETS[n % len(_TEXT_SETS)]
    if kind == "text_list":
        return tuple(sorted(_TEXT_SETS[n % len(_TEXT_SETS)], reverse=n % 2 == 1))
    if kind == "many":
        return tuple(example_value_object(fd.type, n + i) for i in range(n % 3 + (n == 0)))
    if kind == "attributes":
        return _ATTRIBUTES[n % len(_ATTRIBUTES)]
    if kind == "binary":
        return bytes(range(n % 7, n % 7 + n % 5 * 60)) + b"\x00\xff" * (n % 3)
    if kind == "ref":
        assert fd.target is not None
        ids = targets.of(fd.target) if targets is not None else ()
        if not ids:
            if fd.nullable:
                return None
            raise ValueError(f"{fd.name} refers to {fd.target}: pass targets=add_targets(crm, ...)")
        # (n + n // len) rather than n: two references of one record (a key of both) go through
        # every pair of targets as n grows, not the same len(ids) pairs over and over
        return ids[(n + n // len(ids)) % len(ids)]
    if kind == "ref_any":
        refs = targets.refs if targets is not None else ()
        if not refs:
            if fd.nullable:
                return None
            raise ValueError(f"{fd.name} refers to any record: pass targets=add_targets(crm, ...)")
        return refs[n % len(refs)]
    raise ValueError(f"{fd.name}: no examples of {kind} fields")


def declared_examples(cls: type) -> Mapping[str, tuple[Any, ...]]:
    """The values a declaration asks the test kit to draw for some of its fields.

    A class may set ``__crmkit_examples__ = {"status": (Status.DRAFT, ...)}`` when random
    values of a field's kind would break one of its rules (a probability above 1, an
    activated order edited); the kit then draws that field from these values only.
    """
    found = getattr(cls, "__crmkit_examples__", None) or {}
    return {name: tuple(values) for name, values in found.items()}


def _example_of(fd: FieldDef, n: int, examples: Mapping[str, tuple[Any, ...]], targets: Targets | None) -> Any:
    values = examples.get(fd.name)
    if values:
        return values[n % len(values)]
    return example_value(fd, n, targets=targets)


def example_value_object(cls: type, n: int = 0) -> Any:
    """Value object number ``n`` of a ``@schema.value_object`` class, every field set."""
    examples = declared_examples(cls)
    return cls(**{fd.name: _example_of(fd, n + i, examples, None) for i, fd in enumerate(declared_fields(cls))})


def example_record(
    aggregate: AggregateSpec | type, n: int = 0, *, targets: Targets | None = None, **fields: Any
) -> Any:
    """Record number ``n`` of an aggregate (new: version 0), every field set; ``fields`` override.

    Records with different ``n`` differ in their text fields, so they hold different unique
    keys whenever a key has a text part; references point at ``targets``.
    """
    spec = aggregate_spec(aggregate)
    examples = declared_examples(spec.cls)
    values = {
        name: _example_of(fd, n + i, examples, targets)
        for i, (name, fd) in enumerate(spec.declared.items())
        if name not in fields
    }
    return spec.cls(**values, **fields)

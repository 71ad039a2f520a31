"""Aggregate specs and the schema of a connection: every aggregate, its fields, references and keys.

``crm.schema`` lists crmkit's own aggregates and those plugins add through the
``crmkit_aggregates`` hook, with every reference in both directions: the features that
must reach every record about something (delete cascades, merge, erase) walk it instead
of knowing the aggregates by name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from crmkit._errors import PluginError, ValidationError
from crmkit.schema._fields import FieldDef, field_def
from crmkit.schema._specs import COMMON_FIELDS, EntitySpec, FieldSpec

__all__ = ["AggregateSpec", "Reference", "Schema", "build_spec", "builtin_aggregate_of", "hand_tuned"]

#: How each declared kind is queried (``crmkit.query``); kinds absent here are not queryable.
QUERY_KINDS: Mapping[str, str] = {
    "text": "text",
    "currency": "text",
    "enum": "text",
    "integer": "int",
    "boolean": "bool",
    "money": "decimal",
    "instant": "datetime",
    "date": "date",
    "uuid": "uuid",
    "ref": "uuid",
    "text_set": "text_set",
}

#: The queryable fields of ``schema.Record``: those every stored record has, and the external id.
_RECORD_QUERY_FIELDS = (*COMMON_FIELDS, FieldSpec("external_id", "text", nullable=True))


@attrs.frozen
class Reference:
    """A field of aggregate ``source`` that points at records of ``target`` (None: any aggregate)."""

    source: str
    field: str
    target: str | None
    on_delete: str
    nullable: bool

    @property
    def any(self) -> bool:
        """A ``ref_any`` field: (aggregate, id) pairs that may point at any aggregate."""
        return self.target is None


@attrs.frozen
class AggregateSpec(EntitySpec):
    """An aggregate as declared with ``@schema.aggregate``: the store's EntitySpec and the declaration."""

    declared: Mapping[str, FieldDef] = attrs.field(factory=dict)
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    references: tuple[Reference, ...] = ()
    #: Whether stores keep the aggregate in the layout they derive from the declaration (every
    #: plugin's aggregate). False for crmkit's hand-tuned four (customers, relationships,
    #: interactions, transactions): their stored form predates the schema layer and stays
    #: byte for byte, with bulk and read paths tuned by hand.
    derived: bool = True

    def record_value(self, record: Any, name: str) -> Any:
        if name.startswith("attributes."):
            return record.attributes.get(name[len("attributes.") :])
        if "." in name:  # a ref_any part: about.aggregate, about.id
            head, part = name.split(".", 1)
            value = getattr(record, head)
            return None if value is None else getattr(value, part)
        value = getattr(record, name)
        return value.value if isinstance(value, enum.Enum) else value


def _names(
    field: str, keys: Sequence[Sequence[str]], known: Mapping[str, Any], cls: type
) -> tuple[tuple[str, ...], ...]:
    out = []
    for key in keys:
        if isinstance(key, str):
            key = (key,)
        key = tuple(key)
        if not key:
            raise ValidationError(field, "a key names at least one field", key)
        for name in key:
            if name not in known:
                raise ValidationError(field, f"names {name!r}, which is not a field of {cls.__name__}", key)
        out.append(key)
    return tuple(out)


def build_spec(
    cls: type,
    *,
    name: str,
    label: str | None,
    time_field: str | None,
    unique: Sequence[Sequence[str]],
    indexes: Sequence[Sequence[str]],
    default_order: Sequence[str] | None,
) -> AggregateSpec:
    """The AggregateSpec of a freshly declared class (called by ``schema.aggregate``)."""
    declared = {fd.name: fd for a in attrs.fields(cls) if (fd := field_def(a)) is not None}
    query: dict[str, FieldSpec] = {f.name: f for f in _RECORD_QUERY_FIELDS}
    references: list[Reference] = []
    has_attributes = False
    for fd in declared.values():
        if fd.kind == "attributes":
            if fd.name != "attributes":
                raise ValidationError(fd.name, "the attributes field must be called 'attributes'", cls.__name__)
            has_attributes = True
        elif fd.kind == "ref_any":
            for part, kind in (("aggregate", "text"), ("id", "uuid")):
                path = f"{fd.name}.{part}"
                query[path] = FieldSpec(path, kind, nullable=fd.nullable, sortable=fd.sortable)  # type: ignore[arg-type]
            references.append(Reference(name, fd.name, None, fd.on_delete or "cascade", fd.nullable))
        elif fd.kind in QUERY_KINDS:
            query[fd.name] = FieldSpec(
                fd.name,
                QUERY_KINDS[fd.kind],  # type: ignore[arg-type]
                nullable=fd.nullable,
                sortable=fd.sortable,
                search=fd.search,
            )
            if fd.kind == "ref":
                assert fd.target is not None and fd.on_delete is not None
                references.append(Reference(name, fd.name, fd.target, fd.on_delete, fd.nullable))
    if time_field is not None:
        found = declared.get(time_field)
        if found is None or found.kind != "instant" or found.nullable:
            raise ValidationError("time_field", f"must name a required instant field of {cls.__name__}", time_field)
    known = {**declared, **{f.name: f for f in _RECORD_QUERY_FIELDS}}
    unique_keys = _names("unique", unique, known, cls)
    index_keys = _names("indexes", indexes, known, cls)
    for what, keys in (("unique", unique_keys), ("indexes", index_keys)):
        for key in keys:
            for part in key:
                kind = declared[part].kind if part in declared else "record"
                # an index may hold a ref_any field (its aggregate and id); a unique key may not
                if kind in ("many", "attributes", "text_set", "binary") or (kind == "ref_any" and what == "unique"):
                    raise ValidationError(what, f"{part} is a {kind} field and cannot be part of a key", key)
    if default_order is None:
        default_order = (time_field, "id") if time_field is not None else ("id",)
    customer_field = next((r.field for r in references if r.target == "customers" and not r.nullable), None)
    return AggregateSpec(
        name=name,
        label=label or name.rstrip("s").replace("_", " ") or name,
        cls=cls,
        fields=query,
        customer_field=customer_field,
        time_field=time_field,
        has_attributes=has_attributes,
        has_external_id=True,
        default_order=tuple(default_order),
        declared=declared,
        unique=unique_keys,
        indexes=index_keys,
        references=tuple(references),
    )


def hand_tuned(cls: type, **changes: Any) -> AggregateSpec:
    """Mark one of crmkit's own declared aggregates as stored in its hand-tuned layout.

    ``changes`` adjusts what the declaration cannot say for these older aggregates (the
    relationships' natural key, a customer field left unset).
    """
    spec = getattr(cls, "__crmkit_spec__")  # noqa: B009 - set by schema.aggregate
    tuned: AggregateSpec = attrs.evolve(spec, derived=False, **changes)
    cls.__crmkit_spec__ = tuned  # type: ignore[attr-defined]
    return tuned


def _references_of(spec: EntitySpec) -> tuple[Reference, ...]:
    if isinstance(spec, AggregateSpec):
        return spec.references
    if spec.customer_field is not None:  # an older, hand-written spec: its records belong to a customer
        return (Reference(spec.name, spec.customer_field, "customers", "cascade", False),)
    return ()


def builtin_aggregate_of(cls: type) -> str | None:
    """The aggregate name of one of crmkit's own record classes (Customer: customers), else None."""
    from crmkit.entities import ENTITIES

    for spec in ENTITIES.values():
        if spec.cls is cls:
            return spec.name
    return None


class Schema:
    """Every aggregate a connection knows, with fields, references (both directions), unique keys and indexes."""

    def __init__(self, declared: Iterable[AggregateSpec] = ()) -> None:
        from crmkit.entities import ENTITIES

        self._specs: dict[str, EntitySpec] = dict(ENTITIES)
        self._declared: dict[str, AggregateSpec] = {
            name: spec for name, spec in ENTITIES.items() if isinstance(spec, AggregateSpec)
        }
        for spec in declared:
            if spec.name in self._specs:
                owner = self._specs[spec.name].cls
                raise PluginError(
                    f"two aggregates are named {spec.name!r}: {owner.__module__}.{owner.__qualname__} "
                    f"and {spec.cls.__module__}.{spec.cls.__qualname__}"
                )
            self._specs[spec.name] = spec
            self._declared[spec.name] = spec
        self._outgoing = {name: _references_of(spec) for name, spec in self._specs.items()}
        for spec in self._declared.values():
            if not spec.derived:
                # crmkit's hand-tuned aggregates may name records of its own declared ones (a
                # transaction's order, from crmkit.sales, which every connection registers); a
                # schema built without those holds no record such a reference could name
                continue
            for ref in spec.references:
                if ref.target is not None and ref.target not in self._specs:
                    raise PluginError(
                        f"{spec.name}.{ref.field} refers to aggregate {ref.target!r}, which no plugin declares "
                        f"(known: {', '.join(sorted(self._specs))})"
                    )

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> EntitySpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ValidationError(
                "aggregate", f"is not a registered aggregate (known: {', '.join(sorted(self._specs))})", name
            ) from None

    @property
    def aggregates(self) -> Mapping[str, EntitySpec]:
        """Every aggregate by name, crmkit's own first."""
        return dict(self._specs)

    @property
    def declared(self) -> Mapping[str, AggregateSpec]:
        """The aggregates declared with ``@schema.aggregate``: crmkit's own and plugins'."""
        return dict(self._declared)

    @property
    def derived(self) -> Mapping[str, AggregateSpec]:
        """The declared aggregates stores keep in the layout they derive from the declaration.

        Every aggregate but crmkit's hand-tuned customers, relationships, interactions and
        transactions (``AggregateSpec.derived``).
        """
        return {name: spec for name, spec in self._declared.items() if spec.derived}

    def spec(self, aggregate: type | str) -> EntitySpec:
        """The spec of an aggregate, by name or class (a registered class only)."""
        if isinstance(aggregate, str):
            return self[aggregate]
        for spec in self._specs.values():
            if spec.cls is aggregate:
                return spec
        raise ValidationError(
            "aggregate", f"{getattr(aggregate, '__name__', aggregate)} is not a registered aggregate", aggregate
        )

    def references_from(self, name: str) -> tuple[Reference, ...]:
        """The references fields of aggregate ``name`` hold."""
        self[name]
        return self._outgoing[name]

    def references_to(self, name: str) -> tuple[Reference, ...]:
        """Every reference that may point at a record of ``name``: typed ones, then ``ref_any`` fields."""
        self[name]
        typed = [r for refs in self._outgoing.values() for r in refs if r.target == name]
        anywhere = [r for refs in self._outgoing.values() for r in refs if r.target is None]
        return tuple(typed + anywhere)

    def __repr__(self) -> str:
        return f"<Schema {', '.join(self._specs)}>"

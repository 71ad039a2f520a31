"""The checks of ``add_from``: every field of the new records proven to hold a valid value before the store builds them.

A store builds the records of ``add_from`` itself (``INSERT ... SELECT``, a pipeline) and
runs none of the Python that record construction runs, so each field's value is checked
here, once, from the declarations: a constant goes through the field's own converter and
checks, a copied field must be of a kind whose every stored value the target field would
accept, and a condition only fills a boolean field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from crmkit._errors import ValidationError
from crmkit.entities import EntitySpec
from crmkit.query import Const, Copy, Test, Value, value_of
from crmkit.schema import AggregateSpec
from crmkit.schema._declare import _RECORD_FIELDS
from crmkit.schema._fields import FieldDef, Ref, bound_converter, field_def

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["RECORD_FIELDS", "bound_values", "source_spec"]

#: The fields the store gives every new record itself (those of ``schema.Record``): never in ``values``.
RECORD_FIELDS = _RECORD_FIELDS

#: What the source's record fields hold, seen as declared fields (every stored record has them set).
_RECORD_DEFS = {
    "created_at": FieldDef("instant", name="created_at"),
    "updated_at": FieldDef("instant", name="updated_at"),
    "version": FieldDef("integer", name="version"),
    "external_id": FieldDef("text", name="external_id", nullable=True),
}

#: Kinds that fit one another both ways as stored values (a reference is a uuid; a uuid proves no record).
_SAME_KIND = {"ref": "uuid"}


def source_spec(crm: CRM, source: object) -> AggregateSpec:
    """The declared aggregate ``source`` names (a class or a name); ValidationError naming ``source`` otherwise."""
    if not isinstance(source, (str, type)):
        raise ValidationError("source", "must be an aggregate: its class or its name", source)
    if isinstance(source, str) and source not in crm.schema:
        raise ValidationError("source", f"{source!r} is not a registered aggregate", source)
    try:
        spec = crm.schema.spec(source)
    except ValidationError as exc:
        raise ValidationError("source", exc.message, source) from None
    if not isinstance(spec, AggregateSpec):
        raise ValidationError("source", f"{spec.name} is not a declared aggregate", source)
    return spec


def bound_values(crm: CRM, target: EntitySpec, source: AggregateSpec, values: object) -> dict[str, Value]:
    """What each stored field of ``target`` is made of, checked (``Repository.insert_from``'s ``values``).

    Every given value is checked against its field; fields left out take their defaults
    (ValidationError naming a required one). Conditions are bound on ``source`` with relative
    instants counted back from now.
    """
    if not isinstance(target, AggregateSpec):
        raise ValidationError(target.label, f"{target.name} is not a declared aggregate", None)
    if not isinstance(values, Mapping):
        raise ValidationError("values", "must be a mapping of field names to values", values)
    fields = {a.name: a for a in attrs.fields(target.cls)}
    now = crm.now()
    built: dict[str, Value] = {}
    for name, given in values.items():
        if not isinstance(name, str):
            raise ValidationError("values", "names fields with strings", name)
        if name in RECORD_FIELDS:
            raise ValidationError(name, "is set by the store for every new record: leave it out of values", given)
        declared = target.declared.get(name)
        if declared is None or name not in fields:
            raise ValidationError(name, f"is not a field of {target.label}s", given)
        value = value_of(given)
        if isinstance(value, Const):
            built[name] = Const(_constant(crm, declared, value.value))
        elif isinstance(value, Copy):
            _check_copy(target, source, declared, value)
            built[name] = value
        else:
            built[name] = _test(crm, source, declared, value, now)
    for name, attribute in fields.items():
        if name in built or name in RECORD_FIELDS:
            continue
        declared = target.declared.get(name)
        default = attribute.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]  # a plain attrs field's factory
            default = default.factory()
        if declared is None:
            built[name] = Const(default)
            continue
        if declared.required:
            raise ValidationError(name, "is required (it has no default): give it in values", None)
        built[name] = Const(bound_converter(declared)(default))
    _check_whole(target, built)
    return built


def _check_whole(target: AggregateSpec, built: Mapping[str, Value]) -> None:
    """An aggregate that checks its records as a whole (``__attrs_post_init__``) takes only constants."""
    if getattr(target.cls, "__attrs_post_init__", None) is None:
        return
    varying = sorted(name for name, value in built.items() if not isinstance(value, Const))
    if varying:
        raise ValidationError(
            "values",
            f"{target.cls.__name__} checks each record as a whole in Python (__attrs_post_init__), which stores "
            f"cannot run on the records they build: {', '.join(varying)} must be constants (or use add_many)",
            varying,
        )
    target.cls(**{name: value.value for name, value in built.items() if isinstance(value, Const)})


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _constant(crm: CRM, declared: FieldDef, value: Any) -> Any:
    """The stored form of a constant, checked as record construction checks it; a reference must name a record."""
    stored = bound_converter(declared)(value)
    if stored is None:
        return stored
    pointer: tuple[str, Any] | None = None
    if declared.kind == "ref" and declared.target is not None:
        pointer = (declared.target, stored)
    elif declared.kind == "ref_any" and isinstance(stored, Ref):
        pointer = (stored.aggregate, stored.id)
    if pointer is not None:
        aggregate, id = pointer
        if aggregate not in crm.schema:
            raise ValidationError(declared.name, f"refers to {aggregate!r}, not a registered aggregate", value)
        spec = crm.schema[aggregate]
        if not crm.store.repository(spec).existing_ids(crm.tenant, [id]):
            raise ValidationError(declared.name, f"no {spec.label} with this id in this tenant", value)
    return stored


def _test(crm: CRM, source: AggregateSpec, declared: FieldDef, value: Test, now: Any) -> Test:
    if declared.kind != "boolean":
        raise ValidationError(
            declared.name, f"is {_a(declared.kind)} field: a condition gives True or False, for a boolean field", None
        )
    _no_python(declared, None)
    from crmkit.services.records import bound_on

    return Test(bound_on(crm, source, value.where, now))


def _no_python(declared: FieldDef, given: FieldDef | None) -> None:
    """A field with its own Python check (or normalizer) takes only values that passed the very same one."""
    for what in ("check", "convert"):
        mine = getattr(declared, what)
        if mine is not None and (given is None or getattr(given, what) is not mine):
            raise ValidationError(
                declared.name,
                f"has a {what}= function, which stores cannot run on the values they build: copy it only from "
                f"a field with the very same {what} (or give a constant)",
                None,
            )


def _source_def(target: FieldDef, source: AggregateSpec, value: Copy) -> FieldDef:
    """The declaration of what ``value`` copies, as a field (nullable when a list may be empty)."""
    path, name = value.path, target.name
    if not isinstance(path, str) or not path:
        raise ValidationError(name, "copies a field named by a non-empty string", path)
    head, dot, rest = path.partition(".")
    found: FieldDef | None = None
    if not dot:
        if path == "id":
            found = FieldDef("ref", name="id", target=source.name)
        elif path == "external_id" and not source.has_external_id:
            found = None
        else:
            found = _RECORD_DEFS.get(path) or source.declared.get(path)
        if found is not None and value.first:
            raise ValidationError(name, f"copies {path}, not a list: first=True is for a list field's items", path)
    elif head == "attributes" and source.has_attributes and rest:
        raise ValidationError(
            name,
            f"copies {path}, a custom attribute, which may hold a value of any type: no typed field is sure to "
            "take it (copy a declared field, or the whole attributes mapping into attributes)",
            path,
        )
    else:
        outer = source.declared.get(head)
        if outer is not None and outer.kind == "many":
            item = {a.name: a for a in attrs.fields(outer.type)}.get(rest)
            inner = field_def(item) if item is not None else None
            if inner is not None:
                if not value.first:
                    raise ValidationError(
                        name,
                        f"copies {path} through the list {head}: copy the first element's (F({path!r}).first())",
                        path,
                    )
                found = attrs.evolve(inner, nullable=True)  # None when the list is empty
        elif outer is not None and outer.kind == "ref_any" and rest in ("aggregate", "id") and not value.first:
            found = FieldDef("text" if rest == "aggregate" else "uuid", name=path, nullable=outer.nullable)
    if found is None:
        raise ValidationError(name, f"copies {path!r}, which is not a field of {source.label}s", path)
    return found


def _check_copy(target: AggregateSpec, source: AggregateSpec, declared: FieldDef, value: Copy) -> None:
    """ValidationError naming the target field unless every value the copied field may hold is one it takes."""
    given = _source_def(declared, source, value)
    name, path = declared.name, value.path
    mine, theirs = declared.kind, given.kind
    if _SAME_KIND.get(mine, mine) != _SAME_KIND.get(theirs, theirs) or (mine == "ref" and theirs != "ref"):
        what = f"{_a(theirs)} field" if theirs != "ref" else "a reference"
        raise ValidationError(name, f"is {_a(mine)} field: it cannot take {path}, {what}", path)
    if mine == "ref" and given.target != declared.target:
        wanted = declared.target
        copied = f"the id of a {source.label}" if path == "id" else f"a reference to {given.target}"
        raise ValidationError(
            name,
            f"refers to {wanted}: copy it from the id of a {wanted} record or from a reference to {wanted}, "
            f"not from {path} ({copied})",
            path,
        )
    if mine in ("enum", "many") and given.type is not declared.type:
        raise ValidationError(name, f"holds {declared.type.__name__} values: {path} holds {given.type.__name__}", path)
    if mine == "money" and given.negative and not declared.negative:
        raise ValidationError(name, f"may not be negative: {path} may be", path)
    if mine == "text":
        if given.blank and not declared.blank:
            raise ValidationError(name, f"may not be blank: {path} may be", path)
        if declared.choices is not None and not (
            given.choices is not None and set(given.choices) <= set(declared.choices)
        ):
            raise ValidationError(name, f"takes only {', '.join(declared.choices)}: {path} may hold other texts", path)
    if given.nullable and not declared.nullable:
        reason = "is None when the list is empty" if value.first else "may be missing (None)"
        raise ValidationError(name, f"is required: {path} {reason}", path)
    _no_python(declared, given)

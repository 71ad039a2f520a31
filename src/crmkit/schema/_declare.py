"""``@schema.aggregate`` and ``@schema.value_object``: a class declared once, checked on construction.

The decorators turn a class whose fields use the helpers of ``crmkit.schema`` into a
frozen, slotted attrs class with keyword-only arguments, bind every field's checking
converter to its name (so a ``ValidationError`` names the field), and, for aggregates,
attach the ``AggregateSpec`` that backends, services, events and tests derive from.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit._validation import check_identifier, optional_aware, positive_int, uuid_field, valid_external_id
from crmkit.schema import _fields
from crmkit.schema._fields import FieldDef, bound_converter, field_def

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform

    from crmkit.schema._registry import AggregateSpec
elif sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # Python 3.10: the marker only informs type checkers

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorated: decorated


__all__ = ["Record", "aggregate", "spec_of", "value_object"]

C = TypeVar("C", bound=type)

#: Names no declaration may use: the stores keep them for themselves.
RESERVED = frozenset({"tenant"})


if TYPE_CHECKING:  # type checkers see Record's fields as those of every declared aggregate

    @dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(attrs.field,))
    def _record_base(cls: C) -> C: ...

else:

    def _record_base(cls: C) -> C:
        return cls


@_record_base
@attrs.frozen(kw_only=True)
class Record:
    """The fields every stored record has: id, created_at, updated_at, version and external_id.

    ``created_at``, ``updated_at`` and ``version`` are set by the store: a record built in
    code has version 0 until it is added. ``external_id`` is the key of the record in the
    system it was imported from (unique per tenant; imports are idempotent by it).
    """

    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)
    external_id: str | None = attrs.field(default=None, validator=valid_external_id)


_RECORD_FIELDS = tuple(a.name for a in attrs.fields(Record))


# ``schema.attributes`` is left out of the field specifiers on purpose: type checkers then take
# its call as the field's default, so ``attributes`` is optional as it is at run time.


def _binder(kw_only: bool) -> Callable[[type, list[attrs.Attribute[Any]]], list[attrs.Attribute[Any]]]:
    def bind(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
        """attrs field transformer: give each schema field its name and its checking converter."""
        out = []
        for attribute in fields:
            fd = field_def(attribute)
            if fd is None:
                if attribute.name not in _RECORD_FIELDS:
                    raise ValidationError(
                        attribute.name, f"of {cls.__name__} is not declared with a crmkit.schema field helper", None
                    )
                out.append(attribute)
                continue
            if attribute.name in RESERVED or attribute.name.startswith("_"):
                raise ValidationError(attribute.name, "is a name crmkit keeps for itself", cls.__name__)
            check_identifier(attribute.name, attribute.name)
            fd = attrs.evolve(fd, name=attribute.name)
            out.append(
                attribute.evolve(
                    converter=bound_converter(fd),
                    kw_only=kw_only,
                    metadata={**attribute.metadata, _fields.METADATA_KEY: fd},
                )
            )
        return out

    return bind


def declared_fields(cls: type) -> tuple[FieldDef, ...]:
    """The FieldDefs of a declared class, in declaration order (Record's own fields left out)."""
    return tuple(fd for a in attrs.fields(cls) if (fd := field_def(a)) is not None)


@overload
def value_object(cls: C, /) -> C: ...


@overload
def value_object(*, kw_only: bool = True) -> Callable[[C], C]: ...


@dataclass_transform(
    frozen_default=True,
    kw_only_default=True,
    field_specifiers=(
        attrs.field,
        _fields.text,
        _fields.condition,
        _fields.integer,
        _fields.boolean,
        _fields.money,
        _fields.currency,
        _fields.instant,
        _fields.date,
        _fields.uuid,
        _fields.enum,
        _fields.text_set,
        _fields.text_list,
        _fields.many,
        _fields.ref,
        _fields.ref_any,
    ),
)
def value_object(cls: C | None = None, /, *, kw_only: bool = True) -> Any:
    """A small immutable value kept inside a record (``schema.many(Seat)``): no id, no versions.

    Used bare (``@schema.value_object``) its fields are keyword-only; ``kw_only=False``
    lets them be given by position too, in declaration order. A value object may extend
    another (``class OrderLine(Line)``): it has the base's fields, then its own, and is a
    class of its own (an ``OrderLine`` never equals a ``Line``).
    """

    def declare(cls: C) -> C:
        inherited = attrs.has(cls) and getattr(cls, "__crmkit_value_object__", False)
        if "__attrs_attrs__" in vars(cls) or (attrs.has(cls) and not inherited):
            raise ValidationError("value_object", "decorate a plain class, not an attrs class", cls)
        made: Any = attrs.frozen(kw_only=kw_only, field_transformer=_binder(kw_only))(cls)
        for fd in declared_fields(made):
            if fd.kind in ("ref", "ref_any", "attributes", "binary"):
                raise ValidationError(
                    fd.name, f"{fd.kind} fields belong on aggregates, not value objects", cls.__name__
                )
            if fd.search:
                raise ValidationError(fd.name, "search=True belongs on aggregates' fields", cls.__name__)
        made.__crmkit_value_object__ = True
        return made  # type: ignore[no-any-return]

    return declare if cls is None else declare(cls)


@dataclass_transform(
    frozen_default=True,
    kw_only_default=True,
    field_specifiers=(
        attrs.field,
        _fields.text,
        _fields.condition,
        _fields.integer,
        _fields.boolean,
        _fields.money,
        _fields.currency,
        _fields.instant,
        _fields.date,
        _fields.uuid,
        _fields.enum,
        _fields.text_set,
        _fields.text_list,
        _fields.many,
        _fields.ref,
        _fields.ref_any,
    ),
)
def aggregate(
    name: str,
    *,
    label: str | None = None,
    time_field: str | None = None,
    unique: Sequence[Sequence[str]] = (),
    indexes: Sequence[Sequence[str]] = (),
    default_order: Sequence[str] | None = None,
    kw_only: bool = True,
) -> Callable[[C], C]:
    """Declare an aggregate stored under ``name`` (a table or collection per tenant-aware store).

    ``time_field`` names the business time (an ``instant`` field) that timelines and
    default ordering use; ``unique`` lists keys (tuples of field names) the database keeps
    unique per tenant; ``indexes`` lists the look-ups worth an index. Arguments are
    keyword-only unless ``kw_only=False``, which lets the declared fields (not the record's
    own: id, versions, external id) be given by position, in declaration order.
    """
    check_identifier("aggregate", name)

    def declare(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, Record)):
            raise ValidationError("aggregate", f"{getattr(cls, '__name__', cls)} must subclass schema.Record", cls)
        made: Any = attrs.frozen(kw_only=kw_only, field_transformer=_binder(kw_only))(cls)
        from crmkit.schema._registry import build_spec

        made.__crmkit_aggregate__ = name
        made.__crmkit_spec__ = build_spec(
            made,
            name=name,
            label=label,
            time_field=time_field,
            unique=unique,
            indexes=indexes,
            default_order=default_order,
        )
        return made  # type: ignore[no-any-return]

    return declare


def spec_of(cls: type) -> AggregateSpec:
    """The AggregateSpec of a class declared with ``@schema.aggregate``."""
    spec = getattr(cls, "__crmkit_spec__", None)
    if spec is None or getattr(cls, "__crmkit_aggregate__", None) != spec.name or spec.cls is not cls:
        raise ValidationError(
            "aggregate", f"{getattr(cls, '__name__', cls)} is not declared with @schema.aggregate", cls
        )
    return spec  # type: ignore[no-any-return]

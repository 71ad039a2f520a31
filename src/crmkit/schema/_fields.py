"""Field helpers: one call per field says its type, default, and how it may be used.

Each helper returns an ``attrs`` field whose converter and validator check the value on
construction (a ``ValidationError`` names the field) and whose metadata carries a
``FieldDef``: the facts backends, the query language, strategies and docs derive from.
"""

from __future__ import annotations

import datetime as dt
import enum as _enum
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

import attrs

from crmkit._currencies import ISO_4217
from crmkit._errors import ValidationError
from crmkit._validation import (
    _check_text,
    check_identifier,
    frozen_attributes,
    utc,
)
from crmkit._validation import (
    money as _money_converter,
)
from crmkit._validation import (
    text_set as _text_set_converter,
)

__all__ = [
    "KINDS",
    "MISSING",
    "PERSONAL",
    "TEXT_KINDS",
    "FieldDef",
    "OnDelete",
    "Ref",
    "attributes",
    "binary",
    "boolean",
    "condition",
    "currency",
    "date",
    "enum",
    "field_def",
    "instant",
    "integer",
    "many",
    "money",
    "ref",
    "ref_any",
    "text",
    "text_list",
    "text_set",
    "uuid",
]

OnDelete = Literal["cascade", "restrict", "set_null"]
#: What a field's ``personal=`` says: the kind of personal data it holds, or False for none.
Personal = Literal["identity", "contact", "financial", "free_text", False]
ON_DELETE: tuple[str, ...] = ("cascade", "restrict", "set_null")

#: Every field kind a declaration may use.
KINDS: tuple[str, ...] = (
    "text",
    "integer",
    "boolean",
    "money",
    "currency",
    "instant",
    "date",
    "uuid",
    "enum",
    "text_set",
    "text_list",
    "many",
    "attributes",
    "ref",
    "ref_any",
    "binary",
)

#: The most bytes a ``binary`` field holds (a quarter of MongoDB's document limit): larger
#: contents are kept as several records (crmkit.documents stores files in chunks).
MAX_BINARY = 4 * 2**20

#: The kinds of personal data a field may hold: who the person is (names, keys that identify
#: them), how to reach them (addresses, numbers, handles), money that is theirs (account
#: numbers, income), and free text written about them (notes, summaries, custom attributes).
PERSONAL: tuple[str, ...] = ("identity", "contact", "financial", "free_text")

#: The kinds whose fields must say whether they hold personal data (``personal=``): any of them
#: may hold a name or an address, and a field left unclassified would escape export and erasure.
TEXT_KINDS: tuple[str, ...] = ("text", "text_list", "text_set", "many", "attributes")

_INT64 = 2**63
METADATA_KEY = "crmkit"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: The default of a field that must be given.
MISSING: Any = _Missing()


@attrs.frozen
class FieldDef:
    """What a declared field is: its kind, whether it may be None, and how it may be used.

    ``name`` is filled in by the declaration (``schema.aggregate``/``schema.value_object``).
    """

    kind: str
    name: str = ""
    nullable: bool = False
    sortable: bool = False
    #: The kind of personal data the field holds (one of ``PERSONAL``), False when it holds
    #: none, None when the declaration does not say (refused for ``TEXT_KINDS`` by a test).
    personal: str | Literal[False] | None = None
    default: Any = MISSING
    #: ``enum``: the enum class; ``many``: the value-object class.
    type: Any = None
    #: ``ref``: the aggregate name referred to.
    target: str | None = None
    #: ``ref``/``ref_any``: what happens to this record when the referred one is deleted.
    on_delete: str | None = None
    #: ``money``: whether negative amounts are allowed.
    negative: bool = False
    #: ``text``: whether the empty (or blank) string is allowed.
    blank: bool = False
    #: ``text``: the only values allowed (None: any text).
    choices: tuple[str, ...] | None = None
    #: ``text``: stores keep the folded form beside the value, indexed, for ``matches`` and
    #: ``startswith(fold=True)`` (``crmkit.search``).
    search: bool = False
    #: A further check run after the kind's own (never on None): ``check(value) -> value``.
    #: It may normalise the value (``Channel``, a stage) and raises ``ValidationError`` to refuse it.
    check: Callable[[Any], Any] | None = attrs.field(default=None, eq=False)
    #: A normalizer applied before the kind's check (``convert=``): turns what callers give
    #: (a dict of opening hours, a query expression) into the declared kind's stored form.
    #: It must return stored values unchanged, since records are rebuilt from what is stored.
    convert: Callable[[Any], Any] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def is_personal(self) -> bool:
        """Whether the field holds personal data (export returns it, erasure anonymises it)."""
        return bool(self.personal)


@attrs.frozen
class Ref:
    """A reference to a record of any aggregate: its aggregate name and id (``schema.ref_any``)."""

    aggregate: str
    id: _uuid.UUID

    def __attrs_post_init__(self) -> None:
        check_identifier("aggregate", self.aggregate)
        if not isinstance(self.id, _uuid.UUID):
            raise ValidationError("id", "must be a uuid.UUID", self.id)


def field_def(attribute: attrs.Attribute[Any]) -> FieldDef | None:
    """The FieldDef of an attrs attribute declared with a schema helper, or None."""
    found = attribute.metadata.get(METADATA_KEY)
    return found if isinstance(found, FieldDef) else None


# --------------------------------------------------------------------------- converters


def _nullable(convert: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        return None if value is None else convert(name, value)

    return check


def _text(name: str, value: Any) -> str:
    return _check_text(name, value, allow_empty=False)


def _blank_text(name: str, value: Any) -> str:
    return _check_text(name, value, allow_empty=True)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be an int, not {type(value).__name__}", value)
    if not -_INT64 <= value < _INT64:
        raise ValidationError(name, "must fit in 64 bits", value)
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(name, f"must be True or False, not {type(value).__name__}", value)
    return value


def _currency(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in ISO_4217:
        raise ValidationError(name, "must be an ISO 4217 currency code such as EUR or USD", value)
    return value


def _instant(name: str, value: Any) -> dt.datetime:
    return utc(value, name)


def _date(name: str, value: Any) -> dt.date:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValidationError(name, f"must be a date (not {type(value).__name__})", value)
    return value


def _uuid_value(name: str, value: Any) -> _uuid.UUID:
    if not isinstance(value, _uuid.UUID):
        raise ValidationError(name, f"must be a uuid.UUID, not {type(value).__name__}", value)
    return value


def _enum_converter(kind: type[_enum.Enum]) -> Callable[[str, Any], Any]:
    def convert(name: str, value: Any) -> Any:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except (ValueError, TypeError):
            allowed = ", ".join(str(m.value) for m in kind)
            raise ValidationError(name, f"must be one of {allowed}", value) from None

    return convert


def _many_converter(item: type) -> Callable[[str, Any], tuple[Any, ...]]:
    def convert(name: str, value: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise ValidationError(name, f"must be a sequence of {item.__name__}", value)
        out = []
        for i, element in enumerate(value):
            if isinstance(element, Mapping):
                try:
                    element = item(**element)
                except TypeError as exc:
                    raise ValidationError(f"{name}[{i}]", f"is not a {item.__name__}: {exc}", element) from None
                except ValidationError as exc:
                    raise ValidationError(f"{name}[{i}].{exc.field}", exc.message, exc.value) from None
            elif not isinstance(element, item):
                raise ValidationError(f"{name}[{i}]", f"must be a {item.__name__}", element)
            out.append(element)
        return tuple(out)

    return convert


def _text_list(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(name, "must be a sequence of strings", value)
    items = tuple(value)
    for item in items:
        _check_text(name, item, allow_empty=False)
    return items


def _binary(name: str, value: Any) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ValidationError(name, f"must be bytes, not {type(value).__name__}", value)
    if len(value) > MAX_BINARY:
        message = f"holds {len(value):,} bytes; a binary field holds at most {MAX_BINARY:,}"
        raise ValidationError(name, message, len(value))
    return value


def _ref_any(name: str, value: Any) -> Ref:
    if isinstance(value, Ref):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        aggregate, id = value
        try:
            return Ref(aggregate, id)
        except ValidationError as exc:
            raise ValidationError(name, f"is not an (aggregate, id) pair: {exc.message}", value) from None
    aggregate_name = getattr(type(value), "__crmkit_aggregate__", None)
    if aggregate_name is None:
        from crmkit.schema._registry import builtin_aggregate_of

        aggregate_name = builtin_aggregate_of(type(value))
    if aggregate_name is not None:
        return Ref(aggregate_name, value.id)
    raise ValidationError(name, "must be a stored record, a schema.Ref or an (aggregate, id) pair", value)


_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "integer": _integer,
    "boolean": _boolean,
    "currency": _currency,
    "instant": _instant,
    "date": _date,
    "uuid": _uuid_value,
    "ref": _uuid_value,
    "ref_any": _ref_any,
    "text_list": _text_list,
    "binary": _binary,
}


def converter_for(fd: FieldDef) -> Callable[[str, Any], Any]:
    """The checking converter of a field: ``(field name, value) -> stored value`` (``convert=`` first)."""
    check = _kind_converter(fd)
    normalize = fd.convert
    if normalize is None:
        return check

    def convert(name: str, value: Any) -> Any:
        if value is None and fd.nullable:
            return None
        try:
            value = normalize(value)
        except ValidationError as exc:
            raise ValidationError(name, exc.message, exc.value) from None
        except (TypeError, ValueError) as exc:
            raise ValidationError(name, str(exc), value) from None
        return check(name, value)

    return convert


def _kind_converter(fd: FieldDef) -> Callable[[str, Any], Any]:
    kind = fd.kind
    convert: Callable[[str, Any], Any]
    if kind == "text":
        convert = _blank_text if fd.blank else _text
    elif kind == "money":
        convert = _money(fd.negative)
    elif kind == "enum":
        convert = _enum_converter(fd.type)
    elif kind == "text_set":
        convert = _text_sets(fd)
    elif kind == "many":
        return _many_converter(fd.type)
    elif kind == "attributes":
        return lambda name, value: frozen_attributes(value)
    else:
        convert = _CONVERTERS[kind]
    return _nullable(convert) if fd.nullable else convert


def bound_converter(fd: FieldDef) -> Callable[[Any], Any]:
    """The one-argument converter of a named field: its kind's checks, ``choices``, then ``check``.

    Built once per field of a declared class; values that are already what the kind stores
    (a UTC datetime, a uuid) are let through without a further call, as imports build
    records by the million.
    """
    name = fd.name
    convert = converter_for(fd)
    kind = fd.kind
    out: Callable[[Any], Any]
    if fd.convert is not None:  # what callers give is normalized first: no shortcut past it

        def out(value: Any) -> Any:
            return convert(name, value)

    elif kind in ("uuid", "ref"):

        def out(value: Any) -> Any:
            return value if value.__class__ is _uuid.UUID else convert(name, value)

    elif kind == "instant":

        def out(value: Any) -> Any:
            if value.__class__ is dt.datetime and value.tzinfo is dt.timezone.utc:
                return value
            return convert(name, value)

    elif kind == "text_set" and not fd.nullable:
        out = _text_set_converter(name)
    elif kind == "money" and not fd.nullable:
        out = _money_converter(name, allow_negative=fd.negative)
    elif kind == "many":

        def out(value: Any) -> Any:
            return value if value.__class__ is tuple and not value else convert(name, value)

    else:

        def out(value: Any) -> Any:
            return convert(name, value)

    choices, check = fd.choices, fd.check
    if choices is not None:
        allowed = frozenset(choices)
        message = f"must be one of {', '.join(choices)}"
        inner = out

        def out(value: Any) -> Any:
            value = inner(value)
            if value is not None and value not in allowed:
                raise ValidationError(name, message, value)
            return value

    if check is not None:
        checked = out

        def out(value: Any) -> Any:
            value = checked(value)
            if value is None:
                return None
            try:
                return check(value)
            except ValidationError:
                raise
            except (TypeError, ValueError) as exc:
                raise ValidationError(name, str(exc), value) from None

    return out


def _money(negative: bool) -> Callable[[str, Any], Decimal]:
    cache: dict[str, Callable[[Any], Decimal]] = {}

    def convert(name: str, value: Any) -> Decimal:
        checker = cache.get(name)
        if checker is None:
            checker = cache[name] = _money_converter(name, allow_negative=negative)
        return checker(value)

    return convert


def _text_sets(fd: FieldDef) -> Callable[[str, Any], frozenset[str]]:
    cache: dict[str, Callable[[Any], frozenset[str]]] = {}

    def convert(name: str, value: Any) -> frozenset[str]:
        checker = cache.get(name)
        if checker is None:
            checker = cache[name] = _text_set_converter(name)
        return checker(value)

    return convert


# --------------------------------------------------------------------------- the helpers


def _field(fd: FieldDef, default: Any) -> Any:
    """An attrs field carrying ``fd``; the converter is bound to the name by the declaration."""
    if default is MISSING:
        return attrs.field(metadata={METADATA_KEY: fd}, kw_only=True)
    if isinstance(default, (set, list, dict)):
        raise ValidationError("default", "must be immutable (a frozenset, tuple or None)", default)
    return attrs.field(default=default, metadata={METADATA_KEY: fd}, kw_only=True)


def _personal(personal: Any) -> str | Literal[False] | None:
    if personal is None or personal is False or (isinstance(personal, str) and personal in PERSONAL):
        return personal
    raise ValidationError(
        "personal", f"must name the kind of personal data ({', '.join(PERSONAL)}) or be False", personal
    )


def _common(
    kind: str,
    default: Any,
    sortable: bool,
    personal: Personal | None,
    convert: Callable[[Any], Any] | None = None,
    **extra: Any,
) -> Any:
    if not isinstance(sortable, bool):
        raise ValidationError("sortable", "must be True or False", sortable)
    if convert is not None and not callable(convert):
        raise ValidationError("convert", "must be a function of the given value", convert)
    fd = FieldDef(
        kind=kind,
        nullable=default is None,
        sortable=sortable,
        personal=_personal(personal),
        default=default,
        convert=convert,
        **extra,
    )
    return _field(fd, default)


def _checked(check: Any) -> Any:
    if check is not None and not callable(check):
        raise ValidationError("check", "must be a callable taking the value and returning it", check)
    return check


def text(
    *,
    default: Any = MISSING,
    sortable: bool = False,
    personal: Personal | None = None,
    blank: bool = False,
    choices: Iterable[str] | None = None,
    check: Callable[[Any], Any] | None = None,
    search: bool = False,
    convert: Callable[[Any], Any] | None = None,
) -> Any:
    """Unicode text; non-blank unless ``blank=True``; None allowed when the default is None.

    Every helper takes ``personal=``: the kind of personal data the field holds (``"identity"``,
    ``"contact"``, ``"financial"``, ``"free_text"``) or False; text-like fields must say it.

    ``choices`` limits the values to a fixed few (``("person", "organization")``); ``check``
    is a further check or normalisation (``check=Channel``) that raises ``ValidationError``.
    ``search=True`` has stores keep the folded form beside the value, with an index, so that
    ``F(name).matches("stefan popescu")`` and ``F(name).startswith("pop", fold=True)`` find
    it however it is written (``crmkit.search``).
    ``convert`` normalizes what callers give into the stored text first (opening hours given
    as a dict, a query expression kept in its text form); it must leave stored text unchanged.
    """
    if not isinstance(search, bool):
        raise ValidationError("search", "must be True or False", search)
    allowed: tuple[str, ...] | None = None
    if choices is not None:
        allowed = tuple(choices)
        if not allowed or not all(isinstance(c, str) and c for c in allowed):
            raise ValidationError("choices", "must be a non-empty sequence of non-empty texts", choices)
        if default is not MISSING and default is not None and default not in allowed:
            raise ValidationError("default", f"must be one of {', '.join(allowed)}", default)
    return _common(
        "text", default, sortable, personal, convert, blank=blank, choices=allowed, check=_checked(check), search=search
    )


def text_list(
    *, default: Any = MISSING, personal: Personal | None = None, check: Callable[[Any], Any] | None = None
) -> Any:
    """An ordered tuple of non-blank texts (the lines of an address), kept in the order given."""
    return _common("text_list", default, False, personal, check=_checked(check))


def condition(*, default: Any = MISSING, personal: Personal | None = None) -> Any:
    """A query expression (``F("priority") == "urgent"``) kept as its canonical text.

    Rules and policies say which records they apply to with it; read it back with
    ``schema.parse_condition(record.field)``. Stored as text on every backend.
    """
    from crmkit.schema._condition import condition_text

    if default is not MISSING and default is not None:
        default = condition_text(default)
    return _common("text", default, False, personal, condition_text)


def integer(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """A 64-bit integer (bool is refused)."""
    return _common("integer", default, sortable, personal)


def boolean(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """True or False."""
    if sortable:
        raise ValidationError("sortable", "booleans are not sortable", sortable)
    return _common("boolean", default, sortable, personal)


def money(
    *,
    default: Any = MISSING,
    sortable: bool = False,
    personal: Personal | None = None,
    negative: bool = False,
    check: Callable[[Any], Any] | None = None,
) -> Any:
    """An exact Decimal amount (floats refused), not negative unless ``negative=True``."""
    return _common("money", default, sortable, personal, negative=negative, check=_checked(check))


def currency(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """An ISO 4217 currency code."""
    return _common("currency", default, sortable, personal)


def instant(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """A timezone-aware moment, kept in UTC."""
    return _common("instant", default, sortable, personal)


def date(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """A calendar date (a datetime is refused)."""
    return _common("date", default, sortable, personal)


def uuid(*, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None) -> Any:
    """A uuid.UUID that refers to nothing the store checks (use ``ref`` for references)."""
    return _common("uuid", default, sortable, personal)


def enum(
    kind: type[_enum.Enum], *, default: Any = MISSING, sortable: bool = False, personal: Personal | None = None
) -> Any:
    """A member of an Enum whose values are text; its value text is stored and compared."""
    if not (isinstance(kind, type) and issubclass(kind, _enum.Enum)):
        raise ValidationError("enum", "takes an enum.Enum class", kind)
    for member in kind:
        if not isinstance(member.value, str):
            raise ValidationError("enum", f"values must be text ({kind.__name__}.{member.name} is not)", member.value)
    return _common("enum", default, sortable, personal, type=kind)


def text_set(*, default: Any = MISSING, personal: Personal | None = None) -> Any:
    """A set of short texts (tags); queried with ``contains``."""
    return _common("text_set", default, False, personal)


def many(
    item: type,
    *,
    default: Any = MISSING,
    personal: Personal | None = None,
    check: Callable[[Any], Any] | None = None,
    convert: Callable[[Any], Any] | None = None,
) -> Any:
    """A tuple of value objects (classes made with ``schema.value_object``), stored inside the record.

    ``check`` sees the whole tuple (two consents for one channel, say) and may refuse it;
    ``convert`` normalizes what callers give first (plain dates into ``Holiday`` values).
    """
    if not getattr(item, "__crmkit_value_object__", False):
        raise ValidationError("many", "takes a class declared with @schema.value_object", item)
    return _common("many", default, False, personal, convert, type=item, check=_checked(check))


def attributes(*, personal: Personal | None = None) -> Any:
    """Typed custom attributes (``attributes.<name>`` in queries), as on Customer."""
    fd = FieldDef(kind="attributes", personal=_personal(personal), default=None)
    return attrs.field(factory=dict, metadata={METADATA_KEY: fd}, kw_only=True, hash=False)


def ref(
    target: str,
    *,
    on_delete: OnDelete,
    default: Any = MISSING,
    sortable: bool = True,
    personal: Personal | None = None,
) -> Any:
    """The id of a record of aggregate ``target``, checked on write; ``on_delete`` says what its deletion does."""
    check_identifier("target", target)
    if on_delete not in ON_DELETE:
        raise ValidationError("on_delete", "must be cascade, restrict or set_null", on_delete)
    if on_delete == "set_null" and default is not None:
        raise ValidationError("on_delete", "set_null needs default=None (the field must allow None)", on_delete)
    return _common("ref", default, sortable, personal, target=target, on_delete=on_delete)


def binary(*, default: Any = MISSING, personal: Personal | None = None) -> Any:
    """Bytes (a bytearray or memoryview is kept as bytes), at most ``MAX_BINARY`` of them.

    Stored as the database's binary type (``LargeBinary`` columns, BSON binary); not
    queryable, not sortable, and not part of a key. Allowed on aggregates, not in value objects.
    """
    return _common("binary", default, False, personal)


def ref_any(
    *, on_delete: OnDelete = "cascade", default: Any = MISSING, sortable: bool = False, personal: Personal | None = None
) -> Any:
    """A reference to a record of any aggregate, stored as (aggregate, id): notes, tasks, documents.

    ``sortable``: whether ``order_by`` may use its parts (``about.aggregate``, ``about.id``).
    """
    if on_delete not in ON_DELETE:
        raise ValidationError("on_delete", "must be cascade, restrict or set_null", on_delete)
    if on_delete == "set_null" and default is not None:
        raise ValidationError("on_delete", "set_null needs default=None (the field must allow None)", on_delete)
    return _common("ref_any", default, sortable, personal, on_delete=on_delete)

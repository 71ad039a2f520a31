"""attrs validators and converters shared by the domain classes; every failure names its field."""

from __future__ import annotations

import datetime as dt
import math
import re
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from crmkit._currencies import ISO_4217
from crmkit._errors import ValidationError

__all__ = [
    "AttributeValue",
    "MAX_MONEY",
    "MONEY_PLACES",
    "check_identifier",
    "currency_code",
    "frozen_attributes",
    "money",
    "nonempty_text",
    "optional_text",
    "utc",
]

AttributeValue = str | int | float | bool | dt.date | dt.datetime | Decimal

#: Money carries at most this many decimal places, and stays below MAX_MONEY in size, so that
#: every backend (SQL NUMERIC, BSON Decimal128, Python) stores it exactly.
MONEY_PLACES = 6
MAX_MONEY = Decimal(10) ** 15
MAX_TEXT = 100_000
_INT64 = 2**63
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UTC = dt.timezone.utc

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _fail(attribute: attrs.Attribute[Any], message: str, value: Any) -> None:
    raise ValidationError(attribute.name, message, value)


def utc(value: dt.datetime, field: str) -> dt.datetime:
    """The same instant in UTC; naive datetimes are rejected because their instant is unknown."""
    if value.__class__ is dt.datetime and value.tzinfo is _UTC:
        return value  # the common case, already UTC: nothing to convert
    if not isinstance(value, dt.datetime):
        raise ValidationError(field, "must be a datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware (naive datetimes are ambiguous)", value)
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValidationError(field, "is outside the range of UTC datetimes (years 1 to 9999)", value) from None


def aware(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: a timezone-aware datetime (naive ones have no defined instant)."""
    utc(value, attribute.name)


def optional_aware(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: None or a timezone-aware datetime."""
    if value is not None:
        utc(value, attribute.name)


def _check_text(field: str, value: Any, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string", value)
    if not allow_empty and (not value or value.isspace()):
        raise ValidationError(field, "must not be empty or blank", value)
    if len(value) > MAX_TEXT:
        raise ValidationError(field, f"is longer than {MAX_TEXT} characters", value)
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters", value)
    if not value.isascii() and _SURROGATE.search(value):
        raise ValidationError(field, "must not contain lone surrogates (not valid Unicode text)", value)
    return value


def nonempty_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: a non-blank Unicode string."""
    _check_text(attribute.name, value, allow_empty=False)


def optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: None or a Unicode string."""
    if value is not None:
        _check_text(attribute.name, value, allow_empty=True)


def text_of(field: str, value: Any) -> str:
    return _check_text(field, value, allow_empty=False)


def check_identifier(field: str, value: Any) -> str:
    """A short ASCII identifier (attribute keys, channel and relationship names)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValidationError(field, "must be an identifier of letters, digits and _ (at most 63)", value)
    return value


#: The largest page or batch size accepted: far above any sensible value, and small enough
#: that every store's integer type holds it (plus one, for look-ahead).
MAX_COUNT = 2**31 - 1


def count_of(field: str, value: Any) -> int:
    """A page or batch size: an int from 1 to MAX_COUNT (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValidationError(field, f"must be an integer from 1 to {MAX_COUNT:,}", value)
    return value


def uuid_of(field: str, value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    raise ValidationError(field, "must be a uuid.UUID", value)


def uuid_field(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: a uuid.UUID."""
    uuid_of(attribute.name, value)


def _not_money(value: Any) -> str:
    """Why a value is not an amount, naming what was given (only on the error path)."""
    if isinstance(value, float):
        return f"must be a Decimal, not the float {value!r} (floats are not exact money: use Decimal({str(value)!r}))"
    if isinstance(value, str):
        return f"must be a Decimal or an int, not the string {value!r} (convert it: Decimal({value!r}))"
    if value is None:
        return "is required: a Decimal or an int"
    return f"must be a Decimal or an int, not {type(value).__name__}"


def money(field: str, *, allow_negative: bool = False) -> Callable[[Any], Decimal]:
    """Converter: a finite Decimal (ints accepted, floats refused: they are not exact)."""

    def convert(value: Any) -> Decimal:
        if value.__class__ is Decimal:
            amount = value  # immutable: no copy needed
        elif isinstance(value, bool) or not isinstance(value, (Decimal, int)):
            raise ValidationError(field, _not_money(value), value)
        else:
            amount = Decimal(value)
        if not amount.is_finite():
            raise ValidationError(field, "must be a finite number", value)
        if not allow_negative and amount < 0:
            raise ValidationError(field, "must not be negative", value)
        if abs(amount) >= MAX_MONEY:
            raise ValidationError(field, f"must be smaller than {MAX_MONEY:,}", value)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MONEY_PLACES:
            raise ValidationError(field, f"has more than {MONEY_PLACES} decimal places", value)
        return amount

    return convert


def currency_code(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: a known ISO 4217 alphabetic code."""
    if not isinstance(value, str) or value not in ISO_4217:
        _fail(attribute, "must be an ISO 4217 currency code such as EUR or USD", value)


def _attribute_value(field: str, value: Any) -> AttributeValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValidationError(field, "integers must fit in 64 bits", value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, "must be a finite number", value)
        return value
    if isinstance(value, Decimal):
        try:
            return money(field, allow_negative=True)(value)
        except InvalidOperation:  # pragma: no cover - money() never raises it
            raise ValidationError(field, "is not a valid Decimal", value) from None
    if isinstance(value, dt.datetime):
        return utc(value, field)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return _check_text(field, value, allow_empty=True)
    raise ValidationError(field, "must be str, int, float, bool, date, datetime or Decimal", value)


#: Shared by every record without custom attributes (read-only, so sharing is safe).
_NO_ATTRIBUTES: Mapping[str, AttributeValue] = types.MappingProxyType({})


def frozen_attributes(value: Any) -> Mapping[str, AttributeValue]:
    """Converter: typed custom attributes as a read-only mapping with identifier keys."""
    if value is None:
        return _NO_ATTRIBUTES
    if not isinstance(value, Mapping):
        raise ValidationError("attributes", "must be a mapping of name to value", value)
    if not value:
        return _NO_ATTRIBUTES
    checked: dict[str, AttributeValue] = {}
    for key in sorted(value, key=lambda k: str(k)):
        check_identifier("attributes", key)
        checked[key] = _attribute_value(f"attributes.{key}", value[key])
    return types.MappingProxyType(checked)


def frozen_tuple(field: str, item_type: type | tuple[type, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Converter: any iterable (not a bare string) to a tuple whose items have the given type."""

    def convert(value: Any) -> tuple[Any, ...]:
        if value is None or (value.__class__ is tuple and not value):
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValidationError(field, "must be a sequence", value)
        items = tuple(value)
        for i, item in enumerate(items):
            if not isinstance(item, item_type):
                raise ValidationError(f"{field}[{i}]", f"must be {_type_name(item_type)}", item)
        return items

    return convert


def text_set(field: str) -> Callable[[Any], frozenset[str]]:
    """Converter: a frozenset of non-blank strings (tags)."""

    def convert(value: Any) -> frozenset[str]:
        if value is None:
            return frozenset()
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ValidationError(field, "must be a set of strings", value)
        items = tuple(value)
        for item in items:
            text_of(field, item)
            if len(item) > 200:
                raise ValidationError(field, "items are at most 200 characters", item)
        return frozenset(items)

    return convert


def _type_name(item_type: type | tuple[type, ...]) -> str:
    if isinstance(item_type, tuple):
        return " or ".join(t.__name__ for t in item_type)
    return item_type.__name__


def one_of(field: str, allowed: Iterable[str]) -> Validator:
    options = tuple(allowed)

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in options:
            raise ValidationError(field, f"must be one of {', '.join(options)}", value)

    return check


def optional_date(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: None or a date (not a datetime)."""
    if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
        _fail(attribute, "must be a date", value)


def of_type(kind: type, name: str | None = None) -> Validator:
    """Validator like attrs' instance_of, raising ValidationError (bool is never an int here)."""
    label = name or kind.__name__

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            _fail(attribute, f"must be a {label}", value)

    return check


def at_least(minimum: int) -> Validator:
    """Validator: an int (not bool) of at least ``minimum``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(attribute, f"must be an integer of at least {minimum}", value)

    return check


def valid_external_id(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: None or a non-blank key of at most 200 characters (unique per tenant)."""
    if value is None:
        return
    _check_text(attribute.name, value, allow_empty=False)
    if len(value) > 200:
        _fail(attribute, "must be at most 200 characters", value)


def positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: a non-negative integer that fits in 64 bits (versions)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _INT64:
        _fail(attribute, "must be a non-negative 64-bit integer", value)

"""A JSON form of any stored record (crmkit's own and declared aggregates), exact both ways.

Merges keep the records they change or delete in this form so that un-merging restores
them field for field: UUIDs, Decimals (with their exponent), dates, aware datetimes,
enums, sets, tuples, typed attributes and nested attrs values all come back as they were.
Classes are named by module and qualified name and must be attrs classes or enums.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import importlib
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from crmkit._errors import ValidationError

__all__ = ["decode", "dumps", "encode", "loads"]


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> type:
    module, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not isinstance(found, type) or not (attrs.has(found) or issubclass(found, enum.Enum)):
        raise ValidationError("record", f"{name} is not a record class", name)
    return found


def encode(value: Any) -> Any:
    """A JSON-ready form of a value (lists and dicts tagged with what they were)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"$enum": _class_name(type(value)), "v": value.value}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (frozenset, set)):
        return {"$set": sorted((encode(v) for v in value), key=json.dumps)}
    if isinstance(value, (tuple, list)):
        return {"$tuple": [encode(v) for v in value]}
    if attrs.has(type(value)):
        fields = {a.name: encode(getattr(value, a.name)) for a in attrs.fields(type(value)) if a.init}
        return {"$attrs": _class_name(type(value)), "f": fields}
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode(v) for k, v in value.items()}}
    raise ValidationError("record", f"cannot keep a {type(value).__name__} value", value)


def decode(value: Any) -> Any:
    """The value ``encode`` was given."""
    if not isinstance(value, dict):
        return value
    if "$enum" in value:
        return _class(value["$enum"])(value["v"])
    if "$float" in value:
        return float(value["$float"])
    if "$decimal" in value:
        return Decimal(value["$decimal"])
    if "$uuid" in value:
        return uuid.UUID(value["$uuid"])
    if "$datetime" in value:
        return dt.datetime.fromisoformat(value["$datetime"])
    if "$date" in value:
        return dt.date.fromisoformat(value["$date"])
    if "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    if "$set" in value:
        return frozenset(decode(v) for v in value["$set"])
    if "$tuple" in value:
        return tuple(decode(v) for v in value["$tuple"])
    if "$attrs" in value:
        cls = _class(value["$attrs"])
        return cls(**{k: decode(v) for k, v in value["f"].items()})
    if "$map" in value:
        return {k: decode(v) for k, v in value["$map"].items()}
    raise ValidationError("record", "is not in crmkit's record codec", value)


def dumps(value: Any) -> str:
    return json.dumps(encode(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    return decode(json.loads(text))

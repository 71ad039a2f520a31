"""``schema.binary``: bytes on aggregates, checked on construction, refused where they cannot be kept."""

from __future__ import annotations

import uuid

import pytest

from crmkit import ValidationError, schema
from crmkit.identity import _codec
from crmkit.schema._fields import MAX_BINARY


@schema.aggregate("crmkit_binary_examples")
class Example(schema.Record):
    owner_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    data: bytes = schema.binary(personal=False)
    extra: bytes | None = schema.binary(default=None, personal=False)


def test_bytes_are_kept_and_views_become_bytes() -> None:
    owner = uuid.uuid4()
    assert Example(owner_id=owner, data=b"\x00\xff").data == b"\x00\xff"
    kept = Example(owner_id=owner, data=bytearray(b"ab"), extra=memoryview(b"cd"))
    assert (type(kept.data), kept.data, type(kept.extra), kept.extra) == (bytes, b"ab", bytes, b"cd")
    assert Example(owner_id=owner, data=b"").data == b""


@pytest.mark.parametrize("value", ["text", 3, [1, 2], None])
def test_anything_but_bytes_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Example(owner_id=uuid.uuid4(), data=value)
    assert caught.value.field == "data"


def test_more_than_the_limit_is_refused() -> None:
    Example(owner_id=uuid.uuid4(), data=bytes(MAX_BINARY))
    with pytest.raises(ValidationError, match="at most") as caught:
        Example(owner_id=uuid.uuid4(), data=bytes(MAX_BINARY + 1))
    assert caught.value.field == "data"


def test_binary_is_not_queryable_nor_part_of_a_key_nor_in_value_objects() -> None:
    assert "data" not in Example.__crmkit_spec__.fields  # type: ignore[attr-defined]
    assert Example.__crmkit_spec__.declared["data"].kind == "binary"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="cannot be part of a key"):

        @schema.aggregate("crmkit_binary_keyed", unique=[("data",)])
        class Keyed(schema.Record):
            data: bytes = schema.binary(personal=False)

    with pytest.raises(ValidationError, match="belong on aggregates"):

        @schema.value_object
        class Part:
            data: bytes = schema.binary(personal=False)


def test_the_record_codec_keeps_bytes() -> None:
    record = Example(owner_id=uuid.uuid4(), data=b"\x00\x01\xfe")
    assert _codec.loads(_codec.dumps(record)) == record
    assert _codec.encode(record.data) == {"$bytes": "AAH+"}

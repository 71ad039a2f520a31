"""Identifiers: time-ordered UUIDv7 (RFC 9562), so new ids sort by creation time and index well."""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_id"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0

# Random bits come from os.urandom, drawn a few kilobytes at a time: one system call per
# 400 ids instead of one per id. A forked child must not reuse its parent's unread bytes.
_POOL_SIZE = 4000
_pool = b""
_taken = 0


def _forget_pool() -> None:
    global _pool, _taken
    _pool, _taken = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


_UNKNOWN = uuid.SafeUUID.unknown  # read once: an enum member's lookup costs as much as the rest of the id


def _uuid_of_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to be a valid 128-bit integer, without the checks."""
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", _UNKNOWN)
    return made


def _fast_uuid_works() -> bool:
    probe = 0x0123456789ABCDEF0123456789ABCDEF
    try:
        made = _uuid_of_int(probe)
        return made == uuid.UUID(int=probe) and hash(made) == hash(uuid.UUID(int=probe)) and str(made) == str(
            uuid.UUID(int=probe)
        )
    except (AttributeError, TypeError):  # a Python whose UUID keeps other state
        return False


_make_uuid = _uuid_of_int if _fast_uuid_works() else (lambda value: uuid.UUID(int=value))


def new_id() -> uuid.UUID:
    """A new UUIDv7: 48-bit Unix milliseconds, then a counter that keeps ids monotonic within a millisecond."""
    global _last_ms, _counter, _pool, _taken
    with _lock:
        if _taken + 10 > len(_pool):
            _pool, _taken = os.urandom(_POOL_SIZE), 0
        bits = int.from_bytes(_pool[_taken : _taken + 10], "big")  # 80 random bits
        _taken += 10
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or a backwards-stepping) millisecond: keep ordering by counting on from the last id.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = (bits >> 62) & 0x3FF
        _last_ms = ms
        counter = _counter
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= bits & ((1 << 62) - 1)
    return _make_uuid(value)

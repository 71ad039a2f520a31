"""Small pools of values that collide on purpose, and random conditions built from them.

Values are chosen so that every comparison has one right answer in every store: floats
are exact binary fractions (2.5 equals Decimal("2.5") everywhere), numbers, booleans,
text, dates and datetimes share attribute keys, and text mixes scripts, case, trailing
blanks and characters outside the Basic Multilingual Plane.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crmkit.lifecycle_model import Stage
from crmkit.query import And, Compare, Contains, Expr, In, IsEmpty, Not, Or

__all__ = [
    "AMOUNTS",
    "ATTRIBUTE_VALUES",
    "CURRENCIES",
    "MOMENTS",
    "NAMES",
    "OWNERS",
    "TAGS",
    "customer_orders",
    "customer_wheres",
    "transaction_orders",
    "transaction_wheres",
]

_UTC = dt.timezone.utc
_TEHRAN = dt.timezone(dt.timedelta(hours=3, minutes=30))
_NEW_YORK = dt.timezone(dt.timedelta(hours=-5))

NAMES: tuple[str, ...] = ("Ada", "ada", "Ștefan", "Şerban", "زهرا", "😀 Emoji", "Zoë", "b", "a ", "a\t", "ﬃ", "\uffe0")
OWNERS: tuple[str | None, ...] = (None, "ana", "Ben", "")
TAGS: tuple[str, ...] = ("vip", "vip2", "VIP", "مشتری", "😀")
SUBSTRINGS: tuple[str, ...] = ("a", "da", "Ș", "😀", "\u0647", "", " ", "x")
EXTERNAL_IDS: tuple[str, ...] = ("e-1", "e-2", "ș-3", "😀")
MOMENTS: tuple[dt.datetime, ...] = (
    dt.datetime(2024, 1, 1, tzinfo=_UTC),
    dt.datetime(2024, 1, 1, 3, 30, tzinfo=_TEHRAN),  # the same instant as the one above
    dt.datetime(2024, 1, 1, tzinfo=_TEHRAN),
    dt.datetime(2023, 12, 31, 19, 0, 0, 1, tzinfo=_NEW_YORK),
    dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=_UTC),
)
ATTRIBUTE_VALUES: tuple[Any, ...] = (
    0,
    1,
    10,
    -3,
    2**63 - 1,
    10.0,
    2.5,
    -0.5,
    Decimal("2.5"),
    Decimal("10"),
    Decimal("-0.25"),
    True,
    False,
    "10",
    "x",
    "",
    "ș",
    "a",
    dt.date(2024, 1, 1),
    dt.date(2023, 12, 31),
    MOMENTS[0],
    MOMENTS[2],
)
AMOUNTS: tuple[Decimal, ...] = (
    Decimal("0"),
    Decimal("0.000001"),
    Decimal("9.5"),
    Decimal("10"),
    Decimal("10.00"),
    Decimal("100"),
    Decimal("999999999999999.999999"),
)
CURRENCIES: tuple[str, ...] = ("EUR", "RON", "IRR", "USD")
_OPS = ("==", "!=", "<", "<=", ">", ">=")
_ATTRIBUTE_KEYS = ("attributes.a", "attributes.b")


def _compare(field: str, values: SearchStrategy[Any], nullable: bool) -> SearchStrategy[Expr]:
    ordered = st.builds(Compare, st.just(field), st.sampled_from(_OPS), values)
    if not nullable:
        return ordered
    return ordered | st.builds(Compare, st.just(field), st.sampled_from(("==", "!=")), st.none())


def _in(field: str, values: SearchStrategy[Any]) -> SearchStrategy[Expr]:
    return st.lists(values, max_size=3).map(lambda vs: In(field, tuple(vs)))


def _combine(leaves: SearchStrategy[Expr]) -> SearchStrategy[Expr]:
    def extend(inner: SearchStrategy[Expr]) -> SearchStrategy[Expr]:
        items = st.lists(inner, min_size=1, max_size=3).map(tuple)
        return st.one_of(items.map(And), items.map(Or), inner.map(Not))

    return st.recursive(leaves, extend, max_leaves=5)


def _ids(ids: Sequence[uuid.UUID]) -> SearchStrategy[uuid.UUID]:
    return st.sampled_from(list(ids) or [uuid.UUID(int=1)]) | st.uuids()


def customer_wheres(ids: Sequence[uuid.UUID] = ()) -> SearchStrategy[Expr]:
    """Random valid conditions on customers over the pools (``ids``: known customer ids)."""
    attribute_value = st.sampled_from(ATTRIBUTE_VALUES)
    leaves = st.one_of(
        _compare("name", st.sampled_from(NAMES), nullable=False),
        _compare("kind", st.sampled_from(("person", "organization", "p")), nullable=False),
        _compare("owner", st.sampled_from([o for o in OWNERS if o is not None]), nullable=True),
        _compare("stage", st.sampled_from([s.value for s in Stage]) | st.sampled_from(tuple(Stage)), nullable=False),
        _compare("external_id", st.sampled_from(EXTERNAL_IDS), nullable=True),
        _compare("version", st.integers(0, 4), nullable=False),
        _compare("id", _ids(ids), nullable=False),
        *(_compare(key, attribute_value, nullable=True) for key in _ATTRIBUTE_KEYS),
        _in("name", st.sampled_from(NAMES)),
        _in("owner", st.sampled_from(OWNERS[1:])),
        _in("id", _ids(ids)),
        *(_in(key, attribute_value) for key in _ATTRIBUTE_KEYS),
        st.builds(Contains, st.just("tags"), st.sampled_from(TAGS)),
        st.builds(Contains, st.sampled_from(("name", "owner", *_ATTRIBUTE_KEYS)), st.sampled_from(SUBSTRINGS)),
        st.builds(IsEmpty, st.sampled_from(("emails", "phones", "addresses", "handles", "tags"))),
    )
    return _combine(leaves)


def transaction_wheres(customer_ids: Sequence[uuid.UUID] = ()) -> SearchStrategy[Expr]:
    """Random valid conditions on transactions: Decimal amounts, instants in several offsets, currencies."""
    amounts = st.sampled_from(AMOUNTS) | st.sampled_from((0, 10, 100))
    leaves = st.one_of(
        _compare("amount", amounts, nullable=False),
        _compare("occurred_at", st.sampled_from(MOMENTS), nullable=False),
        _compare("currency", st.sampled_from(CURRENCIES), nullable=False),
        _compare("kind", st.sampled_from(("purchase", "refund")), nullable=False),
        _compare("customer_id", _ids(customer_ids), nullable=False),
        _compare("external_id", st.sampled_from(EXTERNAL_IDS), nullable=True),
        _compare("attributes.a", st.sampled_from(ATTRIBUTE_VALUES), nullable=True),
        _in("amount", amounts),
        _in("currency", st.sampled_from(CURRENCIES)),
        _in("customer_id", _ids(customer_ids)),
    )
    return _combine(leaves)


def _orders(fields: Sequence[str]) -> SearchStrategy[tuple[str, ...]]:
    signed = st.tuples(st.sampled_from(fields), st.booleans()).map(lambda p: ("-" if p[1] else "") + p[0])
    return st.lists(signed, max_size=3, unique_by=lambda s: s.lstrip("-")).map(tuple)


def customer_orders() -> SearchStrategy[tuple[str, ...]]:
    """Random ``order_by`` for customers over every sortable field."""
    return _orders(("name", "kind", "stage", "version", "created_at", "updated_at", "id"))


def transaction_orders() -> SearchStrategy[tuple[str, ...]]:
    """Random ``order_by`` for transactions over every sortable field."""
    return _orders(("amount", "occurred_at", "currency", "kind", "customer_id", "version", "id"))

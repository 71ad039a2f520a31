"""The query battery, ordering and keyset pages of every declared aggregate, judged by the reference semantics.

Conditions are drawn per field kind from the values the test wrote (so they match
something) and from values next to them: the same instant in another offset, the same
amount with more decimal places, a day or a microsecond apart, substrings, enum members
and their text, missing values. The answer must be what ``crmkit.query.evaluate`` says of
the records written, for ``find`` and ``count``, in every order and page size.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from crmkit.query import And, Compare, Contains, Expr, In, IsEmpty, Not, Or, Order, bind, evaluate, parse_order
from crmkit.schema import AggregateSpec
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.aggregates import unique_keys_of
from crmkit.testing.conformance import _queries as q
from crmkit.testing.conformance._aggregate_kit import AggregateContractBase, AggregateKit
from crmkit.testing.conformance._harness import Clock, at, conformance_settings

__all__ = ["AggregateQueryContract", "conditions", "orders", "reference_order"]

_OPS = ("==", "!=", "<", "<=", ">", ">=")
_TEHRAN = dt.timezone(dt.timedelta(hours=3, minutes=30))
_TEXTS = ("", "a", "Z", "ș", "😀", "ﬃ", "a ")


def _near(kind: str, value: Any) -> list[Any]:
    """Values a store may confuse with ``value``: equal in another form, or one step away."""
    out: list[Any] = [value]
    try:
        if kind == "int" and isinstance(value, int):
            out += [v for v in (value - 1, value + 1) if -(2**63) <= v < 2**63]
        elif kind == "decimal" and isinstance(value, Decimal):
            out += [value + Decimal("0.000"), value - Decimal("0.000001"), value + Decimal("0.000001")]
            if value == value.to_integral_value() and abs(value) < 2**63:
                out.append(int(value))
        elif kind == "datetime" and isinstance(value, dt.datetime):
            out += [
                value.astimezone(_TEHRAN),
                value - dt.timedelta(microseconds=1),
                value + dt.timedelta(microseconds=1),
            ]
        elif kind == "date" and isinstance(value, dt.date):
            out += [value - dt.timedelta(days=1), value + dt.timedelta(days=1)]
        elif kind == "text" and isinstance(value, str):
            out += [value[:-1], value + "\x01", value.upper()]
    except OverflowError:
        pass
    return out


def _pool(spec: AggregateSpec, name: str, kind: str, records: Sequence[Any]) -> list[Any]:
    values: list[Any] = []
    for record in records:
        value = spec.record_value(record, name)
        if value is not None:
            values += _near(kind, value)
    if kind == "text":
        values += list(_TEXTS)
        fd = spec.declared.get(name)
        if fd is not None and fd.kind == "enum":
            values += list(fd.type)
    elif kind == "int":
        values += [0, -1, 2**63 - 1]
    elif kind == "decimal":
        values += [Decimal(0), Decimal("-0.5"), 10]
    elif kind == "datetime":
        values += [at(2024, 1, 1), at(1, 1, 2)]
    elif kind == "date":
        values += [dt.date(2024, 2, 29)]
    elif kind == "uuid":
        values += [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    elif kind == "bool":
        values += [True, False]
    return values


def _leaves(spec: AggregateSpec, records: Sequence[Any]) -> list[Expr]:
    """Every single condition the battery draws from: each field, operator and nearby value."""
    leaves: list[Expr] = []
    for name, field in spec.fields.items():
        kind = field.kind
        if kind == "text_set":
            members = sorted({m for r in records for m in spec.record_value(r, name)} | {"vip", "x"})
            leaves += [Contains(name, m) for m in members]
            continue
        pool = _pool(spec, name, kind, records)
        ops = ("==", "!=") if kind == "bool" else _OPS
        leaves += [Compare(name, op, value) for value in pool for op in ops]  # type: ignore[arg-type]
        leaves += [In(name, tuple(pool[i : i + size])) for size in (0, 1, 3) for i in range(0, len(pool), 3)]
        if field.nullable:
            leaves += [Compare(name, "==", None), Compare(name, "!=", None)]
        if kind == "text":
            texts = [v for v in pool if isinstance(v, str)]
            leaves += [Contains(name, part) for part in sorted({t[a:b] for t in texts for a, b in _SLICES} | {"", "ș"})]
    if spec.has_attributes:
        keys = sorted({k for r in records for k in r.attributes} | {"nobody"})
        values = [v for r in records for v in r.attributes.values()] + list(q.ATTRIBUTE_VALUES)
        for key in keys:
            name = f"attributes.{key}"
            leaves += [Compare(name, op, value) for value in values for op in _OPS]  # type: ignore[arg-type]
            leaves += [Compare(name, "==", None), Compare(name, "!=", None)]
            leaves += [In(name, tuple(values[i : i + 3])) for i in range(0, len(values), 3)]
            leaves += [Contains(name, part) for part in q.SUBSTRINGS]
    leaves += [IsEmpty(name) for name, fd in spec.declared.items() if fd.kind in ("many", "text_set", "text_list")]
    return leaves


_SLICES = ((0, 1), (1, 3), (0, None))


def conditions(spec: AggregateSpec, records: Sequence[Any]) -> SearchStrategy[Expr]:
    """Random valid conditions on every queryable field of ``spec``, from (and next to) the values of ``records``.

    Leaves are combined two levels deep with AND, OR and NOT.
    """
    leaf = st.sampled_from(_leaves(spec, records))

    def combined(inner: SearchStrategy[Expr]) -> SearchStrategy[Expr]:
        items = st.lists(inner, min_size=1, max_size=3).map(tuple)
        return inner | inner.map(Not) | items.map(And) | items.map(Or)

    return combined(combined(leaf))


def orders(spec: AggregateSpec) -> SearchStrategy[tuple[str, ...]]:
    """Random ``order_by`` over the sortable fields of ``spec`` (one to three keys)."""
    sortable = sorted(name for name, f in spec.fields.items() if f.sortable)
    signed = st.tuples(st.sampled_from(sortable), st.booleans()).map(lambda p: ("-" if p[1] else "") + p[0])
    return st.lists(signed, min_size=1, max_size=3, unique_by=lambda s: s.lstrip("-")).map(tuple)


def _key(value: Any) -> tuple[bool, Any]:
    if isinstance(value, enum.Enum):
        value = value.value
    return (value is not None, value)


def reference_order(spec: AggregateSpec, records: Sequence[Any], order: Order) -> list[Any]:
    """Records in ``order``: values of one kind by their natural order (text by code point), a missing value first."""
    out = list(records)
    for name, descending in reversed(order.keys):
        out.sort(key=partial(_sort_key, spec, name), reverse=descending)
    return out


def _sort_key(spec: AggregateSpec, name: str, record: Any) -> tuple[bool, Any]:
    return _key(spec.record_value(record, name))


def _pages(service: Any, where: Expr | None, order_by: Sequence[str], limit: int | None) -> list[Any]:
    out: list[Any] = []
    after = None
    for _ in range(1000):
        page = service.find(where, order_by=order_by, limit=limit, after=after)
        out.extend(page)
        if page.next is None:
            return out
        assert limit is not None and len(page) == limit, f"a page of {len(page)} records has a next cursor"
        after = page.next
    raise AssertionError("pagination does not end")


def _ids(records: Iterable[Any]) -> list[uuid.UUID]:
    return [r.id for r in records]


class AggregateQueryContract(AggregateContractBase):
    """``find``/``count`` on every field kind, ordering and keyset pages on every sortable field."""

    @staticmethod
    def _written(kit: AggregateKit, extra: Sequence[Any] = ()) -> list[Any]:
        """Six example records and ``extra`` (those that hold no key of another), added in batches."""
        spec = kit.spec
        records = []
        for _ in range(6):
            records.append(kit.new())
            kit.hold(records[-1])  # the next one clear of its keys (a key of references alone has few values)
        held = {k for r in records for k in unique_keys_of(spec, r)}
        for record in extra:
            keys = unique_keys_of(spec, record)
            if not any(k in held for k in keys):
                held.update(keys)
                records.append(record)
        kit.service.add_many(records, batch_size=4)
        kit.hold(*records)
        return list(kit.service.find())

    def test_conditions_match_the_reference_semantics(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        @conformance_settings(max_examples=10)
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            crm = crmkit_backend.crm()
            kit = AggregateKit(crm, spec)
            extra = data.draw(cs.record_lists(spec, targets=kit.targets, max_size=4), label="records")
            stored = self._written(kit, extra)
            wheres, order_bys = conditions(spec, stored), orders(spec)
            for _ in range(6):
                where = data.draw(wheres, label="where")
                bound = bind(where, spec)
                expected = {r.id for r in stored if evaluate(bound, spec, r)}
                found = _ids(kit.service.find(where))
                assert len(found) == len(set(found)), f"find returned a record twice for {where!r}"
                assert set(found) == expected, f"find({where!r}) disagrees with the reference"
                assert kit.service.count(where) == len(expected), f"count({where!r}) disagrees with the reference"
                order_by = data.draw(order_bys, label="order_by")
                limit = data.draw(st.sampled_from((None, 1, 2, 5)), label="limit")
                ordered = reference_order(spec, [r for r in stored if r.id in expected], parse_order(order_by, spec))
                assert _ids(_pages(kit.service, where, order_by, limit)) == _ids(ordered), (
                    f"find({where!r}, order_by={order_by}, limit={limit}) pages differ from the reference order"
                )

        check()

    def test_every_sortable_field_orders_and_pages(self, crmkit_backend: Backend, spec: AggregateSpec) -> None:
        clock = Clock(at(2025, 1, 1))
        kit = AggregateKit(crmkit_backend.crm(clock=clock), spec)
        self._written(kit)
        sortable = [name for name, f in spec.fields.items() if f.sortable]
        first = list(kit.service.find())[:2]
        keys = {key[0] for key in spec.unique if len(key) == 1}  # a unique field alone cannot tie
        for name in sortable:  # ties on every field that can be set
            if name in spec.declared and name not in keys:
                for record in first:
                    clock.advance(microseconds=1)
                    kit.hold(kit.service.add(kit.new(**{name: getattr(record, name)})))
        stored = list(kit.service.find())
        for name in sortable:
            for descending in (False, True):
                order_by = ("-" if descending else "") + name
                expected = _ids(reference_order(spec, stored, parse_order(order_by, spec)))
                assert _ids(kit.service.find(order_by=order_by)) == expected, f"order_by={order_by}"
                for limit in (1, 2, 3):
                    assert _ids(_pages(kit.service, None, [order_by], limit)) == expected, (
                        f"order_by={order_by}, pages of {limit}"
                    )

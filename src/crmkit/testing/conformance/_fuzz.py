"""Hostile input everywhere: only crmkit errors may escape, and a failed write leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from crmkit import (
    Channel,
    ChannelType,
    Consent,
    CRMError,
    Customer,
    EmailAddress,
    Handle,
    Interaction,
    LifecyclePolicy,
    LineItem,
    Phone,
    PostalAddress,
    Relationship,
    RelationshipType,
    StageProposal,
    Transaction,
    ValidationError,
)
from crmkit.crm import CRM
from crmkit.entities import ENTITIES, STAGE_CHANGES
from crmkit.lifecycle_model import StageChange
from crmkit.query import And, Compare, Contains, In, Not, Or, bind, evaluate
from crmkit.testing import strategies as cs
from crmkit.testing._backends import Backend
from crmkit.testing.conformance import _queries as q
from crmkit.testing.conformance._harness import ContractBase, conformance_settings, contact, edge, person, purchase

__all__ = ["FuzzContract", "KNOWN_CORE_GAPS"]

#: Inputs on which crmkit's core itself still lets a non-crmkit exception out; the fuzz
#: leaves them alone so that it judges backends. Empty: every gap found so far is fixed.
KNOWN_CORE_GAPS: dict[str, str] = {}

_hostile = cs.hostile_values()


def _field_values(cls: type, field: str, valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, _hostile)


def _now() -> dt.datetime:
    return dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


_VALID: dict[type, dict[str, st.SearchStrategy[Any]]] = {
    Customer: {
        "kind": st.sampled_from(("person", "organization")),
        "name": cs.texts(max_size=20, blank=False),
        "emails": st.lists(cs.email_addresses(), max_size=1),
        "tags": cs.tags(),
        "owner": st.none(),
        "attributes": cs.attributes(max_size=2),
        "stage": cs.stages(),
        "external_id": st.none() | cs.external_ids(),
        "id": st.uuids(),
        "created_at": st.none(),
        "version": st.just(0),
    },
    EmailAddress: {"address": st.just("a@example.com"), "label": st.none(), "consent": st.just(())},
    Phone: {"number": st.just("+40 21 000"), "label": st.none(), "consent": st.just(())},
    PostalAddress: {"lines": st.just(["1 Main St"]), "city": st.none(), "country": st.none(), "consent": st.just(())},
    Handle: {"network": st.just("web"), "handle": st.just("@x"), "consent": st.just(())},
    Consent: {"channel": cs.channels(), "granted": st.booleans(), "at": st.none(), "source": st.none()},
    Interaction: {
        "customer_id": st.uuids(),
        "channel": cs.channels(),
        "direction": st.just("inbound"),
        "occurred_at": cs.aware_datetimes(),
        "subject": st.none(),
        "participants": cs.tags(),
        "attributes": cs.attributes(max_size=2),
        "external_id": st.none(),
        "version": st.just(0),
    },
    Transaction: {
        "customer_id": st.uuids(),
        "occurred_at": cs.aware_datetimes(),
        "amount": cs.money(),
        "currency": cs.currencies(),
        "kind": st.just("purchase"),
        "line_items": st.just(()),
        "attributes": cs.attributes(max_size=2),
        "external_id": st.none(),
        "version": st.just(0),
    },
    LineItem: {"product": st.just("tea"), "quantity": cs.money(min_value=1, max_value=10), "unit_price": cs.money()},
    Relationship: {
        "source_id": st.just(uuid.UUID(int=1)),
        "target_id": st.just(uuid.UUID(int=2)),
        "kind": cs.relationship_kinds(),
        "role": st.none(),
        "since": st.none() | st.dates(),
        "until": st.none(),
        "attributes": cs.attributes(max_size=1),
        "version": st.just(0),
    },
    RelationshipType: {
        "name": st.just("mentor_of"),
        "inverse": st.just("mentored_by"),
        "symmetric": st.just(False),
        "description": st.just(""),
    },
    ChannelType: {"name": st.just("whatsapp"), "description": st.just(""), "needs_consent": st.booleans()},
    StageChange: {
        "customer_id": st.uuids(),
        "from_stage": st.none(),
        "to_stage": cs.stages(),
        "occurred_at": st.just(_now()),
        "rule": st.just("manual"),
        "reason": st.none(),
    },
    LifecyclePolicy: {
        "at_risk_after": st.just(dt.timedelta(days=10)),
        "churned_after": st.just(dt.timedelta(days=20)),
        "loyal_purchase_days": st.integers(2, 9),
    },
    StageProposal: {"stage": cs.stages(), "rule": st.just("r"), "reason": st.just("")},
}


def _builds(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: _field_values(cls, name, valid) for name, valid in _VALID[cls].items()})


_FIELD_NAMES = st.one_of(
    st.sampled_from(sorted({name for spec in (*ENTITIES.values(), STAGE_CHANGES) for name in spec.fields})),
    st.sampled_from(
        (
            "attributes.a",
            "attributes.score",
            "attributes.",
            "attributes.a-b",
            "attributes.a.b",
            "ATTRIBUTES.a",
            "",
            " name",
            "nope",
            "__class__",
            "attributes.ș",
        )
    ),
    st.text(max_size=12),
)
_OPERATORS = st.sampled_from(("==", "!=", "<", "<=", ">", ">=")) | st.sampled_from(("=", "~", "in", "", "=>"))
_QUERY_VALUES = st.one_of(
    st.sampled_from(q.ATTRIBUTE_VALUES),
    st.sampled_from(q.AMOUNTS),
    st.sampled_from(q.MOMENTS),
    st.sampled_from(q.NAMES),
    st.uuids(),
    _hostile,
)


def _raw_wheres() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.builds(Compare, _FIELD_NAMES, _OPERATORS, _QUERY_VALUES),
        st.builds(In, _FIELD_NAMES, st.lists(_QUERY_VALUES, max_size=3).map(tuple) | _QUERY_VALUES),
        st.builds(Contains, _FIELD_NAMES, _QUERY_VALUES),
        st.dictionaries(_FIELD_NAMES, _QUERY_VALUES, max_size=2),
    )

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        items = st.lists(inner, max_size=3)
        return st.one_of(
            items.map(tuple).map(And),
            items.map(tuple).map(Or),
            items.map(lambda xs: And(xs)),  # type: ignore[arg-type]  # a list instead of a tuple
            inner.map(Not),
            st.builds(Not, _hostile),
        )

    return st.recursive(leaves, extend, max_leaves=6) | _hostile


_ORDERS = st.one_of(
    st.none(),
    q.customer_orders(),
    st.lists(_FIELD_NAMES.map(lambda f: f if f else "-"), max_size=3),
    _FIELD_NAMES,
    st.lists(_hostile, max_size=2),
)


def _fails_cleanly(call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``call``; True and the result on success, False and the crmkit error otherwise."""
    try:
        return True, call()
    except CRMError as exc:
        return False, exc


def _counts(crm: CRM) -> tuple[int, ...]:
    return tuple(
        getattr(crm, name).count()
        for name in ("customers", "relationships", "interactions", "transactions", "stage_changes")
    )


def _sample(crm: CRM) -> list[Customer]:
    out = []
    for i, name in enumerate(q.NAMES):
        attributes = {"a": q.ATTRIBUTE_VALUES[i % len(q.ATTRIBUTE_VALUES)], "score": i}
        out.append(
            crm.customers.add(person(name, owner=q.OWNERS[i % 4], tags=set(q.TAGS[: i % 3]), attributes=attributes))
        )
    crm.transactions.add(purchase(out[0], "9.5", q.MOMENTS[0]))
    crm.interactions.add(contact(out[0], q.MOMENTS[1]))
    crm.relationships.add(edge(out[0], "works_for", out[1]))
    return out


class FuzzContract(ContractBase):
    """Random and hostile arguments to constructors, queries and writes."""

    def test_constructors_accept_or_raise_validation_errors(self, crmkit_backend: Backend) -> None:
        classes = sorted(_VALID, key=lambda c: c.__name__)

        @conformance_settings(max_examples=300)
        @given(data=st.data(), cls=st.sampled_from(classes))
        def check(data: st.DataObject, cls: type) -> None:
            kwargs = data.draw(_builds(cls), label=cls.__name__)
            ok, result = _fails_cleanly(lambda: cls(**kwargs))
            if not ok:
                assert isinstance(result, ValidationError), result
                assert result.field, "a ValidationError must name its field"
            if ok and cls is Customer:
                crm = crmkit_backend.crm()
                added, _ = _fails_cleanly(lambda: crm.customers.add(result))
                assert crm.customers.count() == (1 if added else 0)
                if added:
                    assert crm.customers.get(result.id).attributes == result.attributes

        check()
        for value in ("x", 5, None):
            ok, _ = _fails_cleanly(lambda v=value: Channel(v))  # type: ignore[misc]
            assert ok == (value == "x")

    def test_queries_accept_or_raise_validation_errors(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm()
        stored = {"customers": _sample(crm)}
        for name in ("transactions", "interactions", "relationships", "stage_changes"):
            stored[name] = list(getattr(crm, name).find())
        real_cursor = crm.customers.find(order_by="name", limit=2).next
        counts = _counts(crm)

        @conformance_settings(max_examples=300)
        @given(
            where=_raw_wheres(),
            entity=st.sampled_from(sorted(stored)),
            order=_ORDERS,
            limit=st.none() | st.integers(-1, 5) | _hostile,
            after=st.none() | st.just(real_cursor) | st.text(max_size=20) | _hostile,
        )
        def check(where: Any, entity: str, order: Any, limit: Any, after: Any) -> None:
            service = getattr(crm, entity)
            spec = service.spec  # crm.stage_changes: a view, whose spec is not a stored aggregate's
            ok, bound = _fails_cleanly(lambda: bind(where, spec))
            found_ok, page = _fails_cleanly(lambda: service.find(where, order_by=order, limit=limit, after=after))
            count_ok, count = _fails_cleanly(lambda: service.count(where))
            assert count_ok == ok, f"bind and count disagree on {where!r}"
            if ok:
                expected = {r.id for r in stored[entity] if evaluate(bound, spec, r)}
                assert count == len(expected), where
                if found_ok and after is None and limit is None:
                    assert {r.id for r in page} == expected, where
            else:
                assert not found_ok
            assert _counts(crm) == counts

        check()

    def test_hostile_arguments_to_every_operation(self, crmkit_backend: Backend) -> None:
        crm = crmkit_backend.crm()
        people = _sample(crm)
        counts = _counts(crm)
        known = people[0]

        operations: list[Callable[[Any], Any]] = [
            lambda v: crm.customers.add(v),
            lambda v: crm.customers.update(v),
            lambda v: crm.customers.get(v),
            lambda v: crm.customers.delete(v),
            lambda v: crm.customers.delete(known.id, expected_version=2 if v is None or type(v) is int else v),
            lambda v: crm.customers.get_by_external_id(v),
            lambda v: crm.transactions.add(v),
            lambda v: crm.relationships.get(v),
            lambda v: crm.relationships.neighbours(v),
            lambda v: crm.relationships.traverse(known.id, kind="works_for", depth=v),
            lambda v: crm.relationships.traverse(known.id, kind="works_for", direction=v),
            lambda v: crm.relationships.neighbours(known.id, kind="works_for", as_of=v),
            lambda v: crm.timeline(v),
            lambda v: crm.timeline(known.id, since=v),
            lambda v: crm.timeline(known.id, limit=v),
            lambda v: crm.purchase_summaries(since=v),
            lambda v: crm.lifecycle.evaluate(v, apply=False),
            lambda v: list(crm.lifecycle.evaluate_all(batch_size=v, apply=False)),
            lambda v: list(crm.customers.stream(batch_size=v)),
            lambda v: crm.customers.add_many(v),
            lambda v: crm.customers.add_many([person("fine")], batch_size=v),
        ]

        @conformance_settings(max_examples=300)
        @given(index=st.integers(0, len(operations) - 1), value=_hostile)
        def check(index: int, value: Any) -> None:
            before = _counts(crm)
            ok, _ = _fails_cleanly(lambda: operations[index](value))
            if not ok:
                assert _counts(crm) == before, f"a failed call wrote something: operation {index}, {value!r}"

        check()
        assert _counts(crm)[1:] == counts[1:]

    def test_failed_imports_write_nothing_of_the_failing_batch(self, crmkit_backend: Backend) -> None:
        rows = st.lists(
            st.one_of(
                cs.customers(
                    emails=st.just(()),
                    phones=st.just(()),
                    addresses=st.just(()),
                    handles=st.just(()),
                    external_id=st.none() | st.sampled_from(q.EXTERNAL_IDS),
                ),
                _hostile,
            ),
            max_size=12,
        )

        @conformance_settings(max_examples=60)
        @given(rows=rows, batch_size=st.integers(1, 5))
        def check(rows: list[Any], batch_size: int) -> None:
            crm = crmkit_backend.crm()
            unique_rows = _unique_ids(rows)
            first_bad = next((i for i, r in enumerate(unique_rows) if not isinstance(r, Customer)), None)
            ok, result = _fails_cleanly(lambda: crm.customers.add_many(iter(unique_rows), batch_size=batch_size))
            written = unique_rows if first_bad is None else unique_rows[: (first_bad // batch_size) * batch_size]
            expected = _dedupe(written)
            assert ok == (first_bad is None), result
            if not ok:
                assert isinstance(result, ValidationError) and result.row == first_bad, result
            assert sorted(c.id for c in crm.customers.find()) == sorted(c.id for c in expected)

        check()


def _unique_ids(rows: list[Any]) -> list[Any]:
    seen: set[uuid.UUID] = set()
    out = []
    for r in rows:
        if isinstance(r, Customer):
            if r.id in seen:
                r = attrs.evolve(r, id=uuid.uuid4())
            seen.add(r.id)
        out.append(r)
    return out


def _dedupe(rows: Iterable[Customer]) -> list[Customer]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.external_id is not None:
            if r.external_id in seen:
                continue
            seen.add(r.external_id)
        out.append(r)
    return out

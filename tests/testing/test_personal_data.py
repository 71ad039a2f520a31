"""Every field says whether it holds personal data, so export and erasure cannot miss one.

The check walks ``crm.schema.declared`` of a connection with the installed plugins, the
probe and the example plugin's Subscription: a plugin's aggregate that leaves a text field
unclassified fails here, by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

import pytest
from crmkit_subscriptions import Subscription

import crmkit
from crmkit import schema
from crmkit._errors import ValidationError
from crmkit.schema import AggregateSpec, FieldDef, Schema
from crmkit.testing.probe import ProbeLinksPlugin


class _Declares:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return self.classes


def _declared(*extra: type) -> Schema:
    with crmkit.connect("memory://", plugins=[ProbeLinksPlugin(), _Declares(Subscription, *extra)]) as crm:
        return crm.schema


def _fields(spec: AggregateSpec) -> Iterator[tuple[str, FieldDef]]:
    """Every field of an aggregate and of the value objects it holds, nested ones included, by name."""
    todo: list[tuple[str, Iterable[FieldDef]]] = [(spec.name, spec.declared.values())]
    seen: set[type] = set()
    while todo:
        owner, fields = todo.pop()
        for fd in fields:
            yield f"{owner}.{fd.name}", fd
            if fd.kind == "many" and fd.type not in seen:
                seen.add(fd.type)
                todo.append((fd.type.__name__, schema.declared_fields(fd.type)))


def unclassified(of: Schema, kinds: Iterable[str] = schema.TEXT_KINDS) -> list[str]:
    """Fields of ``kinds`` whose declaration does not say whether they hold personal data."""
    wanted = set(kinds)
    found = {name for spec in of.declared.values() for name, fd in _fields(spec) if fd.kind in wanted}
    return sorted(
        name for spec in of.declared.values() for name, fd in _fields(spec) if name in found and fd.personal is None
    )


def hidden_personal(of: Schema) -> list[str]:
    """``many`` fields said to hold no personal data whose value objects do hold some."""
    out = []
    for spec in of.declared.values():
        for name, fd in _fields(spec):
            if (
                fd.kind == "many"
                and fd.personal is False
                and any(f.is_personal for f in schema.declared_fields(fd.type))
            ):
                out.append(name)
    return sorted(out)


def test_every_text_field_says_whether_it_is_personal() -> None:
    checked = _declared()
    assert {"customers", "state_changes", "identity_merges", "leads", "crmkit_probes", "subscriptions"} <= set(
        checked.declared
    )
    assert unclassified(checked) == []


def test_crmkit_s_own_aggregates_classify_every_field() -> None:
    assert unclassified(_declared(), kinds=schema.KINDS) == []


def test_a_many_field_holding_personal_data_says_so() -> None:
    assert hidden_personal(_declared()) == []


def test_an_unclassified_field_is_named() -> None:
    @schema.value_object
    class Pet:
        name: str = schema.text()
        legs: int = schema.integer(default=4)

    @schema.aggregate("crmkit_unclassified")
    class Unclassified(schema.Record):
        owner_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
        nickname: str = schema.text()
        pets: tuple[Pet, ...] = schema.many(Pet, default=(), personal=False)
        tags: frozenset[str] = schema.text_set(default=frozenset())
        attributes: dict[str, object] = schema.attributes()

    checked = _declared(Unclassified)
    assert unclassified(checked) == [
        "Pet.name",
        "crmkit_unclassified.attributes",
        "crmkit_unclassified.nickname",
        "crmkit_unclassified.tags",
    ]
    assert "Pet.legs" in unclassified(checked, kinds=schema.KINDS)


def test_a_many_field_hiding_personal_data_is_named() -> None:
    @schema.value_object
    class Guest:
        email: str = schema.text(personal="contact")

    @schema.aggregate("crmkit_hiding")
    class Hiding(schema.Record):
        owner_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
        guests: tuple[Guest, ...] = schema.many(Guest, default=(), personal=False)

    assert hidden_personal(_declared(Hiding)) == ["crmkit_hiding.guests"]


def test_the_category_is_recorded_and_checked() -> None:
    spec = schema.spec_of(Subscription)
    assert spec.declared["attributes"].personal == "free_text"
    assert spec.declared["plan"].personal is False and not spec.declared["plan"].is_personal
    seat = schema.declared_fields(spec.declared["seats"].type)
    assert [(f.name, f.personal) for f in seat] == [("email", "contact"), ("since", False)]
    for wrong in (True, "secret", 1):
        with pytest.raises(ValidationError) as raised:
            schema.text(personal=wrong)  # type: ignore[arg-type]
        assert raised.value.field == "personal" and "identity, contact, financial, free_text" in str(raised.value)


def test_the_field_tables_show_the_category() -> None:
    rows = schema.field_table(Subscription).splitlines()
    assert "| `attributes` | attributes | optional (empty) |  | `free_text` |  |" in rows
    assert "| `plan` | text | required | yes |  |  |" in rows

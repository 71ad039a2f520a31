"""Nothing declared is left out: every reference has a delete policy, every value object a strategy,
every aggregate (and value object) a field table in the docs, generated from its declaration.

The aggregates checked are those of a connection with the installed plugins, the probe and
the example plugin's Subscription.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from crmkit_subscriptions import Subscription
from hypothesis import given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import entities, schema
from crmkit._host import PluginHost
from crmkit.customers import Consent, Customer, EmailAddress, Handle, Phone, PostalAddress
from crmkit.interactions import Interaction
from crmkit.relationships import Relationship
from crmkit.schema import AggregateSpec, FieldDef, Schema, field_table
from crmkit.state_changes import StateChange
from crmkit.testing import strategies as cs
from crmkit.testing.probe import Probe, ProbeColour, ProbeLink, ProbeLinksPlugin, ProbePart
from crmkit.transactions import LineItem, Transaction

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- field-table: (\w+) -->\n((?:\|.*\n)+)", re.M)


class _Declares:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return self.classes


def _schema(*extra: type) -> Schema:
    return PluginHost(plugins=(ProbeLinksPlugin(), _Declares(Subscription, *extra))).schema()


def _value_objects(spec: AggregateSpec) -> Iterator[type]:
    """Every value-object class a declaration holds, nested ones included."""
    todo = [fd.type for fd in spec.declared.values() if fd.kind == "many"]
    seen: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        todo += [fd.type for fd in schema.declared_fields(cls) if fd.kind == "many"]


# --------------------------------------------------------------------------- the checks


def references_without_policy(of: Schema) -> list[str]:
    """Fields that hold the id of another record but are not references with a delete policy."""
    missing = []
    for name in of:
        spec = of[name]
        policies = {r.field: r.on_delete for r in of.references_from(name)}
        if isinstance(spec, AggregateSpec):
            holders = [fd.name for fd in spec.declared.values() if fd.kind in ("ref", "ref_any")]
        else:  # crmkit's own aggregates: every *_id field but the record's own
            holders = [f for f, field in spec.fields.items() if field.kind == "uuid" and f.endswith("_id")]
        for field in holders:
            if policies.get(field) not in ("cascade", "restrict", "set_null"):
                missing.append(f"{name}.{field}")
    return missing


def value_objects_without_strategy(of: Schema) -> list[str]:
    missing = []
    for spec in of.declared.values():
        for cls in _value_objects(spec):
            try:
                cs.value_objects(cls)
            except (TypeError, ValueError) as exc:
                missing.append(f"{cls.__qualname__}: {exc}")
    return missing


def documented_tables(text: str) -> dict[str, str]:
    """The field tables of the docs, by the name in their marker comment."""
    return {name: table.rstrip("\n") for name, table in MARKER.findall(text)}


def undocumented(of: Schema, text: str) -> list[str]:
    """Aggregates and value objects whose generated field table is not in the docs."""
    tables = set(documented_tables(text).values())
    missing = [name for name, spec in of.declared.items() if field_table(spec) not in tables]
    for spec in of.declared.values():
        missing += [cls.__qualname__ for cls in _value_objects(spec) if field_table(cls) not in tables]
    return missing


def _docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


# --------------------------------------------------------------------------- the tests


def test_every_reference_has_a_delete_policy() -> None:
    checked = _schema()
    assert references_without_policy(checked) == []
    assert {"crmkit_probes", "crmkit_probe_links", "subscriptions"} <= set(checked.declared)


def test_a_reference_without_a_policy_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    bare_transactions = attrs.evolve(entities.TRANSACTIONS, references=())
    with monkeypatch.context() as patched:
        patched.setitem(entities.ENTITIES, "transactions", bare_transactions)  # type: ignore[index]
        assert references_without_policy(_schema()) == ["transactions.customer_id", "transactions.order_id"]
    probe = attrs.evolve(schema.spec_of(Probe), references=())
    bare = Schema([probe])
    assert references_without_policy(bare) == [
        f"crmkit_probes.{f}" for f in ("owner_id", "sponsor_id", "guard_id", "about")
    ]


def test_every_value_object_has_a_strategy() -> None:
    checked = _schema()
    assert value_objects_without_strategy(checked) == []
    found = {cls for spec in checked.declared.values() for cls in _value_objects(spec)}
    assert {ProbePart, Subscription.__crmkit_spec__.declared["seats"].type} <= found

    @settings(max_examples=10, deadline=None, derandomize=True, database=None)
    @given(pair=st.sampled_from(sorted(found, key=str)).flatmap(lambda c: st.tuples(st.just(c), cs.value_objects(c))))
    def draws(pair: tuple[type, Any]) -> None:
        assert type(pair[1]) is pair[0]

    draws()


@pytest.mark.parametrize("kind", schema.KINDS)
def test_every_field_kind_has_a_strategy(kind: str) -> None:
    extra: dict[str, Any] = {"enum": {"type": ProbeColour}, "many": {"type": ProbePart}, "ref": {"target": "customers"}}
    fd = FieldDef(kind=kind, name=f"a_{kind}", **extra.get(kind, {}))

    @settings(max_examples=10, deadline=None, derandomize=True, database=None)
    @given(value=cs.field_values(fd), nullable=cs.field_values(attrs.evolve(fd, nullable=True)))
    def draws(value: Any, nullable: Any) -> None:
        assert value is not None

    draws()
    with pytest.raises(ValueError):
        cs.field_values(FieldDef(kind="hologram", name="x"))


def test_every_aggregate_and_value_object_has_its_field_table_in_the_docs() -> None:
    assert undocumented(_schema(), _docs()) == []


def test_an_undocumented_aggregate_is_noticed() -> None:
    @schema.aggregate("crmkit_undocumented")
    class Undocumented(schema.Record):
        owner_id: uuid.UUID = schema.ref("customers", on_delete="cascade")

    assert undocumented(_schema(Undocumented), _docs()) == ["crmkit_undocumented"]


def _generated_tables() -> dict[str, dict[str, type]]:
    """Per docs page, the declarations whose field tables it holds (and no others)."""
    return {
        "aggregates.md": {
            "crmkit_probes": Probe,
            "ProbePart": ProbePart,
            "crmkit_probe_links": ProbeLink,
            "subscriptions": Subscription,
            "Seat": Subscription.__crmkit_spec__.declared["seats"].type,
            "state_changes": StateChange,
        },
        "domain.md": {
            "customers": Customer,
            "EmailAddress": EmailAddress,
            "Phone": Phone,
            "PostalAddress": PostalAddress,
            "Handle": Handle,
            "Consent": Consent,
            "relationships": Relationship,
            "interactions": Interaction,
            "transactions": Transaction,
            "LineItem": LineItem,
        },
    }


@pytest.mark.parametrize("page", sorted(_generated_tables()))
def test_the_tables_in_the_docs_are_the_generated_ones(page: str) -> None:
    tables = documented_tables((ROOT / "docs" / page).read_text(encoding="utf-8"))
    generated = _generated_tables()[page]
    assert set(tables) == set(generated)
    for name, declared in generated.items():
        assert tables[name] == field_table(declared), f"docs/{page}: the table of {name} is stale"


def test_field_tables_say_what_the_declaration_says() -> None:
    rows = field_table(Probe).splitlines()
    assert rows[0].startswith("| Field | Kind | Required / default | Sortable | Personal | Refers to |")
    assert len(rows) == 2 + len(schema.spec_of(Probe).declared)
    assert "| `guard_id` | ref | default `None` | yes |  | `customers`, on delete: restrict |" in rows
    assert "| `note` | text (may be blank) | default `None` | yes | `free_text` |  |" in rows
    with pytest.raises(TypeError):
        field_table(st)  # type: ignore[arg-type]

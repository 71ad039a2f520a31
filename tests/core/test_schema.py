"""The schema layer in the core: declarations, the registry at connect, references, actors and before-commit."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import ConflictError, Customer, F, PluginError, ValidationError, schema
from crmkit.events import Event
from crmkit.testing.probe import Probe, ProbeColour, ProbePart, ProbePlugin

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@schema.value_object
class Line:
    sku: str = schema.text()
    qty: int = schema.integer(default=1)


@schema.aggregate("memberships", time_field="joined_at", unique=[("customer_id", "tier")])
class Membership(schema.Record):
    customer_id: uuid.UUID = schema.ref("customers", on_delete="restrict")
    tier: Tier = schema.enum(Tier)
    joined_at: dt.datetime = schema.instant(sortable=True)
    lines: tuple[Line, ...] = schema.many(Line, default=())
    active: bool = schema.boolean(default=True)


class Plugin:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return self.classes


def connect(*classes: type, **options: Any) -> crmkit.CRM:
    return crmkit.connect("memory://", plugins=[Plugin(*classes)], **options)


# --------------------------------------------------------------------------- declarations


def test_a_declared_class_is_frozen_slotted_keyword_only_and_checks_every_field() -> None:
    m = Membership(customer_id=uuid.uuid4(), tier="gold", joined_at=NOW, lines=[{"sku": "A"}])
    assert m.tier is Tier.GOLD and m.lines == (Line(sku="A"),) and m.version == 0
    assert not hasattr(m, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m.active = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        Membership(uuid.uuid4(), "gold", NOW)  # type: ignore[misc]
    with pytest.raises(ValidationError) as err:
        Membership(customer_id=uuid.uuid4(), tier="bronze", joined_at=NOW)
    assert err.value.field == "tier" and "gold, silver" in err.value.message
    with pytest.raises(ValidationError) as err:
        Membership(customer_id=uuid.uuid4(), tier="gold", joined_at=dt.datetime(2026, 1, 1))
    assert err.value.field == "joined_at"
    with pytest.raises(ValidationError) as err:
        Membership(customer_id=uuid.uuid4(), tier="gold", joined_at=NOW, lines=[{"sku": "A", "qty": "2"}])
    assert err.value.field == "lines[0].qty"
    with pytest.raises(ValidationError) as err:
        Membership(customer_id=uuid.uuid4(), tier="gold", joined_at=NOW, active=1)
    assert err.value.field == "active"


def test_instants_are_kept_in_utc() -> None:
    east = dt.timezone(dt.timedelta(hours=2))
    m = Membership(customer_id=uuid.uuid4(), tier="gold", joined_at=dt.datetime(2026, 1, 1, 14, tzinfo=east))
    assert m.joined_at == dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc) and m.joined_at.tzinfo is dt.timezone.utc


def test_declaration_mistakes_are_named() -> None:
    with pytest.raises(ValidationError, match=r"must subclass schema\.Record"):

        @schema.aggregate("things")
        class NotARecord:
            name: str = schema.text()

    with pytest.raises(ValidationError, match=r"not declared with a crmkit\.schema field helper"):

        @schema.aggregate("things")
        class Plain(schema.Record):
            name: str = attrs.field()

    with pytest.raises(ValidationError, match="names 'nme'"):

        @schema.aggregate("things", unique=[("nme",)])
        class Typo(schema.Record):
            name: str = schema.text()

    with pytest.raises(ValidationError, match="time_field"):

        @schema.aggregate("things", time_field="name")
        class WrongTime(schema.Record):
            name: str = schema.text()

    with pytest.raises(ValidationError, match="set_null needs default=None"):
        schema.ref("customers", on_delete="set_null")
    with pytest.raises(ValidationError, match="cascade, restrict or set_null"):
        schema.ref("customers", on_delete="nothing")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="value_object"):
        schema.many(Customer)
    with pytest.raises(ValidationError, match="crmkit keeps for itself"):

        @schema.aggregate("things")
        class Reserved(schema.Record):
            tenant: str = schema.text()


def test_a_value_object_extends_another_with_its_fields_and_checks_and_stays_a_class_of_its_own() -> None:
    @schema.value_object
    class Base:
        sku: str = schema.text()
        qty: int = schema.integer(default=1)

        def __attrs_post_init__(self) -> None:
            if self.qty > 9:
                raise ValidationError("qty", "at most 9", self.qty)

    @schema.value_object
    class Kept(Base):
        note: str | None = schema.text(default=None)

    kept = Kept(sku="A", note="x")
    assert [fd.name for fd in schema.declared_fields(Kept)] == ["sku", "qty", "note"]
    assert kept != Base(sku="A") and not isinstance(Base(sku="A"), Kept)
    with pytest.raises(ValidationError, match="qty"):
        Kept(sku="A", qty=10)
    with pytest.raises(ValidationError, match="sku"):
        Kept(sku=3)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="value_object"):
        schema.value_object(attrs.frozen(type("Plain", (), {"__annotations__": {"a": "int"}})))
    with pytest.raises(ValidationError, match="value_object"):  # an attrs base that is no value object
        schema.value_object(type("Sub", (attrs.frozen(type("AttrsBase", (), {})),), {}))


def test_the_spec_lists_queryable_fields_references_and_keys() -> None:
    spec = schema.spec_of(Probe)
    assert spec.fields["flag"].kind == "bool" and spec.fields["colour"].kind == "text"
    assert spec.fields["about.id"].kind == "uuid" and "parts" not in spec.fields
    assert spec.unique == (("owner_id", "code", "number"),)
    policies = {r.field: (r.target, r.on_delete) for r in spec.references}
    assert policies == {
        "owner_id": ("customers", "cascade"),
        "sponsor_id": ("customers", "set_null"),
        "guard_id": ("customers", "restrict"),
        "about": (None, "cascade"),
    }
    assert spec.customer_field == "owner_id" and spec.default_order == ("happened_at", "id")


# --------------------------------------------------------------------------- the registry at connect


def test_connect_lists_plugin_aggregates_with_references_both_ways() -> None:
    with connect(Membership) as crm:
        assert "memberships" in crm.schema and crm.schema.spec(Membership).name == "memberships"
        incoming = {(r.source, r.field) for r in crm.schema.references_to("customers")}
        assert ("memberships", "customer_id") in incoming and ("interactions", "customer_id") in incoming
        assert crm.records(Membership) is crm.records("memberships")
        assert crm.records(Customer) is crm.customers


def test_two_aggregates_with_one_name_are_refused_at_connect() -> None:
    @schema.aggregate("memberships")
    class Other(schema.Record):
        name: str = schema.text()

    with pytest.raises(PluginError, match="two aggregates are named 'memberships'"):
        connect(Membership, Other)

    @schema.aggregate("customers")
    class Clash(schema.Record):
        name: str = schema.text()

    with pytest.raises(PluginError, match="'customers'"):
        connect(Clash)


def test_a_reference_to_an_unknown_aggregate_is_refused_at_connect() -> None:
    @schema.aggregate("notes_of_nothing")
    class Orphan(schema.Record):
        parent: uuid.UUID = schema.ref("nothing_here", on_delete="cascade")

    with pytest.raises(PluginError, match="nothing_here"):
        connect(Orphan)


def test_a_hook_returning_a_plain_class_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match=r"not declared with @schema\.aggregate"):
        connect(Line)


# --------------------------------------------------------------------------- services


def test_records_round_trip_query_and_keys_on_memory() -> None:
    with connect(Membership) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        members = crm.records(Membership)
        gold = members.add(Membership(customer_id=ada.id, tier=Tier.GOLD, joined_at=NOW, lines=[Line(sku="X")]))
        assert members.get(gold.id) == gold and gold.version == 1
        assert members.count(F("tier") == Tier.GOLD) == 1 and members.count(F("tier") == "silver") == 0
        assert members.count(F("active") == True) == 1  # noqa: E712 - a query, not a test of truth
        with pytest.raises(ValidationError, match="compare it with == or !="):
            members.count(F("active") > False)
        with pytest.raises(ConflictError, match="tier"):
            members.add(Membership(customer_id=ada.id, tier="gold", joined_at=NOW))
        with pytest.raises(ValidationError) as err:
            members.add(Membership(customer_id=uuid.uuid4(), tier="silver", joined_at=NOW))
        assert err.value.field == "customer_id"
        changed = members.update(attrs.evolve(gold, active=False))
        assert changed.version == 2 and members.count(F("active") == False) == 1  # noqa: E712
        with pytest.raises(ConflictError):
            members.update(attrs.evolve(gold, active=True))  # stale: based on version 1


def test_restrict_refuses_the_delete_and_names_the_referring_records() -> None:
    with connect(Membership) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        gold = crm.records(Membership).add(Membership(customer_id=ada.id, tier="gold", joined_at=NOW))
        with pytest.raises(ConflictError, match=str(gold.id)):
            crm.customers.delete(ada.id)
        assert crm.customers.get(ada.id) == ada  # nothing of the delete happened
        crm.records(Membership).delete(gold.id)
        crm.customers.delete(ada.id)
        assert crm.customers.count() == 0


def test_cascade_set_null_and_ref_any_on_the_probe() -> None:
    with crmkit.connect("memory://", plugins=[ProbePlugin()]) as crm:
        owner = crm.customers.add(Customer(kind="person", name="Owner"))
        sponsor = crm.customers.add(Customer(kind="person", name="Sponsor"))
        probes = crm.records(Probe)

        def probe(code: str, **extra: Any) -> Probe:
            return probes.add(
                Probe(
                    owner_id=owner.id,
                    code=code,
                    number=1,
                    amount=Decimal("-1.50"),
                    currency="EUR",
                    happened_at=NOW,
                    **extra,
                )
            )

        first = probe("a", sponsor_id=sponsor.id, parts=[ProbePart(label="p", amount=Decimal("2"))])
        about_first = probe("b", about=first)
        about_sponsor = probe("c", about=sponsor)
        assert probes.count(F("about.aggregate") == "crmkit_probes") == 1
        crm.customers.delete(sponsor.id)  # set_null on first, cascade on the probe about the sponsor
        assert probes.get(first.id).sponsor_id is None and probes.get(first.id).version == 2
        assert probes.count(F("id") == about_sponsor.id) == 0
        probes.delete(first.id)  # ref_any cascade
        assert probes.count() == 0 and about_first.about == schema.Ref("crmkit_probes", first.id)
        with pytest.raises(ValidationError) as err:
            probe("d", about=schema.Ref("crmkit_probes", uuid.uuid4()))
        assert err.value.field == "about"
        assert probe("e", colour=ProbeColour.BLUE).colour is ProbeColour.BLUE


def test_deleting_a_customer_cascades_into_declared_aggregates_about_its_interactions() -> None:
    with crmkit.connect("memory://", plugins=[ProbePlugin()]) as crm:
        owner = crm.customers.add(Customer(kind="person", name="Owner"))
        other = crm.customers.add(Customer(kind="person", name="Other"))
        call = crm.interactions.add(
            crmkit.Interaction(customer_id=owner.id, channel="phone", direction="inbound", occurred_at=NOW)
        )
        crm.records(Probe).add(
            Probe(owner_id=other.id, code="n", number=1, amount=Decimal(0), currency="EUR", happened_at=NOW, about=call)
        )
        crm.customers.delete(owner.id)
        assert crm.interactions.count() == 0 and crm.records(Probe).count() == 0


def test_subclasses_of_aggregates_are_refused_not_stored_without_their_fields() -> None:
    @attrs.frozen
    class VipCustomer(Customer):
        perks: str = "lounge"

    with crmkit.connect("memory://") as crm, pytest.raises(ValidationError, match="subclass"):
        crm.customers.add(VipCustomer(kind="person", name="Vip"))


# --------------------------------------------------------------------------- events, actors, before-commit


class Recorder:
    def __init__(self) -> None:
        self.before: list[Event] = []
        self.after: list[Event] = []

    @crmkit.hookimpl
    def crmkit_before_commit(self, crm: crmkit.CRM, events: Sequence[Event]) -> None:
        self.before.extend(events)

    @crmkit.hookimpl
    def crmkit_after_commit(self, crm: crmkit.CRM, events: Sequence[Event]) -> None:
        self.after.extend(events)


def test_events_carry_the_actor_of_connect_or_acting_as() -> None:
    recorder = Recorder()
    with crmkit.connect("memory://", plugins=[recorder, Plugin(Membership)], actor="user:42") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        with crm.acting_as("user:7"):
            crm.records(Membership).add(Membership(customer_id=ada.id, tier="gold", joined_at=NOW))
            assert crm.actor == "user:7"
        assert crm.actor == "user:42"
    assert [(type(e).__name__, e.actor) for e in recorder.after] == [
        ("CustomerCreated", "user:42"),
        ("MembershipCreated", "user:7"),
    ]
    assert recorder.before == recorder.after
    with pytest.raises(ValidationError, match="actor"):
        crmkit.connect("memory://", actor="")


class Auditor:
    """Writes an audit customer for every created membership, inside the same transaction."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.rounds = 0

    @crmkit.hookimpl
    def crmkit_before_commit(self, crm: crmkit.CRM, events: Sequence[Event]) -> None:
        self.rounds += 1
        if self.fail:
            raise RuntimeError("audit store is down")
        for event in events:
            if event.entity == "memberships":
                crm.customers.add(Customer(kind="organization", name=f"audit {event.record.id}", tags={"audit"}))


def test_before_commit_writes_join_the_transaction_and_raising_aborts_it() -> None:
    auditor = Auditor()
    with crmkit.connect("memory://", plugins=[auditor, Plugin(Membership)]) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        crm.records(Membership).add(Membership(customer_id=ada.id, tier="gold", joined_at=NOW))
        assert crm.customers.count(F("tags").contains("audit")) == 1
        assert auditor.rounds == 3  # Ada; the membership; the audit row's own event
        auditor.fail = True
        with pytest.raises(RuntimeError, match="audit store is down"):
            crm.records(Membership).add(Membership(customer_id=ada.id, tier="silver", joined_at=NOW))
        assert crm.records(Membership).count() == 1  # the failed hook rolled the membership back


def test_a_before_commit_hook_that_never_stops_writing_is_stopped() -> None:
    class Echo:
        @crmkit.hookimpl
        def crmkit_before_commit(self, crm: crmkit.CRM, events: Sequence[Event]) -> None:
            crm.customers.add(Customer(kind="person", name="echo"))

    with crmkit.connect("memory://", plugins=[Echo()]) as crm:
        with pytest.raises(crmkit.CRMError, match="kept writing"):
            crm.customers.add(Customer(kind="person", name="first"))
        assert crm.customers.count() == 0


# --------------------------------------------------------------------------- smaller fixes


def test_a_stage_change_reads_the_clock_once() -> None:
    ticks = iter(NOW + dt.timedelta(seconds=i) for i in range(1000))
    with crmkit.connect("memory://", clock=lambda: next(ticks)) as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada"))
        crm.customers.update(attrs.evolve(ada, stage="prospect"))
        (change,) = crm.stage_changes.find().items
        assert change.occurred_at == change.created_at == change.updated_at


def test_channels_that_need_no_consent_are_always_contactable() -> None:
    email_ok = crmkit.EmailAddress("ada@example.org", consent=[crmkit.Consent("email", True)])
    with crmkit.connect("memory://") as crm:
        ada = crm.customers.add(Customer(kind="person", name="Ada", emails=[email_ok]))
        assert crm.customers.may_contact(ada.id, "email") and crm.customers.may_contact(ada, "in_person")
        assert not crm.customers.may_contact(ada.id, "sms")
        with pytest.raises(ValidationError, match="not a registered channel"):
            crm.customers.may_contact(ada.id, "pigeon")


def test_memory_reference_checks_use_the_id_index() -> None:
    """add_many's reference check asks existing_ids, which the memory store answers from its map."""
    with crmkit.connect("memory://") as crm:
        ids = [crm.customers.add(Customer(kind="person", name=f"c{i}")).id for i in range(50)]
        repo = crm.store.repository(crm.schema["customers"])
        calls: list[Any] = []
        original = repo._matching
        repo._matching = lambda *a: calls.append(a) or original(*a)  # type: ignore[method-assign]
        assert repo.existing_ids(crm.tenant, [*ids, uuid.uuid4()]) == set(ids)
        assert calls == []  # no scan, no per-record evaluation of an In list

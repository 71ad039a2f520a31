"""``insert_from`` on MongoDB (one pipeline) against the base class's page-at-a-time reference.

Every test stores the same source records under two tenants, builds the new records with
the MongoDB override under one and with ``crmkit.store.Repository.insert_from`` (the
reference, which builds each record in Python and inserts it with ``insert``) under the
other, and compares the returned records field by field (ids apart) and the stored
documents key by key, in the encoder's key order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmkit
from crmkit import ConflictError, Customer, F, Interaction, query, schema
from crmkit.crm import CRM
from crmkit.entities import CUSTOMERS
from crmkit.hookspecs import hookimpl
from crmkit.marketing import CampaignMember
from crmkit.query import Const, Select, bind, value_of
from crmkit.store import Repository
from crmkit.testing import strategies as cst
from crmkit.testing.aggregates import example_value
from crmkit.testing.probe import Probe, ProbeColour, ProbeLink, ProbePart

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 3, 1, 9, 30, 0, 250_000, tzinfo=UTC)
STAMP = dt.datetime(2025, 6, 2, 8, 0, 0, 123_456, tzinfo=UTC)


class Probes:
    @hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Probe, ProbeLink]


@pytest.fixture(scope="module")
def crm(mongo_db_url: str) -> Iterator[CRM]:
    with crmkit.connect(mongo_db_url, tenant="unused", plugins=[Probes()]) as opened:
        yield opened


def tenants() -> tuple[str, str]:
    n = uuid.uuid4().hex[:10]
    return f"pipe-{n}", f"ref-{n}"


def stored(record: Any) -> Any:
    """A new record as a store keeps it (version 1, stamped)."""
    return attrs.evolve(record, version=1, created_at=T0, updated_at=T0)


def put(crm: CRM, tenant: str, spec: Any, records: list[Any]) -> None:
    with crm.transaction():
        crm.store.repository(spec).insert(tenant, records)


def built(
    crm: CRM,
    tenant: str,
    target: Any,
    source: Any,
    where: Any,
    values: Mapping[str, Any],
    *,
    reference: bool,
    generic: bool = False,
):
    """The records ``insert_from`` builds (the override, or the base class's reference), in one transaction."""
    target_repo = crm.store.repository(crm.schema.spec(target))
    source_spec = crm.schema.spec(source)
    source_repo = crm.store.repository(source_spec)
    condition = bind(where, source_spec, crm.schema)
    bound: dict[str, Any] = {}
    for name, written in values.items():
        value = value_of(written)
        bound[name] = query.Test(bind(value.where, source_spec, crm.schema)) if isinstance(value, query.Test) else value
    with crm.transaction():
        if reference:
            return Repository.insert_from(target_repo, tenant, source_repo, condition, bound, STAMP)
        if generic:  # the store hands this one to the base class
            return target_repo.insert_from(tenant, source_repo, condition, bound, STAMP)
        with no_reference():  # the pipeline builds them all: the base class is never called
            return target_repo.insert_from(tenant, source_repo, condition, bound, STAMP)


@contextlib.contextmanager
def no_reference() -> Iterator[None]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the MongoDB store fell back to the base class")

    original = Repository.insert_from
    Repository.insert_from = refused  # type: ignore[method-assign]
    try:
        yield
    finally:
        Repository.insert_from = original  # type: ignore[method-assign]


def documents(crm: CRM, target: Any, tenant: str, ids: list[uuid.UUID] | None = None) -> list[list[tuple[str, Any]]]:
    """Stored documents of a tenant in id order, as (key, value) lists without the keys that differ."""
    collection = crm.store.repository(crm.schema.spec(target)).collection
    chosen: dict[str, Any] = {"tenant": tenant} if ids is None else {"tenant": tenant, "id": {"$in": ids}}
    found = collection.find(chosen, sort=[("id", 1)])
    return [[(k, v) for k, v in doc.items() if k not in ("_id", "id", "tenant")] for doc in found]


def same_as_reference(crm: CRM, target: Any, source: Any, where: Any, values: Mapping[str, Any], seed: Any) -> list:
    """Build under two tenants holding ``seed`` (source spec -> records); assert the two agree; the records."""
    mine, ref = tenants()
    for tenant in (mine, ref):
        for name, records in seed.items():
            put(crm, tenant, crm.schema.spec(name), records)
    made = built(crm, mine, target, source, where, values, reference=False)
    expected = built(crm, ref, target, source, where, values, reference=True)
    assert [attrs.evolve(r, id=e.id) for r, e in zip(made, expected, strict=True)] == expected
    assert len(made) == len(expected)
    for record, reference in zip(made, expected, strict=True):
        for field in attrs.fields(type(record)):
            if field.name != "id":
                assert getattr(record, field.name) == getattr(reference, field.name), field.name
    ids = [r.id for r in made]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 for i in ids)
    ours = documents(crm, target, mine, ids)
    assert len(ours) == len(made)
    assert ours == documents(crm, target, ref, [r.id for r in expected])
    # read back, the stored records are the returned ones
    repo = crm.store.repository(crm.schema.spec(target))
    assert [repo.get(mine, i) for i in ids] == made
    return made


def probe_constants(n: int, owner: uuid.UUID) -> dict[str, Any]:
    """A Const of every field kind of the probe (value number ``n`` of each, None every third time)."""
    spec = schema_spec(Probe)
    out: dict[str, Any] = {}
    for i, (name, fd) in enumerate(spec.declared.items()):
        if fd.kind == "ref":
            value = owner if not fd.nullable or (n + i) % 3 else None
        elif fd.kind == "ref_any":
            value = schema.Ref("customers", owner) if (n + i) % 3 else None
        else:
            value = example_value(fd, n + i)
        out[name] = Const(value)
    return out


def schema_spec(cls: type) -> Any:
    from crmkit.schema import spec_of

    return spec_of(cls)


def distinct(customers: list[Customer]) -> list[Customer]:
    """The customers without repeats of an id or an external id."""
    ids, exts, out = set(), set(), []
    for c in customers:
        if c.id not in ids and (c.external_id is None or c.external_id not in exts):
            ids.add(c.id)
            exts.add(c.external_id)
            out.append(stored(c))
    return out


def customer_seed(customers: list[Customer]) -> dict[str, list[Any]]:
    return {"customers": distinct(customers)}


CUSTOMERS_ = st.lists(cst.customers(), max_size=6)
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(customers=CUSTOMERS_, n=st.integers(0, 40))
def test_constants_of_every_kind_and_copies(crm: CRM, customers: list[Customer], n: int) -> None:
    owner = uuid.uuid4()
    values: dict[str, Any] = probe_constants(n, owner)
    values["owner_id"] = F("id")
    values["token"] = F("id")
    values["note"] = F("emails.address").first()  # searchable, through a list, None when it is empty
    values["labels"] = F("tags")
    values["happened_at"] = F("created_at")
    made = same_as_reference(crm, Probe, "customers", None, values, customer_seed(customers))
    assert [r.owner_id for r in made] == sorted(c.id for c in distinct(customers))


@SETTINGS
@given(customers=CUSTOMERS_, n=st.integers(0, 40), kind=st.sampled_from(["person", "organization"]))
def test_copied_search_field_and_constant_search_field(crm: CRM, customers: list[Customer], n: int, kind: str) -> None:
    values: dict[str, Any] = probe_constants(n, uuid.uuid4())
    values["owner_id"] = F("id")
    values["code"] = F("name")  # searchable, copied: its folded forms are derived per document
    made = same_as_reference(crm, Probe, "customers", F("kind") == kind, values, customer_seed(customers))
    assert all(r.code for r in made)


@SETTINGS
@given(
    customers=st.lists(cst.customers(), min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), max_size=6),
    held=st.lists(st.integers(0, 5), max_size=3),
)
def test_tests_with_sub_queries_and_first_by(crm: CRM, customers: list[Customer], picks: list[int], held: list[int]):
    customers = distinct(customers)
    interactions = [
        stored(
            Interaction(
                customer_id=customers[p % len(customers)].id,
                channel=("email", "phone")[i % 2],
                direction="inbound",
                occurred_at=T0 + dt.timedelta(minutes=i),
            )
        )
        for i, p in enumerate(picks)
    ]
    held_out = [customers[h % len(customers)].id for h in held]
    values: dict[str, Any] = probe_constants(3, uuid.uuid4())
    values["owner_id"] = F("id")
    values["flag"] = F("id").in_(Select("interactions", "customer_id", F("channel") == "email"))
    by_phone = F("channel") == "phone"
    latest_by_phone = Select("interactions", "customer_id", first_by="-occurred_at", first_where=by_phone)
    where = F("id").in_(latest_by_phone)
    seed = {"customers": customers, "interactions": interactions}
    same_as_reference(crm, Probe, "customers", ~where, values, seed)
    values["flag"] = F("id").in_(held_out) if held_out else F("kind") == "person"
    values["token"] = F("id")
    same_as_reference(crm, Probe, "customers", None, values, seed)
    values["flag"] = where  # the first-by sub-query as the test
    same_as_reference(crm, Probe, "customers", None, values, seed)


def test_attribute_copies(crm: CRM) -> None:
    customers = [
        stored(
            Customer(
                kind="person",
                name=f"c{i}",
                attributes={"vip": i % 2 == 0} | ({} if i == 3 else {"tier": f"t{i}", "score": i}),
            )
        )
        for i in range(5)
    ]
    values: dict[str, Any] = probe_constants(1, uuid.uuid4())
    values.update(owner_id=F("id"), note=F("attributes.tier"), flag=F("attributes.vip"), number=Const(5))
    made = same_as_reference(crm, Probe, "customers", None, values, {"customers": customers})
    assert [r.note for r in made] == ["t0", "t1", "t2", None, "t4"]
    assert [r.flag for r in made] == [True, False, True, False, True]


def test_empty_source(crm: CRM) -> None:
    values: dict[str, Any] = probe_constants(2, uuid.uuid4())
    values["owner_id"] = F("id")
    assert same_as_reference(crm, Probe, "customers", None, values, {}) == []
    seed = {"customers": [stored(Customer(kind="person", name="only"))]}
    assert same_as_reference(crm, Probe, "customers", F("kind") == "organization", values, seed) == []


def campaign_values(campaign: uuid.UUID, held_out: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "campaign_id": Const(campaign),
        "customer_id": F("id"),
        "status": Const("planned"),
        "added_at": Const(T0),
        "status_at": Const(T0),
        "first_responded_at": Const(None),
        "contacted_at": Const(None),
        "history": Const(()),
        "control": F("id").in_(held_out),
        "address": F("emails.address").first(),  # kept as the contact point has it
    }


def test_campaign_members_and_a_unique_collision(crm: CRM) -> None:
    customers = [
        stored(Customer(kind="person", name=f"p{i}", emails=() if i == 2 else (cst_email(f"Ada{i}@Example.ORG"),)))
        for i in range(6)
    ]
    campaign = uuid.uuid4()
    values = campaign_values(campaign, [customers[1].id, customers[4].id])
    mine, ref = tenants()
    for tenant in (mine, ref):
        put(crm, tenant, CUSTOMERS, customers)
    made = built(crm, mine, CampaignMember, "customers", None, values, reference=False)
    expected = built(crm, ref, CampaignMember, "customers", None, values, reference=True)
    assert [attrs.evolve(r, id=e.id) for r, e in zip(made, expected, strict=True)] == expected
    assert [m.address for m in made] == [  # as the contact point has it
        "Ada0@Example.ORG",
        "Ada1@Example.ORG",
        None,
        "Ada3@Example.ORG",
        "Ada4@Example.ORG",
        "Ada5@Example.ORG",
    ]
    assert [m.control for m in made] == [False, True, False, False, True, False]
    assert documents(crm, CampaignMember, mine) == documents(crm, CampaignMember, ref)
    # the same members again: the (campaign, customer) key is taken, nothing of the second call is written
    extra = stored(Customer(kind="person", name="late"))
    put(crm, mine, CUSTOMERS, [extra])
    with pytest.raises(ConflictError) as raised:
        built(crm, mine, CampaignMember, "customers", None, values, reference=False)
    with pytest.raises(ConflictError) as expected_error:
        put(crm, ref, CUSTOMERS, [extra])
        built(crm, ref, CampaignMember, "customers", None, values, reference=True)
    assert str(raised.value) == str(expected_error.value)
    assert len(documents(crm, CampaignMember, mine)) == len(customers)


def cst_email(address: str) -> Any:
    from crmkit.customers import EmailAddress

    return EmailAddress(address=address)


def test_through_the_service(crm: CRM, mongo_db_url: str) -> None:
    with crmkit.connect(mongo_db_url, tenant=tenants()[0], plugins=[Probes()]) as service:
        owner = service.customers.add(Customer(kind="person", name="Ada", emails=(cst_email("ada@x.org"),)))
        service.customers.add(Customer(kind="organization", name="Acme"))
        values = {name: v.value for name, v in probe_constants(4, owner.id).items()}
        values["owner_id"] = F("id")
        values["note"] = F("emails.address").first()
        values["flag"] = F("kind") == "person"
        result = service.records(Probe).add_from("customers", F("name").startswith("A"), values=values)
        assert result.added == 2
        probes = service.records(Probe).find(order_by="note")
        assert sorted((p.note or "", p.flag) for p in probes) == [("", False), ("ada@x.org", True)]
        assert service.records(Probe).count(F("note").matches("ada")) == 1  # search terms of the copied text


def test_money_and_enum_copy_between_probes(crm: CRM) -> None:
    """A declared source (the probe): money, enum, date, ref_any parts and a value object's field copied."""
    owner = uuid.uuid4()
    sources = [
        stored(
            Probe(
                owner_id=owner,
                code=f"code {i}",
                number=i,
                amount=Decimal("-12.50") * i,
                currency="EUR",
                happened_at=T0,
                day=None if i == 1 else dt.date(2024, 1, 1 + i),
                colour=list(ProbeColour)[i % len(ProbeColour)],
                about=None if i == 2 else schema.Ref("customers", owner),
                parts=() if i == 0 else (ProbePart(label=f"part {i}", amount=Decimal("1.5"), at=T0),),
            )
        )
        for i in range(4)
    ]
    values: dict[str, Any] = probe_constants(5, uuid.uuid4())  # another owner: the (owner, code, number) key is free
    values.update(
        amount=F("amount"),
        number=F("number"),
        colour=F("colour"),
        day=F("day"),
        note=F("parts.label").first(),
        happened_at=F("parts.at").first(),
        token=F("about.id"),
        currency=F("currency"),
        code=F("code"),
    )
    values["happened_at"] = F("happened_at")
    values["sponsor_id"] = F("about.id")
    same_as_reference(crm, Probe, Probe, F("number") >= 0, values, {"crmkit_probes": sources})


def test_several_batches_with_tests_across_them(crm: CRM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("crmkit_mongo._insert_from.BATCH", 3)
    customers = [
        stored(Customer(kind=("person", "organization")[i % 2], name=f"n{i}", emails=(cst_email(f"N{i}@x.org"),)))
        for i in range(10)
    ]
    held_out = [customers[i].id for i in (0, 4, 5, 9)]
    made = same_as_reference(
        crm, CampaignMember, "customers", None, campaign_values(uuid.uuid4(), held_out), {"customers": customers}
    )
    assert [m.control for m in made] == [i in (0, 4, 5, 9) for i in range(10)]
    assert [m.address for m in made] == [f"N{i}@x.org" for i in range(10)]


def test_without_transactions_a_collision_in_a_later_batch_leaves_nothing(
    mongo_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store without transactions takes back the batches it wrote before the one that clashed."""
    monkeypatch.setattr("crmkit_mongo._insert_from.BATCH", 2)
    tenant = tenants()[0]
    with crmkit.connect(mongo_db_url, tenant=tenant, transactions=False) as plain:
        customers = [stored(Customer(kind="person", name=f"n{i}")) for i in range(7)]
        put(plain, tenant, CUSTOMERS, customers)
        campaign = uuid.uuid4()
        members = plain.store.repository(plain.schema.spec(CampaignMember))
        clashing = customers[5].id
        taken = CampaignMember(campaign_id=campaign, customer_id=clashing, status="planned", added_at=T0, status_at=T0)
        taken = stored(taken)
        members.insert(tenant, [taken])
        values = {name: value_of(v) for name, v in campaign_values(campaign, []).items()}
        values["control"] = Const(False)
        source = plain.store.repository(CUSTOMERS)
        with no_reference(), pytest.raises(ConflictError) as raised:
            members.insert_from(tenant, source, bind(None, CUSTOMERS, plain.schema), values, STAMP)
        assert raised.value.key == (campaign, customers[5].id)
        assert [d["customer_id"] for d in members.collection.find({"tenant": tenant})] == [customers[5].id]
        made = members.insert_from(tenant, source, bind(F("name") != "n5", CUSTOMERS, plain.schema), values, STAMP)
        assert len(made) == 6
        assert members.collection.count_documents({"tenant": tenant}) == 7


def test_a_copy_between_differently_stored_fields_is_built_the_generic_way(crm: CRM) -> None:
    """An integer attribute into a money field (the pipeline would store an Int64, the record holds a Decimal),
    a datetime attribute into an instant: built by the base class."""
    seen = [T0 + dt.timedelta(days=i) for i in range(3)]
    customers = [
        stored(Customer(kind="person", name=f"c{i}", attributes={"score": i, "seen": t})) for i, t in enumerate(seen)
    ]
    values: dict[str, Any] = probe_constants(1, uuid.uuid4())
    values.update(owner_id=F("id"), amount=F("attributes.score"), happened_at=F("attributes.seen"))
    mine, ref = tenants()
    for tenant in (mine, ref):
        put(crm, tenant, CUSTOMERS, customers)
    with pytest.raises(AssertionError, match="fell back"):
        built(crm, mine, Probe, "customers", None, values, reference=False)
    made = built(crm, mine, Probe, "customers", None, values, reference=False, generic=True)
    expected = built(crm, ref, Probe, "customers", None, values, reference=True)
    assert [attrs.evolve(r, id=e.id) for r, e in zip(made, expected, strict=True)] == expected
    assert [r.amount for r in made] == [Decimal(0), Decimal(1), Decimal(2)]
    assert [r.happened_at for r in made] == seen
    assert documents(crm, Probe, mine) == documents(crm, Probe, ref)

"""The semi-join ``F(field).among(aggregate, condition)`` on the probe, on every store.

Records of a declared aggregate are selected by a condition on the records they refer to
(probes by their customers, links by their probes' customers), counted, found, grouped
and deleted in the store, and every answer is compared with the same question answered
by hand from everything stored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from tests.support.backends import BACKENDS, backend_url

import crmkit
from crmkit import Customer, ValidationError
from crmkit.query import F, Select
from crmkit.testing.probe import Probe, ProbeLink, ProbeLinksPlugin

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("among"))


@pytest.fixture
def crm(url: str) -> crmkit.CRM:
    tenant = f"among-{uuid.uuid4().hex[:12]}"
    with crmkit.connect(url, tenant=tenant, plugins=[ProbeLinksPlugin()], clock=lambda: NOW) as crm:
        yield crm


def _probe(owner: uuid.UUID, number: int, sponsor: uuid.UUID | None = None) -> Probe:
    return Probe(
        owner_id=owner,
        code=f"c{number}",
        number=number,
        amount=Decimal(number),
        currency="EUR",
        happened_at=NOW - dt.timedelta(days=number),
        sponsor_id=sponsor,
    )


def test_among_selects_by_the_referred_records_in_the_store(crm: crmkit.CRM) -> None:
    owners = ["user:a", "user:b", None]
    customers = [crm.customers.add(Customer(kind="person", name=f"C{i}", owner=owners[i % 3])) for i in range(9)]
    probes = [
        crm.records(Probe).add(_probe(c.id, i, sponsor=customers[(i + 1) % 9].id if i % 2 else None))
        for i, c in enumerate(customers)
    ]
    links = [crm.records(ProbeLink).add(ProbeLink(probe_id=p.id, rank=i, linked_at=NOW)) for i, p in enumerate(probes)]
    owner_of = {c.id: c.owner for c in customers}
    probes_of_a = {p.id for p in probes if owner_of[p.owner_id] == "user:a"}

    of_a = F("owner_id").among(Customer, F("owner") == "user:a")
    assert crm.records(Probe).count(of_a) == len(probes_of_a) == 3
    assert {p.id for p in crm.records(Probe).find(of_a)} == probes_of_a
    assert {p.id for p in crm.records(Probe).scan(of_a & (F("number") >= 0))} == probes_of_a
    # the complement: a missing sponsor is among nothing, so ~among holds for it
    sponsored_by_a = F("sponsor_id").among(crm.schema["customers"], {"owner": "user:a"})
    expected = {p.id for p in probes if p.sponsor_id is not None and owner_of[p.sponsor_id] == "user:a"}
    assert {p.id for p in crm.records(Probe).find(sponsored_by_a)} == expected
    assert {p.id for p in crm.records(Probe).find(~sponsored_by_a)} == {p.id for p in probes} - expected
    # nested: links whose probe's owner is user:a (a semi-join inside a semi-join)
    links_of_a = F("probe_id").among(Probe, of_a)
    assert {k.id for k in crm.records(ProbeLink).find(links_of_a)} == {k.id for k in links if k.probe_id in probes_of_a}
    # grouped in the store
    report = crm.records(Probe).aggregate(~of_a, group_by="currency", count=True, sum="amount")
    rest = [p for p in probes if p.id not in probes_of_a]
    assert [(r["currency"], r["count"], r["sum(amount)"]) for r in report] == [
        ("EUR", len(rest), sum((p.amount for p in rest), Decimal(0)))
    ]
    # unowned customers: owner None is never == "user:a", and the customers condition may be any
    assert crm.records(Probe).count(F("owner_id").among(Customer, F("owner") == None)) == 3  # noqa: E711
    assert crm.records(Probe).count(F("owner_id").among(Customer)) == 9
    assert crm.customers.count(F("id").among(Customer, F("owner") == "user:b")) == 3  # the aggregate itself
    # deleted in the store by the same condition
    assert crm.store.repository(crm.schema["crmkit_probe_links"]).delete_where(crm.tenant, _bound(crm, links_of_a)) == 3
    assert crm.records(ProbeLink).count() == 6


def _bound(crm: crmkit.CRM, where: object) -> crmkit.query.Expr:
    from crmkit.query import bind

    return bind(where, crm.schema["crmkit_probe_links"])  # type: ignore[arg-type]


def test_among_of_another_tenant_finds_nothing(url: str) -> None:
    tenants = [f"among-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with crmkit.connect(url, tenant=tenants[0], plugins=[ProbeLinksPlugin()], clock=lambda: NOW) as one:
        ada = one.customers.add(Customer(kind="person", name="Ada", owner="user:a"))
        one.records(Probe).add(_probe(ada.id, 1))
    with crmkit.connect(url, tenant=tenants[1], plugins=[ProbeLinksPlugin()], clock=lambda: NOW) as two:
        bob = two.customers.add(Customer(kind="person", name="Bob", owner="user:b"))
        two.records(Probe).add(_probe(bob.id, 2))
        # the other tenant's customer owned by user:a does not make this tenant's probe match
        assert two.records(Probe).count(F("owner_id").among(Customer, F("owner") == "user:a")) == 0
        assert two.records(Probe).count(F("owner_id").among(Customer, F("owner") == "user:b")) == 1


def test_among_is_checked_against_both_aggregates(crm: crmkit.CRM) -> None:
    with pytest.raises(ValidationError, match="code"):
        crm.records(Probe).count(F("code").among(Customer))  # not an id field
    with pytest.raises(ValidationError, match="colour"):
        crm.records(Probe).count(F("owner_id").among(Customer, F("colour") == "red"))  # not a customer field
    with pytest.raises(ValidationError, match="entity"):
        F("owner_id").among(42)  # neither a name, a spec nor a class of an aggregate
    # a name is bound against the connection's aggregates, as in_(Select(...)) is
    assert crm.records(Probe).count(F("owner_id").among("customers")) == 0
    assert F("owner_id").among("customers") == F("owner_id").in_(Select("customers", "id", None))

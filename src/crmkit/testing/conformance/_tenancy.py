"""Two tenants on one store never see, change or refer to each other's records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from crmkit import BulkResult, ConflictError, NotFound, Stage, ValidationError
from crmkit.crm import CRM
from crmkit.query import F
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import ContractBase, at, contact, edge, organization, person, purchase

__all__ = ["TenancyContract"]


def _everything(crm: CRM) -> dict[str, list[Any]]:
    return {
        name: list(getattr(crm, name).find())
        for name in ("customers", "relationships", "interactions", "transactions", "stage_changes")
    }


def _each_kind(other: CRM, rows: dict[str, Any]) -> list[tuple[Any, Any]]:
    """A record of each kind ``_fill`` stores, with the service of its kind in ``other``."""
    return [
        (other.customers, rows["ada"]),
        (other.relationships, rows["link"]),
        (other.interactions, rows["note"]),
        (other.transactions, rows["sale"]),
    ]


class TenancyContract(ContractBase):
    """Tenant isolation on a shared store: reads, writes, references, imports and computations."""

    @pytest.fixture
    def pair(self, crmkit_backend: Backend) -> tuple[CRM, CRM]:
        return crmkit_backend.crm(), crmkit_backend.crm()

    def _fill(self, crm: CRM) -> dict[str, Any]:
        ada = crm.customers.add(person("Ada", external_id="shared-ext", tags={"vip"}))
        acme = crm.customers.add(organization("Acme"))
        rows = {
            "acme": acme,
            "link": crm.relationships.add(edge(ada, "works_for", acme)),
            "note": crm.interactions.add(contact(ada, at(2024, 1, 1), external_id="shared-ext")),
            "sale": crm.transactions.add(purchase(ada, "99.99", at(2024, 1, 2), external_id="shared-ext")),
        }
        rows["ada"] = crm.lifecycle.move(ada.id, Stage.PROSPECT)
        return rows

    def test_another_tenant_sees_nothing(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        rows = self._fill(a)
        for name in ("customers", "relationships", "interactions", "transactions", "stage_changes"):
            assert getattr(b, name).count() == 0
            assert list(getattr(b, name).find()) == []
        for service, record in _each_kind(b, rows):
            with pytest.raises(NotFound):
                service.get(record.id)
            assert service.count(F("id") == record.id) == 0
        for service in (b.customers, b.interactions, b.transactions):
            with pytest.raises(NotFound):
                service.get_by_external_id("shared-ext")
        (change,) = a.lifecycle.history(rows["ada"].id)
        with pytest.raises(NotFound):
            b.stage_changes.get(change.id)
        assert b.lifecycle.history(rows["ada"].id) == []

    def test_another_tenant_cannot_change_or_delete(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        rows = self._fill(a)
        before = _everything(a)
        with pytest.raises(NotFound):
            b.customers.update(attrs.evolve(a.customers.get(rows["ada"].id), name="hijacked"))
        with pytest.raises(NotFound):
            b.transactions.update(attrs.evolve(rows["sale"], amount=0))
        for service, record in _each_kind(b, rows):
            with pytest.raises(NotFound):
                service.delete(record.id)
        with pytest.raises(NotFound):
            b.lifecycle.move(rows["acme"].id, Stage.CUSTOMER)
        assert _everything(a) == before

    def test_references_do_not_cross_tenants(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        rows = self._fill(a)
        bob = b.customers.add(person("Bob"))
        with pytest.raises(ValidationError):
            b.interactions.add(contact(rows["ada"], at(2024, 1, 1)))
        with pytest.raises(ValidationError):
            b.transactions.add(purchase(rows["ada"], 1, at(2024, 1, 1)))
        with pytest.raises(ValidationError):
            b.relationships.add(edge(bob, "works_for", rows["acme"]))
        with pytest.raises(NotFound):
            b.relationships.neighbours(rows["ada"].id)
        with pytest.raises(NotFound):
            b.timeline(rows["ada"].id)
        assert b.relationships.neighbours(bob.id) == []
        assert (b.interactions.count(), b.transactions.count(), b.relationships.count()) == (0, 0, 0)

    def test_the_same_external_ids_live_in_each_tenant(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        rows = self._fill(a)
        other = self._fill(b)
        assert a.customers.get_by_external_id("shared-ext") == rows["ada"]
        assert b.customers.get_by_external_id("shared-ext") == other["ada"]
        assert b.transactions.get_by_external_id("shared-ext") == other["sale"]
        imported = [person(f"p{i}", external_id=f"imp-{i}") for i in range(5)]
        assert a.customers.add_many(imported) == BulkResult(5, 0)
        assert b.customers.add_many(imported) == BulkResult(5, 0)
        assert b.customers.add_many(imported) == BulkResult(0, 5)

    def test_a_record_id_used_in_another_tenant_leaks_nothing(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        ada = a.customers.add(person("Ada"))
        twin = attrs.evolve(ada, name="Twin", created_at=None, updated_at=None, version=0)
        try:
            b.customers.add(twin)
        except ConflictError:
            pass  # a store may keep ids unique across tenants
        else:
            assert b.customers.get(ada.id).name == "Twin"
            b.customers.delete(ada.id)
        assert a.customers.get(ada.id) == ada

    def test_deletes_cascades_and_computations_stay_in_their_tenant(self, pair: tuple[CRM, CRM]) -> None:
        a, b = pair
        rows = self._fill(a)
        other = self._fill(b)
        before = _everything(a)
        b.customers.delete(other["ada"].id)
        assert _everything(a) == before
        assert [s.customer_id for s in a.purchase_summaries()] == [rows["ada"].id]
        assert b.purchase_summaries() == []
        assert b.purchase_summaries([rows["ada"].id]) == []
        decisions = list(b.lifecycle.evaluate_all(apply=False))
        assert [d.customer_id for d in decisions] == [other["acme"].id]
        assert [e.record.id for e in a.timeline(rows["ada"].id)][:1] == [rows["note"].id]
        assert a.relationships.neighbours(rows["acme"].id, as_of=dt.date(2024, 1, 1))[0].customer_id == rows["ada"].id

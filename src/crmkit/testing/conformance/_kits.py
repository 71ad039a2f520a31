"""One small builder per repository, so the generic contracts can run on all four of them."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import attrs

from crmkit.crm import CRM
from crmkit.testing.conformance._harness import at, contact, edge, organization, person, purchase

__all__ = ["KITS", "RepositoryKit"]

_counter = itertools.count()


@attrs.frozen
class RepositoryKit:
    """How to make, change and find records of one repository (``crm.<name>``)."""

    name: str
    #: A text field every record has and ``change`` alters (for finds).
    field: str
    has_external_id: bool = True

    def service(self, crm: CRM) -> Any:
        return getattr(crm, self.name)

    def new(self, crm: CRM, **fields: Any) -> Any:
        """An unsaved record; customers it refers to are added to ``crm`` first."""
        n = next(_counter)
        if self.name == "customers":
            return person(f"Ada {n}", **fields)
        owner = crm.customers.add(person(f"Owner {n}"))
        if self.name == "relationships":
            other = crm.customers.add(organization(f"Employer {n}"))
            fields.setdefault("role", f"role {n}")
            return edge(owner, "works_for", other, **fields)
        if self.name == "interactions":
            fields.setdefault("subject", f"subject {n}")
            return contact(owner, at(2024, 5, 1, 12, offset=3.5), **fields)
        fields.setdefault("attributes", {"note": f"note {n}"})
        return purchase(owner, Decimal("19.99"), at(2024, 5, 1, 12, offset=2), **fields)

    def change(self, record: Any, text: str) -> Any:
        """The record with ``field`` set to ``text`` (a user's edit)."""
        if self.field == "attributes.note":
            return attrs.evolve(record, attributes={**record.attributes, "note": text})
        return attrs.evolve(record, **{self.field: text})

    def value(self, record: Any) -> Any:
        if self.field == "attributes.note":
            return record.attributes.get("note")
        return getattr(record, self.field)


KITS: dict[str, RepositoryKit] = {
    kit.name: kit
    for kit in (
        RepositoryKit("customers", "name"),
        RepositoryKit("relationships", "role", has_external_id=False),
        RepositoryKit("interactions", "subject"),
        RepositoryKit("transactions", "attributes.note"),
    )
}

"""``add_many``: idempotent by external_id, streamed in batches, a bad row named and its batch not written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from crmkit import BulkResult, ConflictError, Customer, ValidationError
from crmkit.crm import CRM
from crmkit.query import F
from crmkit.testing.conformance._harness import ContractBase, at, contact, edge, organization, person, purchase

__all__ = ["BulkImportContract"]


def _people(n: int, prefix: str = "ext") -> list[Customer]:
    return [person(f"Person {i} ș", external_id=f"{prefix}-{i}") for i in range(n)]


class BulkImportContract(ContractBase):
    """Imports of any size, from any iterable, that can safely be run again."""

    def test_a_second_import_adds_nothing(self, crm: CRM) -> None:
        assert crm.customers.add_many(_people(25), batch_size=10) == BulkResult(added=25, skipped=0)
        first = {c.external_id: c for c in crm.customers.find()}
        again = [attrs.evolve(c, name="changed") for c in _people(25)]  # new ids, same external ids
        assert crm.customers.add_many(again, batch_size=10) == BulkResult(added=0, skipped=25)
        assert {c.external_id: c for c in crm.customers.find()} == first
        mixed = [*_people(30), person("no external id"), person("no external id")]
        assert crm.customers.add_many(mixed, batch_size=8) == BulkResult(added=7, skipped=25)
        assert crm.customers.count() == 32

    def test_duplicates_inside_one_import_keep_the_first(self, crm: CRM) -> None:
        rows = [person("first", external_id="a"), person("other", external_id="b"), person("second", external_id="a")]
        assert crm.customers.add_many(rows) == BulkResult(added=2, skipped=1)
        assert crm.customers.get_by_external_id("a").name == "first"

    def test_every_repository_imports(self, crm: CRM) -> None:
        ada, acme = crm.customers.add(person()), crm.customers.add(organization())
        contacts = [contact(ada, at(2024, 1, i + 1), external_id=f"i{i}") for i in range(5)]
        sales = [purchase(ada, f"{i}.5", at(2024, 2, i + 1), external_id=f"t{i}") for i in range(5)]
        links = [edge(ada, "works_for", acme), edge(acme, "partner_of", ada)]
        assert crm.interactions.add_many(contacts, batch_size=2) == BulkResult(5, 0)
        assert crm.transactions.add_many(iter(sales), batch_size=3) == BulkResult(5, 0)
        assert crm.relationships.add_many(links) == BulkResult(2, 0)
        assert crm.interactions.add_many(contacts) == BulkResult(0, 5)
        assert crm.transactions.add_many(sales) == BulkResult(0, 5)
        assert crm.transactions.count() == 5 and crm.interactions.count() == 5 and crm.relationships.count() == 2

    def test_imports_stream_from_a_generator_a_batch_at_a_time(self, crm: CRM) -> None:
        seen: list[tuple[int, int]] = []

        def rows() -> Iterator[Customer]:
            for i in range(35):
                seen.append((i, crm.customers.count()))
                yield person(f"streamed {i}", external_id=f"s-{i}")

        assert crm.customers.add_many(rows(), batch_size=10) == BulkResult(35, 0)
        # When row i is produced, every whole batch before it is stored, but on a database
        # server the last of them may still be in flight (written while the next is read);
        # nothing of the batch being read is.
        for i, stored in seen:
            whole = (i // 10) * 10
            low = whole if not crm.store.capabilities.server else max(0, whole - 10)
            assert low <= stored <= whole, (i, stored)
        assert crm.customers.count() == 35

    @pytest.mark.parametrize("bad", ["not a customer", "version 3", "wrong class"])
    def test_a_bad_row_is_named_and_its_batch_is_not_written(self, crm: CRM, bad: str) -> None:
        rows: list[Any] = _people(25)
        if bad == "not a customer":
            rows[17] = {"kind": "person", "name": "dict"}
        elif bad == "version 3":
            rows[17] = attrs.evolve(rows[17], version=3)
        else:
            rows[17] = contact(rows[0], at(2024, 1, 1))  # an interaction among customers
        with pytest.raises(ValidationError) as err:
            crm.customers.add_many(iter(rows), batch_size=10)
        assert err.value.row == 17
        assert "row 17" in str(err.value)
        assert sorted(str(c.external_id) for c in crm.customers.find()) == sorted(f"ext-{i}" for i in range(10))
        # The corrected import simply runs again.
        assert crm.customers.add_many(_people(25), batch_size=10) == BulkResult(added=15, skipped=10)

    def test_a_row_referring_to_a_missing_customer_is_named(self, crm: CRM) -> None:
        ada = crm.customers.add(person())
        ghost = person("ghost")
        sales = [purchase(ada, i, at(2024, 1, 1), external_id=f"t{i}") for i in range(12)]
        sales[9] = purchase(ghost, 9, at(2024, 1, 1))
        with pytest.raises(ValidationError) as err:
            crm.transactions.add_many(sales, batch_size=4)
        assert (err.value.row, err.value.field) == (9, "customer_id")
        assert crm.transactions.count() == 8
        notes = [contact(ada, at(2024, 1, 1)), contact(ada, at(2024, 1, 1), channel="telepathy")]
        with pytest.raises(ValidationError) as err:
            crm.interactions.add_many(notes)
        assert (err.value.row, err.value.field) == (1, "channel")
        assert crm.interactions.count() == 0

    @pytest.mark.requires("transactions")
    def test_a_conflicting_id_writes_none_of_its_batch(self, crm: CRM) -> None:
        taken = crm.customers.add(person("taken"))
        rows = [person(f"p{i}") for i in range(9)]
        rows[6] = attrs.evolve(rows[6], id=taken.id)
        with pytest.raises(ConflictError):
            crm.customers.add_many(rows, batch_size=5)
        assert crm.customers.count() == 6  # the first batch of five, and taken
        assert crm.customers.get(taken.id).name == "taken"

    def test_empty_imports_and_bad_arguments(self, crm: CRM) -> None:
        assert crm.customers.add_many([]) == BulkResult(0, 0)
        assert crm.customers.add_many(iter(())) == BulkResult(0, 0)
        bad: list[tuple[Any, Any]] = [("abc", 10), (5, 10), (None, 10), ([person()], 0), ([person()], True)]
        for items, batch_size in bad:
            with pytest.raises(ValidationError):
                crm.customers.add_many(items, batch_size=batch_size)
        assert crm.customers.count() == 0
        assert crm.customers.count(F("external_id") != None) == 0  # noqa: E711

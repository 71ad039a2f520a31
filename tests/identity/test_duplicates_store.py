"""``crm.identity.duplicates`` blocks in the store, on every backend: only customers sharing a key are read."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import crmkit
from crmkit import Customer
from crmkit.customers import EmailAddress, Phone, PostalAddress
from crmkit.identity import IdentityKey


def person(name: str, email: str | None = None, phone: str | None = None, **more: Any) -> Customer:
    return Customer(
        kind="person",
        name=name,
        emails=[EmailAddress(email)] if email else [],
        phones=[Phone(phone)] if phone else [],
        **more,
    )


def test_customers_sharing_a_key_are_found_and_only_they_are_read(
    crm: crmkit.CRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    street = [PostalAddress(lines=("Strada Lunga 5",), postal_code="010101", city="Bucuresti", country="RO")]
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    ana2 = crm.customers.add(person("Ana  POPESCU", "Ana@Example.RO"))  # the same e-mail key
    ion = crm.customers.add(person("Ion Ionescu", phone="0721 234 567"))
    ion2 = crm.customers.add(person("Ion Ionescu", phone="+40 721 234 567"))  # the same E.164 number
    stefan = crm.customers.add(person("Ștefan Pop", addresses=street))
    stefan2 = crm.customers.add(person("Pop Stefan", addresses=street))  # folded, words in another order
    for n in range(6):  # customers who share nothing with anyone
        crm.customers.add(person(f"Someone {n}x{n}", f"someone{n}@example.ro", f"+4072100000{n}"))
    keys = {(k.kind, k.key) for k in crm.records(IdentityKey).find().items if k.customer_id == stefan.id}
    assert keys == {("name", "pop stefan"), ("address", "5 lunga strada|010101")}

    from crmkit.services import records

    original = records.Records.stream

    def no_customer_scans(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.spec.name == "customers":
            raise AssertionError("duplicates() read every customer")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(records.Records, "stream", no_customer_scans)
    found = list(crm.identity.duplicates(min_probability=0.9))
    expected = [(ana.id, ana2.id), (ion.id, ion2.id), (stefan.id, stefan2.id)]
    assert sorted(d.customer_ids for d in found) == sorted(expected)
    assert all(d.probability >= 0.9 for d in found)
    evidence = {d.customer_ids: d.evidence[0][2] for d in found}
    assert evidence[(ana.id, ana2.id)] == {"name": "same", "email": "same"}
    assert evidence[(ion.id, ion2.id)]["phone"] == "same"


def test_keys_follow_renames_and_merges_and_a_key_shared_by_too_many_separates_nothing(crm: crmkit.CRM) -> None:
    a = crm.customers.add(person("Maria Ionescu"))
    b = crm.customers.add(person("Marie Dupont"))
    low = 0.2  # the same name, and nothing else: the prior model gives about 0.22
    assert list(crm.identity.duplicates(low)) == []
    b = crm.customers.update(attrs.evolve(b, name="Maria  Ionescu"))  # a rename re-keys the customer
    [dup] = crm.identity.duplicates(low)
    assert dup.customer_ids == (a.id, b.id) and dup.evidence[0][2] == {"name": "same"}
    assert list(crm.identity.duplicates(low, block_limit=1)) == [dup]  # one pair fits a limit of one
    crm.customers.add(person("Maria Ionescu"))
    assert list(crm.identity.duplicates(low, block_limit=2)) == []  # three people: three pairs
    with pytest.raises(crmkit.ValidationError) as error:
        list(crm.identity.duplicates(block_limit=0))
    assert error.value.field == "block_limit"
    crm.identity.merge(a.id, [b.id])
    [left] = crm.identity.duplicates(low)
    assert b.id not in left.customer_ids and a.id in left.customer_ids  # merged-away customers have no keys


def test_the_matcher_compares_only_the_pairs_it_is_given() -> None:
    from crmkit.identity import Matcher

    rows = [
        {"name": "Ana Popescu", "email": "ana@example.ro"},
        {"name": "Ana  POPESCU", "email": "ana@example.ro"},
        {"name": "Ana Popescu", "email": "ana@example.ro"},
        {"name": "Ion Ionescu", "email": "ion@example.ro"},
    ]
    m = Matcher({"name": "name", "email": "identifier"})
    assert {(p.i, p.j) for p in m.deduplicate(rows)} == {(0, 1), (0, 2), (1, 2)}
    assert {(p.i, p.j) for p in m.deduplicate(rows, pairs=[(2, 0), (1, 3)])} == {(0, 2)}  # (1, 3) compared, no match
    assert m.deduplicate(rows, pairs=[]) == []
    for bad in ([(0, 0)], [(0, 4)], [(0,)], [("0", 1)]):
        with pytest.raises(crmkit.ValidationError) as error:
            m.deduplicate(rows, pairs=bad)  # type: ignore[arg-type]
        assert error.value.field == "pairs"
    assert m.explain_pairs(rows, [(0, 1), (0, 3)]) == [m.explain(rows[0], rows[1]), m.explain(rows[0], rows[3])]
    assert m.explain_pairs(rows, [(0, 1)]) == [{"name": "same", "email": "same"}]


def test_upsert_checks_the_references_of_changed_rows_together_and_names_the_bad_row(crm: crmkit.CRM) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    from crmkit import Transaction

    ana = crm.customers.add(person("Ana"))
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def sale(n: int, customer: uuid.UUID, amount: str = "10") -> Transaction:
        return Transaction(
            customer_id=customer, occurred_at=when, amount=Decimal(amount), currency="EUR", external_id=f"s{n}"
        )

    assert crm.transactions.upsert_many([sale(n, ana.id) for n in range(4)]).added == 4
    nobody = uuid.uuid4()
    rows = [sale(0, ana.id, "11"), sale(1, ana.id), sale(2, nobody, "12"), sale(3, ana.id, "13")]
    with pytest.raises(crmkit.ValidationError) as error:
        crm.transactions.upsert_many(rows)
    assert error.value.row == 2

    def amounts() -> list[Decimal]:
        return [crm.transactions.get_by_external_id(f"s{n}").amount for n in range(4)]

    assert amounts() == [Decimal(10)] * 4  # nothing half-written
    result = crm.transactions.upsert_many(rows, on_error="report")
    assert (result.updated, result.unchanged, [f[0] for f in result.failed]) == (2, 1, [2])
    assert amounts() == [Decimal(11), Decimal(10), Decimal(10), Decimal(13)]

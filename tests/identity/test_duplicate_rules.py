"""Duplicate rules on every backend: a likely duplicate is refused (nothing written) or stored with an alert."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.identity.test_duplicates_store import person
from tests.support.servers import unique_name

import crmkit
from crmkit import ConflictError, ValidationError
from crmkit.customers import EmailAddress, PostalAddress
from crmkit.identity import DuplicateAlert, DuplicateRule, IdentityKey
from crmkit.query import ALL, parse_order
from crmkit.store import scan

BLOCK = DuplicateRule(action="block", min_probability=0.9, name="no twins")
ALERT = DuplicateRule(action="alert", min_probability=0.9, name="flag twins")


def everything(crm: crmkit.CRM) -> dict[str, set[Any]]:
    """Every stored record of every aggregate of the tenant (whole records: any write shows)."""
    out = {}
    for name in crm.schema:
        spec = crm.schema[name]
        out[name] = set(scan(crm.store.repository(spec), crm.tenant, ALL, parse_order(None, spec)))
    return out


def test_an_alert_rule_stores_the_customer_and_records_an_alert(crm: crmkit.CRM) -> None:
    crm.identity.rules = [ALERT]
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    ion = crm.customers.add(person("Ion Ionescu", phone="0721 234 567"))
    assert crm.identity_alerts.count() == 0  # no one alike yet
    twin = crm.customers.add(person("ANA POPESCU", "Ana@Example.RO"))
    ion2 = crm.customers.add(person("Ion  Ionescu", phone="+40 721 234 567"))
    alerts = {a.customer_id: a for a in crm.records(DuplicateAlert).find().items}
    assert set(alerts) == {twin.id, ion2.id}
    assert alerts[twin.id].duplicate_of == {str(ana.id)} and alerts[ion2.id].duplicate_of == {str(ion.id)}
    assert alerts[twin.id].rule == "flag twins" and alerts[twin.id].probability > 0.99
    assert alerts[twin.id].raised_at == twin.updated_at
    assert crm.customers.count() == 4
    crm.customers.delete(twin.id)  # the alert goes with its customer
    assert {a.customer_id for a in crm.identity_alerts.find()} == {ion2.id}


def test_a_block_rule_refuses_the_duplicate_naming_the_stored_customer(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    crm.customers.add(person("Ana Ionescu", "ana.i@example.ro"))  # a namesake in part: not a duplicate
    crm.identity.rules = [BLOCK]
    before = everything(crm)
    with pytest.raises(ConflictError, match=str(ana.id)) as raised:
        crm.customers.add(person("Ana  popescu", "ANA@example.ro"))
    assert "no twins" in str(raised.value)
    assert everything(crm) == before  # nothing written: no customer, no key, no audit entry
    other = crm.customers.add(person("Ana Popescu", "ana.popescu@work.ro"))  # same name, another address
    assert crm.customers.get(other.id).name == "Ana Popescu"


def test_rules_are_given_as_plugins_or_set_per_connection(url: str) -> None:
    tenant = unique_name("rules")
    with crmkit.connect(url, tenant=tenant, plugins=[BLOCK]) as crm:
        assert crm.identity.rules == (BLOCK,)
        crm.customers.add(person("Ana Popescu", "ana@example.ro"))
        with pytest.raises(ConflictError):
            crm.customers.add(person("Ana Popescu", "ana@example.ro"))
        crm.identity.rules = []  # this connection only: off
        crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    with crmkit.connect(url, tenant=tenant) as crm:
        assert crm.identity.rules == ()
        crm.customers.add(person("Ana Popescu", "ana@example.ro"))
        assert crm.customers.count() == (1 if url == "memory://" else 3)  # memory:// is a new store per connect


def test_a_rule_is_checked_on_update_and_not_on_other_changes(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    bob = crm.customers.add(person("Bob Marin", "bob@example.ro"))
    crm.identity.rules = [BLOCK]
    renamed = crm.customers.update(attrs.evolve(bob, owner="user:7", tags={"vip"}))  # no identity field moved
    with pytest.raises(ConflictError, match=str(ana.id)):
        crm.customers.update(attrs.evolve(renamed, name="Ana Popescu", emails=(EmailAddress("ana@example.ro"),)))
    assert crm.customers.get(bob.id) == renamed
    assert crm.customers.find_by_email("bob@example.ro") == [renamed]  # its keys are as they were
    crm.customers.update(attrs.evolve(ana, name="Ana Maria Popescu"))  # herself: no duplicate of anyone


def test_bulk_imports_look_candidates_up_once_per_batch(crm: crmkit.CRM, monkeypatch: pytest.MonkeyPatch) -> None:
    street = [PostalAddress(lines=("Strada Lunga 5",), postal_code="010101", city="Bucuresti", country="RO")]
    stored = crm.customers.add(person("Ștefan Pop", "stefan@example.ro", addresses=street))
    crm.identity.rules = [ALERT]
    repo = crm.store.repository(crm.schema.spec(IdentityKey))
    original = repo.find
    calls: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(repo, "find", counted)
    rows = [person(f"Someone {n}", f"someone{n}@example.ro") for n in range(60)]
    rows[10] = person("Pop Stefan", "STEFAN@example.ro", addresses=street)  # a duplicate of the stored one
    rows[50] = person("SOMEONE 3", "someone3@EXAMPLE.ro")  # a duplicate of row 3, of the batch before
    result = crm.customers.add_many(rows, batch_size=30)
    assert result.added == 60
    assert 0 < len(calls) <= 2 * 3  # per batch one look-up per kind of key (e-mail, name, address), not per row
    by_name = {c.name: c.id for c in crm.customers.stream()}
    alerts = {a.customer_id: a.duplicate_of for a in crm.identity_alerts.find()}
    assert alerts == {by_name["Pop Stefan"]: {str(stored.id)}, by_name["SOMEONE 3"]: {str(by_name["Someone 3"])}}


def test_bulk_import_alerts_name_stored_and_earlier_batch_customers(crm: crmkit.CRM) -> None:
    stored = crm.customers.add(person("Ștefan Pop", "stefan@example.ro"))
    crm.identity.rules = [ALERT]
    rows = [person(f"Client {n}", f"client{n}@example.ro") for n in range(20)]
    rows[5] = person("Pop Stefan", "STEFAN@example.ro")
    rows[15] = person("CLIENT 3", "Client3@example.ro")
    crm.customers.add_many(rows, batch_size=50)
    by_name = {c.name: c.id for c in crm.customers.stream()}
    alerts = {a.customer_id: a.duplicate_of for a in crm.identity_alerts.find()}
    assert alerts == {by_name["Pop Stefan"]: {str(stored.id)}, by_name["CLIENT 3"]: {str(by_name["Client 3"])}}


def test_a_blocked_batch_of_add_many_writes_nothing(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    crm.identity.rules = [BLOCK]
    before = everything(crm)
    rows = [person(f"Client {n}", f"client{n}@example.ro") for n in range(5)]
    rows.append(person("Ana Popescu", "ana@example.ro"))
    with pytest.raises(ConflictError, match=str(ana.id)):
        crm.customers.add_many(rows, batch_size=10)
    assert everything(crm) == before


def test_upsert_many_reports_blocked_rows_and_writes_the_rest(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro", external_id="erp-1"))
    crm.customers.add(person("Bob Marin", "bob@example.ro", external_id="erp-2"))
    crm.identity.rules = [BLOCK]
    result = crm.customers.upsert_many(
        [
            {"kind": "person", "name": "Cleo Dinu", "external_id": "erp-3"},
            {"kind": "person", "name": "Ana Popescu", "emails": [EmailAddress("ANA@example.ro")], "external_id": "e-4"},
            {
                "kind": "person",
                "name": "Ana Popescu",
                "emails": [EmailAddress("ana@example.ro")],
                "external_id": "erp-2",
            },
        ],
        on_error="report",
    )
    assert (result.added, result.updated, result.unchanged) == (1, 0, 0)
    assert [(i, f) for i, f, _ in result.failed] == [(1, "customer"), (2, "customer")]
    assert all(str(ana.id) in message for _, _, message in result.failed)
    assert crm.customers.get_by_external_id("erp-2").name == "Bob Marin"
    with pytest.raises(ConflictError, match=str(ana.id)):
        crm.customers.upsert_many([person("Ana Popescu", "ana@example.ro", external_id="erp-5")])


def test_the_unique_email_policy_reports_rows_of_an_upsert_too(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana", "ana@example.ro"))
    crm.identity.unique_emails = True
    result = crm.customers.upsert_many(
        [person("Other", "ANA@example.ro", external_id="x-1"), person("Fine", "fine@example.ro", external_id="x-2")],
        on_error="report",
    )
    assert result.added == 1 and [(i, f) for i, f, _ in result.failed] == [(0, "emails")]
    assert str(ana.id) in result.failed[0][2]


def test_merges_are_not_checked_by_rules(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    twin = crm.customers.add(person("Ana Popescu", "ana@example.ro"))
    crm.identity.rules = [BLOCK]
    merge = crm.identity.merge(ana.id, [twin.id])
    crm.identity.unmerge(merge.id)
    assert crm.customers.count() == 2


def test_rules_are_checked_when_built_and_set() -> None:
    with pytest.raises(ValidationError, match="action"):
        DuplicateRule(action="warn")
    with pytest.raises(ValidationError, match="min_probability"):
        DuplicateRule(min_probability=1.5)
    with pytest.raises(ValidationError, match=r"attributes\.dob"):
        DuplicateRule(attributes={"dob": "birthday"})
    with crmkit.connect("memory://") as crm:
        with pytest.raises(ValidationError, match="rules"):
            crm.identity.rules = "block"  # type: ignore[assignment]
        with pytest.raises(ValidationError, match="rules"):
            crm.identity.rules = [BLOCK, "alert"]  # type: ignore[list-item]


_NAMES = st.sampled_from(["Ana Popescu", "Ion Ionescu", "Ștefan Pop", "Maria Dinu", "Radu Marin"])
_PEOPLE = st.lists(st.tuples(_NAMES, st.integers(0, 3)), min_size=1, max_size=6, unique=True)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=_PEOPLE, data=st.data())
def test_property_a_blocked_add_writes_nothing(url: str, people: list[tuple[str, int]], data: st.DataObject) -> None:
    with crmkit.connect(url, tenant=unique_name("blocked")) as crm:
        stored = crm.customers.add_many(person(n, f"p{k}.{n.split()[0].lower()}@example.ro") for n, k in people)
        assert stored.added == len(people)
        crm.identity.rules = [BLOCK, ALERT]
        name, k = data.draw(st.sampled_from(people))
        twin = person(name.upper(), f"P{k}.{name.split()[0].lower()}@EXAMPLE.ro", tags={"new"})
        before = everything(crm)
        how = data.draw(st.sampled_from(["add", "add_many", "upsert_many"]))
        with pytest.raises(ConflictError):
            if how == "add":
                crm.customers.add(twin)
            elif how == "add_many":
                crm.customers.add_many([person("Someone Else", "else@example.ro"), twin])
            else:
                crm.customers.upsert_many([attrs.evolve(twin, external_id="twin")])
        assert everything(crm) == before

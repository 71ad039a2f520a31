"""Search on customers' e-mail addresses and on searchable custom attributes, on every store.

Random customers (addresses and attribute values written with accents, in any case, with
punctuation) are stored, changed and deleted through every write path; then every type-ahead
prefix and word query must find exactly the customers the reference finds, computed here
from the records read back with ``crmkit.search.fold``: ``startswith`` when one address
(or the attribute's text) starts with the folded prefix, ``matches`` when every word of
the query is a word of one of them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import attrs
import pytest
from tests.support.backends import BACKENDS, backend_url

import crmkit
from crmkit import Customer, F, ValidationError
from crmkit.customers import EmailAddress
from crmkit.query import Select
from crmkit.search import fold, words

_LOCAL = ("ana", "Ana.Popescu", "ștefan", "STEFAN.ionut", "b.pop", "jürgen_m", "zoë", "popa-ion", "علی")
_DOMAIN = ("example.ro", "Firma.DE", "mail.example.com", "x.io")
_NICKS = ("Ștefică", "stefica", "Popi", "ana maria", "JÜRGEN", "", "  ", 7)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("search-terms"))


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=f"search-{uuid.uuid4().hex[:12]}") as crm:
        yield crm


def _customer(rng: random.Random, i: int) -> Customer:
    emails = tuple(
        dict.fromkeys(
            EmailAddress(f"{rng.choice(_LOCAL)}{rng.randint(0, 3) or ''}@{rng.choice(_DOMAIN)}")
            for _ in range(rng.randint(0, 3))
        )
    )
    nick = rng.choice(_NICKS)
    attributes = {"nick": nick} if nick != "" else {}
    return Customer(kind="person", name=f"P{i}", emails=emails, attributes=attributes, external_id=f"x{i}")


def _texts(customer: Customer, field: str) -> list[str]:
    if field == "emails":
        return [e.address for e in customer.emails]
    value = customer.attributes.get(field[len("attributes.") :])
    return [value] if isinstance(value, str) and value.strip() else []


def _reference(customers: list[Customer], field: str, how: str, text: str) -> set[uuid.UUID]:
    found = set()
    for c in customers:
        for t in _texts(c, field):
            if (how == "startswith" and fold(t).startswith(fold(text))) or (
                how == "matches" and set(words(text)) <= set(fold(t).split())
            ):
                found.add(c.id)
    return found


def _queries(rng: random.Random, customers: list[Customer], field: str) -> list[tuple[str, str]]:
    texts = [t for c in customers for t in _texts(c, field)] or ["nothing"]
    out = [("startswith", "ZZ"), ("matches", "example"), ("matches", "ro EXAMPLE"), ("startswith", "Ștef")]
    for _ in range(12):
        t = rng.choice(texts)
        folded = fold(t)
        out.append(
            ("startswith", t[: rng.randint(1, 6)].upper() if rng.random() < 0.3 else folded[: rng.randint(1, 6)])
        )
        picked = rng.sample(folded.split(), k=min(len(folded.split()), 2)) if folded else ["x"]
        out.append(("matches", " ".join(picked)))
    return out


def _check(crm: crmkit.CRM, rng: random.Random, field: str) -> None:
    customers = list(crm.customers.scan())
    for how, text in _queries(rng, customers, field):
        condition = F(field).startswith(text, fold=True) if how == "startswith" else F(field).matches(text)
        want = _reference(customers, field, how, text)
        assert {c.id for c in crm.customers.scan(condition)} == want, (how, text)
        assert crm.customers.count(condition) == len(want), (how, text)
        assert crm.customers.count(~condition) == len(customers) - len(want), (how, text)
        page = crm.customers.find(condition, limit=3)
        assert [c.id for c in page] == sorted(want)[:3], (how, text)  # a type-ahead page, in id order


@pytest.mark.parametrize("seed", [1, 2])
def test_search_on_emails_and_attributes_matches_the_reference(crm: crmkit.CRM, seed: int) -> None:
    rng = random.Random(seed)
    one = [crm.customers.add(_customer(rng, i)) for i in range(6)]
    crm.customers.add_many(_customer(rng, i) for i in range(6, 30))
    crm.search.index_attribute("customers", "nick")  # made searchable after customers were stored
    assert crm.search.attributes("customers") == ("nick",)
    _check(crm, rng, "emails")
    _check(crm, rng, "attributes.nick")
    # every write path keeps the terms in step: update, bulk replace, delete
    changed = _customer(rng, 99)
    crm.customers.update(attrs.evolve(one[0], emails=changed.emails, attributes=changed.attributes))
    stored = crm.customers.find(limit=12).items
    result = crm.customers.upsert_many(  # a bulk update (replace_many in the store)
        [attrs.evolve(c, emails=_customer(rng, 0).emails, attributes={"nick": "Popi"}) for c in stored[6:10]]
    )
    assert result.updated + result.unchanged == 4
    crm.customers.delete(one[1].id)
    crm.customers.add(attrs.evolve(_customer(rng, 31), external_id=None))
    _check(crm, rng, "emails")
    _check(crm, rng, "attributes.nick")
    # rebuilt from scratch, the index holds the same terms
    before = sorted((t.record.id, t.field, t.term) for t in crm.search_terms.scan())
    assert crm.search.reindex() == len(before)
    assert sorted((t.record.id, t.field, t.term) for t in crm.search_terms.scan()) == before


def test_a_search_term_sub_query_is_the_same_semi_join(crm: crmkit.CRM) -> None:
    ana = crm.customers.add(Customer(kind="person", name="Ana", emails=(EmailAddress("Ana.Pop@Example.RO"),)))
    crm.customers.add(Customer(kind="person", name="Ben", emails=(EmailAddress("ben@example.ro"),)))
    spelled = F("id").in_(
        Select(
            "search_terms",
            "record.id",
            (F("record.aggregate") == "customers") & (F("field") == "emails") & F("term").startswith("ANA", fold=True),
        )
    )
    assert [c.id for c in crm.customers.scan(spelled)] == [ana.id]
    assert [c.id for c in crm.customers.scan(F("emails").startswith("ana p", fold=True))] == [ana.id]
    assert crm.customers.count(F("emails").matches("pop example")) == 1
    assert crm.customers.count(F("emails").matches("")) == 2  # no words: every customer with an address


def test_searches_that_cannot_be_served_are_refused(crm: crmkit.CRM) -> None:
    with pytest.raises(ValidationError, match=r"attributes\.nick") as caught:
        crm.customers.count(F("attributes.nick").matches("popi"))  # not made searchable in this tenant
    assert "index_attribute" in str(caught.value)
    with pytest.raises(ValidationError, match="emails"):
        crm.customers.count(F("emails").startswith("ana"))  # a derived field is searched folded
    with pytest.raises(ValidationError, match="aggregate"):
        crm.search.index_attribute("nothing", "nick")
    with pytest.raises(ValidationError, match="aggregate"):
        crm.search.index_attribute("transactions", "nick") if not crm.schema["transactions"].has_attributes else (
            crm.search.index_attribute("search_terms", "nick")
        )
    with pytest.raises(ValidationError, match="name"):
        crm.search.index_attribute("customers", "not a name")
    crm.search.index_attribute("customers", "nick")
    crm.search.index_attribute("customers", "nick")  # twice: nothing more
    assert crm.search.attributes("customers") == ("nick",)
    # the setting belongs to the tenant: another connection to it sees it
    assert crm.customers.count(F("attributes.nick").matches("popi")) == 0


def test_a_connection_can_leave_out_e_mail_terms(url: str) -> None:
    """``connect(search_emails=False)``: customers are written without their e-mails' search terms (a
    cheaper import), e-mail searches are refused rather than answered from terms it did not keep, and
    ``crm.search.reindex`` writes the missing ones once a connection keeps them again."""
    tenant = f"no-emails-{uuid.uuid4().hex[:12]}"
    people = [Customer(kind="person", name=f"P{i}", emails=(EmailAddress(f"ana.pop{i}@example.ro"),)) for i in range(3)]
    with crmkit.connect(url, tenant=tenant, search_emails=False) as crm:
        crm.customers.add_many(people)
        crm.customers.add(Customer(kind="person", name="Q", emails=(EmailAddress("ana.q@example.ro"),)))
        assert crm.search_terms.count() == 0
        with pytest.raises(ValidationError, match="emails") as caught:
            crm.customers.count(F("emails").startswith("ana", fold=True))
        assert "search_emails" in str(caught.value)
        assert crm.customers.count(F("name").startswith("p", fold=True)) == 3  # everything else as before
    with pytest.raises(ValidationError, match="search_emails"):
        crmkit.connect(url, tenant=tenant, search_emails="no")  # type: ignore[arg-type]
    if url.startswith("memory"):
        return  # its data lives as long as one connection
    with crmkit.connect(url, tenant=tenant) as crm:
        assert crm.customers.count(F("emails").startswith("ana", fold=True)) == 0  # nothing kept yet
        assert crm.search.reindex("customers") == 4
        assert crm.customers.count(F("emails").startswith("ANA.POP", fold=True)) == 3
        assert crm.customers.count(F("emails").matches("example ro")) == 4

"""``SqlRepository.insert_from``: one INSERT ... SELECT, checked against the page-at-a-time default.

Every test builds the same records twice on the same random data: with the base class's
default (``crmkit.store.Repository.insert_from``, inside a transaction that is rolled back)
and with the SQL store's override, and compares the returned records field by field (ids
apart), the stored rows column by column and, on SQLite, the words of searchable fields.
While a test runs the default cannot be reached through the override (it raises), so a
case the override left to it would fail, except where a test says the default is meant.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, cast

import attrs
import pytest
import sqlalchemy as sa
from crmkit_sqlalchemy import _words

import crmkit
import crmkit.store
from crmkit import query, schema
from crmkit._errors import ConflictError, ValidationError
from crmkit.crm import CRM
from crmkit.customers import Customer, EmailAddress
from crmkit.marketing import CampaignMember
from crmkit.marketing._model import StatusChange
from crmkit.query import F, Select, bind, value_of
from crmkit.testing.probe import Probe, ProbeColour, ProbePart, ProbePlugin
from crmkit.transactions import Transaction

DEFAULT = crmkit.store.Repository.insert_from
OWN = ("id", "created_at", "updated_at", "version", "external_id")
STAMP = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone.utc)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


class _RolledBack(Exception):
    pass


def _unreachable(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the SQL store left insert_from to the default")


@pytest.fixture
def crm(shared_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CRM]:
    """A CRM with the probe aggregate, a tenant of its own; the default unreachable from the override."""

    monkeypatch.setattr(crmkit.store.Repository, "insert_from", _unreachable)
    with crmkit.connect(shared_url, tenant="t-" + uuid.uuid4().hex[:12], plugins=[ProbePlugin()]) as opened:
        yield opened


def _customers(crm: CRM, rng: random.Random, n: int) -> list[Customer]:
    names = ["Ana Núñez", "bo li", "Zoë Ångström", "O'Brien & Co", "ÉCOLE 42"]
    made = []
    for i in range(n):
        emails = tuple(
            EmailAddress(
                address=f"{rng.choice(['Ann', 'bob', 'CY'])}.{i}.{j}@Example.org", label=rng.choice([None, "work"])
            )
            for j in range(rng.choice([0, 1, 1, 2]))
        )
        attributes: dict[str, Any] = {}
        pick = rng.random()
        if pick < 0.5:
            attributes["tier"] = rng.choice(["gold", "Silver", "brønze"])
        elif pick < 0.7:
            attributes["tier"] = rng.randrange(5)
        if rng.random() < 0.5:
            attributes["vip"] = rng.random() < 0.5
        made.append(
            Customer(
                kind=rng.choice(["person", "organization"]),
                name=f"{rng.choice(names)} {i}",
                emails=emails,
                owner=rng.choice([None, "user:a", "user:b"]),
                tags=frozenset(rng.sample(["x", "y", "z"], rng.randrange(3))),
                attributes=attributes,
            )
        )
    crm.customers.add_many(made)
    stored = crm.customers.find()
    for c in stored:
        for k in range(rng.randrange(4)):
            crm.transactions.add(
                Transaction(
                    customer_id=c.id,
                    occurred_at=T0 + dt.timedelta(days=rng.randrange(300), seconds=k),
                    amount=Decimal(rng.randrange(1, 9000)) / 100,
                    currency="EUR",
                    kind=rng.choice(["purchase", "purchase", "refund"]),
                )
            )
    return list(stored)


def _built(crm: CRM, target: type, source: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as ``add_from`` hands them to the store: bound, every field named."""
    spec = crm.schema.spec(source)
    out: dict[str, Any] = {}
    for name, given in values.items():
        value = value_of(given)
        out[name] = query.Test(bind(value.where, spec, crm.schema)) if isinstance(value, query.Test) else value
    for field in attrs.fields(target):
        if field.name not in out and field.name not in OWN:
            out[field.name] = value_of(field.default) if field.default is not attrs.NOTHING else None
    return out


def _stored(crm: CRM, spec: Any, ids: list[uuid.UUID]) -> tuple[list[dict[str, Any]], list[set[tuple[str, str]]]]:
    """The raw stored rows of ``ids`` (no tenant, no id), in that order, and the words of each (SQLite)."""
    repo: Any = crm.store.repository(spec)
    table = repo.table
    with crm.store.connection() as conn:  # type: ignore[attr-defined]
        quote = conn.dialect.identifier_preparer.quote
        mark = "%s" if conn.dialect.name == "postgresql" else "?"
        rows = conn.exec_driver_sql(f"SELECT * FROM {quote(table.name)} WHERE tenant = {mark}", (crm.tenant,))
        names = list(rows.keys())
        by_id = {str(r[names.index("id")]).replace("-", ""): dict(zip(names, r, strict=True)) for r in rows.fetchall()}
        words: dict[str, set[tuple[str, str]]] = {}
        if conn.dialect.name == "sqlite":
            for column in _words.searched(table):
                found = conn.exec_driver_sql(
                    f"SELECT id, word FROM {quote(table.name + '__' + column + '_words')} WHERE tenant = ?",
                    (crm.tenant,),
                )
                for i, word in found.fetchall():
                    words.setdefault(i, set()).add((column, word))
    out = []
    for i in ids:
        row = dict(by_id[i.hex])
        for name in ("tenant", "id"):
            row.pop(name)
        out.append(row)
    return out, [words.get(i.hex, set()) for i in ids]


class _ById:
    """A source repository read in id order: the order ``insert_from`` promises its records in.

    (The default reads its source in the source's default order, which is the time field's
    first for aggregates that have one.)
    """

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.spec = attrs.evolve(repo.spec, default_order=("id",))

    def find(self, *args: Any) -> Any:
        return self.repo.find(*args)


def _both(crm: CRM, target: type, source: str, where: Any, values: Mapping[str, Any]) -> tuple[Any, Any]:
    """(default's outcome, override's outcome): the records and their stored form, or the exception's type."""
    spec, source_spec = crm.schema.spec(target), crm.schema.spec(source)
    repo, source_repo = crm.store.repository(spec), crm.store.repository(source_spec)
    condition = bind(where, source_spec, crm.schema)
    built = _built(crm, target, source, values)
    expected: Any = None
    try:
        with crm.store.transaction():
            try:
                made = DEFAULT(repo, crm.tenant, cast(Any, _ById(source_repo)), condition, built, STAMP)
                expected = (made, *_stored(crm, spec, [r.id for r in made]))
            except (ConflictError, ValidationError) as exc:
                expected = type(exc)
            raise _RolledBack
    except _RolledBack:
        pass
    before = repo.count(crm.tenant, bind(None, spec, crm.schema))
    try:
        made = repo.insert_from(crm.tenant, source_repo, condition, built, STAMP)
    except (ConflictError, ValidationError) as exc:
        assert repo.count(crm.tenant, bind(None, spec, crm.schema)) == before  # nothing written
        return expected, type(exc)
    return expected, (made, *_stored(crm, spec, [r.id for r in made]))


def _same(expected: Any, got: Any) -> list[Any]:
    """Assert the override built what the default did (ids apart); return its records."""
    assert not isinstance(expected, type), f"the default raised {expected.__name__}"
    assert not isinstance(got, type), f"the override raised {got.__name__}"
    want, want_rows, want_words = expected
    made, rows, words = got
    assert len(made) == len(want)
    ids = [r.id for r in made]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for record, reference in zip(made, want, strict=True):
        assert record.id.version == 7 and record.id.variant == uuid.RFC_4122
        assert (record.created_at, record.updated_at, record.version, record.external_id) == (STAMP, STAMP, 1, None)
        for field in attrs.fields(type(record)):
            if field.name != "id":
                mine, theirs = getattr(record, field.name), getattr(reference, field.name)
                assert mine == theirs and type(mine) is type(theirs), field.name
    assert rows == want_rows  # stored exactly as insert stores the same records
    words_of = {r.id.hex: w for r, w in zip(made, words, strict=True)}
    reference_words = {r.id.hex: w for r, w in zip(made, want_words, strict=True)}
    assert words_of == reference_words
    return list(made)


PART = ProbePart(
    label="Ünïcode part",
    amount=Decimal("-12.340"),
    at=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
    on=dt.date(2024, 2, 29),
    count=7,
    flag=True,
    colour=ProbeColour.BLUE,
    token=uuid.UUID(int=12345),
    marks=frozenset({"b", "a"}),
)


def _probe_values(rng: random.Random, held_out: list[uuid.UUID]) -> dict[str, Any]:
    """Every kind of Probe field: copies, constants, tests."""
    return {
        "owner_id": F("id"),
        "code": F("name"),  # a searchable text from a searchable text
        "note": F("emails.address").first(),  # searchable, through a list, missing when the list is empty
        "number": rng.randrange(-(2**40), 2**40),
        "flag": F("id").in_(held_out) | F("id").in_(Select("transactions", "customer_id", F("kind") == "refund")),
        "amount": Decimal(rng.choice(["0", "1.50", "-99999.123456", "12345678901234.5"])),
        "currency": rng.choice(["EUR", "USD"]),
        "happened_at": dt.datetime(2025, 6, 1, 12, 0, rng.randrange(60), rng.randrange(10**6), tzinfo=dt.timezone.utc),
        "day": rng.choice([None, dt.date(2025, 12, 31)]),
        "token": rng.choice([None, uuid.UUID(int=rng.getrandbits(128))]),
        "colour": rng.choice(list(ProbeColour)),
        "labels": frozenset(rng.sample(["Ä", "b", "c c"], rng.randrange(4))),
        "parts": rng.choice([(), (PART,), (PART, ProbePart(label="p", amount=Decimal("1")))]),
        "sponsor_id": rng.choice([None, uuid.UUID(int=rng.getrandbits(128))]),
        "guard_id": None,
        "about": rng.choice([None, crmkit.schema.Ref("customers", uuid.UUID(int=rng.getrandbits(128)))]),
        "blob": rng.choice([None, b"", bytes(range(256))]),
        "attributes": rng.choice(
            [{}, {"n": 1, "d": Decimal("2.50"), "s": "x", "b": False, "t": STAMP, "day": T0.date()}]
        ),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_kind_of_value_as_the_default_builds_it(crm: CRM, seed: int) -> None:
    rng = random.Random(seed)
    customers = _customers(crm, rng, 40)
    held_out = [c.id for c in rng.sample(customers, 5)]
    buyers = Select("transactions", "customer_id", F("kind") == "purchase", having=("sum(amount)", ">", Decimal("20")))
    where = F("id").in_(buyers) | (F("attributes.vip") == True)  # noqa: E712 - a condition, not a comparison
    made = _same(*_both(crm, Probe, "customers", where, _probe_values(rng, held_out)))
    assert made, "the data should give some records"
    assert any(r.note is None for r in made) or all(c.emails for c in customers)
    assert any(r.flag for r in made) and not all(r.flag for r in made)
    stored = crm.store.repository(crm.schema.spec(Probe))
    assert [stored.get(crm.tenant, r.id) for r in made] == made  # what comes back is what is stored
    word = made[0].code.split()[0]
    assert crm.records(Probe).find(F("code").matches(word))  # the word index has the new rows


def _lowered(value: str) -> str:
    return value.strip().lower()


@schema.aggregate("sql_test_lowered", label="lowered name")
class Lowered(schema.Record):
    """A field whose check normalises its value: the service refuses copies into it, the store keeps them right."""

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    name: str = schema.text(check=_lowered, personal=False)


class _LoweredPlugin:
    @crmkit.hookimpl
    def crmkit_aggregates(self) -> list[type]:
        return [Lowered]


LOWERED_PLUGIN = _LoweredPlugin()


def test_a_check_normalises_copied_values(shared_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A field whose check lowercases: names copied into it are stored lowercased, as insert stores them."""
    with crmkit.connect(
        shared_url, tenant="t-" + uuid.uuid4().hex[:12], plugins=[ProbePlugin(), LOWERED_PLUGIN]
    ) as crm:
        _customers(crm, random.Random(8), 30)
        monkeypatch.setattr(crmkit.store.Repository, "insert_from", _unreachable)
        made = _same(*_both(crm, Lowered, "customers", None, {"customer_id": F("id"), "name": F("name")}))
        names = {c.id: c.name for c in crm.customers.find()}
        assert all(m.name == names[m.customer_id].strip().lower() for m in made)
        assert any(m.name != names[m.customer_id] for m in made)


def test_campaign_targeting_shape(crm: CRM) -> None:
    """Members built as ``crm.marketing.target`` builds them: consts, a test, a checked copy through a list."""
    rng = random.Random(7)
    customers = _customers(crm, rng, 60)
    held_out = [c.id for c in customers[::7]]
    campaign = uuid.UUID(int=rng.getrandbits(128))
    latest_purchase = Select(
        "transactions", "customer_id", first_by="-occurred_at", first_where=F("kind") == "purchase"
    )
    big = Select("transactions", "customer_id", None, having=("count", ">=", 2))
    where = (F("id").in_(latest_purchase) & ~F("id").in_(big)) | (F("owner") == "user:a")
    values = {
        "campaign_id": campaign,
        "customer_id": F("id"),
        "status": "planned",
        "added_at": STAMP,
        "status_at": STAMP,
        "history": (StatusChange(status="planned", at=STAMP),),
        "control": F("id").in_(held_out),
        "address": F("emails.address").first(),
    }
    made = _same(*_both(crm, CampaignMember, "customers", where, values))
    assert made and any(m.address is not None for m in made)
    first = {c.id: c.emails[0].address if c.emails else None for c in customers}
    assert all(m.address == first[m.customer_id] for m in made)  # as the contact point has it
    # the same members again: the (campaign, customer) key is taken, nothing is written, as with insert
    expected, got = _both(crm, CampaignMember, "customers", where, values)
    assert expected is ConflictError and got is ConflictError
    # two members of one customer in the same call (built from its transactions): the same
    values["customer_id"] = F("customer_id")
    values["campaign_id"] = uuid.UUID(int=rng.getrandbits(128))
    values["control"] = False
    values["address"] = None
    expected, got = _both(crm, CampaignMember, "transactions", None, values)
    assert expected is ConflictError and got is ConflictError
    spec, source = crm.schema.spec(CampaignMember), crm.schema.spec("transactions")
    with pytest.raises(ConflictError, match=r"\(campaign_id, customer_id\)") as raised:
        crm.store.repository(spec).insert_from(
            crm.tenant,
            crm.store.repository(source),
            bind(None, source, crm.schema),
            _built(crm, CampaignMember, "transactions", values),
            STAMP,
        )
    assert raised.value.key == ("campaign_id", "customer_id") and not raised.value.transient


def test_empty_source(crm: CRM) -> None:
    rng = random.Random(3)
    _customers(crm, rng, 5)
    expected, got = _both(crm, Probe, "customers", F("name") == "nobody", _probe_values(rng, []))
    assert _same(expected, got) == []


def test_copies_between_records_of_one_aggregate(crm: CRM) -> None:
    """Every kind a probe holds copied from probes (an in-table INSERT ... SELECT)."""
    rng = random.Random(11)
    customers = _customers(crm, rng, 12)
    probes = crm.records(Probe)
    for i, c in enumerate(customers):
        values = _probe_values(rng, [])
        values.update(owner_id=c.id, code=f"P{i}", note=None, flag=bool(i % 2), sponsor_id=customers[-1].id)
        values["about"] = rng.choice([None, crmkit.schema.Ref("customers", rng.choice(customers).id)])
        probes.add(Probe(**values))
    copied: dict[str, Any] = {name: F(name) for name in _probe_values(rng, []) if name not in ("number", "owner_id")}
    # (owner_id, code, number) is unique: the copies' code is another text than their sources'
    copied.update(number=F("number"), owner_id=F("owner_id"), code=F("currency"), note=F("code"))
    made = _same(*_both(crm, Probe, "crmkit_probes", F("number") > 0, copied))
    assert made


def test_a_value_the_field_refuses(crm: CRM) -> None:
    """A copy SQL cannot put in its field raises ValidationError naming it, with nothing written, as the default."""
    rng = random.Random(5)
    _customers(crm, rng, 30)
    values = _probe_values(rng, [])
    values["code"] = F("attributes.tier")  # some customers have no tier, or a number: code must be text
    expected, got = _both(crm, Probe, "customers", None, values)
    assert expected is ValidationError and got is ValidationError
    values["code"] = F("owner")  # missing for some customers
    expected, got = _both(crm, Probe, "customers", None, values)
    assert expected is ValidationError and got is ValidationError


def test_attribute_copies_of_the_right_kind(crm: CRM) -> None:
    rng = random.Random(9)
    _customers(crm, rng, 40)
    values = _probe_values(rng, [])
    values["note"] = F("attributes.tier")  # nullable: a missing tier is None; a number is refused
    values["flag"] = False
    made = _same(*_both(crm, Probe, "customers", ~F("attributes.tier").in_(list(range(5))), values))
    assert {r.note for r in made} >= {None}


def test_one_statement_through_the_service(crm: CRM, count_statements: Callable[[CRM], Any]) -> None:
    rng = random.Random(2)
    _customers(crm, rng, 20)
    values = _probe_values(rng, [])
    values.update(sponsor_id=None, about=None, note=F("emails.address").first())
    values["flag"] = F("id").in_(Select("transactions", "customer_id", F("kind") == "refund"))
    with count_statements(crm) as seen:
        result = crm.records(Probe).add_from("customers", F("owner") == "user:a", values=values)
    # the records in one statement (the feed and the word index have theirs)
    inserts = [s for s in seen.statements if s.lstrip().upper().startswith("INSERT INTO CRMKIT_PROBES ")]
    assert len(inserts) == 1 and "SELECT" in inserts[0].upper()
    assert result.added == crm.customers.count(F("owner") == "user:a") > 0


def test_records_built_by_the_default_where_sql_cannot(crm: CRM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Money inside a list is left to the default (the override returns its records all the same)."""
    calls: list[Any] = []

    def default(*args: Any) -> Any:
        calls.append(args)
        return DEFAULT(*args)

    monkeypatch.setattr(crmkit.store.Repository, "insert_from", default)
    rng = random.Random(4)
    customers = _customers(crm, rng, 4)
    probes = crm.records(Probe)
    values = _probe_values(rng, [])
    values.update(
        owner_id=customers[0].id,
        code="P",
        note=None,
        flag=False,
        sponsor_id=None,
        about=crmkit.schema.Ref("customers", customers[1].id),
    )
    values["parts"] = (PART,)
    probes.add(Probe(**values))
    copied = {**values, "about": F("about"), "code": F("currency"), "amount": F("parts.amount").first()}
    made = _same(*_both(crm, Probe, "crmkit_probes", None, copied))
    assert [r.amount for r in made] == [PART.amount] and len(calls) == 1


def test_inside_a_transaction_that_rolls_back(crm: CRM) -> None:
    rng = random.Random(6)
    _customers(crm, rng, 10)
    spec = crm.schema.spec(CampaignMember)
    repo, source = crm.store.repository(spec), crm.store.repository(crm.schema.spec("customers"))
    values = _built(
        crm,
        CampaignMember,
        "customers",
        {
            "campaign_id": uuid.uuid4(),
            "customer_id": F("id"),
            "status": "planned",
            "added_at": STAMP,
            "status_at": STAMP,
        },
    )
    with pytest.raises(_RolledBack), crm.store.transaction():
        made = repo.insert_from(crm.tenant, source, bind(None, crm.schema.spec("customers"), crm.schema), values, STAMP)
        assert len(made) == 10 == repo.count(crm.tenant, bind(None, spec, crm.schema))
        raise _RolledBack
    assert repo.count(crm.tenant, bind(None, spec, crm.schema)) == 0
    assert sa is not None

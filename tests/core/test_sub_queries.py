"""Sub-queries (semi-joins): ``F(field).in_(Select(aggregate, field, where))`` on every backend, proven on
the probe aggregates against the same condition worked out in Python from the stored records."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import F, ValidationError
from crmkit.query import Expr, Not, Select
from crmkit.schema._condition import condition_text, parse_condition
from crmkit.testing.probe import Probe, ProbeLink, ProbeLinksPlugin

NOW = dt.datetime(2026, 12, 1, 9, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("subqueries"))


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("sub"), clock=Clock(NOW), plugins=[ProbeLinksPlugin()]) as crm:
        yield crm


def _stored(crm: crmkit.CRM, seed: int) -> tuple[list[Probe], list[ProbeLink]]:
    rng = random.Random(seed)
    owner = crm.customers.add(crmkit.Customer(kind="person", name="owner"))
    probes = crm.records(Probe)
    links = crm.records(ProbeLink)
    made = [
        probes.add(
            Probe(
                owner_id=owner.id,
                code=rng.choice("abc"),
                number=i,
                flag=rng.random() < 0.5,
                amount=Decimal(rng.randrange(-500, 500)) / 100,
                currency="EUR",
                happened_at=NOW - dt.timedelta(days=rng.randrange(60)),
            )
        )
        for i in range(12)
    ]
    kept: list[ProbeLink] = []
    for rank in range(rng.randrange(5, 15)):
        link = ProbeLink(
            probe_id=rng.choice(made).id,
            rank=rank,
            linked_at=NOW,
            previous_id=rng.choice([None, *(k.id for k in kept)]),
            pinned_id=rng.choice([None, rng.choice(made).id]),
        )
        kept.append(links.add(link))
    return made, kept


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sub_query_matches_what_python_works_out_from_the_records(crm: crmkit.CRM, seed: int) -> None:
    made, kept = _stored(crm, seed)
    probes, links = crm.records(Probe), crm.records(ProbeLink)
    flagged = {p.id for p in made if p.flag}
    cases: list[tuple[Callable[[], set[uuid.UUID]], Expr]] = []

    def linked(rule: Callable[[ProbeLink], bool]) -> set[uuid.UUID]:
        return {k.probe_id for k in kept if rule(k)}

    # probes linked by a link of rank >= 5; and those not so linked (NOT of a semi-join)
    some = F("id").in_(Select("crmkit_probe_links", "probe_id", F("rank") >= 5))
    cases.append((lambda: {p.id for p in made if p.id in linked(lambda k: k.rank >= 5)}, some))
    cases.append((lambda: {p.id for p in made if p.id not in linked(lambda k: k.rank >= 5)}, Not(some)))
    # nested: probes linked by a link pinned to a flagged probe, and of code "a"
    flagged_probes = Select("crmkit_probes", "id", F("flag") == True)  # noqa: E712
    pinned = Select("crmkit_probe_links", "probe_id", F("pinned_id").in_(flagged_probes))
    cases.append(
        (
            lambda: {p.id for p in made if p.code == "a" and p.id in linked(lambda k: k.pinned_id in flagged)},
            (F("code") == "a") & F("id").in_(pinned),
        )
    )
    for want, where in cases:
        expected = want()
        assert {p.id for p in probes.stream(where)} == expected
        assert probes.count(where) == len(expected)
        page = probes.find(where, order_by="number", limit=100).items
        assert [p.number for p in page] == sorted(p.number for p in made if p.id in expected)
        report = probes.aggregate(where, group_by="code", count=True)
        assert {r["code"]: r["count"] for r in report} == {
            code: n for code in "abc" if (n := sum(1 for p in made if p.id in expected and p.code == code))
        }
    # a nullable field against its own aggregate: links whose previous link has rank < 3, and the others
    early = {k.id for k in kept if k.rank < 3}
    after_early = F("previous_id").in_(Select("crmkit_probe_links", "id", F("rank") < 3))
    assert {k.id for k in links.stream(after_early)} == {k.id for k in kept if k.previous_id in early}
    assert {k.id for k in links.stream(~after_early)} == {k.id for k in kept if k.previous_id not in early}
    # a sub-query whose field may be missing: probes pinned by some link (missing pins select nothing)
    pins = {k.pinned_id for k in kept if k.pinned_id is not None}
    unpinned = ~F("id").in_(Select("crmkit_probe_links", "pinned_id"))
    assert {p.id for p in probes.stream(unpinned)} == {p.id for p in made if p.id not in pins}


def test_a_sub_query_sees_only_its_own_tenant(url: str) -> None:
    with crmkit.connect(url, tenant=unique_name("a"), clock=Clock(NOW), plugins=[ProbeLinksPlugin()]) as a:
        made, _ = _stored(a, 4)
        with crmkit.connect(url, tenant=unique_name("b"), clock=Clock(NOW), plugins=[ProbeLinksPlugin()]) as b:
            _stored(b, 5)
            ids = [p.id for p in made]
            # b's links never point at a's probes: a's probes linked by b's links are none
            assert b.records(Probe).count(F("id").in_(Select("crmkit_probe_links", "probe_id"))) > 0
            assert b.records(Probe).count(F("id").in_(ids)) == 0
            linked = a.records(Probe).count(F("id").in_(Select("crmkit_probe_links", "probe_id")))
            assert linked == len({k.probe_id for k in a.records(ProbeLink).stream()})


def test_a_bad_sub_query_is_a_validation_error_naming_the_field(crm: crmkit.CRM) -> None:
    probes = crm.records(Probe)
    with pytest.raises(ValidationError) as caught:
        probes.count(F("number").in_(Select("crmkit_probe_links", "probe_id")))
    assert caught.value.field == "number"
    with pytest.raises(ValidationError) as caught:
        probes.count(F("id").in_(Select("no_such_aggregate", "id")))
    assert caught.value.field == "id"
    with pytest.raises(ValidationError) as caught:
        probes.count(F("id").in_(Select("crmkit_probe_links", "rank_typo")))
    assert caught.value.field == "rank_typo"
    with pytest.raises(ValidationError):
        probes.count(F("id").in_(Select("crmkit_probe_links", "probe_id", F("nope") == 1)))


def test_a_sub_query_is_kept_as_condition_text() -> None:
    where = (F("code") == "a") & F("id").in_(Select("crmkit_probe_links", "probe_id", F("rank") >= 5))
    assert parse_condition(condition_text(where)) == where
    bare = F("id").in_(Select("crmkit_probe_links", "probe_id"))
    assert parse_condition(condition_text(bare)) == bare


@pytest.mark.parametrize("seed", [6, 7])
def test_a_grouped_sub_query_keeps_the_values_whose_group_passes_having(url: str, seed: int) -> None:
    rng = random.Random(seed)
    with crmkit.connect(url, tenant=unique_name("having"), clock=Clock(NOW), plugins=[ProbeLinksPlugin()]) as crm:
        owners = [crm.customers.add(crmkit.Customer(kind="person", name=f"o{i}")) for i in range(6)]
        probes = crm.records(Probe)
        made = [
            probes.add(
                Probe(
                    owner_id=rng.choice(owners).id,
                    code=rng.choice("ab"),
                    number=i,
                    amount=Decimal(rng.choice(["-1.5", "2", "2.50", "4"])),
                    currency="EUR",
                    happened_at=NOW,
                )
            )
            for i in range(14)
        ]

        def owners_where(keep: Callable[[list[Probe]], bool], code: str | None = None) -> set[uuid.UUID]:
            groups: dict[uuid.UUID, list[Probe]] = {}
            for p in made:
                if code is None or p.code == code:
                    groups.setdefault(p.owner_id, []).append(p)
            return {o for o, ps in groups.items() if keep(ps)}

        cases = [
            (("count", ">=", 3), None, lambda ps: len(ps) >= 3),
            (("sum(amount)", ">", Decimal("4.5")), None, lambda ps: sum(p.amount for p in ps) > Decimal("4.5")),
            (("sum(amount)", "<=", Decimal("2")), "a", lambda ps: sum(p.amount for p in ps) <= 2),
            (("max(number)", "<", 7), "b", lambda ps: max(p.number for p in ps) < 7),
        ]
        for having, code, keep in cases:
            inner = None if code is None else F("code") == code
            where = F("id").in_(Select("crmkit_probes", "owner_id", inner, having))  # type: ignore[arg-type]
            expected = owners_where(keep, code)
            assert {c.id for c in crm.customers.stream(where)} == expected, having
            assert crm.customers.count(~where) == len(owners) - len(expected)
            assert parse_condition(condition_text(where)) == where
        with pytest.raises(ValidationError):
            crm.customers.count(F("id").in_(Select("crmkit_probes", "owner_id", None, ("sum(code)", ">", 1))))
        with pytest.raises(ValidationError):
            crm.customers.count(F("id").in_(Select("crmkit_probes", "owner_id", None, ("count", "~", 1))))


def test_is_empty_binds_on_list_fields_only_and_evaluates_a_missing_list_as_empty() -> None:
    """``F(field).is_empty()`` on the lists of a declared aggregate; any other field is refused by name."""
    from crmkit.entities import CUSTOMERS
    from crmkit.query import IsEmpty, bind, evaluate

    assert bind(~F("emails").is_empty(), CUSTOMERS) == Not(IsEmpty("emails"))
    for name in ("name", "owner", "attributes.emails", "id"):
        with pytest.raises(ValidationError) as caught:
            bind(F(name).is_empty(), CUSTOMERS)
        assert caught.value.field == name
    with pytest.raises(ValidationError, match="is not a field of customers"):
        bind(F("nothing").is_empty(), CUSTOMERS)
    ana = crmkit.Customer(kind="person", name="Ana", emails=[crmkit.EmailAddress("ana@example.com")])
    ben = crmkit.Customer(kind="person", name="Ben")
    assert [evaluate(IsEmpty("emails"), CUSTOMERS, c) for c in (ana, ben)] == [False, True]
    assert evaluate(IsEmpty("tags"), CUSTOMERS, ben) and evaluate(IsEmpty("phones"), CUSTOMERS, ana)

"""Marketing on every backend: the issue's API as written, segments against the query semantics,
consent histories, suppressions and opt-outs, member statuses, results, uplift and attribution."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.backends import BACKENDS, Clock, backend_url
from tests.support.servers import unique_name

import crmkit
from crmkit import Channel, ConflictError, F, ValidationError
from crmkit.customers import EmailAddress
from crmkit.marketing import Campaign, CampaignMember, ConsentRecord, MemberStatus, Segment, facts
from crmkit.query import evaluate

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
PROPERTY = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return backend_url(request, tmp_path_factory.mktemp("marketing"))


@pytest.fixture
def crm(url: str) -> Iterator[crmkit.CRM]:
    with crmkit.connect(url, tenant=unique_name("mkt"), clock=Clock(NOW)) as crm:
        yield crm


def person(crm: crmkit.CRM, name: str, *, email: str | None = None, **fields: object) -> crmkit.Customer:
    emails = [EmailAddress(email)] if email else []
    return crm.customers.add(crmkit.Customer(kind="person", name=name, emails=emails, **fields))  # type: ignore[arg-type]


def winter(**fields: object) -> Campaign:
    defaults: dict[str, object] = {"name": "Winter offer", "channel": Channel.EMAIL, "purpose": "marketing"}
    return Campaign(
        statuses=(
            MemberStatus("planned", default=True),
            MemberStatus("sent"),
            MemberStatus("opened"),
            MemberStatus("clicked", responded=True),
            MemberStatus("bought", responded=True),
        ),
        **{**defaults, **fields},  # type: ignore[arg-type]
    )


def test_the_api_of_the_issue_as_written(crm: crmkit.CRM) -> None:
    now = NOW
    start, end = now - dt.timedelta(days=30), now + dt.timedelta(days=30)
    ada = person(crm, "Ada", email="ada@example.com", tags={"vip"}, attributes={"country": "RO"})
    bob = person(crm, "Bob", email="bob@example.com", tags={"vip"}, attributes={"country": "RO"})
    person(crm, "Cy", email="cy@example.com", tags={"vip"}, attributes={"country": "DE"})

    vip_ro = crm.segments.add(
        Segment(name="RO VIPs", where=F("tags").contains("vip") & (F("attributes.country") == "RO"))
    )
    assert crm.segments.count(vip_ro.id) == 2
    assert list(crm.segments.members(vip_ro.id)) == sorted([ada.id, bob.id])
    fair = crm.segments.add(Segment(name="Met at the fair", kind="static"))
    crm.segments.add_members(fair.id, [ada.id, bob.id])
    crm.segments.remove_members(fair.id, [bob.id])
    assert list(crm.segments.members(fair.id)) == [ada.id]
    frozen = crm.segments.snapshot(vip_ro.id, name="RO VIPs, December")
    assert frozen.kind == "snapshot" and crm.segments.count(frozen.id) == 2

    crm.consents.record(
        ada.id,
        channel="email",
        purpose="marketing",
        granted=True,
        at=now,
        legal_basis="consent",
        source="web form 12",
        expires_at=None,
    )
    assert crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=now) is True
    assert crm.consents.allowed(bob.id, channel="email", purpose="marketing", at=now) is False
    assert [(r.granted, r.source) for r in crm.consents.history(ada.id)] == [(True, "web form 12")]
    assert crm.customers.get(ada.id).may_contact("email")  # the contact point's flag is kept in step

    camp = crm.campaigns.add(winter())
    audience = crm.marketing.target(camp.id, segment=vip_ro.id, at=now)
    assert audience.added == 1
    assert audience.excluded == {"suppressed": 0, "opted_out": 0, "no_consent": 1, "no_address": 0}
    crm.marketing.set_status(camp.id, ada.id, "sent", at=now)
    crm.marketing.set_status(camp.id, ada.id, "clicked", at=now + dt.timedelta(hours=1))
    members = list(crm.marketing.members(camp.id))
    assert [(m.customer_id, m.status) for m in members] == [(ada.id, "clicked")]
    assert members[0].first_responded_at == now + dt.timedelta(hours=1)
    assert [h.status for h in members[0].history] == ["planned", "sent", "clicked"]

    crm.transactions.add(crmkit.Transaction(ada.id, now + dt.timedelta(days=1), Decimal("10"), "EUR"))
    crm.interactions.add(crmkit.Interaction(ada.id, "phone", "inbound", now - dt.timedelta(days=2)))
    shares = crm.marketing.attribution(model="shapley", since=start, until=end)
    assert set(shares) == {"email", "phone"} and abs(sum(shares.values()) - 1) < 1e-9
    assert crm.marketing.attribution(model="last_touch", since=start, until=end) == {"email": 1.0, "phone": 0.0}
    assert crm.marketing.attribution(model="first_touch", since=start, until=end) == {"email": 0.0, "phone": 1.0}
    results = crm.marketing.results(camp.id)
    assert (results.targeted, results.sent, results.responded, results.converted) == (1, 1, 1, 1)
    assert results.revenue == {"EUR": Decimal("10")}


def test_bob_is_never_sent_without_consent_whichever_api_writes_it(crm: crmkit.CRM) -> None:
    bob = person(crm, "Bob", email="bob@example.com")
    camp = crm.campaigns.add(winter())
    everyone = crm.segments.add(Segment(name="everyone", kind="static"))
    crm.segments.add_members(everyone.id, [bob.id])
    crm.consents.record(bob.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=9))
    assert crm.marketing.target(camp.id, segment=everyone.id, at=NOW - dt.timedelta(days=8)).added == 1
    crm.consents.record(bob.id, channel="email", purpose="marketing", granted=False, at=NOW - dt.timedelta(days=1))
    with pytest.raises(ConflictError, match="no_consent"):
        crm.marketing.set_status(camp.id, bob.id, "sent", at=NOW)
    member = crm.marketing.member(camp.id, bob.id)
    with pytest.raises(ConflictError, match="no_consent"):  # the records API obeys the same rule
        crm.campaign_members.update(attrs.evolve(member, status="sent", status_at=NOW))
    assert crm.marketing.member(camp.id, bob.id).status == "planned"
    sent = crm.marketing.set_status(camp.id, bob.id, "sent", at=NOW - dt.timedelta(days=2))  # while consent held
    assert sent.contacted_at == NOW - dt.timedelta(days=2)


def test_opting_out_of_one_list_suppresses_no_other_and_transactional_stays(crm: crmkit.CRM) -> None:
    ada = person(crm, "Ada", email="Ada@Example.com")
    seg = crm.segments.add(Segment(name="Ada", where=F("name") == "Ada"))
    crm.consents.record(ada.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=3))
    news = crm.campaigns.add(winter(name="News", list_name="newsletter"))
    offers = crm.campaigns.add(winter(name="Offers", list_name="offers"))
    receipts = crm.campaigns.add(winter(name="Receipts", purpose="transactional"))
    crm.marketing.opt_out(news.id, ada.id, at=NOW - dt.timedelta(days=1))
    assert crm.marketing.target(news.id, segment=seg.id, at=NOW).excluded["opted_out"] == 1
    assert crm.marketing.target(offers.id, segment=seg.id, at=NOW).added == 1
    # transactional purpose needs no marketing consent, and a marketing withdrawal does not touch it
    crm.consents.record(ada.id, channel="email", purpose="marketing", granted=False, at=NOW - dt.timedelta(hours=1))
    assert crm.marketing.target(receipts.id, segment=seg.id, at=NOW).added == 1
    assert crm.consents.allowed(ada.id, channel="email", purpose="transactional", at=NOW)
    assert not crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW)


def test_a_suppressed_address_is_never_targeted_nor_sent_even_after_a_reimport(crm: crmkit.CRM) -> None:
    crm.marketing.suppress(channel="email", address=" ADA@example.com", reason="bounced", at=NOW - dt.timedelta(days=5))
    again = person(crm, "Ada again", email="ada@example.com")  # a re-imported customer, a new id
    crm.consents.record(again.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    seg = crm.segments.add(Segment(name="all", where=F("kind") == "person"))
    camp = crm.campaigns.add(winter())
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW)
    assert audience.added == 0 and audience.excluded["suppressed"] == 1
    member = crm.campaign_members.add(
        CampaignMember(campaign_id=camp.id, customer_id=again.id, status="planned", added_at=NOW, status_at=NOW)
    )
    with pytest.raises(ConflictError, match="suppressed"):
        crm.marketing.set_status(camp.id, again.id, "sent", at=NOW)
    second = crm.campaigns.add(winter(name="Second"))
    with pytest.raises(ConflictError, match="suppressed"):  # added straight away as sent: the same rule
        crm.campaign_members.add(attrs.evolve(member, id=uuid.uuid4(), version=0, campaign_id=second.id, status="sent"))
    assert crm.campaign_members.count(F("status") == "sent") == 0


def test_a_suppressed_address_without_search_terms_is_still_left_out(url: str) -> None:
    """Targeting narrows the block list's candidates by e-mail search terms: a customer written without
    them (``search_emails=False`` on another connection) is still compared, and left out."""
    tenant = unique_name("mkt")
    url = f"memory://{tenant}" if url == "memory://" else url  # a named memory store outlives its connection
    with crmkit.connect(url, tenant=tenant, clock=Clock(NOW), search_emails=False) as quiet:
        hidden = person(quiet, "Ada hidden", email="Ada@Example.com")
        free = person(quiet, "Bob free", email="bob@example.com")
    with crmkit.connect(url, tenant=tenant, clock=Clock(NOW)) as crm:
        crm.marketing.suppress(
            channel="email", address="ada@example.com", reason="bounced", at=NOW - dt.timedelta(days=5)
        )
        for who in (hidden, free):
            crm.consents.record(
                who.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1)
            )
        seg = crm.segments.add(Segment(name="all", where=F("kind") == "person"))
        camp = crm.campaigns.add(winter())
        audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW)
        assert (audience.added, audience.excluded["suppressed"]) == (1, 1)
        assert [m.customer_id for m in crm.marketing.members(camp.id)] == [free.id]


def test_double_opt_in_waits_for_confirmation_and_grants_expire(crm: crmkit.CRM) -> None:
    ada = person(crm, "Ada", email="ada@example.com")
    day = dt.timedelta(days=1)
    crm.consents.record(
        ada.id, channel="email", purpose="marketing", granted=True, pending=True, at=NOW, expires_at=NOW + 10 * day
    )
    assert not crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW + day)
    crm.consents.confirm(ada.id, channel="email", purpose="marketing", at=NOW + 2 * day)
    assert crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW + 3 * day)
    assert not crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW + 11 * day)
    assert not crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW - day)
    # a channel whose type needs no consent (web) is open
    assert crm.consents.allowed(ada.id, channel="web", purpose="marketing", at=NOW)
    with pytest.raises(ValidationError) as caught:
        crm.consents.record(ada.id, channel="email", purpose="not a purpose", granted=True)
    assert caught.value.field == "purpose"


def test_campaign_status_sets_follow_the_rules_and_first_response_never_moves(crm: crmkit.CRM) -> None:
    for bad in (
        (MemberStatus("a"), MemberStatus("b", responded=True)),  # no default
        (MemberStatus("a", default=True), MemberStatus("b", default=True), MemberStatus("c", responded=True)),
        (MemberStatus("a", default=True), MemberStatus("b")),  # no response
        # a default that contacts: target adds members in bulk, without the per-member send check
        (MemberStatus("sent", default=True), MemberStatus("c", responded=True)),
        (MemberStatus("a", default=True, sends=True), MemberStatus("c", responded=True)),
    ):
        with pytest.raises(ValidationError) as caught:
            Campaign(name="x", channel="email", statuses=bad)
        assert caught.value.field == "statuses"
    ada = person(crm, "Ada", email="ada@example.com")
    crm.consents.record(ada.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    seg = crm.segments.add(Segment(name="s", kind="static"))
    crm.segments.add_members(seg.id, [ada.id])
    camp = crm.campaigns.add(winter())
    crm.marketing.target(camp.id, segment=seg.id, at=NOW)
    crm.marketing.set_status(camp.id, ada.id, "sent", at=NOW)
    first = crm.marketing.set_status(camp.id, ada.id, "clicked", at=NOW + dt.timedelta(hours=1))
    later = crm.marketing.set_status(camp.id, ada.id, "bought", at=NOW + dt.timedelta(hours=5))
    assert later.first_responded_at == first.first_responded_at == NOW + dt.timedelta(hours=1)
    with pytest.raises(ConflictError):
        crm.campaign_members.update(attrs.evolve(later, first_responded_at=NOW + dt.timedelta(hours=9)))
    with pytest.raises(ValidationError) as caught:
        crm.marketing.set_status(camp.id, ada.id, "teleported")
    assert caught.value.field == "status"
    assert crm.marketing.results(camp.id).by_status == {"bought": 1}


def test_segments_combine_and_follow_changes(crm: crmkit.CRM) -> None:
    ada = person(crm, "Ada", tags={"vip"}, attributes={"country": "RO"})
    bob = person(crm, "Bob", attributes={"country": "RO"})
    vip = crm.segments.add(Segment(name="vip", where=F("tags").contains("vip")))
    ro = crm.segments.add(Segment(name="ro", where=F("attributes.country") == "RO"))
    both = crm.segments.combine("intersection", [vip.id, ro.id], name="RO VIPs")
    either = crm.segments.combine("union", [vip.id, ro.id], name="VIPs or RO")
    ro_not_vip = crm.segments.combine("difference", [ro.id, vip.id], name="RO, not VIP")
    assert list(crm.segments.members(both.id)) == [ada.id]
    assert crm.segments.count(either.id) == 2
    assert list(crm.segments.members(ro_not_vip.id)) == [bob.id]
    crm.customers.update(attrs.evolve(crm.customers.get(bob.id), tags=frozenset({"vip"})))  # one record changes
    assert list(crm.segments.members(both.id)) == sorted([ada.id, bob.id])
    assert list(crm.segments.members(ro_not_vip.id)) == []
    with pytest.raises(ValidationError) as caught:
        crm.segments.add(Segment(name="bad", where=F("no_such_field") == 1))
    assert caught.value.field == "where"
    # every write path checks the query: a bulk import names the row and writes none of its batch
    rows = [Segment(name="fine", where=F("tags").contains("x")), Segment(name="bad 2", where=F("nope") == 1)]
    with pytest.raises(ValidationError) as caught:
        crm.records("segments").add_many(rows)
    assert (caught.value.field, caught.value.row) == ("where", 1)
    assert crm.segments.count(F("name").in_(["fine", "bad 2"])) == 0
    with pytest.raises(ValidationError) as caught:
        crm.segments.update(attrs.evolve(vip, where=F("nope") == 2))
    assert caught.value.field == "where"
    with pytest.raises(ValidationError):
        crm.segments.add_members(vip.id, [ada.id])  # a dynamic segment's members follow its query
    crm.customers.delete(ada.id)
    assert crm.segments.count(vip.id) == 1


def test_static_and_snapshot_segments_combine_with_dynamic_ones_in_the_store(crm: crmkit.CRM) -> None:
    ada = person(crm, "Ada", tags={"vip"})
    bob = person(crm, "Bob", tags={"vip"})
    cy = person(crm, "Cy")
    vip = crm.segments.add(Segment(name="vip", where=F("tags").contains("vip")))
    fair = crm.segments.add(Segment(name="fair", kind="static"))
    crm.segments.add_members(fair.id, [bob.id, cy.id])
    frozen = crm.segments.snapshot(vip.id, name="vip then")  # Ada and Bob
    both = crm.segments.combine("intersection", [vip.id, fair.id], name="VIPs met at the fair")
    either = crm.segments.combine("union", [fair.id, frozen.id], name="fair or VIPs then")
    vip_not_fair = crm.segments.combine("difference", [vip.id, fair.id], name="VIPs not at the fair")
    assert both.kind == "dynamic" and list(crm.segments.members(both.id)) == [bob.id]
    assert crm.segments.count(either.id) == 3
    assert list(crm.segments.members(vip_not_fair.id)) == [ada.id]
    crm.segments.remove_members(fair.id, [bob.id])  # the combination follows its static part
    assert crm.segments.count(both.id) == 0
    assert list(crm.segments.members(vip_not_fair.id)) == sorted([ada.id, bob.id])
    assert list(crm.segments.members(either.id)) == sorted([ada.id, bob.id, cy.id])  # the snapshot stays frozen
    # a combination of combinations is still one condition
    nested = crm.segments.combine("difference", [either.id, vip_not_fair.id], name="nested")
    assert list(crm.segments.members(nested.id)) == [cy.id]


def test_a_customer_is_a_member_of_a_campaign_once(crm: crmkit.CRM) -> None:
    people = [person(crm, f"P{i}", email=f"p{i}@example.com") for i in range(6)]
    for p in people:
        crm.consents.record(p.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    everyone = crm.segments.add(Segment(name="everyone", kind="static"))
    crm.segments.add_members(everyone.id, [p.id for p in people])
    camp = crm.campaigns.add(winter())
    assert crm.marketing.target(camp.id, segment=everyone.id, at=NOW).added == 6
    again = crm.marketing.target(camp.id, segment=everyone.id, at=NOW)
    assert (again.added, again.already) == (0, 6)
    member = crm.marketing.member(camp.id, people[0].id)
    twin = CampaignMember(campaign_id=camp.id, customer_id=people[0].id, status="planned", added_at=NOW, status_at=NOW)
    with pytest.raises(ConflictError):
        crm.campaign_members.add(twin)
    assert crm.campaign_members.count(F("campaign_id") == camp.id) == 6
    assert crm.marketing.member(camp.id, people[0].id) == member


def test_concurrent_targets_of_one_campaign_never_make_a_customer_a_member_twice(url: str) -> None:
    tenant = unique_name("race")
    with crmkit.connect(url, tenant=tenant, clock=Clock(NOW)) as crm:
        people = [person(crm, f"P{i}", email=f"p{i}@example.com") for i in range(40)]
        crm.consents.add_many(
            ConsentRecord(
                customer_id=p.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1)
            )
            for p in people
        )
        everyone = crm.segments.add(Segment(name="everyone", where=F("kind") == "person"))
        camp = crm.campaigns.add(winter())
        results: list[int] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                results.append(crm.marketing.target(camp.id, segment=everyone.id, at=NOW).added)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=target) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        members = list(crm.marketing.members(camp.id))
        assert sorted(m.customer_id for m in members) == sorted(p.id for p in people)
        assert sum(results) == 40


_tags = st.frozensets(st.sampled_from(["vip", "new", "b2b"]), max_size=3)
_country = st.one_of(st.none(), st.sampled_from(["RO", "DE", "FR"]))
_score = st.one_of(st.none(), st.integers(0, 5))
_leaf = st.one_of(
    st.sampled_from(["vip", "new", "b2b"]).map(lambda t: F("tags").contains(t)),
    st.sampled_from(["RO", "DE"]).map(lambda c: F("attributes.country") == c),
    st.integers(0, 5).map(lambda n: F("attributes.score") >= n),
    st.sampled_from(["person", "organization"]).map(lambda k: F("kind") == k),
    st.sampled_from(["A", "B"]).map(lambda s: F("name") < s),
)
_where = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] & p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] | p[1]),
        inner.map(lambda e: ~e),
    ),
    max_leaves=5,
)


@PROPERTY
@given(
    people=st.lists(
        st.tuples(
            st.sampled_from(["person", "organization"]), st.text("AB", min_size=1, max_size=2), _tags, _country, _score
        ),
        max_size=12,
    ),
    where=_where,
)
def test_a_segment_has_the_members_the_query_semantics_give(
    url: str, people: list[tuple[str, str, frozenset[str], str | None, int | None]], where: crmkit.query.Expr
) -> None:
    """Differential: every backend's members equal the reference evaluation of the definition."""
    with crmkit.connect(url, tenant=unique_name("seg"), clock=Clock(NOW)) as crm:
        stored = []
        for kind, name, tags, country, score in people:
            attributes = {k: v for k, v in (("country", country), ("score", score)) if v is not None}
            stored.append(
                crm.customers.add(crmkit.Customer(kind=kind, name=name, tags=tags, attributes=attributes))  # type: ignore[arg-type]
            )
        segment = crm.segments.add(Segment(name="s", where=where))
        bound = crmkit.query.bind(where, crm.customers.spec)
        expected = sorted(c.id for c in stored if evaluate(bound, crm.customers.spec, c))
        assert list(crm.segments.members(segment.id)) == expected
        assert crm.segments.count(segment.id) == len(expected)


_fact = st.one_of(
    st.integers(1, 40).map(lambda d: facts.bought(since=NOW - dt.timedelta(days=d))),
    st.integers(1, 3).map(lambda n: facts.purchases(at_least=n)),
    st.sampled_from(["0", "20.25", "30.25", "50"]).map(lambda x: facts.spent(more_than=Decimal(x), currency="EUR")),
    st.integers(1, 40).map(lambda d: facts.had_case(since=NOW - dt.timedelta(days=d))),
    st.sampled_from(["lead", "customer"]).map(facts.in_stage),
)
_where_with_facts = st.recursive(
    st.one_of(_leaf, _fact),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] & p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] | p[1]),
        inner.map(lambda e: ~e),
    ),
    max_leaves=4,
)
_buys = st.lists(
    st.tuples(st.integers(0, 45), st.sampled_from(["10", "20.25", "40"]), st.sampled_from(["EUR", "USD"])), max_size=3
)
_cases = st.lists(st.integers(0, 45), max_size=2)


@settings(PROPERTY, max_examples=25)
@given(
    people=st.lists(st.tuples(_tags, _country, st.sampled_from(["lead", "customer"]), _buys, _cases), max_size=8),
    where=_where_with_facts,
)
def test_a_segment_with_facts_has_the_members_the_stored_records_give(
    url: str,
    people: list[tuple[frozenset[str], str | None, str, list[tuple[int, str, str]], list[int]]],
    where: crmkit.query.Expr,
) -> None:
    """Differential: named sub-queries (bought, purchases, spent, had a case, stage) give every backend the
    members that the definition gives over the stored records, worked out in Python."""
    from crmkit.query import Select, resolve_selects
    from crmkit.service import Case

    with crmkit.connect(url, tenant=unique_name("fact"), clock=Clock(NOW)) as crm:
        stored = []
        for i, (tags, country, stage, buys, cases) in enumerate(people):
            attributes = {"country": country} if country else {}
            c = crm.customers.add(
                crmkit.Customer(kind="person", name=f"P{i}", tags=tags, attributes=attributes, stage=stage)  # type: ignore[arg-type]
            )
            stored.append(c)
            for days, amount, currency in buys:
                crm.transactions.add(crmkit.Transaction(c.id, NOW - dt.timedelta(days=days), Decimal(amount), currency))
            for days in cases:
                crm.cases.add(Case(customer_id=c.id, subject="help", opened_at=NOW - dt.timedelta(days=days)))
        segment = crm.segments.add(Segment(name="s", where=where))
        records = {
            "transactions": list(crm.transactions.stream()),
            "cases": list(crm.cases.stream()),
        }

        def values(select: Select) -> list[object]:
            spec = crm.schema[select.entity]
            groups: dict[object, list[object]] = {}
            for r in records[select.entity]:
                if evaluate(select.where, spec, r):
                    groups.setdefault(getattr(r, select.field), []).append(r)
            if select.having is None:
                return list(groups)
            measure, op, bound = select.having
            assert op in (">", ">=")

            def passes(rs: list[object]) -> bool:
                value = len(rs) if measure == "count" else sum(r.amount for r in rs)  # type: ignore[attr-defined]
                return bool(value > bound if op == ">" else value >= bound)

            return [k for k, rs in groups.items() if passes(rs)]

        bound = resolve_selects(crmkit.query.bind(where, crm.customers.spec, crm.schema), values)
        expected = sorted(c.id for c in crm.customers.stream() if evaluate(bound, crm.customers.spec, c))
        assert list(crm.segments.members(segment.id)) == expected
        assert crm.segments.count(segment.id) == len(expected)


_event = st.tuples(
    st.integers(0, 40),  # day
    st.sampled_from(["grant", "withdraw", "pending", "confirm", "expiring", "suppress", "opt_out_other"]),
)


@PROPERTY
@given(history=st.lists(_event, max_size=8, unique_by=lambda e: e[0]), send_day=st.integers(0, 45))
def test_no_member_is_sent_without_valid_consent_or_while_suppressed(
    url: str, history: list[tuple[int, str]], send_day: int
) -> None:
    """Over random consent histories, a send is refused exactly when consent is not valid or the address is blocked."""
    day = dt.timedelta(days=1)
    base = NOW - 50 * day
    with crmkit.connect(url, tenant=unique_name("cons"), clock=Clock(NOW)) as crm:
        ada = person(crm, "Ada", email="ada@example.com")
        camp = crm.campaigns.add(winter(list_name="winter"))
        valid = False
        pending = False
        expires: dt.datetime | None = None
        blocked = False
        at_send = base + send_day * day + dt.timedelta(hours=1)
        for d, what in sorted(history):
            at = base + d * day
            if at > at_send:
                continue
            if what in ("grant", "expiring", "withdraw", "pending"):  # a new record: its own expiry (or none)
                expires = at + 5 * day if what == "expiring" else None
            if what in ("grant", "expiring"):
                crm.consents.record(
                    ada.id, channel="email", purpose="marketing", granted=True, at=at, expires_at=expires
                )
                valid, pending = True, False
            elif what == "withdraw":
                crm.consents.record(ada.id, channel="email", purpose="marketing", granted=False, at=at)
                valid, pending = False, False
            elif what == "pending":
                crm.consents.record(ada.id, channel="email", purpose="marketing", granted=True, pending=True, at=at)
                valid, pending = False, True
            elif what == "confirm" and pending:
                crm.consents.confirm(ada.id, channel="email", purpose="marketing", at=at)
                valid, pending = True, False
            elif what == "suppress":
                crm.marketing.suppress(channel="email", address="ada@example.com", at=at)
                blocked = True
            elif what == "opt_out_other":
                crm.suppressions.add(
                    crmkit.marketing.Suppression(channel="email", customer_id=ada.id, list_name="other", at=at)
                )
        if expires is not None and at_send >= expires:
            valid = False
        everyone = crm.segments.add(Segment(name="all", kind="static"))
        crm.segments.add_members(everyone.id, [ada.id])
        audience = crm.marketing.target(camp.id, segment=everyone.id, at=base)  # planned long before
        allowed_at_send = valid and not blocked
        assert crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=at_send) is valid
        if audience.added == 0:
            return
        if allowed_at_send:
            assert crm.marketing.set_status(camp.id, ada.id, "sent", at=at_send).status == "sent"
        else:
            with pytest.raises(ConflictError):
                crm.marketing.set_status(camp.id, ada.id, "sent", at=at_send)
            assert crm.campaign_members.count(F("status") == "sent") == 0


def test_uplift_against_a_held_out_control_group(crm: crmkit.CRM) -> None:
    people = [person(crm, f"p{i}", email=f"p{i}@example.com") for i in range(60)]
    for p in people:
        crm.consents.record(p.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    seg = crm.segments.add(Segment(name="all", where=F("kind") == "person"))
    camp = crm.campaigns.add(winter())
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW, control=0.5, seed=3)
    assert audience.added == 60 and 15 < audience.control < 45
    for m in list(crm.marketing.members(camp.id)):
        if m.control:
            with pytest.raises(ConflictError, match="control group"):
                crm.marketing.set_status(camp.id, m.customer_id, "sent", at=NOW)
            continue
        crm.marketing.set_status(camp.id, m.customer_id, "sent", at=NOW)
        crm.transactions.add(crmkit.Transaction(m.customer_id, NOW + dt.timedelta(days=1), Decimal("20"), "EUR"))
    lift = crm.marketing.uplift(camp.id)
    assert lift.treated == 60 - audience.control and lift.control == audience.control
    assert lift.treated_rate == 1.0 and lift.control_rate == 0.0
    assert lift.incremental_purchasers == lift.treated
    assert lift.incremental_revenue == pytest.approx(20.0 * lift.treated)


def test_attribution_from_the_store_matches_the_journeys_it_reads(crm: crmkit.CRM) -> None:
    """Touches by interaction and campaign contact, purchases in the period, untouched customers counted."""
    day = dt.timedelta(days=1)
    a, b, c, d = (person(crm, n, email=f"{n}@example.com") for n in "abcd")
    for p in (a, b, c, d):
        crm.consents.record(p.id, channel="email", purpose="marketing", granted=True, at=NOW - 30 * day)
    crm.interactions.add(crmkit.Interaction(a.id, "phone", "outbound", NOW - 5 * day))
    crm.interactions.add(crmkit.Interaction(b.id, "social", "inbound", NOW - 4 * day))
    seg = crm.segments.add(Segment(name="ab", kind="static"))
    crm.segments.add_members(seg.id, [a.id, b.id, c.id])
    camp = crm.campaigns.add(winter())
    crm.marketing.target(camp.id, segment=seg.id, at=NOW - 20 * day)
    for p in (a, b, c):
        crm.marketing.set_status(camp.id, p.id, "sent", at=NOW - 3 * day)
    crm.transactions.add(crmkit.Transaction(a.id, NOW - 1 * day, Decimal("5"), "EUR"))
    crm.transactions.add(crmkit.Transaction(b.id, NOW - 1 * day, Decimal("5"), "EUR"))
    crm.transactions.add(crmkit.Transaction(d.id, NOW - 40 * day, Decimal("5"), "EUR"))  # before the period
    since, until = NOW - 10 * day, NOW
    assert crm.marketing.attribution("last_touch", since=since, until=until) == {
        "email": 1.0,
        "phone": 0.0,
        "social": 0.0,
    }
    assert crm.marketing.attribution("linear", since=since, until=until) == {
        "email": 0.5,
        "phone": 0.25,
        "social": 0.25,
    }
    assert crm.marketing.attribution("first_touch", since=since, until=until, by="campaign") == {"Winter offer": 1.0}
    shapley = crm.marketing.attribution("shapley", since=since, until=until)
    # rates: {} 0 (d), {email} 0 (c), {email, phone} 1 (a), {email, social} 1 (b); unseen sets take their
    # best subset's value, so email is pivotal in four of the six orders of the three channels
    assert shapley == pytest.approx({"email": 2 / 3, "phone": 1 / 6, "social": 1 / 6})


_who = st.tuples(
    st.sampled_from(["", "ada@example.com", "Ada@Example.COM", "bob@example.com"]),  # e-mail ("" none)
    st.sampled_from([None, True, False]),  # the e-mail's consent flag
    st.lists(  # consent records: (day, kind), one a day
        st.tuples(st.integers(0, 9), st.sampled_from(["grant", "withdraw", "pending", "expiring"])),
        max_size=3,
        unique_by=lambda r: r[0],
    ),
    st.sampled_from([None, "suppress", "opt_out", "opt_out_other", "later"]),  # by customer id
)


@PROPERTY
@given(
    people=st.lists(_who, min_size=1, max_size=5),
    blocked=st.sampled_from([None, "ada@example.com", "bob@example.com"]),
    opted_out=st.sampled_from([None, "ada@example.com", "bob@example.com"]),
    control=st.sampled_from([0.0, 0.5]),
)
def test_target_leaves_out_exactly_whom_the_per_customer_rules_exclude(
    url: str,
    people: list[tuple[str, bool | None, list[tuple[int, str]], str | None]],
    blocked: str | None,
    opted_out: str | None,
    control: float,
) -> None:
    """``target`` works out the sets in the store; the per-customer rules (``exclusions``, what every send
    is checked with) give the same reasons, customer by customer, and the same control draw."""
    from crmkit.customers import Consent
    from crmkit.marketing._service import exclusions

    day = dt.timedelta(days=1)
    base = NOW - 20 * day
    at = base + 5 * day + dt.timedelta(hours=1)
    with crmkit.connect(url, tenant=unique_name("tgt"), clock=Clock(NOW)) as crm:
        camp = crm.campaigns.add(winter(list_name="winter"))
        customers = []
        for i, (email, flag, records, by_id) in enumerate(people):
            consent = () if flag is None else (Consent("email", flag, base),)
            emails = [EmailAddress(email, consent=consent)] if email else []
            c = crm.customers.add(crmkit.Customer(kind="person", name=f"P{i}", emails=emails))
            customers.append(c)
            for d, kind in records:
                when = base + d * day
                crm.consents.add(
                    ConsentRecord(
                        customer_id=c.id,
                        channel="email",
                        purpose="marketing",
                        granted=kind != "withdraw",
                        pending=kind == "pending",
                        at=when,
                        expires_at=when + 2 * day if kind == "expiring" else None,
                    )
                )
            if by_id in ("suppress", "later"):
                crm.marketing.suppress(channel="email", customer_id=c.id, at=base if by_id == "suppress" else NOW)
            elif by_id in ("opt_out", "opt_out_other"):
                name = "winter" if by_id == "opt_out" else "other"
                crm.suppressions.add(
                    crmkit.marketing.Suppression(channel="email", customer_id=c.id, list_name=name, at=base)
                )
        if blocked is not None:
            crm.marketing.suppress(channel="email", address=blocked, at=base)
        if opted_out is not None:
            crm.suppressions.add(
                crmkit.marketing.Suppression(channel="email", address=opted_out, list_name="winter", at=base)
            )
        everyone = crm.segments.add(Segment(name="all", kind="static"))
        crm.segments.add_members(everyone.id, [c.id for c in customers])
        expected = exclusions(crm, camp, customers, at)
        audience = crm.marketing.target(camp.id, segment=everyone.id, at=at, control=control, seed=7)
        reasons = {r: sum(1 for v in expected.values() if v == r) for r in audience.excluded}
        assert dict(audience.excluded) == reasons
        members = list(crm.marketing.members(camp.id))
        assert {m.customer_id for m in members} == {cid for cid, v in expected.items() if v is None}
        rng = random.Random(7)
        held = {cid for cid in sorted(m.customer_id for m in members) if control > 0 and rng.random() < control}
        assert {m.customer_id for m in members if m.control} == held and audience.control == len(held)
        again = crm.marketing.target(camp.id, segment=everyone.id, at=at)
        assert (again.added, again.already) == (0, len(members))


@pytest.mark.parametrize("first_granted", [True, False], ids=["grant-then-withdraw", "withdraw-then-grant"])
def test_consent_records_tied_in_time_decide_alike_for_target_and_every_send(
    crm: crmkit.CRM, first_granted: bool
) -> None:
    """Two records for one channel and purpose with the same ``at`` and ``created_at``: the one written
    last (the higher id) decides, for ``target`` in the store as for ``allowed`` and the check of a send."""
    ada = person(crm, "Ada", email="ada@example.com")
    at = NOW - dt.timedelta(days=1)
    for granted in (first_granted, not first_granted):
        crm.consents.record(ada.id, channel="email", purpose="marketing", granted=granted, at=at)
    records = crm.consents.history(ada.id)
    assert len(records) == 2 and len({(r.at, r.created_at) for r in records}) == 1  # tied: the clock stands still
    last = max(records, key=lambda r: r.id)
    assert last.granted is not first_granted
    assert crm.consents.allowed(ada.id, channel="email", purpose="marketing", at=NOW) is last.granted
    assert crm.consents.latest(ada.id, channel="email", purpose="marketing", at=NOW) == last
    seg = crm.segments.add(Segment(name="ada", kind="static"))
    crm.segments.add_members(seg.id, [ada.id])
    camp = crm.campaigns.add(winter())
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW)
    assert (audience.added, audience.excluded["no_consent"]) == ((1, 0) if last.granted else (0, 1))
    if last.granted:
        assert crm.marketing.set_status(camp.id, ada.id, "sent", at=NOW).status == "sent"


def test_members_are_built_with_the_address_as_the_customer_has_it(crm: crmkit.CRM) -> None:
    """``target`` copies the first e-mail address in the store, not lower-cased; suppressions still match
    it case-blind, and a customer allowed by consent but with no address is left out as ``no_address``."""
    ada = person(crm, "Ada", email="Ada.Lovelace@Example.COM")
    bob = person(crm, "Bob", email="Bob@Example.com")
    cy = person(crm, "Cy")  # no e-mail address at all
    for who in (ada, bob, cy):
        crm.consents.record(who.id, channel="email", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    crm.marketing.suppress(channel="email", address="bob@EXAMPLE.com", at=NOW - dt.timedelta(days=1))
    seg = crm.segments.add(Segment(name="all", kind="static"))
    crm.segments.add_members(seg.id, [ada.id, bob.id, cy.id])
    camp = crm.campaigns.add(winter())
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW)
    assert audience.added == 1
    assert audience.excluded == {"suppressed": 1, "opted_out": 0, "no_consent": 0, "no_address": 1}
    (member,) = crm.marketing.members(camp.id)
    assert (member.customer_id, member.address, member.status, member.control) == (
        ada.id,
        "Ada.Lovelace@Example.COM",
        "planned",
        False,
    )
    assert member.history == (crmkit.marketing.StatusChange("planned", NOW),) and member.added_at == NOW
    crm.marketing.suppress(channel="email", address=member.address.upper(), at=NOW)
    with pytest.raises(ConflictError, match="suppressed"):
        crm.marketing.set_status(camp.id, ada.id, "sent", at=NOW)


def test_a_text_campaign_copies_the_first_phone_number_and_leaves_out_customers_without_one(crm: crmkit.CRM) -> None:
    from crmkit.customers import Phone

    ana = crm.customers.add(
        crmkit.Customer(kind="person", name="Ana", phones=(Phone("+40 721 000 001"), Phone("+40 721 000 002")))
    )
    ben = person(crm, "Ben", email="ben@example.com")  # no phone
    for who in (ana, ben):
        crm.consents.record(who.id, channel="sms", purpose="marketing", granted=True, at=NOW - dt.timedelta(days=1))
    seg = crm.segments.add(Segment(name="all", where=F("kind") == "person"))
    camp = crm.campaigns.add(winter(name="Texts", channel=Channel.SMS))
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW, control=0.5, seed=1)
    assert (audience.added, audience.excluded["no_address"], audience.excluded["no_consent"]) == (1, 1, 0)
    (member,) = crm.marketing.members(camp.id)
    assert (member.customer_id, member.address) == (ana.id, "+40 721 000 001")
    held = random.Random(1).random() < 0.5  # the one chosen customer's draw
    assert member.control is held and audience.control == int(held)


@pytest.mark.parametrize("channel", [Channel.LETTER, Channel.SOCIAL])
def test_customers_without_a_contact_point_on_the_channel_are_counted_as_no_address(
    crm: crmkit.CRM, channel: Channel
) -> None:
    """On every channel that needs a contact point, an empty list of them is ``no_address`` (counted in the store):
    for customers allowed by a consent record and for those judged by their points' consent flags alike."""
    from crmkit.customers import Consent, Handle, PostalAddress

    flag = (Consent(str(channel), True, NOW - dt.timedelta(days=2)),)
    if channel == Channel.LETTER:
        point: dict[str, object] = {"addresses": (PostalAddress(("1 Main St",)),)}
        flagged: dict[str, object] = {"addresses": (PostalAddress(("2 Main St",), consent=flag),)}
    else:
        point = {"handles": (Handle("mastodon", "@ana"),)}
        flagged = {"handles": (Handle("mastodon", "@fay", consent=flag),)}
    ana = person(crm, "Ana", **point)
    ben = person(crm, "Ben", email="ben@example.com", tags={"vip"})  # no point on the channel
    cy = person(crm, "Cy")  # nothing at all
    # no consent record: judged by the flags; Dan's flag sits on an e-mail address (no point on the channel)
    dan = crm.customers.add(
        crmkit.Customer(kind="person", name="Dan", emails=[EmailAddress("dan@example.com", consent=flag)])
    )
    fay = person(crm, "Fay", **flagged)
    for who in (ana, ben, cy):
        crm.consents.record(who.id, channel=str(channel), purpose="marketing", granted=True, at=NOW - dt.timedelta(1))
    seg = crm.segments.add(Segment(name="people", where=F("kind") == "person"))
    camp = crm.campaigns.add(winter(name="Post", channel=channel))
    audience = crm.marketing.target(camp.id, segment=seg.id, at=NOW)
    assert audience.excluded == {"suppressed": 0, "opted_out": 0, "no_consent": 0, "no_address": 3}
    assert {m.customer_id for m in crm.marketing.members(camp.id)} == {ana.id, fay.id}
    field = "addresses" if channel == Channel.LETTER else "handles"
    assert {c.id for c in crm.customers.find(F(field).is_empty())} == {ben.id, cy.id, dan.id}

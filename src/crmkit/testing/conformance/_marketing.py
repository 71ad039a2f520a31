"""The marketing contract: consent-aware targeting and sending, and segment semantics, on every backend.

- Over random consent histories (grants, withdrawals, double opt-in, expiry, block-list
  entries, opt-outs of this list and of another), ``target`` adds exactly the customers
  allowed at that moment, counts each left-out one under the first reason that applies, and
  no code path marks a member ``sent`` without valid consent at that moment or while
  suppressed: ``crm.marketing.set_status`` and ``crm.campaign_members.update`` alike.
- A segment's members (dynamic, static, snapshot, combined, with facts about other records)
  are the customers the definition gives when worked out in Python from the stored records.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from crmkit._errors import ConflictError
from crmkit.crm import CRM
from crmkit.customers import Customer, EmailAddress
from crmkit.marketing import Campaign, MemberStatus, Segment, Suppression, facts
from crmkit.query import F, Select, bind, evaluate, resolve_selects
from crmkit.testing._backends import Backend
from crmkit.testing.conformance._harness import Clock, ContractBase, conformance_settings
from crmkit.transactions import Transaction

__all__ = ["MarketingContract"]

_NOW = dt.datetime(2026, 12, 1, 9, tzinfo=dt.timezone.utc)
_DAY = dt.timedelta(days=1)
_BASE = _NOW - 50 * _DAY
_KINDS = ("grant", "withdraw", "pending", "confirm", "expiring", "suppress", "opt_out", "opt_out_other")
_history = st.lists(st.tuples(st.integers(0, 40), st.sampled_from(_KINDS)), max_size=6, unique_by=lambda e: e[0])


@attrs.define
class _State:
    """What a customer's history says at a moment: the reference the stores are held to."""

    valid: bool = False
    pending: bool = False
    expires: dt.datetime | None = None
    blocked: bool = False
    opted_out: bool = False

    def reason(self, at: dt.datetime) -> str | None:
        if self.blocked:
            return "suppressed"
        if self.opted_out:
            return "opted_out"
        if not self.valid or (self.expires is not None and at >= self.expires):
            return "no_consent"
        return None


def _replay(history: list[tuple[int, str]], at: dt.datetime) -> _State:
    state = _State()
    for d, what in sorted(history):
        when = _BASE + d * _DAY
        if when > at:
            break
        if what in ("grant", "expiring", "withdraw", "pending"):
            state.expires = when + 5 * _DAY if what == "expiring" else None
        if what in ("grant", "expiring"):
            state.valid, state.pending = True, False
        elif what == "withdraw":
            state.valid, state.pending = False, False
        elif what == "pending":
            state.valid, state.pending = False, True
        elif what == "confirm" and state.pending:
            state.valid, state.pending = True, False
        elif what == "suppress":
            state.blocked = True
        elif what == "opt_out":
            state.opted_out = True
    return state


def _store(crm: CRM, customer: Customer, campaign: Campaign, history: list[tuple[int, str]]) -> None:
    pending = False
    for d, what in sorted(history):
        at = _BASE + d * _DAY
        consent: dict[str, Any] = {"channel": "email", "purpose": "marketing", "at": at}
        if what in ("grant", "expiring"):
            expires = at + 5 * _DAY if what == "expiring" else None
            crm.consents.record(customer.id, granted=True, expires_at=expires, **consent)
            pending = False
        elif what == "withdraw":
            crm.consents.record(customer.id, granted=False, **consent)
            pending = False
        elif what == "pending":
            crm.consents.record(customer.id, granted=True, pending=True, **consent)
            pending = True
        elif what == "confirm" and pending:
            crm.consents.confirm(customer.id, **consent)
            pending = False
        elif what == "suppress":
            crm.marketing.suppress(channel="email", address=customer.emails[0].address.upper(), at=at)
        elif what == "opt_out":
            crm.marketing.opt_out(campaign.id, customer.id, at=at)
        elif what == "opt_out_other":
            crm.suppressions.add(Suppression(channel="email", customer_id=customer.id, list_name="other", at=at))


def _campaign(crm: CRM) -> Campaign:
    statuses = (MemberStatus("planned", default=True), MemberStatus("sent"), MemberStatus("clicked", responded=True))
    return crm.campaigns.add(Campaign(name="Winter", channel="email", list_name="winter", statuses=statuses))


def _send(crm: CRM, campaign: Campaign, customer_id: uuid.UUID, at: dt.datetime, via_records: bool) -> None:
    """Mark a member sent through the marketing service, or through the records API."""
    if via_records:
        member = crm.marketing.member(campaign.id, customer_id)
        crm.campaign_members.update(attrs.evolve(member, status="sent", status_at=at))
    else:
        crm.marketing.set_status(campaign.id, customer_id, "sent", at=at)


class MarketingContract(ContractBase):
    """Targeting and sending obey consent and suppressions; segments have the members their definition gives."""

    @conformance_settings(
        max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
    )
    @given(
        histories=st.lists(_history, min_size=1, max_size=4),
        target_day=st.integers(0, 40),
        send_gap=st.integers(0, 12),
        via_records=st.booleans(),
    )
    def test_no_member_is_marked_sent_without_consent_or_while_suppressed(
        self,
        crmkit_backend: Backend,
        histories: list[list[tuple[int, str]]],
        target_day: int,
        send_gap: int,
        via_records: bool,
    ) -> None:
        crm = crmkit_backend.crm(clock=Clock(_NOW))
        campaign = _campaign(crm)
        people = []
        for i, history in enumerate(histories):
            customer = crm.customers.add(
                Customer(kind="person", name=f"P{i}", emails=(EmailAddress(f"p{i}@example.com"),))
            )
            _store(crm, customer, campaign, history)
            people.append((customer, history))
        everyone = crm.segments.add(Segment(name="everyone", kind="static"))
        crm.segments.add_members(everyone.id, [c.id for c, _ in people])
        targeted_at = _BASE + target_day * _DAY + dt.timedelta(hours=1)
        audience = crm.marketing.target(campaign.id, segment=everyone.id, at=targeted_at)
        reasons = {c.id: _replay(h, targeted_at).reason(targeted_at) for c, h in people}
        assert audience.added == sum(1 for r in reasons.values() if r is None)
        for reason in ("suppressed", "opted_out", "no_consent"):
            assert audience.excluded[reason] == sum(1 for r in reasons.values() if r == reason), reason
        assert {m.customer_id for m in crm.marketing.members(campaign.id)} == {
            cid for cid, r in reasons.items() if r is None
        }
        sent_at = targeted_at + send_gap * _DAY + dt.timedelta(hours=1)  # consent may have changed since
        for customer, history in people:
            if reasons[customer.id] is not None:
                continue
            may = _replay(history, sent_at).reason(sent_at) is None
            if may:
                _send(crm, campaign, customer.id, sent_at, via_records)
            else:
                with pytest.raises(ConflictError):
                    _send(crm, campaign, customer.id, sent_at, via_records)
        histories_of = {c.id: h for c, h in people}
        for member in crm.marketing.members(campaign.id, status="sent"):
            moment = member.status_at
            assert _replay(histories_of[member.customer_id], moment).reason(moment) is None

    @conformance_settings(
        max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
    )
    @given(
        people=st.lists(
            st.tuples(
                st.frozensets(st.sampled_from(["vip", "new"])),
                st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["10", "25.50"])), max_size=3),
                st.booleans(),  # met at the fair (a static segment)
            ),
            max_size=8,
        ),
        since=st.integers(1, 40),
        more_than=st.sampled_from(["0", "25.50", "35.50"]),
        how=st.sampled_from(["union", "intersection", "difference"]),
    )
    def test_a_segment_has_the_members_its_definition_gives(
        self,
        crmkit_backend: Backend,
        people: list[tuple[frozenset[str], list[tuple[int, str]], bool]],
        since: int,
        more_than: str,
        how: str,
    ) -> None:
        crm = crmkit_backend.crm(clock=Clock(_NOW))
        fair = crm.segments.add(Segment(name="fair", kind="static"))
        met: list[uuid.UUID] = []
        for i, (tags, buys, at_fair) in enumerate(people):
            customer = crm.customers.add(Customer(kind="person", name=f"P{i}", tags=tags))
            for d, amount in buys:
                crm.transactions.add(Transaction(customer.id, _NOW - d * _DAY, Decimal(amount), "EUR"))
            if at_fair:
                met.append(customer.id)
        crm.segments.add_members(fair.id, met)
        where = F("tags").contains("vip") | (
            facts.bought(since=_NOW - since * _DAY) & ~facts.spent(more_than=Decimal(more_than), currency="EUR")
        )
        dynamic = crm.segments.add(Segment(name="dynamic", where=where))
        frozen = crm.segments.snapshot(dynamic.id, name="frozen")
        combined = crm.segments.combine(how, [dynamic.id, fair.id], name="combined")  # type: ignore[arg-type]
        transactions = list(crm.transactions.stream())

        def values(select: Select) -> list[object]:
            spec = crm.schema[select.entity]
            groups: dict[object, list[Transaction]] = {}
            for t in transactions:
                if evaluate(select.where, spec, t):
                    groups.setdefault(t.customer_id, []).append(t)
            if select.having is None:
                return list(groups)
            _, _, bound = select.having
            return [k for k, ts in groups.items() if sum(t.amount for t in ts) > bound]

        customers = list(crm.customers.stream())

        def expected(condition: Any) -> list[uuid.UUID]:
            bound = resolve_selects(bind(condition, crm.customers.spec, crm.schema), values)
            return sorted(c.id for c in customers if evaluate(bound, crm.customers.spec, c))

        members = expected(where)
        assert list(crm.segments.members(dynamic.id)) == members
        assert crm.segments.count(dynamic.id) == len(members)
        assert list(crm.segments.members(frozen.id)) == members
        assert list(crm.segments.members(fair.id)) == sorted(met)
        in_fair = F("id").in_(met)
        combination = {"union": where | in_fair, "intersection": where & in_fair, "difference": where & ~in_fair}
        assert list(crm.segments.members(combined.id)) == expected(combination[how])
        assert crm.segments.count(combined.id) == len(expected(combination[how]))

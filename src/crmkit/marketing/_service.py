"""``crm.marketing``: consent-aware targeting, member statuses, campaign results, uplift and attribution."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from crmkit._errors import ConflictError, NotFound, ValidationError
from crmkit._retry import retrying
from crmkit._validation import utc
from crmkit.customers import Customer
from crmkit.marketing._consents import (
    CHANNEL_POINTS,
    FLAG_PURPOSE,
    LATEST_FIRST,
    NEEDS_NO_CONSENT,
    POINT_ADDRESS,
    Consents,
    _flag,
    _points,
    addresses_for,
)
from crmkit.marketing._model import Campaign, CampaignMember, StatusChange, Suppression
from crmkit.marketing._segments import Segments
from crmkit.query import ALL, Expr, F, Select
from crmkit.search import fold
from crmkit.store import iter_batches

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["Audience", "CampaignResults", "Marketing", "Uplift", "exclusions"]

_BATCH = 1000
#: Customers per page when ``target`` reads the eligible ones: each page runs the sub-queries again.
_READ = 25_000
#: Why a customer of the segment was not added, in the order they are checked.
REASONS = ("suppressed", "opted_out", "no_consent", "no_address")


@attrs.frozen
class Audience:
    """What ``target`` did: members added, customers left out per reason, those already members."""

    added: int
    excluded: Mapping[str, int]
    already: int = 0
    control: int = 0


@attrs.frozen
class CampaignResults:
    """A campaign's results: members, sends, responses and purchases after contact, cost per response, ROI."""

    targeted: int
    by_status: Mapping[str, int]
    sent: int
    responded: int
    converted: int
    revenue: Mapping[str, Decimal]
    cost_per_response: Decimal | None
    roi: Decimal | None


@attrs.frozen
class Uplift:
    """Purchases and revenue the campaign caused: treated members against the held-out control group.

    ``incremental_*`` are (treated rate - control rate) x treated members, with a 95% normal
    interval for the difference of two proportions (purchases) and of two means (revenue).
    """

    treated: int
    control: int
    treated_rate: float
    control_rate: float
    incremental_purchasers: float
    purchasers_interval: tuple[float, float]
    incremental_revenue: float
    revenue_interval: tuple[float, float]


def exclusions(
    crm: CRM, campaign: Campaign, customers: Sequence[Customer], at: dt.datetime
) -> dict[uuid.UUID, str | None]:
    """Why each customer may not be contacted by the campaign at ``at`` (None: may be), a few queries per batch.

    Checked in order: a global suppression of the customer or one of its addresses on the
    campaign's channel (``suppressed``), an opt-out of the campaign's list (``opted_out``),
    no valid consent for the campaign's channel and purpose at that moment (``no_consent``),
    no contact point the channel reaches (``no_address``).
    """
    channel, purpose = str(campaign.channel), campaign.purpose
    out: dict[uuid.UUID, str | None] = {}
    consents: Consents = crm.consents
    for batch in iter_batches(iter(customers), _BATCH):
        ids = [c.id for c in batch]
        owners: dict[str, list[uuid.UUID]] = {}
        for c in batch:
            for address in addresses_for(c, channel):
                owners.setdefault(address, []).append(c.id)
        who: Expr = F("customer_id").in_(ids)
        if owners:
            who = who | F("address").in_(list(owners))
        flagged: dict[uuid.UUID, str] = {}
        for s in crm.records(Suppression).stream((F("channel") == channel) & (F("at") <= at) & who):
            reason = (
                "suppressed" if s.list_name is None else "opted_out" if s.list_name == campaign.opt_out_list else None
            )
            if reason is None:
                continue
            hit = ([s.customer_id] if s.customer_id is not None else []) + owners.get(s.address or "", [])
            for cid in hit:
                if flagged.get(cid) != "suppressed":
                    flagged[cid] = reason
        allowed = consents.allowed_among(batch, channel=channel, purpose=purpose, at=at)
        addressed = _points(batch[0], channel)[0] != ""
        for c in batch:
            reason = flagged.get(c.id)
            if reason is None and c.id not in allowed:
                reason = "no_consent"
            if reason is None and addressed and not _points(c, channel)[1]:
                reason = "no_address"
            out[c.id] = reason
    return out


def _among(ids: Sequence[uuid.UUID]) -> Expr:
    """The customers with these ids (none: a condition no customer meets)."""
    return F("id").in_(ids) if ids else ~ALL


class _Eligibility:
    """Who of a set of customers may get a campaign at a moment, as conditions on customers the store runs.

    Customers suppressed by id, opted out by id and allowed by their latest consent record are
    sub-queries (semi-joins; the latest record per customer is ``Select(..., first_by=...)``).
    Customers blocked by address: the block list's addresses for the channel are read once (as
    many as there are, not one per customer), the customers that may hold one are found in the
    store through their e-mail search terms (folded addresses, a superset; customers with
    addresses but without e-mail terms are candidates too; those whose contact-point list for
    the channel is empty never are), and only those few are read to compare their addresses
    as suppressions keep them. Customers with no contact point on the channel are counted in
    the store (``F(field).is_empty()``).
    """

    def __init__(self, crm: CRM, campaign: Campaign, when: dt.datetime) -> None:
        self.crm, self.campaign, self.when = crm, campaign, when
        self.channel, self.purpose = str(campaign.channel), campaign.purpose
        on = (F("channel") == self.channel) & (F("at") <= when)
        self.everywhere = on & (F("list_name") == None)  # noqa: E711
        self.this_list = on & (F("list_name") == campaign.opt_out_list)

    def _by_address(self, within: Expr) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """The customers of ``within`` with an address on the block list: (suppressed, opted out only)."""
        suppressions = self.crm.records(Suppression)
        listed = (self.everywhere | self.this_list) & (F("address") != None)  # noqa: E711
        rows = suppressions.aggregate(listed, group_by=("address", "list_name"), count=True)
        reasons: dict[str, str] = {}
        for row in rows:
            address = str(row["address"])
            if reasons.get(address) != "suppressed":
                reasons[address] = "suppressed" if row["list_name"] is None else "opted_out"
        if not reasons:
            return [], []
        field = CHANNEL_POINTS.get(self.channel)
        # a customer with no contact point on the channel holds no listed address: never read
        candidates = within if field is None else within & ~F(field).is_empty()
        if self.channel == "email" and "search_terms" in self.crm.schema:
            folded = sorted({fold(address) for address in reasons})
            emails = (F("record.aggregate") == "customers") & (F("field") == "emails")
            listed_terms = F("id").in_(Select("search_terms", "record.id", emails & F("term").in_(folded)))
            # a customer without e-mail terms (written with search_emails=False, or before the terms
            # existed) cannot be ruled out by them: it is read and compared like the others
            candidates = candidates & (listed_terms | ~F("id").in_(Select("search_terms", "record.id", emails)))
        suppressed: list[uuid.UUID] = []
        opted_out: list[uuid.UUID] = []
        for c in self.crm.customers.stream(candidates, order_by="id", batch_size=_READ):
            found = {reasons.get(a) for a in addresses_for(c, self.channel)}
            if "suppressed" in found:
                suppressed.append(c.id)
            elif "opted_out" in found:
                opted_out.append(c.id)
        return suppressed, opted_out

    def split(self, fresh: Expr) -> tuple[Expr, Expr, Expr]:
        """(suppressed, opted out, neither) as conditions on customers, for the customers of ``fresh``."""
        by_address, opted_by_address = self._by_address(fresh)
        suppressed: Expr = F("id").in_(Select("suppressions", "customer_id", self.everywhere))
        if by_address:
            suppressed = suppressed | F("id").in_(by_address)
        opted: Expr = F("id").in_(Select("suppressions", "customer_id", self.this_list))
        if opted_by_address:
            opted = opted | F("id").in_(opted_by_address)
        return suppressed, opted, ~suppressed & ~opted

    def reached(self, among: Expr) -> tuple[Expr, int]:
        """(the customers with a contact point the channel reaches, as a condition on customers;
        how many of ``among`` have none, counted in the store).

        A channel that needs no contact point reaches everyone. Contact points are kept inside
        the customer as a list (``emails``, ``phones``, ``addresses``, ``handles``): the channel's
        list is not empty (``~F(field).is_empty()``), so no customer is read for it.
        """
        field = CHANNEL_POINTS.get(self.channel)
        if field is None:
            return ALL, 0
        none = F(field).is_empty()
        return ~none, self.crm.customers.count(among & none)

    def consent(self, among: Expr) -> tuple[Expr, Expr | None]:
        """(allowed by the records, to be judged by the consent flags or None) as conditions on the customers
        of ``among`` (the records read are theirs).

        The latest record at the moment decides (``Consents.allowed_among``); without one a
        channel or purpose that needs no consent allows, and for marketing a customer with no
        record for the channel at all is judged by its contact points' consent flags.
        """
        consents: Consents = self.crm.consents
        about = (F("channel") == self.channel) & (F("purpose") == self.purpose)
        valid = (
            (F("granted") == True)  # noqa: E712
            & (F("pending") == False)  # noqa: E712
            & ((F("expires_at") == None) | (F("expires_at") > self.when))  # noqa: E711
        )
        before = about & (F("at") <= self.when)
        # the latest record of the customers of ``among`` only: the window sorts their records, not all
        theirs = before & F("customer_id").in_(Select("customers", "id", among))
        latest = Select("consents", "customer_id", theirs, first_by=LATEST_FIRST, first_where=valid)
        allowed: Expr = F("id").in_(latest)
        if not consents.needs_consent(self.channel) or self.purpose in NEEDS_NO_CONSENT:
            return allowed | ~F("id").in_(Select("consents", "customer_id", before)), None
        if self.purpose != FLAG_PURPOSE:
            return allowed, None
        return allowed, ~F("id").in_(Select("consents", "customer_id", about))


class Marketing:
    """``crm.marketing``: targeting a campaign, member statuses, results, uplift and attribution."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def __repr__(self) -> str:
        return f"<marketing of {self._crm.tenant}>"

    def _campaign(self, campaign_id: uuid.UUID) -> Campaign:
        if isinstance(campaign_id, Campaign):
            campaign_id = campaign_id.id
        campaign: Campaign = self._crm.records(Campaign).get(campaign_id)
        return campaign

    # ----------------------------------------------------------------- suppression

    def suppress(
        self,
        *,
        channel: str,
        address: str | None = None,
        customer_id: uuid.UUID | None = None,
        reason: str | None = None,
        at: dt.datetime | None = None,
    ) -> Suppression:
        """Put an address (kept by address: re-imported customers stay blocked) or a customer on the block list."""
        when = self._crm.now() if at is None else utc(at, "at")
        item = Suppression(channel=channel, address=address, customer_id=customer_id, reason=reason, at=when)
        return self._crm.records(Suppression).add(item)

    def opt_out(
        self,
        campaign_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        at: dt.datetime | None = None,
        reason: str | None = None,
    ) -> Suppression:
        """The customer leaves the campaign's list: that list only, never the others (nor transactional mail)."""
        campaign = self._campaign(campaign_id)
        when = self._crm.now() if at is None else utc(at, "at")
        item = Suppression(
            channel=campaign.channel, customer_id=customer_id, list_name=campaign.opt_out_list, reason=reason, at=when
        )
        return self._crm.records(Suppression).add(item)

    # ----------------------------------------------------------------- targeting

    def target(
        self,
        campaign_id: uuid.UUID,
        *,
        segment: uuid.UUID,
        at: dt.datetime | None = None,
        control: float = 0.0,
        seed: int | None = None,
    ) -> Audience:
        """Add the segment's customers who may be contacted at ``at`` to the campaign, with its default status.

        Every exclusion is counted in the store: the segment is one condition on customers;
        those already members, suppressed or opted out by id, and those whose latest consent
        record at ``at`` is not a valid grant (``Select(..., first_by=...)``) are left out by
        sub-queries (semi-joins). The block list's addresses are read once and matched through
        the customers' stored e-mail search terms, customers with no contact point on a channel
        that needs one are counted as ``no_address`` (``F("phones").is_empty()``), and customers
        with no consent record at all (marketing) are judged by their contact points' consent
        flags. The members are built in
        the store by one ``add_from`` of the customers who may be contacted, with the address
        they will be contacted at copied from their first contact point on the channel (as the
        customer has it, not lower-cased). ``control`` holds out that fraction of them at random
        (drawn over their ids in id order) as a control group (members never contacted) for
        ``uplift``. One transaction: all members or none; a
        customer is a member of a campaign at most once (the store keeps (campaign, customer)
        unique), so a concurrent ``target`` of the same campaign that collides is run again
        and finds the members already there.
        """
        campaign = self._campaign(campaign_id)
        when = self._crm.now() if at is None else utc(at, "at")
        if not (isinstance(control, (int, float)) and not isinstance(control, bool) and 0 <= control < 1):
            raise ValidationError("control", "is a fraction from 0 up to (not including) 1", control)
        segments: Segments = self._crm.segments
        where = segments.where(segment, at=when)

        def run() -> Audience:
            try:
                with self._crm.transaction():
                    return self._target(campaign, where, when, control, random.Random(seed))
            except ConflictError as exc:
                if exc.transient or exc.entity != "campaign member":
                    raise
                # a concurrent target added one of these customers first: run again, it is a member now
                raise ConflictError(str(exc), entity=exc.entity, key=exc.key, transient=True) from exc

        if self._crm._in_transaction():
            return run()
        return retrying(run)

    def _target(
        self, campaign: Campaign, segment: Expr, when: dt.datetime, control: float, rng: random.Random
    ) -> Audience:
        channel = str(campaign.channel)
        customers = self._crm.customers
        member = F("id").in_(Select("campaign_members", "customer_id", F("campaign_id") == campaign.id))
        already = customers.count(segment & member)
        fresh = segment & ~member
        rules = _Eligibility(self._crm, campaign, when)
        suppressed, opted_out, contactable = rules.split(fresh)
        allowed, by_flags = rules.consent(fresh)
        rest = fresh & contactable
        excluded: Counter[str] = Counter(
            {
                "suppressed": customers.count(fresh & suppressed),
                "opted_out": customers.count(fresh & ~suppressed & opted_out),
            }
        )
        # the customers left are allowed by their consent records, judged by their flags, or refused: the
        # allowed ones stay a condition, those judged by their flags (no consent record at all: data from
        # before them) are read and join the others by id, and the refused ones are what is left; the
        # allowed ones with an empty contact-point list for the channel are counted in the store
        left = customers.count(rest)
        reached, no_address = rules.reached(rest & allowed)
        by_id: list[uuid.UUID] = []
        if by_flags is not None:
            for c in customers.stream(rest & by_flags, order_by="id", batch_size=_READ):
                if not _flag(c, channel, when):
                    continue
                if channel in CHANNEL_POINTS and not _points(c, channel)[1]:
                    no_address += 1
                else:
                    by_id.append(c.id)
        # those with no contact point the channel reaches are left out ("no_address"), in the store
        chosen = rest & ((allowed & reached) | _among(by_id))
        held: list[uuid.UUID] = []
        if control > 0:
            # the control group is drawn over the chosen customers in id order: only their ids are read
            ids = sorted(row["id"] for row in customers.aggregate(chosen, group_by="id", count=True))
            held = [cid for cid in ids if rng.random() < control]
        default = campaign.default_status.name
        field = CHANNEL_POINTS.get(channel, "")
        part = POINT_ADDRESS.get(field)
        values: dict[str, object] = {
            "campaign_id": campaign.id,
            "customer_id": F("id"),
            "status": default,
            "added_at": when,
            "status_at": when,
            "first_responded_at": None,
            "contacted_at": None,
            "history": (StatusChange(default, when),),
            "control": F("id").in_(held) if held else False,
            # the first contact point's address, as the customer's record has it
            "address": F(f"{field}.{part}").first() if part else None,
        }
        added = self._crm.records(CampaignMember).add_from("customers", chosen, values=values).added
        excluded["no_address"] = no_address
        excluded["no_consent"] = left - added - no_address
        return Audience(added, {r: excluded[r] for r in REASONS}, already, len(held))

    # ----------------------------------------------------------------- members

    def member(self, campaign_id: uuid.UUID, customer_id: uuid.UUID) -> CampaignMember:
        """The customer's membership of the campaign; NotFound when it is not a member."""
        found = self._crm.records(CampaignMember).find(
            (F("campaign_id") == campaign_id) & (F("customer_id") == customer_id), limit=1
        )
        if not found.items:
            raise NotFound("campaign member", customer_id)
        member: CampaignMember = found.items[0]
        return member

    def set_status(
        self, campaign_id: uuid.UUID, customer_id: uuid.UUID, status: str, *, at: dt.datetime | None = None
    ) -> CampaignMember:
        """Give a member a status of its campaign; the first responded status sets ``first_responded_at`` for good.

        A status that contacts (``sent``) is refused, whichever API writes it, for a member of
        the control group, without valid consent at that moment, or while suppressed.
        """
        campaign = self._campaign(campaign_id)
        member = self.member(campaign.id, customer_id)
        new_status = campaign.status(status)
        when = self._crm.now() if at is None else utc(at, "at")
        if when < member.status_at:
            raise ValidationError("at", "comes before the member's current status", when)
        updated = attrs.evolve(
            member,
            status=new_status.name,
            status_at=when,
            history=(*member.history, StatusChange(new_status.name, when)),
            first_responded_at=member.first_responded_at or (when if new_status.responded else None),
            contacted_at=member.contacted_at or (when if new_status.contacts else None),
        )
        result: CampaignMember = self._crm.records(CampaignMember).update(updated)
        return result

    def members(self, campaign_id: uuid.UUID, *, status: str | None = None) -> Iterator[CampaignMember]:
        """The campaign's members (of one status when given), by customer id, read page by page."""
        campaign = self._campaign(campaign_id)
        where: Expr = F("campaign_id") == campaign.id
        if status is not None:
            where = where & (F("status") == campaign.status(status).name)
        return self._crm.records(CampaignMember).stream(where, order_by=("customer_id",))

    # ----------------------------------------------------------------- results

    def _purchases_after(
        self, campaign: Campaign, *, control: bool, since_field: str
    ) -> tuple[int, int, dict[str, Decimal], list[float]]:
        """Members (of the control group or not), buyers after the member's ``since_field``, revenue per
        currency, and each member's revenue (for intervals): the members are read 1,000 at a time."""
        members = self._crm.records(CampaignMember)
        where = (F("campaign_id") == campaign.id) & (F("control") == control) & (F(since_field) != None)  # noqa: E711
        count = buyers = 0
        revenue: dict[str, Decimal] = {}
        per_member: list[float] = []
        until = (
            None
            if campaign.ends_on is None
            else dt.datetime.combine(campaign.ends_on + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        )
        for batch in iter_batches(members.stream(where, order_by=("customer_id",)), _BATCH):
            since = {m.customer_id: getattr(m, since_field) for m in batch}
            earliest = min(since.values())
            tx_where = F("customer_id").in_(list(since)) & (F("kind") == "purchase") & (F("occurred_at") >= earliest)
            if until is not None:
                tx_where = tx_where & (F("occurred_at") < until)
            spent: dict[uuid.UUID, float] = {}
            for t in self._crm.transactions.stream(tx_where):
                if t.occurred_at >= since[t.customer_id]:
                    spent[t.customer_id] = spent.get(t.customer_id, 0.0) + float(t.amount)
                    revenue[t.currency] = revenue.get(t.currency, Decimal(0)) + t.amount
            count += len(batch)
            buyers += len(spent)
            per_member.extend(spent.get(cid, 0.0) for cid in since)
        return count, buyers, revenue, per_member

    def results(self, campaign_id: uuid.UUID) -> CampaignResults:
        """Members per status (a group-by in the store), sends, responses, purchases after contact, cost per
        response and ROI."""
        campaign = self._campaign(campaign_id)
        members = self._crm.records(CampaignMember)
        mine = (F("campaign_id") == campaign.id) & (F("control") == False)  # noqa: E712
        by_status = {
            str(row["status"]): int(row.count or 0) for row in members.aggregate(mine, group_by="status", count=True)
        }
        sent = members.count(mine & (F("contacted_at") != None))  # noqa: E711
        responded = members.count(mine & (F("first_responded_at") != None))  # noqa: E711
        _, converted, revenue, _ = self._purchases_after(campaign, control=False, since_field="contacted_at")
        cost = campaign.actual_cost
        per_response = None if cost is None or not responded else cost / responded
        roi = None
        if cost and campaign.currency is not None and campaign.currency in revenue:
            roi = (revenue[campaign.currency] - cost) / cost
        return CampaignResults(
            sum(by_status.values()), by_status, sent, responded, converted, revenue, per_response, roi
        )

    def uplift(self, campaign_id: uuid.UUID) -> Uplift:
        """Incremental purchasers and revenue of a campaign whose ``target`` held out a control group.

        Both groups are counted from when they were added (treated members only once contacted
        are compared with every control member): the difference of purchase rates and of mean
        revenue per member, times the treated members, with 95% normal intervals.
        """
        campaign = self._campaign(campaign_id)
        n_t, b_t, _, rev_t = self._purchases_after(campaign, control=False, since_field="contacted_at")
        n_c, b_c, _, rev_c = self._purchases_after(campaign, control=True, since_field="added_at")
        if not n_t or not n_c:
            raise ValidationError(
                "campaign_id", "needs contacted members and a control group (target(control=...))", campaign.id
            )
        p_t, p_c = b_t / n_t, b_c / n_c
        se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
        m_t, m_c = sum(rev_t) / n_t, sum(rev_c) / n_c
        v_t = sum((x - m_t) ** 2 for x in rev_t) / max(n_t - 1, 1)
        v_c = sum((x - m_c) ** 2 for x in rev_c) / max(n_c - 1, 1)
        se_rev = math.sqrt(v_t / n_t + v_c / n_c)
        z = 1.959963984540054
        lift, rev = (p_t - p_c) * n_t, (m_t - m_c) * n_t
        return Uplift(
            n_t,
            n_c,
            p_t,
            p_c,
            lift,
            (lift - z * se * n_t, lift + z * se * n_t),
            rev,
            (rev - z * se_rev * n_t, rev + z * se_rev * n_t),
        )

    # ----------------------------------------------------------------- attribution

    def attribution(
        self,
        model: str = "shapley",
        *,
        since: dt.datetime,
        until: dt.datetime,
        by: str = "channel",
        lookback: dt.timedelta | None = None,
        half_life: dt.timedelta = dt.timedelta(days=7),
        samples: int = 2000,
        seed: int = 0,
    ) -> dict[str, float]:
        """Each channel's (or campaign's, ``by="campaign"``) share of the purchases of ``[since, until)``.

        Journeys are read from the store customer by customer (interactions, campaign
        contacts and purchases merged by customer id), so memory grows with the number of
        channels, not of customers. See ``crmkit.marketing.attribution`` for the models.
        """
        from crmkit.marketing._journeys import attribute_store

        return attribute_store(
            self._crm,
            model,
            since=utc(since, "since"),
            until=utc(until, "until"),
            by=by,
            lookback=lookback,
            half_life=half_life,
            samples=samples,
            seed=seed,
        )


def check_member(
    crm: CRM, before: CampaignMember | None, after: CampaignMember, campaigns: dict[uuid.UUID, Campaign]
) -> None:
    """The rules every write of a campaign member obeys (run before the commit, whichever API wrote it)."""
    campaign = campaigns.get(after.campaign_id)
    if campaign is None:
        campaign = campaigns[after.campaign_id] = crm.records(Campaign).get(after.campaign_id)
    status = campaign.status(after.status)
    if before is not None:
        if before.first_responded_at is not None and after.first_responded_at != before.first_responded_at:
            raise ConflictError("a member's first response time is set once and never moves")
        if before.contacted_at is not None and after.contacted_at != before.contacted_at:
            raise ConflictError("a member's first contact time is set once and never moves")
    if status.responded and after.first_responded_at is None:
        raise ValidationError("first_responded_at", f"is needed with the responded status {status.name!r}", None)
    changed = before is None or before.status != after.status or before.status_at != after.status_at
    if status.contacts and changed:
        if after.control:
            raise ConflictError(f"member {after.customer_id} is in the control group: never contacted")
        customer = crm.customers.get(after.customer_id)
        reason = exclusions(crm, campaign, [customer], after.status_at)[customer.id]
        if reason in ("suppressed", "opted_out", "no_consent"):
            raise ConflictError(
                f"member {after.customer_id} may not get status {status.name!r} "
                f"at {after.status_at.isoformat()}: {reason}"
            )

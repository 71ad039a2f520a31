"""Named sub-queries for segments: facts about a customer's other records, as conditions on customers.

Each function returns a condition that a dynamic segment keeps (``Segment(where=...)``) and
combines with ``&``, ``|`` and ``~`` like any other; the store works it out inside the
segment's query (a semi-join on SQL stores; a group-by first on the others)::

    from crmkit.marketing import facts

    lapsing = crm.segments.add(Segment(name="Big spenders gone quiet",
        where=facts.spent(more_than=Decimal("1000"), currency="EUR")
              & ~facts.bought(since=now - dt.timedelta(days=90))
              & facts.in_stage("at_risk")))

Time windows are instants fixed when the condition is built (a segment for "the last 90
days" is rebuilt, or updated, as time passes).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from crmkit._errors import ValidationError
from crmkit.query import ALL, Expr, F, Select

__all__ = ["bought", "had_case", "in_campaign", "in_stage", "member_of", "purchases", "spent"]


def _window(field: str, since: dt.datetime | None, until: dt.datetime | None) -> Expr:
    where: Expr = ALL
    if since is not None:
        where = where & (F(field) >= since)
    if until is not None:
        where = where & (F(field) < until)
    return where


def _purchases(since: dt.datetime | None, until: dt.datetime | None, currency: str | None = None) -> Expr:
    where = (F("kind") == "purchase") & _window("occurred_at", since, until)
    return where if currency is None else where & (F("currency") == currency)


def bought(*, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Expr:
    """The customer made a purchase in ``[since, until)`` (either end open when None)."""
    return F("id").in_(Select("transactions", "customer_id", _purchases(since, until)))


def purchases(*, at_least: int, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Expr:
    """The customer made at least ``at_least`` purchases in ``[since, until)``."""
    if isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 1:
        raise ValidationError("at_least", "is a whole number of purchases, 1 or more", at_least)
    select = Select("transactions", "customer_id", _purchases(since, until), ("count", ">=", at_least))
    return F("id").in_(select)


def spent(
    *,
    more_than: Decimal,
    currency: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Expr:
    """The customer's purchases in ``currency`` in ``[since, until)`` total more than ``more_than``."""
    select = Select("transactions", "customer_id", _purchases(since, until, currency), ("sum(amount)", ">", more_than))
    return F("id").in_(select)


def had_case(*, since: dt.datetime | None = None, until: dt.datetime | None = None, status: str | None = None) -> Expr:
    """The customer opened a service case in ``[since, until)`` (of that status now, when given)."""
    where = _window("opened_at", since, until)
    if status is not None:
        where = where & (F("status") == status)
    return F("id").in_(Select("cases", "customer_id", where))


def in_stage(stage: str) -> Expr:
    """The customer is in that life-cycle stage now (``at_risk``, ``customer``...)."""
    return F("stage") == stage


def member_of(segment_id: uuid.UUID) -> Expr:
    """The customer is a member of that static or snapshot segment."""
    return F("id").in_(Select("segment_members", "customer_id", F("segment_id") == segment_id))


def in_campaign(campaign_id: uuid.UUID, *, responded: bool | None = None) -> Expr:
    """The customer is a member of the campaign (who responded, or did not, when ``responded`` is given)."""
    where: Expr = F("campaign_id") == campaign_id
    if responded is not None:
        where = where & ((F("first_responded_at") != None) if responded else (F("first_responded_at") == None))  # noqa: E711
    return F("id").in_(Select("campaign_members", "customer_id", where))

"""Named sub-queries for segments: facts about a customer's other records, as conditions on customers.

Each function returns a condition that a dynamic segment keeps (``Segment(where=...)``) and
combines with ``&``, ``|`` and ``~`` like any other; the store works it out inside the
segment's query (a semi-join, grouped for ``spent`` and ``purchases``: ``IN (SELECT ... GROUP
BY ... HAVING ...)`` on SQL stores, a ``$lookup`` in the one pipeline on MongoDB)::

    from crmkit.marketing import facts

    lapsing = crm.segments.add(Segment(name="Big spenders gone quiet",
        where=facts.spent(more_than=Decimal("1000"), currency="EUR")
              & ~facts.bought(since=now - dt.timedelta(days=90))
              & facts.in_stage("at_risk")))

A window's end is an instant (fixed when the condition is built) or a ``datetime.timedelta``
(or ``crmkit.query.ago(...)``) counted back from when the segment is evaluated:
``facts.bought(since=dt.timedelta(days=90))`` is "bought in the last 90 days" on the day it
is counted, listed or targeted (its ``at=``, else the connection's clock), and a saved
segment keeps it relative.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from crmkit._errors import ValidationError
from crmkit.query import ALL, Ago, Expr, F, Select

__all__ = ["bought", "had_case", "in_campaign", "in_stage", "member_of", "purchases", "spent"]


#: An end of a time window: an instant, or how long before the moment of evaluation.
When = dt.datetime | dt.timedelta | Ago


def _end(name: str, value: When) -> dt.datetime | Ago:
    if isinstance(value, dt.timedelta):
        return Ago(value)
    if isinstance(value, (dt.datetime, Ago)):
        return value
    raise ValidationError(name, "is a datetime, a datetime.timedelta (before evaluation) or ago(...)", value)


def _window(field: str, since: When | None, until: When | None) -> Expr:
    where: Expr = ALL
    if since is not None:
        where = where & (F(field) >= _end("since", since))
    if until is not None:
        where = where & (F(field) < _end("until", until))
    return where


def _purchases(since: When | None, until: When | None, currency: str | None = None) -> Expr:
    where = (F("kind") == "purchase") & _window("occurred_at", since, until)
    return where if currency is None else where & (F("currency") == currency)


def bought(*, since: When | None = None, until: When | None = None) -> Expr:
    """The customer made a purchase in ``[since, until)`` (either end open when None)."""
    return F("id").in_(Select("transactions", "customer_id", _purchases(since, until)))


def purchases(*, at_least: int, since: When | None = None, until: When | None = None) -> Expr:
    """The customer made at least ``at_least`` purchases in ``[since, until)``."""
    if isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 1:
        raise ValidationError("at_least", "is a whole number of purchases, 1 or more", at_least)
    select = Select("transactions", "customer_id", _purchases(since, until), ("count", ">=", at_least))
    return F("id").in_(select)


def spent(
    *,
    more_than: Decimal,
    currency: str,
    since: When | None = None,
    until: When | None = None,
) -> Expr:
    """The customer's purchases in ``currency`` in ``[since, until)`` total more than ``more_than``."""
    select = Select("transactions", "customer_id", _purchases(since, until, currency), ("sum(amount)", ">", more_than))
    return F("id").in_(select)


def had_case(*, since: When | None = None, until: When | None = None, status: str | None = None) -> Expr:
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

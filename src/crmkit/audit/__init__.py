"""The audit trail and the durable event feed, derived from every transaction's changes.

Every write of every aggregate (crmkit's own and plugins') raises an event; just before
its transaction commits, the journal (``crmkit.audit._journal``) derives from those
events, inside the same transaction:

- the **audit trail** (``crm.audit``): who changed which field of which record from what
  to what, when and why (``api``, ``import``, ``merge``, ``rule:<name>``, or a cause the
  application names with ``crm.caused_by``); ``crm.audit.as_of`` replays it;
- the **event feed** (``crm.events``): the events themselves, numbered in commit order
  per tenant, so a consumer that stopped (or crashed) reads on from its cursor.

``crmkit.connect(url, audit=..., event_feed=...)`` turns either off, or chooses the
audited fields per aggregate; docs/audit.md shows both at work.
"""

from crmkit.audit._journal import BATCH, AuditSetting, Journal, audited_fields
from crmkit.audit._model import AuditEntry, FeedHead, JsonPart, OutboxChunk
from crmkit.audit._service import Audit, AuditChange, EventFeed, FeedEvent, FeedPage, JournalRecords

__all__ = [
    "BATCH",
    "Audit",
    "AuditChange",
    "AuditEntry",
    "AuditSetting",
    "EventFeed",
    "FeedEvent",
    "FeedHead",
    "FeedPage",
    "Journal",
    "JournalRecords",
    "JsonPart",
    "OutboxChunk",
    "audited_fields",
]

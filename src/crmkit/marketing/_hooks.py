"""The marketing rules every write obeys, whichever API made it: checked in ``crmkit_before_commit``.

- a campaign member's status is one of its campaign's; a status that contacts (``sent``) is
  refused for the control group, without valid consent at that moment, or while suppressed;
- a member's first response and first contact times are set once and never move.

Consent records are a history that ``crm.consents`` only appends to (a change of mind is a
new record); the generic ``update`` stays open for corrections and erasure.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crmkit.marketing._model import Campaign, CampaignMember

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event

__all__ = ["WATCHED", "before_commit"]

WATCHED = frozenset({"campaign_members"})


def before_commit(crm: CRM, events: Sequence[Event]) -> None:
    """Check the transaction's writes of campaign members."""
    if "campaign_members" not in crm.schema.declared:
        return  # a connection that blocks crmkit's own features
    campaigns: dict[uuid.UUID, Campaign] = {}
    from crmkit.marketing._service import check_member

    for event in events:
        if event.entity == "campaign_members" and event.action in ("created", "updated"):
            after = event.after
            if isinstance(after, CampaignMember):
                before = event.before if isinstance(event.before, CampaignMember) else None
                check_member(crm, before, after, campaigns)

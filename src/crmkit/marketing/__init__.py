"""Marketing: segments computed in the store, consent with purpose and history, suppressions,
campaigns with member statuses, consent-aware targeting, uplift and attribution. Every
aggregate is declared once; no backend code.

::

    vip = crm.segments.add(Segment(name="RO VIPs", where=F("tags").contains("vip") & (F("attributes.country") == "RO")))
    crm.segments.count(vip.id)                      # counted in the store
    crm.consents.record(ada.id, channel="email", purpose="marketing", granted=True, at=now)
    camp = crm.campaigns.add(Campaign(name="Winter offer", channel=Channel.EMAIL, statuses=(...)))
    crm.marketing.target(camp.id, segment=vip.id, at=now)   # consent and suppressions checked
    crm.marketing.attribution(model="shapley", since=start, until=end)

``crm.segments`` and ``crm.consents`` are the records of their aggregates with the methods
above; ``crm.campaigns``, ``crm.campaign_members``, ``crm.segment_members`` and
``crm.suppressions`` are plain records; ``crm.marketing`` holds the operations that span them;
``crmkit.marketing.facts`` builds segment conditions about other records (bought, spent, had a case).
"""

from crmkit.marketing import facts
from crmkit.marketing._consents import LATEST_FIRST, Consents
from crmkit.marketing._model import (
    AGGREGATES,
    LEGAL_BASES,
    SEGMENT_KINDS,
    Campaign,
    CampaignMember,
    ConsentRecord,
    MemberStatus,
    Segment,
    SegmentMember,
    StatusChange,
    Suppression,
)
from crmkit.marketing._segments import Segments
from crmkit.marketing._service import Audience, CampaignResults, Marketing, Uplift
from crmkit.marketing.attribution import MODELS, Journey, attribute

Segment.__crmkit_records__ = Segments  # type: ignore[attr-defined]  # crm.segments.count(segment_id)...
ConsentRecord.__crmkit_records__ = Consents  # type: ignore[attr-defined]  # crm.consents.allowed(...)

__all__ = [
    "AGGREGATES",
    "LATEST_FIRST",
    "LEGAL_BASES",
    "MODELS",
    "SEGMENT_KINDS",
    "Audience",
    "Campaign",
    "CampaignMember",
    "CampaignResults",
    "ConsentRecord",
    "Consents",
    "Journey",
    "Marketing",
    "MemberStatus",
    "Segment",
    "SegmentMember",
    "Segments",
    "StatusChange",
    "Suppression",
    "Uplift",
    "attribute",
    "facts",
]

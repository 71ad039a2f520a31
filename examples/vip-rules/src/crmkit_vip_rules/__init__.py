"""An example life-cycle rule plugin for crmkit, installed through the ``crmkit`` entry-point group.

* A customer tagged ``vip`` who has bought anything is ``loyal`` at once: this rule runs
  before crmkit's default rules (which are ``trylast``), so it overrides them.
* A customer tagged ``key_account`` is never moved to ``churned`` by anything but a human:
  the guard vetoes every other rule (and records why).
* It adds a ``whatsapp`` interaction channel.
"""

from __future__ import annotations

import crmkit
from crmkit import ChannelType, CustomerFacts, Stage, StageProposal


@crmkit.hookimpl
def crmkit_propose_stage(facts: CustomerFacts) -> StageProposal | None:
    if "vip" in facts.customer.tags and facts.purchase_count > 0:
        return StageProposal(Stage.LOYAL, "vip.loyal_at_once", "VIP customers are treated as loyal from day one")
    return None  # let the other rules decide


@crmkit.hookimpl
def crmkit_guard_transition(customer: crmkit.Customer, to_stage: Stage, rule: str) -> str | None:
    if "key_account" in customer.tags and to_stage == Stage.CHURNED and rule != "manual":
        return "key accounts are only marked churned by their account manager"
    return None


@crmkit.hookimpl
def crmkit_channels() -> list[ChannelType]:
    return [ChannelType("whatsapp", "WhatsApp messages")]

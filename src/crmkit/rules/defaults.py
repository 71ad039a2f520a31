"""crmkit's default life-cycle rules, an internal plugin that any installed rule plugin overrides.

In order: no purchase yet (lead, or prospect once there is an interaction); churned or
at risk after long silence (``LifecyclePolicy``); won back when an at-risk or churned
customer buys again; then loyal, repeat or customer by the number of purchase days.
"""

from __future__ import annotations

from crmkit.hookspecs import hookimpl
from crmkit.lifecycle import CustomerFacts, StageProposal
from crmkit.lifecycle_model import Stage


@hookimpl(trylast=True)
def crmkit_propose_stage(facts: CustomerFacts) -> StageProposal | None:
    policy, stage = facts.policy, facts.customer.stage
    quiet = facts.since_last_purchase
    if quiet is None:
        if stage == Stage.LEAD and facts.interaction_count > 0:
            return StageProposal(Stage.PROSPECT, "default.engaged", "interacted but has not bought yet")
        return None
    if quiet >= policy.churned_after:
        return StageProposal(Stage.CHURNED, "default.churned", f"no purchase for {quiet.days} days")
    if quiet >= policy.at_risk_after:
        return StageProposal(Stage.AT_RISK, "default.at_risk", f"no purchase for {quiet.days} days")
    if stage in (Stage.AT_RISK, Stage.CHURNED):
        return StageProposal(Stage.WON_BACK, "default.won_back", f"bought again after being {stage.value}")
    days = facts.purchase_days
    if days >= policy.loyal_purchase_days:
        return StageProposal(Stage.LOYAL, "default.loyal", f"bought on {days} different days")
    if stage == Stage.WON_BACK:
        return None  # stays won back until it becomes loyal or slips again
    if days >= 2:
        return StageProposal(Stage.REPEAT, "default.repeat", f"bought on {days} different days")
    return StageProposal(Stage.CUSTOMER, "default.first_purchase", "made a first purchase")

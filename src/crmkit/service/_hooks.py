"""The service desk's part of ``crmkit_before_commit``: a case added by any API gets its kept clocks.

A case stored with ``crm.cases.add`` (or ``add_many``) has no history yet; its clocks as
of its opening are kept in ``sla_clocks`` in the same transaction, so the SLA summary
counts it from the start (a first response never given is the first breach to see).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crmkit.service.model import Case, SLAPolicy, SLAState

if TYPE_CHECKING:
    from crmkit.crm import CRM
    from crmkit.events import Event

__all__ = ["WATCHED", "before_commit"]

#: The aggregates whose events the service desk reads before a commit.
WATCHED = frozenset({"cases"})


def before_commit(crm: CRM, events: Sequence[Event]) -> None:
    """Keep the clocks of the cases the transaction added (when any SLA policy is stored)."""
    added: list[Case] = [e.after for e in events if e.entity == "cases" and e.before is None and e.after is not None]
    if not added or "sla_clocks" not in crm.schema.declared or not crm.records(SLAPolicy).count():
        return
    from crmkit.service.service import Service

    rows = Service.opening_rows(crm, added)
    if rows:
        crm.records(SLAState).add_many(rows)

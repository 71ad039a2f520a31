"""Changes of stage of any record: one generic aggregate, ``state_changes``, and its service.

A record that moves through a set of stages (a customer through its life cycle, a deal
through a pipeline) leaves one ``StateChange`` per move: which record, in which stage set,
from which stage to which, when, by which rule, why, and who made it. Features record
them with ``crm.state_changes.record_change`` inside their own unit of work and read a
record's history with ``crm.state_changes.history``; the customer life cycle is stage
set ``"lifecycle"`` (``crm.stage_changes`` reads it as ``StageChange`` records).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit.query import And, Compare, Expr
from crmkit.schema._fields import _ref_any
from crmkit.services.records import Records

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["LIFECYCLE", "StateChange", "StateChanges"]

#: The stage set of the customer life cycle.
LIFECYCLE = "lifecycle"


@schema.aggregate(
    "state_changes",
    label="state change",
    time_field="occurred_at",
    indexes=[("record", "occurred_at")],
)
class StateChange(schema.Record):
    """One move of a record from one stage of a stage set to another."""

    #: The record whose stage changed, as (aggregate, id); deleting it deletes its history.
    record: schema.Ref = schema.ref_any(on_delete="cascade", sortable=True, personal=False)
    #: The stage set the stages belong to: ``"lifecycle"`` for customers, a pipeline's key for deals.
    stage_set: str = schema.text(sortable=True, personal=False)
    #: The stage before the change (None: the record had none).
    from_stage: str | None = schema.text(default=None, sortable=True, personal=False)
    to_stage: str = schema.text(sortable=True, personal=False)
    occurred_at: dt.datetime = schema.instant(sortable=True, personal=False)
    #: What made the change: ``manual``, or the name of the rule that proposed it.
    rule: str = schema.text(default="manual", sortable=True, personal=False)
    reason: str | None = schema.text(default=None, personal="free_text")
    #: Who made the change (the connection's actor when it was recorded).
    actor: str | None = schema.text(default=None, sortable=True, personal=False)


class StateChanges(Records[StateChange]):
    """``crm.state_changes``: every change of stage of every record (``crm.records(StateChange)``).

    Besides the methods of every aggregate's service, ``record_change`` records a change in
    the caller's unit of work and ``history`` reads the changes of one record.
    """

    def __init__(self, crm: CRM) -> None:
        super().__init__(crm, crm.schema.spec(StateChange))

    def record_change(
        self,
        of: Any,
        *,
        stage_set: str,
        from_stage: str | None,
        to_stage: str,
        rule: str = "manual",
        reason: str | None = None,
        at: dt.datetime | None = None,
    ) -> StateChange:
        """Store that record ``of`` moved from ``from_stage`` to ``to_stage`` of ``stage_set``; return the change.

        ``of`` is a stored record, a ``schema.Ref`` or an ``(aggregate, id)`` pair. The
        change is written in the caller's transaction (its own when there is none) and
        carries the connection's actor. The clock is read once: without ``at`` the change
        occurred when it was created (``occurred_at == created_at == updated_at``).
        """
        now = self._crm.now()
        change = StateChange(
            record=of,
            stage_set=stage_set,
            from_stage=None if from_stage is None else str(from_stage),
            to_stage=str(to_stage),
            occurred_at=now if at is None else at,
            rule=rule,
            reason=reason,
            actor=self._crm.actor,
        )
        return self._add(change, now)  # created and updated at ``now`` too

    def history(self, of: Any, *, stage_set: str | None = None) -> list[StateChange]:
        """Every change of stage of record ``of`` (of one stage set, when given), oldest first."""
        return list(self.stream(self.of_record(_ref_any("of", of), stage_set)))

    @staticmethod
    def of_record(ref: schema.Ref, stage_set: str | None = None) -> Expr:
        """The condition "a change of record ``ref`` (in ``stage_set``, when given)"."""
        if not isinstance(ref, schema.Ref):
            raise ValidationError("record", "must be a schema.Ref", ref)
        parts: list[Expr] = [Compare("record.aggregate", "==", ref.aggregate), Compare("record.id", "==", ref.id)]
        if stage_set is not None:
            parts.append(Compare("stage_set", "==", stage_set))
        return And(tuple(parts))

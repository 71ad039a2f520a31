"""Life-cycle stages and the record of each stage change."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import attrs

from crmkit._ids import new_id
from crmkit._validation import aware, nonempty_text, optional_aware, optional_text, positive_int, uuid_field

__all__ = ["Stage", "StageChange"]


class Stage(str, enum.Enum):
    """Where a customer stands in the life cycle (acquisition, retention, development)."""

    LEAD = "lead"
    PROSPECT = "prospect"
    CUSTOMER = "customer"
    REPEAT = "repeat"
    LOYAL = "loyal"
    AT_RISK = "at_risk"
    CHURNED = "churned"
    WON_BACK = "won_back"

    def __str__(self) -> str:
        return self.value


def to_stage(value: object) -> Stage:
    from crmkit._errors import ValidationError

    try:
        return Stage(value)
    except ValueError:
        raise ValidationError("stage", f"must be one of {', '.join(s.value for s in Stage)}", value) from None


def _optional_stage(value: object) -> Stage | None:
    return None if value is None else to_stage(value)


@attrs.frozen
class StageChange:
    """One move of a customer from one stage to another: when, why and which rule made it."""

    customer_id: uuid.UUID = attrs.field(validator=uuid_field)
    from_stage: Stage | None = attrs.field(converter=_optional_stage)
    to_stage: Stage = attrs.field(converter=to_stage)
    occurred_at: dt.datetime = attrs.field(validator=aware)
    rule: str = attrs.field(default="manual", validator=nonempty_text)
    reason: str | None = attrs.field(default=None, validator=optional_text)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)

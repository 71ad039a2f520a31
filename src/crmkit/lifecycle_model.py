"""Life-cycle stages and the record of each stage change."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import attrs

from crmkit._ids import new_id
from crmkit._validation import (
    aware,
    check_identifier,
    nonempty_text,
    of_type,
    optional_aware,
    optional_text,
    positive_int,
    uuid_field,
)

__all__ = ["BUILTIN_STAGES", "Stage", "StageChange", "StageDef", "StageSet"]


class _StageVocabulary(type):
    """Iterating ``Stage`` gives the eight built-in stages, in life-cycle order.

    A connection's whole life cycle, plugins' stages included, is ``crm.lifecycle.stages``;
    ``Stage`` itself stays the same set in every process, whatever plugins were loaded.
    """

    def __iter__(cls) -> Iterator[Stage]:
        return iter(_BUILTIN)

    def __len__(cls) -> int:
        return len(_BUILTIN)

    def __contains__(cls, value: object) -> bool:
        return value in _BUILTIN

    def __getitem__(cls, key: int | str) -> Stage:
        """``Stage[0]`` by position, ``Stage["LEAD"]`` by constant name (as with an Enum)."""
        if isinstance(key, str):
            found = _KNOWN[key.lower()]
            if found not in _BUILTIN:
                raise KeyError(key)
            return found
        return _BUILTIN[key]


# The class is an ordered collection of its stages (``st.sampled_from(Stage)``, ``Stage[0]``).
Sequence.register(_StageVocabulary)


class Stage(str, metaclass=_StageVocabulary):
    """A stage of the customer life cycle: the eight built in (``Stage.LEAD`` ...) and those plugins add.

    Stages are data: a plugin adds customer stages through ``crmkit_customer_stages``,
    and once a plugin manager has loaded it (any ``crmkit.connect`` or ``crmkit.plugins()``)
    ``Stage("vip_club")`` is as valid as ``Stage("lead")``; a connection accepts the stages
    of its own plugins (``crm.lifecycle.stages``). Each name has one instance, so ``is``
    comparisons hold; a stage compares equal to its name.
    """

    __slots__ = ()

    LEAD: ClassVar[Stage]
    PROSPECT: ClassVar[Stage]
    CUSTOMER: ClassVar[Stage]
    REPEAT: ClassVar[Stage]
    LOYAL: ClassVar[Stage]
    AT_RISK: ClassVar[Stage]
    CHURNED: ClassVar[Stage]
    WON_BACK: ClassVar[Stage]

    def __new__(cls, value: object) -> Stage:
        if isinstance(value, Stage):
            return value
        found = _KNOWN.get(value) if isinstance(value, str) else None
        if found is None:
            from crmkit._errors import ValidationError

            raise ValidationError("stage", f"must be one of {', '.join(_KNOWN)}", value)
        return found

    @property
    def value(self) -> str:
        """The stage's name, as stored."""
        return str.__str__(self)

    @property
    def name(self) -> str:
        """The constant's name for built-in stages (``LEAD``), else the stage name upper-cased."""
        return str.__str__(self).upper()

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Stage({str.__str__(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Stage, (str.__str__(self),))


_KNOWN: dict[str, Stage] = {}


def _make(name: str) -> Stage:
    stage = _KNOWN.get(name)
    if stage is None:
        stage = _KNOWN[name] = str.__new__(Stage, name)
    return stage


_BUILTIN: tuple[Stage, ...] = tuple(
    _make(name) for name in ("lead", "prospect", "customer", "repeat", "loyal", "at_risk", "churned", "won_back")
)
for _stage in _BUILTIN:
    setattr(Stage, _stage.name, _stage)


def _stage_name(value: Any) -> str:
    return check_identifier("name", value)


def _set_key(value: Any) -> str:
    return check_identifier("key", value)


@attrs.frozen
class StageDef:
    """A stage of a stage set: its name (an identifier) and what it means."""

    name: str = attrs.field(converter=_stage_name)
    description: str = attrs.field(default="", validator=of_type(str, "string"))
    #: No rule moves a record out of a closed stage by itself (churned customers, lost deals).
    closed: bool = attrs.field(default=False, validator=of_type(bool))


#: The customer life cycle's own stages, in order.
BUILTIN_STAGES: tuple[StageDef, ...] = (
    StageDef("lead", "known, not yet qualified"),
    StageDef("prospect", "qualified, in talks"),
    StageDef("customer", "bought once"),
    StageDef("repeat", "bought again"),
    StageDef("loyal", "buys regularly"),
    StageDef("at_risk", "buying less than expected"),
    StageDef("churned", "gone", closed=True),
    StageDef("won_back", "bought again after churning"),
)


def _stage_tuple(value: Iterable[StageDef]) -> tuple[StageDef, ...]:
    from crmkit._errors import ValidationError

    items = tuple(value)
    for item in items:
        if not isinstance(item, StageDef):
            raise ValidationError("stages", "must hold StageDef values", item)
    return items


@attrs.frozen
class StageSet:
    """An ordered set of stages: the customer life cycle, a sales pipeline."""

    key: str = attrs.field(converter=_set_key)
    stages: tuple[StageDef, ...] = attrs.field(converter=_stage_tuple)

    @stages.validator
    def _check(self, attribute: attrs.Attribute[Any], value: tuple[StageDef, ...]) -> None:
        from crmkit._errors import ValidationError

        if not value:
            raise ValidationError("stages", "a stage set needs at least one stage", value)
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValidationError("stages", "names a stage twice", names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names

    def __getitem__(self, name: str) -> StageDef:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def check(self, field: str, value: object) -> str:
        """``value`` if it names a stage of the set, else ValidationError naming ``field`` and the stages."""
        if value not in self:
            from crmkit._errors import ValidationError

            raise ValidationError(field, f"is not a stage of {self.key} (stages: {', '.join(self.names)})", value)
        return str(value)


def register_stages(stages: Iterable[StageDef]) -> None:
    """Make plugin stages valid ``Stage`` values in this process (called when plugins are loaded)."""
    for stage in stages:
        _make(stage.name)


def to_stage(value: object) -> Stage:
    return Stage(value)


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

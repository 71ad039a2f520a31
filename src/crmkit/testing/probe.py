"""The probe aggregate: one field of every kind, a ``ref`` per delete policy, a ``ref_any`` and a composite key.

A backend that passes the generic contract on the probe stores any aggregate that can be
declared (its ``ref_any`` is sortable and part of an index): the conformance suite runs it on every
backend. Register it with
``crmkit.connect(url, plugins=[ProbePlugin()])``. ``ProbeLink`` refers to probes (cascade
and restrict) and to other links (set_null): references between declared aggregates and
to the aggregate itself; ``ProbeLinksPlugin`` registers both, and the suite runs both.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal

from crmkit import schema
from crmkit.hookspecs import hookimpl

__all__ = ["Probe", "ProbeColour", "ProbeLink", "ProbeLinksPlugin", "ProbePart", "ProbePlugin"]


class ProbeColour(enum.Enum):
    """An enum with text values."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@schema.value_object
class ProbePart:
    """A value object with a field of every kind a value object may hold."""

    label: str = schema.text(personal="free_text")
    amount: Decimal = schema.money(negative=True, personal=False)
    at: dt.datetime | None = schema.instant(default=None, personal=False)
    on: dt.date | None = schema.date(default=None, personal=False)
    count: int = schema.integer(default=0, personal=False)
    flag: bool = schema.boolean(default=False, personal=False)
    colour: ProbeColour | None = schema.enum(ProbeColour, default=None, personal=False)
    token: uuid.UUID | None = schema.uuid(default=None, personal=False)
    marks: frozenset[str] = schema.text_set(default=frozenset(), personal=False)


@schema.aggregate(
    "crmkit_probes",
    label="probe",
    time_field="happened_at",
    unique=[("owner_id", "code", "number")],
    indexes=[("code",), ("happened_at", "amount"), ("about", "happened_at")],
)
class Probe(schema.Record):
    """A record of no use but to prove a backend: every field kind, every reference kind."""

    owner_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    code: str = schema.text(sortable=True, personal=False, search=True)
    note: str | None = schema.text(
        default=None, blank=True, sortable=True, personal="free_text", search=True
    )
    number: int = schema.integer(sortable=True, personal=False)
    flag: bool = schema.boolean(default=False, personal=False)
    amount: Decimal = schema.money(negative=True, sortable=True, personal=False)
    currency: str = schema.currency(sortable=True, personal=False)
    happened_at: dt.datetime = schema.instant(sortable=True, personal=False)
    day: dt.date | None = schema.date(default=None, sortable=True, personal=False)
    token: uuid.UUID | None = schema.uuid(default=None, sortable=True, personal=False)
    colour: ProbeColour = schema.enum(ProbeColour, default=ProbeColour.RED, sortable=True, personal=False)
    labels: frozenset[str] = schema.text_set(default=frozenset(), personal="free_text")
    parts: tuple[ProbePart, ...] = schema.many(ProbePart, default=(), personal="free_text")
    sponsor_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    guard_id: uuid.UUID | None = schema.ref("customers", on_delete="restrict", default=None, personal=False)
    about: schema.Ref | None = schema.ref_any(on_delete="cascade", default=None, sortable=True, personal=False)
    blob: bytes | None = schema.binary(default=None, personal=False)
    attributes: Mapping[str, object] = schema.attributes(personal="free_text")


class ProbePlugin:
    """Registers the probe aggregate."""

    @hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Probe]


@schema.aggregate("crmkit_probe_links", label="probe link", time_field="linked_at", unique=[("probe_id", "rank")])
class ProbeLink(schema.Record):
    """A record that refers to records of declared aggregates: probes, and other links (itself included)."""

    probe_id: uuid.UUID = schema.ref("crmkit_probes", on_delete="cascade", personal=False)
    rank: int = schema.integer(sortable=True, personal=False)
    linked_at: dt.datetime = schema.instant(sortable=True, personal=False)
    previous_id: uuid.UUID | None = schema.ref("crmkit_probe_links", on_delete="set_null", default=None, personal=False)
    pinned_id: uuid.UUID | None = schema.ref("crmkit_probes", on_delete="restrict", default=None, personal=False)


class ProbeLinksPlugin:
    """Registers the probe and the probe links (references between declared aggregates, and to themselves)."""

    @hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return [Probe, ProbeLink]

"""Records built in the store from other records: ``crm.records(T).add_from(source, where, values=...)``.

On the probe aggregate: random probes (with and without parts, references, attributes)
are stored, then new probes are built from those matching a random condition, each
field a random mix of constants, copies (through the parts list with ``first()`` too) and
tests (one with a sub-query, one with a relative instant). The new records must be
exactly those a reference computes in Python from the source records
(``crmkit.store.copied``, ``crmkit.query.evaluate``), each as ``get`` reads it, one per
source record with ids increasing in source-id order, version 1, ``created_at`` equal to
``updated_at``, no external id; the repository's own ``insert_from`` is compared with the
same reference and with ``crmkit.store.Repository``'s default on the same records.
Events, the audit trail and the feed see them as they see ``add_many``'s. An empty match
writes nothing, a unique key already taken writes nothing, a rolled back transaction
leaves nothing, bad values are refused naming the field, and under an access policy
only what the actor sees is read and every new record is checked as ``add`` checks it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import crmkit
from crmkit import ConflictError, Customer, F, ValidationError, schema
from crmkit.access import AccessDenied, OwnerPolicy
from crmkit.crm import CRM
from crmkit.events import Event
from crmkit.marketing import Segment
from crmkit.query import ALL, Const, Copy, Expr, Select, Test, Value, ago, bind, evaluate, relative_to
from crmkit.schema import Ref
from crmkit.services._add_from import bound_values
from crmkit.services.records import BulkResult
from crmkit.store import Repository, copied
from crmkit.testing._backends import Backend, BackendPool
from crmkit.testing.conformance._aggregate_kit import ProbeContractBase, assert_exact
from crmkit.testing.conformance._harness import Clock, at, conformance_settings, person
from crmkit.testing.probe import Probe, ProbeColour, ProbeLink, ProbePart

__all__ = ["TALLIES_PLUGIN", "AddFromContract", "ProbeTally"]


def _shout(value: str) -> str:
    """A Python check no store can run: upper-case text only."""
    if value != value.upper():
        raise ValidationError("label", "must be upper case", value)
    return value


@schema.aggregate("crmkit_probe_tallies", label="probe tally", unique=[("probe_id", "batch")])
class ProbeTally(schema.Record):
    """A small aggregate built from probes (and from itself): a checked field, choices, a non-negative amount."""

    probe_id: uuid.UUID = schema.ref("crmkit_probes", on_delete="cascade", personal=False)
    batch: int = schema.integer(personal=False)
    label: str = schema.text(check=_shout, personal=False)
    mark: str | None = schema.text(default=None, choices=("hot", "cold"), personal=False)
    cost: Decimal = schema.money(default=Decimal(0), personal=False)
    held: bool | None = schema.boolean(default=None, personal=False)


class _TalliesPlugin:
    """Declares the probe, the probe links and the tallies."""

    @crmkit.hookimpl
    def crmkit_aggregates(self) -> list[type]:
        return [Probe, ProbeLink, ProbeTally]


#: One object for the whole session (stores are pooled by plugin identity).
TALLIES_PLUGIN = _TalliesPlugin()

_NOW = at(2026, 1, 3, 12)
_TIMES = (at(2026, 1, 1), at(2026, 1, 2, 18), at(2026, 1, 3, 6))
_SOURCES = F("code").in_(("a", "b", "c"))  # the probes a test stores; those it builds have other codes

Source = tuple[int, str, bool, int, int | None, tuple[tuple[str, bool], ...], int]


class _Recorder:
    """What ``crmkit_before_commit`` and ``crmkit_after_commit`` are handed."""

    def __init__(self) -> None:
        self.before: list[Event] = []
        self.after: list[Event] = []

    @crmkit.hookimpl
    def crmkit_before_commit(self, events: Sequence[Event]) -> None:
        self.before.extend(events)

    @crmkit.hookimpl
    def crmkit_after_commit(self, events: Sequence[Event]) -> None:
        self.after.extend(events)

    def created(self, events: list[Event]) -> list[Any]:
        return [e.after for e in events if e.entity == "crmkit_probes" and e.before is None]


class _Veto:
    """An access plugin that refuses to store a probe numbered 3."""

    @crmkit.hookimpl
    def crmkit_access_write(self, actor: str | None, aggregate: Any, old: Any, new: Any) -> str | None:
        if aggregate.name == "crmkit_probes" and new is not None and new.number == 3:
            return "probe 3 is not to be written"
        return None


class _Boom(Exception):
    pass


def _sources() -> st.SearchStrategy[list[Source]]:
    return st.lists(
        st.tuples(
            st.integers(0, 2),  # owner
            st.sampled_from(("a", "b", "c")),  # code
            st.booleans(),  # flag
            st.integers(0, len(_TIMES) - 1),  # happened_at
            st.one_of(st.none(), st.integers(0, 2)),  # sponsor
            st.lists(st.tuples(st.sampled_from(("x", "y")), st.booleans()), max_size=2).map(tuple),  # parts
            st.integers(0, 3),  # extras: colour, labels, attributes, about, token
        ),
        max_size=8,
    )


def _plant(crm: CRM, sources: list[Source]) -> tuple[list[Customer], list[Probe]]:
    """Three customers (the first a VIP owned by user:a, the others user:b's) and one probe per source, numbered."""
    customers = [
        crm.customers.add(person(f"P{i}", tags={"vip"} if i == 0 else set(), owner="user:a" if i == 0 else "user:b"))
        for i in range(3)
    ]
    probes = []
    for number, (owner, code, flag, t, sponsor, parts, extra) in enumerate(sources):
        probes.append(
            crm.records(Probe).add(
                Probe(
                    owner_id=customers[owner].id,
                    code=code,
                    number=number,
                    flag=flag,
                    amount=Decimal(number) / 4 - 1,
                    currency=("EUR", "RON")[number % 2],
                    happened_at=_TIMES[t],
                    day=dt.date(2026, 1, 1 + extra) if extra else None,
                    token=uuid.UUID(int=extra) if extra % 2 else None,
                    colour=tuple(ProbeColour)[extra % 3],
                    labels=frozenset(("l", "m")[: extra % 3]),
                    parts=tuple(
                        ProbePart(label=label, amount=Decimal("0.10"), flag=f, token=uuid.UUID(int=100 + i))
                        for i, (label, f) in enumerate(parts)
                    ),
                    sponsor_id=None if sponsor is None else customers[sponsor].id,
                    about=Ref("customers", customers[extra % 3].id) if extra else None,
                    blob=bytes([extra]) * extra if extra > 1 else None,
                    attributes={"tier": extra, "code": code} if extra else {},
                )
            )
        )
    return customers, probes


def _conditions(customers: list[Customer], probes: list[Probe]) -> list[tuple[Expr | None, Callable[[Probe], bool]]]:
    """Conditions on the source probes with their reference (None: ``crmkit.query.evaluate`` is the reference)."""
    vip = {c.id for c in customers if "vip" in c.tags}
    flagged_codes = {p.code for p in probes if p.flag}
    some = {p.id for p in probes if p.number % 3 == 1}
    latest = {p.code: p for p in sorted(probes, key=lambda p: (p.happened_at, p.id))}
    newest_flagged = {code for code, p in latest.items() if p.flag}
    return [
        (None, lambda p: True),
        (F("flag") == True, lambda p: p.flag),  # noqa: E712
        (F("number") >= 2, lambda p: p.number >= 2),
        (F("id").in_(some), lambda p: p.id in some),
        (F("sponsor_id").is_null(), lambda p: p.sponsor_id is None),
        (F("happened_at") >= ago(hours=20), lambda p: p.happened_at >= _NOW - dt.timedelta(hours=20)),
        (F("owner_id").among(Customer, F("tags").contains("vip")), lambda p: p.owner_id in vip),
        (F("code").in_(Select(Probe, "code", F("flag") == True)), lambda p: p.code in flagged_codes),  # noqa: E712
        (
            F("code").in_(Select(Probe, "code", _SOURCES, first_by="-happened_at", first_where=F("flag") == True)),  # noqa: E712
            lambda p: p.code in newest_flagged,
        ),
        (F("attributes.tier") >= 2, lambda p: int(p.attributes.get("tier", 0)) >= 2),  # type: ignore[call-overload]
    ]


#: For each probe field, what ``values`` may give it: an option is built from (customers, conditions).
_OPTIONS: dict[str, tuple[Callable[[list[Customer], list[Any]], Any], ...]] = {
    "owner_id": (lambda c, t: F("owner_id"), lambda c, t: Const(c[1].id)),
    "number": (lambda c, t: F("number"),),  # the new record's number says which source it was built from
    "note": (
        lambda c, t: F("parts.label").first(),
        lambda c, t: F("code"),
        lambda c, t: Const(None),
        lambda c, t: "a note ☃",
        lambda c, t: None,  # left out
    ),
    "flag": (  # 0 and 1 are tests, built by _given
        lambda c, t: t[0],
        lambda c, t: t[1],
        lambda c, t: F("flag"),
        lambda c, t: True,
        lambda c, t: None,
    ),
    "amount": (lambda c, t: F("amount"), lambda c, t: Decimal("-1.50")),
    "currency": (lambda c, t: F("currency"), lambda c, t: "USD"),
    "happened_at": (lambda c, t: F("happened_at"), lambda c, t: F("created_at"), lambda c, t: at(2025, 6, 1, offset=2)),
    "day": (lambda c, t: F("day"), lambda c, t: dt.date(2030, 1, 1), lambda c, t: None),
    "token": (
        lambda c, t: F("id"),
        lambda c, t: F("token"),
        lambda c, t: F("parts.token").first(),
        lambda c, t: F("sponsor_id"),
        lambda c, t: None,
    ),
    "colour": (lambda c, t: F("colour"), lambda c, t: "green", lambda c, t: None),
    "labels": (lambda c, t: F("labels"), lambda c, t: {"z"}, lambda c, t: None),
    "parts": (lambda c, t: F("parts"), lambda c, t: None),
    "sponsor_id": (
        lambda c, t: F("sponsor_id"),
        lambda c, t: F("owner_id"),
        lambda c, t: Const(c[2].id),
        lambda c, t: None,
    ),
    "guard_id": (lambda c, t: F("owner_id"), lambda c, t: None),
    "about": (lambda c, t: F("about"), lambda c, t: Ref("customers", c[0].id), lambda c, t: None),
    "blob": (lambda c, t: F("blob"), lambda c, t: b"\x00\xff", lambda c, t: None),
    "attributes": (lambda c, t: F("attributes"), lambda c, t: {"k": Decimal("1.5")}, lambda c, t: None),
}


def _given(
    picked: dict[str, int], customers: list[Customer], tested: tuple[Expr | None, Callable[[Probe], bool]], code: str
) -> tuple[dict[str, Any], Callable[[Probe], bool]]:
    """The ``values`` of one add_from (each field's picked option, the code given) and the reference of ``flag``."""
    condition, passes = tested
    small_flagged = (F("flag") == True) & (F("number") >= 1)  # noqa: E712
    tests = [Test(ALL if condition is None else condition), small_flagged]  # a Test, and a condition taken as one
    values: dict[str, Any] = {"code": code}
    for name, index in picked.items():
        options = _OPTIONS[name]
        value = options[index % len(options)](customers, tests)
        if value is not None:
            values[name] = value
    flag = picked["flag"] % len(_OPTIONS["flag"])
    return values, passes if flag == 0 else (lambda p: p.flag and p.number >= 1)


def _expected(
    crm: CRM, source: Probe, values: dict[str, Value], tests: dict[str, Callable[[Probe], bool]]
) -> dict[str, Any]:
    """The reference: the fields of the record built from ``source``, computed in Python."""
    spec = crm.schema.spec(Probe)
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Const):
            fields[name] = value.value
        elif isinstance(value, Copy):
            fields[name] = copied(spec, source, value)
        else:
            fields[name] = tests[name](source)
    return fields


def _reference(
    crm: CRM, values: dict[str, Value], tests: dict[str, Callable[[Probe], bool]]
) -> Callable[[Probe], dict[str, Any]]:
    return lambda source: _expected(crm, source, values, tests)


def _made(crm: CRM, code: str) -> list[Probe]:
    """The probes built under ``code``, in id order."""
    return list(crm.records(Probe).scan(F("code") == code, order_by="id"))


def _check_built(
    crm: CRM, made: Sequence[Probe], sources: list[Probe], want: Callable[[Probe], dict[str, Any]], stamp: dt.datetime
) -> None:
    """``made`` holds one record per source, in source-id order, each the reference's and as ``get`` reads it."""
    assert len(made) == len(sources), (len(made), len(sources))
    ids = [r.id for r in made]
    assert len(set(ids)) == len(ids) and ids == sorted(ids), "ids must increase in the order of the source ids"
    assert not {r.id for r in sources} & set(ids), "new records have new ids"
    for record, source in zip(made, sources, strict=True):
        expected = Probe(id=record.id, created_at=stamp, updated_at=stamp, version=1, **want(source))
        assert_exact(expected, record, f"built from probe {source.number}")
        assert_exact(record, crm.records(Probe).get(record.id), "read back")
        assert record.external_id is None and record.version == 1 and record.created_at == record.updated_at
        # text declared search=True is searchable in the records built in the store, as in those added
        found = F("id") == record.id
        assert crm.records(Probe).count(found & F("code").matches(record.code)) == 1, record.code
        if record.note is not None:
            word = "note" if "note" in record.note else record.note
            assert crm.records(Probe).count(found & F("note").matches(word)) == 1, record.note


#: Sources of the tests that are not property tests: user:a owns (the owner of) probes 0, 3 and 4.
_FIXED: list[Source] = [
    (0, "a", True, 0, None, (("x", True),), 1),
    (1, "b", False, 1, 0, (), 2),
    (2, "c", True, 2, 1, (("y", False), ("x", True)), 3),
    (0, "b", False, 2, None, (), 0),
    (0, "c", True, 1, 2, (("x", False),), 2),
]


def _basic(code: Any = "copy", **more: Any) -> dict[str, Any]:
    """Values that build a valid probe from any probe: its owner and number, a condition for the flag."""
    return {
        "owner_id": F("owner_id"),
        "code": code,
        "number": F("number"),
        "amount": F("amount"),
        "currency": F("currency"),
        "happened_at": F("happened_at"),
        "flag": F("number") >= 2,
        **more,
    }


def _tally(**more: Any) -> dict[str, Any]:
    return {"probe_id": F("id"), "batch": 1, "label": "UP", **more}


class AddFromContract(ProbeContractBase):
    """``add_from``: records built in the store from other records, against a reference computed in Python."""

    @pytest.fixture
    def crmkit_backend(
        self,
        crmkit_url: str,
        crmkit_connect_options: dict[str, Any],
        crmkit_plugins: tuple[object, ...],
        crmkit_backends: BackendPool,
    ) -> Backend:
        """The store under test, with the probes, probe links and tallies declared."""
        extra = () if TALLIES_PLUGIN in crmkit_plugins else (TALLIES_PLUGIN,)
        return crmkit_backends.get(crmkit_url, crmkit_connect_options, (*crmkit_plugins, *extra))

    def _crm(
        self, backend: Backend, *plugins: object, actor: str | None = None, tenant: str | None = None
    ) -> tuple[CRM, Clock]:
        clock = Clock(_NOW)
        return backend.crm(clock=clock, plugins=plugins, actor=actor, tenant=tenant), clock

    def test_built_records_match_the_reference(self, crmkit_backend: Backend) -> None:
        @conformance_settings(max_examples=20, suppress_health_check=[HealthCheck.differing_executors])
        @given(
            sources=_sources(),
            where=st.integers(0, 9),
            test=st.integers(0, 9),
            picked=st.fixed_dictionaries({name: st.integers(0, 4) for name in _OPTIONS}),
        )
        def check(sources: list[Source], where: int, test: int, picked: dict[str, int]) -> None:
            recorder = _Recorder()
            crm, clock = self._crm(crmkit_backend, recorder)
            customers, probes = _plant(crm, sources)
            conditions = _conditions(customers, probes)
            condition, matches = conditions[where]
            spec = crm.schema.declared["crmkit_probes"]
            bound = bind(
                relative_to(condition & _SOURCES if condition is not None else _SOURCES, _NOW), spec, crm.schema
            )
            chosen = sorted((p for p in probes if matches(p)), key=lambda p: p.id)
            if where in (1, 2, 3, 4, 9):  # no sub-query, no relative instant: evaluate is the reference too
                assert chosen == sorted((p for p in probes if evaluate(bound, spec, p)), key=lambda p: p.id)
            given_values, flagged = _given(picked, customers, conditions[test], "copy")
            tests = {"flag": flagged}

            recorder.before.clear()
            recorder.after.clear()
            head = crm.events.head()
            clock.advance(seconds=1)
            stamp = crm.now()
            result = crm.records(Probe).add_from(
                Probe, _SOURCES if condition is None else condition & _SOURCES, values=given_values
            )
            assert result.added == len(chosen) and result.skipped == 0
            values = bound_values(crm, spec, spec, given_values)

            made = _made(crm, "copy")
            _check_built(crm, made, chosen, _reference(crm, values, tests), stamp)
            # events, before and after the commit, the audit trail and the feed: as add_many's
            assert_same = [(r.id, r.version) for r in made]
            assert [(r.id, r.version) for r in recorder.created(recorder.before)] == assert_same
            assert [(r.id, r.version) for r in recorder.created(recorder.after)] == assert_same
            for record in made:
                history = list(crm.audit.history(record))
                assert history and {c.action for c in history} == {"created"} and {c.version for c in history} == {1}
                assert_exact(record, crm.audit.as_of(record, at=stamp), "the audit trail's record")
            fed = [e for e in crm.events.read(after=head, limit=10_000) if e.aggregate == spec.name]
            assert [(e.action, e.record_id) for e in fed] == [("created", r.id) for r in made]
            for event, record in zip(fed, made, strict=True):
                assert_exact(record, event.after, "the feed's record")

            # the repository's own insert_from, and crmkit.store.Repository's default, on the same records
            repo = crm.store.repository(spec)
            for code, insert in (("again", repo.insert_from), ("default", lambda *a: Repository.insert_from(repo, *a))):
                values = bound_values(crm, spec, spec, {**given_values, "code": code})
                clock.advance(seconds=1)
                stamp = crm.now()
                with crm.transaction():
                    returned = insert(crm.tenant, repo, bound, values, stamp)
                _check_built(crm, returned, chosen, _reference(crm, values, tests), stamp)
                assert [r.id for r in returned] == [r.id for r in _made(crm, code)]

        check()

    def test_nothing_matched_writes_nothing(self, crmkit_backend: Backend) -> None:
        recorder = _Recorder()
        crm, _ = self._crm(crmkit_backend, recorder)
        _plant(crm, _FIXED)
        count, head = crm.records(Probe).count(), crm.events.head()
        recorder.after.clear()
        assert crm.records(Probe).add_from(Probe, F("number") > 100, values=_basic()) == BulkResult(0, 0)
        assert crm.records(ProbeTally).add_from("crmkit_probes", F("code") == "z", values=_tally()) == BulkResult(0, 0)
        assert crm.records(Probe).count() == count and crm.records(ProbeTally).count() == 0
        assert recorder.after == [] and list(crm.events.read(after=head)) == []

    def test_a_unique_key_taken_writes_nothing(self, crmkit_backend: Backend) -> None:
        recorder = _Recorder()
        crm, _ = self._crm(crmkit_backend, recorder)
        _plant(crm, _FIXED)
        assert crm.records(Probe).add_from(Probe, F("number") >= 3, values=_basic()).added == 2
        count, head = crm.records(Probe).count(), crm.events.head()
        recorder.after.clear()
        with pytest.raises(ConflictError):  # probes 0 to 2 would be new, 3 and 4 were built already
            crm.records(Probe).add_from(Probe, _SOURCES, values=_basic())
        tallies = crm.records(ProbeTally)
        assert tallies.add_from(Probe, F("number") == 1, values=_tally()).added == 1
        with pytest.raises(ConflictError):  # probe 1's tally of batch 1 is stored
            tallies.add_from(Probe, _SOURCES, values=_tally())
        with pytest.raises(ConflictError), crm.transaction():  # the caller's transaction: undone whole
            tallies.add_from(Probe, F("number") == 0, values=_tally())
            tallies.add_from(Probe, F("number") <= 1, values=_tally())
        assert (
            crm.records(Probe).count() == count
            and [t.probe_id for t in tallies.scan()]
            == [p.id for p in crm.records(Probe).scan(F("number") == 1, order_by="id")][:1]
        )
        assert recorder.created(recorder.after) == [] and not [
            e for e in crm.events.read(after=head) if e.aggregate == "crmkit_probes"
        ]

    @pytest.mark.requires("transactions")
    def test_it_joins_the_callers_transaction(self, crmkit_backend: Backend) -> None:
        recorder = _Recorder()
        crm, _ = self._crm(crmkit_backend, recorder)
        _, probes = _plant(crm, _FIXED[:2])
        recorder.after.clear()
        with pytest.raises(_Boom), crm.transaction():
            late = crm.records(Probe).add(
                attrs.evolve(probes[0], id=uuid.uuid4(), version=0, number=9)
            )  # written in the transaction, read by add_from in it
            assert crm.records(Probe).add_from(Probe, _SOURCES, values=_basic()).added == 3
            assert {p.number for p in _made(crm, "copy")} == {0, 1, 9}
            assert crm.records(ProbeTally).add_from(Probe, F("id") == late.id, values=_tally()).added == 1
            raise _Boom
        assert crm.records(Probe).count() == 2 and crm.records(ProbeTally).count() == 0
        assert recorder.after == []
        with crm.transaction():
            crm.records(Probe).add_from(Probe, _SOURCES, values=_basic())
            crm.records(Probe).add_from(Probe, _SOURCES, values=_basic("again"))
        assert len(_made(crm, "copy")) == len(_made(crm, "again")) == 2
        assert len(recorder.created(recorder.after)) == 4

    def test_bad_values_are_refused_naming_the_field(self, crmkit_backend: Backend) -> None:
        crm, _ = self._crm(crmkit_backend)
        _, probes = _plant(crm, _FIXED)
        probe, tally, link = crm.records(Probe), crm.records(ProbeTally), crm.records(ProbeLink)
        missing = uuid.UUID(int=12345)
        contact = {"customer_id": F("id"), "channel": "email", "direction": "inbound", "occurred_at": _NOW}
        cases: list[tuple[Any, Any, Any, str]] = [
            (probe, "no_such_aggregate", _basic(), "source"),
            (probe, 42, _basic(), "source"),
            (probe, Probe, [("code", "x")], "values"),
            (probe, Probe, _basic(nope=1), "nope"),
            (probe, Probe, _basic(id=F("id")), "id"),
            (probe, Probe, _basic(external_id="x"), "external_id"),
            (probe, Probe, _basic(version=F("version")), "version"),
            (probe, Probe, _basic(created_at=F("created_at")), "created_at"),
            (probe, Probe, {k: v for k, v in _basic().items() if k != "currency"}, "currency"),
            # copies of what the source does not have, or through a list without first()
            (probe, Probe, _basic(note=F("nope")), "note"),
            (probe, Probe, _basic(note=F("parts.label")), "note"),
            (probe, Probe, _basic(note=F("parts.nope").first()), "note"),
            (probe, Probe, _basic(note=F("code").first()), "note"),
            (probe, Probe, _basic(note=F("attributes.tier")), "note"),
            # copies of another type, or that may be missing into a required field
            (probe, Probe, _basic(number=F("amount")), "number"),
            (probe, Probe, _basic(code=F("number")), "code"),
            (probe, Probe, _basic(happened_at=F("day")), "happened_at"),
            (probe, Probe, _basic(flag=F("code")), "flag"),
            (probe, Probe, _basic(token=F("code")), "token"),
            (probe, Probe, _basic(colour=F("code")), "colour"),
            (probe, Probe, _basic(labels=F("code")), "labels"),
            (probe, Probe, _basic(code=F("note")), "code"),
            (probe, Probe, _basic(happened_at=F("parts.at").first()), "happened_at"),
            (probe, Probe, _basic(flag=F("parts.flag").first()), "flag"),
            (probe, Probe, _basic(owner_id=F("sponsor_id")), "owner_id"),
            (tally, Probe, _tally(cost=F("amount")), "cost"),  # negative amounts into a non-negative one
            (tally, Probe, _tally(mark=F("code")), "mark"),  # any text into a field of choices
            # references: from the referred aggregate's id, or a reference to it
            (probe, Probe, _basic(owner_id=F("id")), "owner_id"),
            (probe, Probe, _basic(sponsor_id=F("token")), "sponsor_id"),
            (link, Probe, {"probe_id": F("owner_id"), "rank": 1, "linked_at": _NOW}, "probe_id"),
            (link, Probe, {"probe_id": F("id"), "rank": 1, "linked_at": _NOW, "previous_id": F("id")}, "previous_id"),
            # conditions fill boolean fields only
            (probe, Probe, _basic(number=F("flag") == True), "number"),  # noqa: E712
            (probe, Probe, _basic(note=Test(F("flag") == True)), "note"),  # noqa: E712
            (probe, Probe, _basic(flag=F("nope") == 1), "nope"),
            (probe, Probe, _basic(flag=F("colour") == 3), "colour"),
            # constants the field refuses, references to no record
            (probe, Probe, _basic(currency="EURO"), "currency"),
            (probe, Probe, _basic(number="1"), "number"),
            (probe, Probe, _basic(colour="purple"), "colour"),
            (probe, Probe, _basic(amount=1.5), "amount"),
            (probe, Probe, _basic(code=""), "code"),
            (probe, Probe, _basic(owner_id=None), "owner_id"),
            (probe, Probe, _basic(sponsor_id=missing), "sponsor_id"),
            (probe, Probe, _basic(owner_id=probes[0].id), "owner_id"),  # a probe's id is no customer's
            (probe, Probe, _basic(about=Ref("customers", missing)), "about"),
            (tally, Probe, _tally(label="lower"), "label"),
            (tally, Probe, _tally(mark="warm"), "mark"),
            (tally, Probe, _tally(cost=Decimal(-1)), "cost"),
            # a field with a check= function takes copies only of a field with the very same check
            (tally, Probe, _tally(label=F("code")), "label"),
            # a service's own rules (a registered channel) apply to the built records, in their transaction
            (crm.interactions, Customer, {**contact, "channel": "pigeon"}, "channel"),
            # an aggregate that checks a record as a whole in Python takes only constants
            (crm.records(Segment), Customer, {"name": F("name"), "kind": "static"}, "values"),
            (crm.records(Segment), Customer, {"name": "VIPs", "kind": "dynamic"}, "where"),
        ]
        for service, source, values, field in cases:
            with pytest.raises(ValidationError) as raised:
                service.add_from(source, _SOURCES if source is Probe else None, values=values)
            assert raised.value.field == field, (values, raised.value)
        with pytest.raises(ValidationError, match="check") as raised:
            tally.add_from(Probe, values=_tally(label=F("code")))
        assert "stores cannot run" in raised.value.message
        with pytest.raises(ValidationError) as raised:
            probe.add_from(Probe, F("nope") == 1, values=_basic())
        assert raised.value.field == "nope"
        assert probe.count() == len(_FIXED) and tally.count() == 0 and link.count() == 0
        assert crm.interactions.count() == 0 and crm.records(Segment).count() == 0
        assert crm.interactions.add_from(Customer, values=contact).added == 3
        # what fits: a reference from the referred aggregate's id or a reference to it, nullable into nullable,
        # a checked field copied from one with the very same check, constants that pass the field's checks
        assert (
            link.add_from(Probe, values={"probe_id": F("id"), "rank": F("number"), "linked_at": F("happened_at")}).added
            == 5
        )
        assert (
            link.add_from(
                ProbeLink, values={"probe_id": F("probe_id"), "rank": 10, "linked_at": _NOW, "previous_id": F("id")}
            ).added
            == 5
        )
        made = tally.add_from(
            Probe, _SOURCES, values=_tally(mark="hot", cost=Decimal("2.50"), held=F("parts.flag").first())
        )
        assert made.added == 5
        again = tally.add_from(ProbeTally, values={"probe_id": F("probe_id"), "batch": 2, "label": F("label")})
        assert again.added == 5 and {t.label for t in tally.scan()} == {"UP"}
        held = {t.probe_id: t.held for t in tally.scan(F("batch") == 1)}
        assert held == {p.id: (p.parts[0].flag if p.parts else None) for p in probes}

    def test_access_policy_reads_and_checks_as_the_actor(self, crmkit_backend: Backend) -> None:
        root, _ = self._crm(crmkit_backend)
        customers, probes = _plant(root, _FIXED)
        seen = [p.number for p in probes if p.owner_id == customers[0].id]
        mine, _ = self._crm(crmkit_backend, OwnerPolicy(), actor="user:a", tenant=root.tenant)
        assert mine.records(Probe).add_from(Probe, _SOURCES, values=_basic()).added == len(seen)
        assert [p.number for p in _made(root, "copy")] == seen
        # a constant reference to a record out of the actor's sight is no record to it
        with pytest.raises(ValidationError) as raised:
            mine.records(Probe).add_from(Probe, _SOURCES, values=_basic("again", owner_id=customers[1].id))
        assert raised.value.field == "owner_id"
        # every new record is checked as add checks it: one refused, none written
        vetoed, _ = self._crm(crmkit_backend, OwnerPolicy(), _Veto(), actor="user:a", tenant=root.tenant)
        with pytest.raises(AccessDenied):
            vetoed.records(Probe).add_from(Probe, _SOURCES, values=_basic("vetoed"))
        assert _made(root, "vetoed") == [] and _made(root, "again") == []
        assert vetoed.records(Probe).add_from(Probe, _SOURCES & (F("number") != 3), values=_basic("kept")).added == 2
        nobody, _ = self._crm(crmkit_backend, OwnerPolicy(), actor="user:z", tenant=root.tenant)
        assert nobody.records(ProbeTally).add_from(Probe, values=_tally()).added == 0

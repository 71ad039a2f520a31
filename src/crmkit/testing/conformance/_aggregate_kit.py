"""What the generic contract shares: the aggregates it runs for, the probe, records made to order, exact equality.

The generic contract is collected once per declared aggregate: those the installed
plugins declare, the probe (``crmkit.testing.probe``, always), and the classes a test
module lists in ``CRMKIT_AGGREGATES`` (for aggregates of plugins not installed as a
distribution). Its store is the suite's store opened with the probe's plugin (and one
for ``CRMKIT_AGGREGATES``) added to the ``crmkit_plugins`` fixture.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest

import crmkit
from crmkit import Customer
from crmkit._host import PluginHost
from crmkit.crm import CRM, Records
from crmkit.schema import AggregateSpec
from crmkit.testing.aggregates import REF_ANY_TARGETS, Targets, add_targets, example_record, unique_keys_of
from crmkit.testing.conformance._harness import ClockedContractBase, ContractBase
from crmkit.testing.probe import Probe, ProbeLinksPlugin

__all__ = [
    "PROBE_PLUGIN",
    "AggregateContractBase",
    "AggregateKit",
    "add_probes",
    "assert_exact",
    "collected_aggregates",
    "delete_target",
    "exact",
]

#: The plugin of the probe and the probe links, one object for the whole session (stores are
#: pooled by plugin identity).
PROBE_PLUGIN = ProbeLinksPlugin()


class _DeclaredBy:
    """A plugin whose ``crmkit_aggregates`` returns the classes a test module lists."""

    def __init__(self, classes: Iterable[type]) -> None:
        self.classes = tuple(classes)

    @crmkit.hookimpl
    def crmkit_aggregates(self) -> Iterable[type]:
        return self.classes


_MODULE_PLUGINS: dict[tuple[type, ...], _DeclaredBy] = {}
_COLLECTED: dict[tuple[type, ...], tuple[str, ...]] = {}


def _module_plugins(module: types.ModuleType | None) -> tuple[object, ...]:
    classes = tuple(getattr(module, "CRMKIT_AGGREGATES", ()) or ())
    if not classes:
        return (PROBE_PLUGIN,)
    plugin = _MODULE_PLUGINS.setdefault(classes, _DeclaredBy(classes))
    return (PROBE_PLUGIN, plugin)


def collected_aggregates(module: types.ModuleType | None = None) -> tuple[str, ...]:
    """The declared aggregates the generic contract is collected for: installed plugins', the probe, the module's."""
    key = tuple(getattr(module, "CRMKIT_AGGREGATES", ()) or ())
    if key not in _COLLECTED:
        host = PluginHost(plugins=_module_plugins(module))
        derived = host.schema().derived  # less those crmkit alone writes (the audit trail, the event feed)
        written_by_users = (n for n, s in derived.items() if not getattr(s.cls, "__crmkit_append_only__", False))
        _COLLECTED[key] = tuple(sorted(written_by_users))
    return _COLLECTED[key]


class ProbeContractBase(ContractBase):
    """A contract whose store is opened with the probe aggregates declared (they reference customers)."""

    def contract_plugins(self, module: types.ModuleType | None) -> tuple[object, ...]:
        return (PROBE_PLUGIN,)


def add_probes(
    crm: CRM,
    owners: Sequence[Customer],
    probes: Iterable[tuple[Any, ...]],
    fields: Callable[..., Mapping[str, Any]],
) -> list[Probe]:
    """Store the probes that random tuples ``(owner, code, number, *rest)`` describe, as stored.

    ``(owner, code, number)`` is the probe's unique key (``owner`` an index into ``owners``,
    taken modulo their number): one probe a key, the last tuple of a key giving ``rest``, in
    the order the keys first come. ``fields(i, *rest)`` (``i`` counts the probes) gives the
    fields that vary from contract to contract, ``happened_at`` at least; the amount is the
    number unless it gives one, and the currency is EUR.
    """
    unique = {(o % len(owners), code, number): rest for o, code, number, *rest in probes}
    records = crm.records(Probe)
    return [
        records.add(
            Probe(
                owner_id=owners[o].id,
                code=code,
                number=number,
                **{"amount": Decimal(number), "currency": "EUR", **fields(i, *rest)},
            )
        )
        for i, ((o, code, number), rest) in enumerate(unique.items())
    ]


class AggregateContractBase(ClockedContractBase):
    """Fixtures of the generic contract: ``aggregate`` (a name, one test per declared aggregate), ``spec``, ``kit``."""

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "aggregate" in metafunc.fixturenames:
            metafunc.parametrize("aggregate", collected_aggregates(metafunc.module))

    def contract_plugins(self, module: types.ModuleType | None) -> tuple[object, ...]:
        """The probe, and the module's ``CRMKIT_AGGREGATES``."""
        return _module_plugins(module)

    @pytest.fixture
    def spec(self, crm: CRM, aggregate: str) -> AggregateSpec:
        declared = crm.schema.derived
        if aggregate not in declared:
            pytest.fail(f"{aggregate} was collected but the store's connection does not declare it: {sorted(declared)}")
        return declared[aggregate]

    @pytest.fixture
    def kit(self, timed: CRM, spec: AggregateSpec) -> AggregateKit:
        return AggregateKit(timed, spec)


# --------------------------------------------------------------------------- records made to order


class AggregateKit:
    """Records of one aggregate for one CRM: targets for its references, new records that hold no taken key.

    The targets are written by ``add_targets``, in bulk (``add_many`` in one transaction, as
    ``add`` would store them); ``add`` writes a record of the aggregate itself one at a time.
    """

    def __init__(self, crm: CRM, spec: AggregateSpec, *, count: int = 3) -> None:
        self.crm = crm
        self.spec = spec
        if any(all(spec.declared[f].kind == "ref" for f in key) for key in spec.unique if len(key) > 1):
            # a key of references alone (a campaign and a customer) has only as many values as
            # pairs of targets: enough of them for the records a contract makes
            count = max(count, 8)
        self.targets: Targets = add_targets(crm, spec, count=count)
        self.service: Records[Any] = crm.records(spec.name)
        # an aggregate derived from others (identity_keys from customers) starts empty all the same
        for derived in list(self.service.stream()):
            self.service.delete(derived.id)
        self._next = 0
        self._held: dict[tuple[str, tuple[Any, ...]], uuid.UUID] = {}

    def _example(self, fields: dict[str, Any], free: Callable[[str], bool]) -> Any:
        for _ in range(500):
            n, self._next = self._next, self._next + 1
            record = example_record(self.spec, n, targets=self.targets, **fields)
            if all(key not in self._held for key in unique_keys_of(self.spec, record) if free(key[0])):
                return record
        raise AssertionError(f"no new {self.spec.name} record with {fields} holds a free unique key")

    def build(self, **fields: Any) -> Any:
        """A new record that holds the keys ``fields`` give, taken or not, and only free keys otherwise."""
        return self._example(fields, lambda key: not set(key.split(",")) <= set(fields))

    def new(self, **fields: Any) -> Any:
        """A new record of the aggregate whose id, external id and unique keys no record of this kit holds."""
        return self._example(fields, lambda key: True)

    def edited(self, record: Any, **fields: Any) -> Any:
        """``record`` with every declared field rewritten (references too), id and record fields kept."""
        fresh = self.new(**fields)
        return attrs.evolve(record, **{name: getattr(fresh, name) for name in self.spec.declared})

    def hold(self, *records: Any) -> None:
        """Note the keys of stored records, so that ``new`` stays clear of them."""
        for record in records:
            for key in unique_keys_of(self.spec, record):
                self._held[key] = record.id

    def release(self, *records: Any) -> None:
        for record in records:
            for key in unique_keys_of(self.spec, record):
                if self._held.get(key) == record.id:
                    del self._held[key]

    def add(self, **fields: Any) -> Any:
        stored = self.service.add(self.new(**fields))
        self.hold(stored)
        return stored


def delete_target(crm: CRM, aggregate: str, id: uuid.UUID) -> None:
    """Delete a record of any aggregate through its service."""
    if aggregate in ("customers", "interactions", "transactions", "relationships"):
        getattr(crm, aggregate).delete(id)
    else:
        crm.records(aggregate).delete(id)


def ref_targets(spec: AggregateSpec, field: str) -> tuple[str, ...]:
    """The aggregates a reference field may point at."""
    ref = next(r for r in spec.references if r.field == field)
    return (ref.target,) if ref.target is not None else REF_ANY_TARGETS


# --------------------------------------------------------------------------- exact equality


def exact(value: Any) -> Any:
    """A form of ``value`` that is equal only for exactly equal values.

    Python's ``==`` says ``Decimal("1.0") == Decimal("1")``, ``1 == 1.0 == True`` and
    a round trip must keep those apart. Datetimes compare as instants, and must be aware.
    """
    if value is None or (isinstance(value, str) and type(value) is str):
        return value
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, value.name)
    if isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            return ("naive datetime", value.isoformat())
        return ("datetime", value.astimezone(dt.timezone.utc).isoformat())
    if isinstance(value, dt.date):
        return ("date", value.isoformat())
    if isinstance(value, uuid.UUID):
        return ("UUID", str(value))
    if isinstance(value, (frozenset, set)):
        return ("frozenset", tuple(sorted((exact(v) for v in value), key=repr)))
    if isinstance(value, tuple):
        return ("tuple", tuple(exact(v) for v in value))
    if isinstance(value, list):
        return ("list", tuple(exact(v) for v in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted(((str(k), exact(v)) for k, v in value.items()), key=repr)))
    if attrs.has(type(value)):
        return (
            type(value).__qualname__,
            tuple((a.name, exact(getattr(value, a.name))) for a in attrs.fields(type(value))),
        )
    return ("other", type(value).__qualname__, repr(value))


def _differences(path: str, want: Any, got: Any, out: list[str]) -> None:
    if exact(want) == exact(got):
        return
    if attrs.has(type(want)) and type(got) is type(want):
        for a in attrs.fields(type(want)):
            _differences(f"{path}.{a.name}" if path else a.name, getattr(want, a.name), getattr(got, a.name), out)
        return
    if isinstance(want, tuple) and isinstance(got, tuple) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            _differences(f"{path}[{i}]", w, g, out)
        return
    if isinstance(want, Mapping) and isinstance(got, Mapping) and set(want) == set(got):
        for key in want:
            _differences(f"{path}.{key}", want[key], got[key], out)
        return
    out.append(f"{path}: stored {type(want).__name__} {want!r}, read back {type(got).__name__} {got!r}")


def assert_exact(want: Any, got: Any, context: str = "") -> None:
    """``got`` is exactly ``want``: same types, Decimal exponents, UTC datetimes, enum members, nested values."""
    if exact(want) == exact(got):
        return
    out: list[str] = []
    _differences("", want, got, out)
    where = f" ({context})" if context else ""
    raise AssertionError(f"read back a different record{where}:\n  " + "\n  ".join(out or [f"{want!r} != {got!r}"]))

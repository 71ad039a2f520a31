"""What every contract class shares: the fixtures, capability skips, Hypothesis settings, small builders."""

from __future__ import annotations

import datetime as dt
import os
import threading
import types
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from crmkit.crm import CRM
from crmkit.customers import Customer
from crmkit.interactions import Interaction
from crmkit.relationships import Relationship
from crmkit.store import Capabilities
from crmkit.testing._backends import Backend, BackendPool
from crmkit.transactions import Transaction

__all__ = [
    "PROFILE",
    "Clock",
    "ClockedContractBase",
    "ContractBase",
    "at",
    "conformance_settings",
    "contact",
    "edge",
    "organization",
    "person",
    "purchase",
    "sample_customer",
    "sample_history",
]

_CAPABILITIES = tuple(a.name for a in attrs.fields(Capabilities))

#: The Hypothesis profile every property test of the suite starts from. It is registered only if
#: missing, so a backend's conftest.py may register its own (more examples in a nightly run, no
#: shrinking while bisecting) before the suite is imported.
PROFILE = "crmkit-conformance"

try:
    settings.get_profile(PROFILE)
except InvalidArgument:
    # Deterministic runs (the same examples every time, no .hypothesis folder written), so a
    # backend's CI never flickers; the example counts keep the whole suite fast on a real server.
    settings.register_profile(
        PROFILE,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _examples_scale() -> float:
    """``CRMKIT_CONFORMANCE_SCALE``: a factor on every property test's example count (default 1)."""
    text = os.environ.get("CRMKIT_CONFORMANCE_SCALE", "1")
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"CRMKIT_CONFORMANCE_SCALE must be a number, not {text!r}") from None
    if not scale > 0:
        raise ValueError(f"CRMKIT_CONFORMANCE_SCALE must be above 0, not {text!r}")
    return scale


def conformance_settings(max_examples: int = 25, **overrides: Any) -> settings:
    """Settings for a property test of the suite: the crmkit-conformance profile, with few examples.

    Health checks to suppress are added to the profile's, not put in their place. The
    environment variable ``CRMKIT_CONFORMANCE_SCALE`` multiplies every test's example count
    (at least one each): ``0.1`` for a quick run of every contract (the packaging test),
    ``10`` for a nightly one.
    """
    max_examples = max(1, round(max_examples * _examples_scale()))
    profile = settings.get_profile(PROFILE)
    if "suppress_health_check" in overrides:
        overrides["suppress_health_check"] = [*profile.suppress_health_check, *overrides["suppress_health_check"]]
    return settings(profile, max_examples=max_examples, **overrides)


class ContractBase:
    """Fixtures of the conformance suite; subclasses are the contracts (not collected by their name).

    The store comes from the ``crmkit_url`` fixture (pytest plugin ``crmkit``), so a backend's
    own test module overrides that one fixture to run every contract against its server.
    """

    def contract_plugins(self, module: types.ModuleType | None) -> tuple[object, ...]:
        """Plugins the contract's store is opened with besides the suite's (``crmkit_plugins``): none."""
        return ()

    @pytest.fixture
    def crmkit_backend(
        self,
        request: pytest.FixtureRequest,
        crmkit_url: str,
        crmkit_connect_options: dict[str, Any],
        crmkit_plugins: tuple[object, ...],
        crmkit_backends: BackendPool,
    ) -> Backend:
        """The store under test, opened once per session, URL and plugins (``contract_plugins`` added)."""
        extra = tuple(p for p in self.contract_plugins(request.module) if p not in crmkit_plugins)
        return crmkit_backends.get(crmkit_url, crmkit_connect_options, (*crmkit_plugins, *extra))

    @pytest.fixture(autouse=True)
    def _crmkit_requires(self, request: pytest.FixtureRequest, crmkit_backend: Backend) -> None:
        for marker in request.node.iter_markers("requires"):
            for name in marker.args:
                if name not in _CAPABILITIES:
                    known = ", ".join(_CAPABILITIES)
                    pytest.fail(f"@pytest.mark.requires({name!r}): unknown capability (known: {known})")
                if not getattr(crmkit_backend.capabilities, name):
                    pytest.skip(f"{crmkit_backend.url} does not declare the {name!r} capability")

    @pytest.fixture
    def crm(self, crmkit_backend: Backend) -> CRM:
        """A CRM on the store under test, for a tenant no other test uses."""
        return crmkit_backend.crm()

    @pytest.fixture
    def capabilities(self, crmkit_backend: Backend) -> Capabilities:
        return crmkit_backend.capabilities


class ClockedContractBase(ContractBase):
    """A contract whose tests set the time: ``clock`` (a ``Clock``) and ``timed`` (a CRM that reads it)."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock(at(2025, 3, 1, 9, 30, 0, 123456))

    @pytest.fixture
    def timed(self, crmkit_backend: Backend, clock: Clock) -> CRM:
        """A CRM whose ``now()`` the test controls."""
        return crmkit_backend.crm(clock=clock)


class Clock:
    """A settable clock for ``CRM(clock=...)``: tests decide what ``crm.now()`` returns."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, **delta: float) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(**delta)
            return self._now


def at(
    year: int,
    month: int = 1,
    day: int = 1,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
    *,
    offset: float = 0,
) -> dt.datetime:
    """An aware datetime at a UTC offset in hours."""
    tz = dt.timezone(dt.timedelta(hours=offset))
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def person(name: str = "Ada Lovelace", **fields: Any) -> Customer:
    return Customer(kind="person", name=name, **fields)


def organization(name: str = "Acme SRL", **fields: Any) -> Customer:
    return Customer(kind="organization", name=name, **fields)


def purchase(
    customer: Customer, amount: str | int | Decimal, when: dt.datetime, currency: str = "EUR", **fields: Any
) -> Transaction:
    return Transaction(customer_id=customer.id, occurred_at=when, amount=Decimal(amount), currency=currency, **fields)


def contact(customer: Customer, when: dt.datetime, channel: str = "email", **fields: Any) -> Interaction:
    fields.setdefault("direction", "inbound")
    return Interaction(customer_id=customer.id, channel=channel, occurred_at=when, **fields)


def edge(source: Customer, kind: str, target: Customer, **fields: Any) -> Relationship:
    return Relationship(source_id=source.id, target_id=target.id, kind=kind, **fields)


def sample_customer() -> Customer:
    """One customer with a value of every attribute type, consent and micro-second times: an explicit
    example put before the generated ones, so a bug that breaks every record fails at once, unshrunk."""
    from crmkit.customers import Consent, EmailAddress

    return person(
        "Ștefan زهرا 😀",
        id=uuid.UUID("018f0000-0000-7000-8000-000000000001"),
        emails=[
            EmailAddress("s@example.ro", consent=(Consent("email", True, at(2024, 1, 1, 0, 0, 0, 1, offset=3.5)),))
        ],
        tags={"vip"},
        attributes={
            "d": Decimal("1.000001"),
            "t": at(2024, 1, 1, 0, 0, 0, 1, offset=2),
            "f": 0.5,
            "b": True,
            "i": 7,
            "s": "ș",
            "day": dt.date(2024, 1, 1),
        },
        external_id="sample-1",
    )


def sample_history() -> Any:
    """A small consistent history (two customers, one record of each kind) for explicit examples."""
    from crmkit.testing.strategies import CRMHistory

    first = sample_customer()
    second = organization("Acme SRL", id=uuid.UUID("018f0000-0000-7000-8000-000000000002"))
    return CRMHistory(
        customers=(first, second),
        relationships=(edge(first, "works_for", second, since=dt.date(2024, 1, 1)),),
        interactions=(contact(first, at(2024, 1, 1, 23, 59, 59, 999999, offset=-5), attributes={"d": Decimal("2.5")}),),
        transactions=(
            purchase(first, "10.000001", at(2024, 1, 1, 0, 30, 0, 1, offset=3.5), attributes={"d": Decimal("3")}),
            purchase(first, "0.5", at(2024, 1, 2, 12), "RON", kind="refund"),
        ),
    )

"""crmkit's backend conformance suite: one contract every store must honour, shipped as pytest classes.

Run all of it against any URL::

    pytest --pyargs crmkit.testing.conformance --crmkit-url=sqlite:///tmp/crm.db

or from a backend's own test module, unchanged, by overriding one fixture::

    import pytest
    from crmkit.testing.conformance import *  # noqa: F403  (every Test* class below)

    @pytest.fixture(scope="session")
    def crmkit_url(my_server):
        return my_server.url

The ``*Contract`` classes hold the tests and are not collected under their own names; the
``Test*`` classes are the same contracts under collectable names. Each test works in a
fresh random tenant, so a shared server needs no cleanup. Tests that need a capability
the store does not declare (``crmkit.store.Capabilities``) are skipped.
"""

from crmkit.testing.conformance._add_from import AddFromContract
from crmkit.testing.conformance._aggregate_kit import AggregateContractBase
from crmkit.testing.conformance._aggregate_machine import AggregateStateMachineContract, aggregate_state_machine
from crmkit.testing.conformance._aggregate_queries import AggregateQueryContract
from crmkit.testing.conformance._aggregates import (
    AggregateRecordsContract,
    AggregateReferencesContract,
    AggregateUnitOfWorkContract,
)
from crmkit.testing.conformance._bulk import BulkImportContract
from crmkit.testing.conformance._concurrency import ConcurrencyContract
from crmkit.testing.conformance._first_of_group import FirstOfGroupContract
from crmkit.testing.conformance._fuzz import KNOWN_CORE_GAPS, FuzzContract
from crmkit.testing.conformance._graph import RelationshipGraphContract
from crmkit.testing.conformance._harness import ContractBase
from crmkit.testing.conformance._identity import IdentityContract
from crmkit.testing.conformance._marketing import MarketingContract
from crmkit.testing.conformance._query import OrderingContract, PaginationContract, QueryContract
from crmkit.testing.conformance._records import (
    DeleteCascadeContract,
    ExternalIdContract,
    ReferenceContract,
    RepositoryContract,
    StageChangeContract,
)
from crmkit.testing.conformance._reports import ReportContract, SetQueryContract
from crmkit.testing.conformance._roundtrip import RoundTripContract
from crmkit.testing.conformance._search import SearchContract
from crmkit.testing.conformance._semijoin import SemiJoinContract
from crmkit.testing.conformance._stateful import StatefulContract, crm_state_machine
from crmkit.testing.conformance._tenancy import TenancyContract
from crmkit.testing.conformance._timeline import LifecycleContract, PurchaseSummaryContract, TimelineContract
from crmkit.testing.conformance._unit_of_work import EventRecorder, UnitOfWorkContract

__all__ = [
    "CONTRACTS",
    "KNOWN_CORE_GAPS",
    "TestAggregateQueries",
    "TestAggregateRecords",
    "TestAggregateStateMachine",
    "TestAggregateReferences",
    "TestAggregateUnitOfWork",
    "TestBulkImport",
    "TestConcurrency",
    "TestDeleteCascade",
    "TestExternalIds",
    "TestFuzz",
    "TestIdentity",
    "TestLifecycle",
    "TestMarketing",
    "TestOrdering",
    "TestPagination",
    "TestPurchaseSummaries",
    "TestQueries",
    "TestReferences",
    "TestRelationshipGraph",
    "TestReports",
    "TestSetQueries",
    "TestRepositories",
    "TestRoundTrip",
    "TestSearch",
    "TestSemiJoins",
    "TestFirstOfGroup",
    "TestAddFrom",
    "TestStageChanges",
    "TestStateMachine",
    "TestTenancy",
    "TestTimeline",
    "TestUnitOfWork",
]

__all__ += [
    "AggregateContractBase",
    "AggregateQueryContract",
    "AggregateRecordsContract",
    "AggregateReferencesContract",
    "AggregateStateMachineContract",
    "AggregateUnitOfWorkContract",
    "BulkImportContract",
    "ConcurrencyContract",
    "ContractBase",
    "DeleteCascadeContract",
    "EventRecorder",
    "ExternalIdContract",
    "FuzzContract",
    "IdentityContract",
    "LifecycleContract",
    "MarketingContract",
    "OrderingContract",
    "PaginationContract",
    "PurchaseSummaryContract",
    "QueryContract",
    "ReferenceContract",
    "RelationshipGraphContract",
    "ReportContract",
    "SetQueryContract",
    "RepositoryContract",
    "RoundTripContract",
    "SearchContract",
    "SemiJoinContract",
    "FirstOfGroupContract",
    "AddFromContract",
    "StageChangeContract",
    "StatefulContract",
    "TenancyContract",
    "TimelineContract",
    "UnitOfWorkContract",
    "aggregate_state_machine",
    "crm_state_machine",
]

#: Every contract, for backends that build their own test classes.
CONTRACTS: tuple[type[ContractBase], ...] = (
    RepositoryContract,
    ExternalIdContract,
    ReferenceContract,
    DeleteCascadeContract,
    StageChangeContract,
    RoundTripContract,
    QueryContract,
    OrderingContract,
    PaginationContract,
    UnitOfWorkContract,
    ConcurrencyContract,
    BulkImportContract,
    TenancyContract,
    RelationshipGraphContract,
    TimelineContract,
    PurchaseSummaryContract,
    LifecycleContract,
    StatefulContract,
    FuzzContract,
    AggregateRecordsContract,
    AggregateReferencesContract,
    AggregateUnitOfWorkContract,
    AggregateQueryContract,
    AggregateStateMachineContract,
    ReportContract,
    SetQueryContract,
    IdentityContract,
    SearchContract,
    MarketingContract,
    SemiJoinContract,
    FirstOfGroupContract,
    AddFromContract,
)


class TestRepositories(RepositoryContract):
    """add/get/update/delete/count on every repository."""


class TestExternalIds(ExternalIdContract):
    """external_id unique per tenant."""


class TestReferences(ReferenceContract):
    """References to customers and vocabularies are checked."""


class TestDeleteCascade(DeleteCascadeContract):
    """Deleting a customer deletes its history."""


class TestStageChanges(StageChangeContract):
    """Stage changes recorded and readable."""


class TestRoundTrip(RoundTripContract):
    """Exact round trips of every field type."""


class TestQueries(QueryContract):
    """Every operator of the query language."""


class TestOrdering(OrderingContract):
    """order_by semantics."""


class TestPagination(PaginationContract):
    """Keyset pagination."""


class TestUnitOfWork(UnitOfWorkContract):
    """crm.transaction() and events after commit."""


class TestConcurrency(ConcurrencyContract):
    """Optimistic concurrency under threads."""


class TestBulkImport(BulkImportContract):
    """add_many."""


class TestTenancy(TenancyContract):
    """Tenant isolation."""


class TestRelationshipGraph(RelationshipGraphContract):
    """Neighbours and traversal."""


class TestTimeline(TimelineContract):
    """Timelines."""


class TestReports(ReportContract):
    """Group-by reports computed in the store, against the reference."""


class TestSetQueries(SetQueryContract):
    """contains_any / contains_all on sets; scan."""


class TestPurchaseSummaries(PurchaseSummaryContract):
    """Purchase summaries against the reference."""


class TestLifecycle(LifecycleContract):
    """Life-cycle decisions against memory://."""


class TestStateMachine(StatefulContract):
    """Random operations against a model."""


class TestFuzz(FuzzContract):
    """Hostile input."""


class TestAggregateRecords(AggregateRecordsContract):
    """Every declared aggregate (the probe too): CRUD, versions, keys, exact round trips, imports, tenancy."""


class TestAggregateReferences(AggregateReferencesContract):
    """Every declared aggregate: references checked on write, every on_delete policy."""


class TestAggregateUnitOfWork(AggregateUnitOfWorkContract):
    """Every declared aggregate: events with the actor, crmkit_before_commit, rollbacks."""


class TestAggregateQueries(AggregateQueryContract):
    """Every declared aggregate: the query battery per field kind, ordering and keyset pages."""


class TestAggregateStateMachine(AggregateStateMachineContract):
    """Every declared aggregate: random operations against a dict model."""


class TestIdentity(IdentityContract):
    """find_by_email/find_by_phone, upsert_many, merge and un-merge."""


class TestSearch(SearchContract):
    """Text search as people type it: matches and startswith, folded."""


class TestMarketing(MarketingContract):
    """Consent-aware targeting and sending; segments (dynamic, static, snapshot, combined, facts)."""


class TestSemiJoins(SemiJoinContract):
    """Sub-queries, F(field).in_(Select(...)) and its shorthand among(): semi-joins in the store."""


class TestFirstOfGroup(FirstOfGroupContract):
    """Sub-queries on each group's first record (first_by, first_where): "the latest consent is a grant"."""


class TestAddFrom(AddFromContract):
    """add_from: records built in the store from other records (constants, copies, tests), as the reference says."""

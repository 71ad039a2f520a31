"""A store that declares fewer capabilities gets skips, never failures and never a forked suite."""

from __future__ import annotations

from pathlib import Path

from tests.testing.mutants import backend_module, run_inner


def test_missing_capabilities_become_skips(tmp_path: Path) -> None:
    module = backend_module(
        "no_transactions_capability", "TestUnitOfWork", "TestBulkImport", "TestConcurrency", "TestStateMachine"
    )
    result = run_inner(tmp_path, {"test_weak_backend.py": module})
    outcomes = list(result.by_test.values())
    assert "failed" not in outcomes and "error" not in outcomes, result.by_test
    assert outcomes.count("skipped") == 6 + 1 + 6  # unit of work, bulk import, the whole concurrency class
    assert outcomes.count("passed") >= 10
    reasons = "\n".join(result.skip_reasons)
    assert "does not declare the 'transactions' capability" in reasons
    assert "does not declare the 'concurrent_writers' capability" in reasons


def test_the_generic_contract_skips_what_needs_transactions(tmp_path: Path) -> None:
    classes = ("TestAggregateRecords", "TestAggregateUnitOfWork", "TestAggregateStateMachine")
    result = run_inner(tmp_path, {"test_weak_aggregates.py": backend_module("no_transactions_capability", *classes)})
    outcomes = list(result.by_test.values())
    assert "failed" not in outcomes and "error" not in outcomes, result.by_test
    aggregates = {nodeid.rsplit("[", 1)[1] for nodeid in result.by_test if nodeid.endswith("]")}
    assert {"crmkit_probes]", "crmkit_probe_links]"} <= aggregates
    assert outcomes.count("skipped") == 4 * len(aggregates) and outcomes.count("passed") >= 20 * len(aggregates)
    assert "does not declare the 'transactions' capability" in "\n".join(result.skip_reasons)


def test_an_unknown_capability_is_an_error_not_a_skip(tmp_path: Path) -> None:
    typo = """
        import pytest
        from crmkit.testing.conformance import ContractBase

        class TestTypo(ContractBase):
            @pytest.mark.requires("transactoins")
            def test_it(self, crm):
                pass
        """
    result = run_inner(tmp_path, {"test_typo.py": typo})
    assert list(result.by_test.values()) == ["error"]
    assert "unknown capability" in "\n".join(result.errors)

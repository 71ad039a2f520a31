"""The conformance suite fails on stores with the bugs real backends have had (see mutants.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.testing.mutants import BUGS, backend_module, run_inner

#: Bugs the state machine must find on its own, without the hand-written contracts.
MACHINE_BUGS = ("no_rollback", "external_ids_not_unique", "milliseconds")

#: Bugs of the declared aggregates' storage that the generic state machine must find on its own.
AGGREGATE_MACHINE_BUGS = ("unique_keys_not_enforced", "dropped_many", "boolean_as_int", "ref_index_keeps_one_row")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    files = {f"test_bug_{bug}.py": backend_module(bug, *classes) for bug, classes in BUGS.items()}
    files |= {f"test_machine_{bug}.py": backend_module(bug, "TestStateMachine") for bug in MACHINE_BUGS}
    files |= {
        f"test_aggregate_machine_{bug}.py": backend_module(bug, "TestAggregateStateMachine")
        for bug in AGGREGATE_MACHINE_BUGS
    }
    files["test_healthy_parts.py"] = backend_module("utf16_order", "TestRepositories", "TestRelationshipGraph")
    files["test_healthy_aggregates.py"] = backend_module(
        "ref_lookup_ignores_tenant", "TestAggregateRecords", "TestAggregateQueries", "TestAggregateUnitOfWork"
    )
    result = run_inner(tmp_path_factory.mktemp("mutants"), files, "-k", "not a_model_query_sanity_check", shrink=False)
    per_file: dict[str, dict[str, str]] = {}
    for nodeid, outcome in result.by_test.items():
        per_file.setdefault(nodeid.split("::")[0], {})[nodeid] = outcome
    return per_file


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_the_suite_catches(outcomes: dict[str, dict[str, str]], bug: str) -> None:
    results = outcomes[f"test_bug_{bug}.py"]
    assert "failed" in results.values(), f"the suite did not notice {bug}: {results}"


@pytest.mark.parametrize("bug", MACHINE_BUGS)
def test_the_state_machine_alone_catches(outcomes: dict[str, dict[str, str]], bug: str) -> None:
    assert set(outcomes[f"test_machine_{bug}.py"].values()) == {"failed"}


@pytest.mark.parametrize("bug", AGGREGATE_MACHINE_BUGS)
def test_the_aggregate_state_machine_alone_catches(outcomes: dict[str, dict[str, str]], bug: str) -> None:
    results = outcomes[f"test_aggregate_machine_{bug}.py"]
    on_probes = [outcome for nodeid, outcome in results.items() if nodeid.endswith("[crmkit_probes]")]
    assert on_probes == ["failed"], results  # the probe has a field of every kind and a reference of every kind


def test_the_mutants_are_otherwise_healthy(outcomes: dict[str, dict[str, str]]) -> None:
    # A mutant passes the contracts its bug does not touch, so the failures above are the bug's own.
    results = outcomes["test_healthy_parts.py"]
    assert len(results) >= 40 and set(results.values()) == {"passed"}, results
    results = outcomes["test_healthy_aggregates.py"]
    assert len(results) >= 25 and set(results.values()) == {"passed"}, results


def test_the_runner_reports_what_it_ran(tmp_path: Path) -> None:
    result = run_inner(tmp_path, {"test_x.py": "def test_ok():\n    assert True\n"})
    assert list(result.by_test.values()) == ["passed"]

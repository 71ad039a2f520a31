"""The ways a backend runs the conformance suite: --pyargs, star import with one fixture, subclassing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import crmkit.testing.conformance as conformance

ROOT = Path(__file__).resolve().parents[2]

pytest_plugins = ["pytester"]

_ARGS = ("-p", "no:cacheprovider", "--import-mode=importlib", "-q")


def _count(outcome: str, text: str) -> int:
    found = re.search(rf"(\d+) {outcome}", text)
    return int(found.group(1)) if found else 0


def test_pyargs_runs_the_whole_suite() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "crmkit.testing.conformance", "--crmkit-url=memory://", *_ARGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert _count("passed", summary) >= 250, summary
    assert "failed" not in summary and "skipped" not in summary and "error" not in summary, summary


def test_pyargs_uses_the_url_option() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "crmkit.testing.conformance",
            "--crmkit-url=nosuchscheme://x",
            "-x",
            "-k",
            "test_add_returns_the_stored_copy",
            *_ARGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "no installed plugin opens URLs of scheme 'nosuchscheme'" in done.stdout


def test_star_import_with_one_overridden_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_my_backend="""
        import pytest
        from crmkit.testing.conformance import *  # noqa: F403
        from crmkit.testing.conformance import ContractBase

        @pytest.fixture(scope="session")
        def crmkit_url():
            return "memory://my-backend"

        class TestTheSuiteSeesMyStore(ContractBase):
            def test_store(self, crm):
                assert crm.store.url == "memory://my-backend"
        """
    )
    result = pytester.runpytest_inprocess(*_ARGS, "-k", "TestRepositories or TestTheSuiteSeesMyStore or TestTenancy")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 50
    collected = pytester.runpytest_inprocess(*_ARGS, "--collect-only")
    text = collected.stdout.str()
    for name in (n for n in conformance.__all__ if n.startswith("Test")):
        assert f"::{name}::" in text, f"{name} was not collected through the star import"
    assert _count("tests collected", text) >= 250


def test_subclassing_with_a_conftest_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def crmkit_url():
            return "memory://from-conftest"
        """
    )
    pytester.makepyfile(
        test_mine="""
        from crmkit.testing.conformance import PaginationContract

        class TestMyPagination(PaginationContract):
            def test_it_is_my_store(self, crm):
                assert crm.store.url == "memory://from-conftest"
        """
    )
    result = pytester.runpytest_inprocess(*_ARGS)
    expected = len([n for n in dir(conformance.PaginationContract) if n.startswith("test_")])
    result.assert_outcomes(passed=expected + 5 + 1)  # six bad-limit cases in one method, plus ours


def test_contract_classes_are_not_collected_by_their_own_names() -> None:
    for contract in conformance.CONTRACTS:
        assert not contract.__name__.startswith("Test")
        assert getattr(contract, "__test__", None) is not True
    tests = [getattr(conformance, n) for n in conformance.__all__ if n.startswith("Test")]
    assert {t.__mro__[1] for t in tests} == set(conformance.CONTRACTS)

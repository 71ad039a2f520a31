"""CRMKIT_CONFORMANCE_SCALE multiplies the conformance suite's example counts (a quick or a nightly run)."""

from __future__ import annotations

import pytest

from crmkit.testing.conformance._harness import conformance_settings


@pytest.mark.parametrize(("scale", "asked", "run"), [(None, 25, 25), ("0.1", 25, 2), ("0.1", 3, 1), ("10", 30, 300)])
def test_the_scale_multiplies_every_example_count(
    monkeypatch: pytest.MonkeyPatch, scale: str | None, asked: int, run: int
) -> None:
    if scale is None:
        monkeypatch.delenv("CRMKIT_CONFORMANCE_SCALE", raising=False)
    else:
        monkeypatch.setenv("CRMKIT_CONFORMANCE_SCALE", scale)
    assert conformance_settings(max_examples=asked).max_examples == run


@pytest.mark.parametrize("bad", ["fast", "0", "-1", "nan"])
def test_a_bad_scale_is_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CRMKIT_CONFORMANCE_SCALE", bad)
    with pytest.raises(ValueError, match="CRMKIT_CONFORMANCE_SCALE must be"):
        conformance_settings()

"""Work that lost a race with a concurrent transaction is run again, a bounded number of times."""

from __future__ import annotations

import pytest

from crmkit import ConflictError, ValidationError
from crmkit._retry import ATTEMPTS, MAX_DELAY, backoff, retrying


def test_a_transient_conflict_is_retried_until_the_work_succeeds() -> None:
    calls: list[int] = []
    pauses: list[float] = []

    def work() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConflictError("deadlock", transient=True)
        return "done"

    assert retrying(work, sleep=pauses.append) == "done"
    assert len(calls) == 4 and len(pauses) == 3
    assert pauses[0] < pauses[2]  # the pauses grow


def test_retries_are_bounded_and_end_in_a_conflict_error() -> None:
    pauses: list[float] = []

    def work() -> None:
        raise ConflictError("write conflict", entity="customer", key="k", transient=True)

    with pytest.raises(ConflictError, match=f"write conflict \\(gave up after {ATTEMPTS} attempts\\)") as raised:
        retrying(work, sleep=pauses.append)
    assert len(pauses) == ATTEMPTS - 1
    assert raised.value.transient and (raised.value.entity, raised.value.key) == ("customer", "k")
    assert all(0 < p <= MAX_DELAY for p in pauses)


@pytest.mark.parametrize("error", [ConflictError("duplicate external id"), ValidationError("x", "bad", 1)])
def test_other_errors_are_raised_at_once(error: Exception) -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        retrying(work, sleep=lambda s: None)
    assert len(calls) == 1


def test_the_pause_is_jittered_and_capped() -> None:
    first = {backoff(1) for _ in range(50)}
    assert len(first) > 1 and all(0.01 <= p <= 0.02 for p in first)
    assert all(MAX_DELAY / 2 <= backoff(30) <= MAX_DELAY for _ in range(50))

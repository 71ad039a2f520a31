"""Running a unit of work again when it lost a race with a concurrent transaction."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from crmkit._errors import ConflictError

__all__ = ["ATTEMPTS", "backoff", "retrying"]

T = TypeVar("T")

#: How many times a unit of work is tried before its transient ConflictError is raised.
ATTEMPTS = 20
#: The first wait, in seconds; each later one is twice as long, up to MAX_DELAY.
FIRST_DELAY = 0.02
MAX_DELAY = 1.0


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): exponential, capped, jittered.

    Half the step is fixed and half random, so that writers who collided once do not collide
    again at the same moment.
    """
    step = min(MAX_DELAY, FIRST_DELAY * 2.0 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)


def retrying(work: Callable[[], T], *, attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> T:
    """``work()``, run again after a jittered pause each time it raises a transient ConflictError.

    ``work`` must be a whole unit of work (its own transaction), so that a failed attempt left
    nothing behind. Any other error, and the transient one of the last attempt, is raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except ConflictError as exc:
            if not exc.transient:
                raise
            if attempt == attempts:
                raise ConflictError(
                    f"{exc} (gave up after {attempts} attempts)", entity=exc.entity, key=exc.key, transient=True
                ) from exc
        sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover

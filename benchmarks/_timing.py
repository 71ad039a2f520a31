"""Timing and printing shared by the benchmarks: wall and CPU time of a step, the best of alternating runs.

The machines these run on are often shared, so a step's CPU time (this process's, which
includes an embedded SQLite's work) is measured beside its wall time, and two sides that
are compared take turns, so that noise hits them alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Took", "best_of", "server_cpu", "show", "stopwatch", "take_turns", "timed"]


class Took:
    """What a ``stopwatch`` block took: ``wall`` and ``cpu`` seconds (set when the block ends)."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Took]:
    """Time a block: ``with stopwatch() as took: ...`` then ``took.wall`` and ``took.cpu``."""
    took = Took()
    began, cpu = time.perf_counter(), time.process_time()
    try:
        yield took
    finally:
        took.wall, took.cpu = time.perf_counter() - began, time.process_time() - cpu


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn`` once: its wall time, its CPU time and its result."""
    with stopwatch() as took:
        result = fn()
    return took.wall, took.cpu, result


def best_of(runs: int, fns: dict[str, Callable[[], Any]]) -> dict[str, tuple[float, Any]]:
    """Each function's best wall time and its result; the functions take turns so that machine noise hits them alike."""
    best: dict[str, tuple[float, Any]] = {}
    for _ in range(runs):
        for name, fn in fns.items():
            elapsed, _, result = timed(fn)
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


def show(*parts: str) -> None:
    """Print one result line, its parts three spaces apart, at once (a long run shows progress)."""
    print("   ".join(parts), flush=True)


def take_turns(
    runs: int, fns: dict[str, Callable[[], Any]], cpu: Callable[[], float] | None = None
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Each function's time in every round (and, with ``cpu``, the server's CPU time as "<name> cpu"),
    and its last result; the functions take turns in each round."""
    times: dict[str, list[float]] = {}
    results: dict[str, Any] = {}
    for _ in range(runs):
        for name, fn in fns.items():
            used = cpu() if cpu is not None else 0.0
            began = time.perf_counter()
            results[name] = fn()
            times.setdefault(name, []).append(time.perf_counter() - began)
            if cpu is not None:
                times.setdefault(f"{name} cpu", []).append(cpu() - used)
    return times, results


def server_cpu(pid: int) -> Callable[[], float]:
    """The CPU seconds process ``pid`` (the database server) has used so far, user and system.

    With its child processes, live and ended: PostgreSQL works in a backend process per
    connection, which the postmaster's own times leave out.
    """
    ticks = os.sysconf("SC_CLK_TCK")

    def stat(p: int | str) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    def used() -> float:
        fields = stat(pid)
        total = sum(int(f) for f in fields[11:15])  # its own and its reaped children's user and system time
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(pid):
                try:
                    child = stat(entry.name)
                except OSError:  # ended meanwhile
                    continue
                if child[1] == str(pid):
                    total += int(child[11]) + int(child[12])
        return total / ticks

    return used

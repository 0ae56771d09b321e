"""A cycle strategy registered for a test: greedy under another name, counting its cycles."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager

from computenet.scheduler import STRATEGIES, Decision, JobRequest, Snapshot
from computenet.scheduler.greedy import greedy_cycle


@contextmanager
def counting_greedy(name: str = "counting") -> Iterator[list[int]]:
    """Register greedy as `name` while inside; yields the size of every cycle it ran."""
    calls: list[int] = []

    def run(
        snapshot: Snapshot,
        jobs: Sequence[JobRequest],
        profile: str = "min-cost",
        *,
        explain: bool = True,
        signatures: Sequence[Hashable] | None = None,
    ) -> list[Decision]:
        calls.append(len(jobs))
        return greedy_cycle(snapshot, jobs, profile, explain=explain, signatures=signatures)

    STRATEGIES.register(name, run)
    try:
        yield calls
    finally:
        STRATEGIES.unregister(name)

"""Cycle strategies, registered by name, and `schedule_cycle`, the one entry point.

Contract of a strategy (`Strategy`): a pure function of a snapshot and the
pending jobs that returns one `Decision` per job, in input order, never
placing two jobs on the same chips; it orders jobs by
`computenet.scheduler.ordering.order_key` wherever order matters (a strategy
may reorder only jobs that tie in it but for submit time, as `lookahead`
does under `fastest`: `lookahead.soonest_order`), and a job
whose evaluation raises is rejected alone (`framework.rejected`), never the
whole cycle. It may use `signatures` (precomputed `ordering.signature` of
each job) to evaluate look-alikes once.

Built in: `greedy` (one by one, each on its best option; the default),
`batch-optimizer` (a joint MILP, `scheduler/optimizer.py`) and `lookahead`
(greedy, but a job with slack before its deadline does not reserve a far
cheap start yet, and under `fastest` a job without a deadline that waits for
chips is decided again each cycle, the order finishing such jobs soonest
first: `scheduler/lookahead.py`; the simulator's `ours`). A new strategy is
one module plus one `STRATEGIES.register(name, function)` call; the server
selects one with `Settings.strategy`, the simulator with `ours:STRATEGY`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Protocol

from computenet.errors import ValidationError
from computenet.scheduler.framework import Decision
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.lookahead import lookahead
from computenet.scheduler.optimizer import batch_optimizer
from computenet.scheduler.overflow import local_first
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import JobRequest, Snapshot

DEFAULT_STRATEGY = "greedy"


class Strategy(Protocol):
    """One scheduling cycle: decisions for `jobs` in input order (see the module doc)."""

    def __call__(
        self,
        snapshot: Snapshot,
        jobs: Sequence[JobRequest],
        profile: str = ...,
        *,
        explain: bool = ...,
        signatures: Sequence[Hashable] | None = ...,
    ) -> list[Decision]: ...


class StrategyRegistry(Mapping[str, Strategy]):
    """Cycle strategies by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Strategy] = {}

    def register(self, name: str, strategy: Strategy) -> Strategy:
        """Make `strategy` selectable as `name` (once)."""
        if name in self._by_name or name in PROFILES:
            raise ValidationError(f"strategy '{name}' is already a strategy or profile name")
        self._by_name[name] = strategy
        return strategy

    def unregister(self, name: str) -> None:
        """Remove the strategy `name`."""
        del self._by_name[name]

    def get_checked(self, name: str, field: str = "strategy") -> Strategy:
        """The strategy `name`, or a `ValidationError` naming `field` and the choices."""
        s = self._by_name.get(name)
        if s is None:
            raise ValidationError(
                f"unknown scheduling strategy '{name}'",
                field=field,
                hint="one of " + ", ".join(sorted(self._by_name)),
            )
        return s

    def __getitem__(self, name: str) -> Strategy:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


STRATEGIES = StrategyRegistry()
STRATEGIES.register("greedy", greedy_cycle)
STRATEGIES.register("batch-optimizer", batch_optimizer)
STRATEGIES.register("lookahead", lookahead)


def schedule_cycle(
    snapshot: Snapshot,
    jobs: Sequence[JobRequest],
    profile: str = "min-cost",
    *,
    strategy: str = DEFAULT_STRATEGY,
    explain: bool = True,
    signatures: Sequence[Hashable] | None = None,
) -> list[Decision]:
    """Decide `jobs` with the named strategy and scoring profile (pure; input order).

    `explain=False` skips writing the reasons of placed jobs (the simulator's
    hot path); decisions are the same either way. `signatures[k]`, when given,
    is `ordering.signature(jobs[k])`, precomputed by the caller.
    """
    if profile not in PROFILES:
        raise ValidationError(
            f"unknown scheduling profile '{profile}'",
            field="profile",
            hint="one of " + ", ".join(sorted(PROFILES)),
        )
    run = STRATEGIES.get_checked(strategy)
    # A region's parent (a center tagged `parent`) only for what no other center can run.
    return local_first(run, snapshot, jobs, profile, explain=explain, signatures=signatures)

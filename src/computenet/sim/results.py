"""What a simulation run is configured with and what it produces: config, outages, records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from computenet.model import JobState
from computenet.model.center import CST
from computenet.scheduler import Decision, JobRequest, Snapshot
from computenet.scheduler.patience import check_patience
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim.workload import Workload

# Job states as small integers in the per-job record columns.
STATES: tuple[JobState, ...] = tuple(JobState)
CODE = {s: i for i, s in enumerate(STATES)}
TERMINAL_CODES = frozenset(
    CODE[s] for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
)
_NONE = -1

DEFAULT_EPOCH = datetime(2026, 1, 5, 0, 0, tzinfo=CST)  # a Monday, local midnight


class Policy(Protocol):
    """A scheduling policy: the same contract as `schedule_cycle` (pure over a snapshot)."""

    name: str

    def __call__(self, snapshot: Snapshot, jobs: Sequence[JobRequest]) -> list[Decision]:
        """Decide for each job: a placement, or none with reasons."""
        ...

    def keeps(self, job: JobRequest, now: datetime) -> bool:
        """Whether a decision on `job` is kept past `now` (a deferred job: nothing to decide).

        The simulator hands such jobs to the cycle beyond its `max_batch`, so that
        jobs waiting for their hour never crowd out the ones that need deciding.
        """
        ...


@dataclass(frozen=True)
class Outage:
    """A center offline from `start_s` to `end_s`; planned ones (maintenance) are known ahead."""

    center: str
    start_s: float
    end_s: float
    planned: bool = False


@dataclass(frozen=True)
class SimConfig:
    """How a run is simulated (not what runs: that is the workload and the policy).

    `resubmit_late`: a pending job whose deadline passes is resubmitted without one (it
    still counts as a miss). `prefetch`: agents stage inputs as soon as a job is leased,
    not at its planned start. `max_pending_days`: a job no policy could place for this
    long is withdrawn by its user (CANCELLED); None keeps it until the run ends.
    `replan`: each cycle moves jobs placed but not started to earlier or cheaper
    plans, as the server does (`computenet.scheduler.replan`), within their pool.
    `patience_h`: the operator's patience, the longest a batch job without a deadline
    may be held for cheaper power (the server's `--patience`; 0: never held).
    """

    epoch: datetime = DEFAULT_EPOCH
    cycle_s: float = 300.0
    max_batch: int = 512
    max_attempts: int = 3
    outages: tuple[Outage, ...] = ()
    failure_mtbf_h: float | None = None
    failure_mttr_h: float = 4.0
    seed: int = 0
    drain_days: float = 30.0
    resubmit_late: bool = True
    prefetch: bool = True
    max_pending_days: float | None = 7.0
    replan: bool = False
    patience_h: float = DEFAULT_PATIENCE_H

    def __post_init__(self) -> None:
        check_patience(self.patience_h, "patience_h")


@dataclass
class Records:
    """Per-job outcome columns (row = workload row); money in integer fen."""

    state: np.ndarray
    attempts: np.ndarray
    pool: np.ndarray
    placed: np.ndarray
    hold_start: np.ndarray
    run_start: np.ndarray
    end: np.ndarray
    energy_fen: np.ndarray
    service_fen: np.ndarray
    transfer_fen: np.ndarray
    kwh: np.ndarray
    co2_kg: np.ndarray
    cu_hours: np.ndarray
    chip_hours: np.ndarray
    wan_gb: np.ndarray
    planned_fen: np.ndarray
    preemptions: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> Records:
        """Columns for `n` jobs, nothing happened yet."""
        nan = np.full(n, np.nan)
        return cls(
            state=np.full(n, CODE[JobState.PENDING], dtype=np.int8),
            attempts=np.zeros(n, dtype=np.int16),
            pool=np.full(n, _NONE, dtype=np.int32),
            placed=nan.copy(),
            hold_start=nan.copy(),
            run_start=nan.copy(),
            end=nan.copy(),
            energy_fen=np.zeros(n, dtype=np.int64),
            service_fen=np.zeros(n, dtype=np.int64),
            transfer_fen=np.zeros(n, dtype=np.int64),
            kwh=np.zeros(n),
            co2_kg=np.zeros(n),
            cu_hours=np.zeros(n),
            chip_hours=np.zeros(n),
            wan_gb=np.zeros(n),
            planned_fen=np.zeros(n, dtype=np.int64),
            preemptions=np.zeros(n, dtype=np.int16),
        )


@dataclass
class Totals:
    """Running totals kept as events happen (tests check them against the per-job records)."""

    energy_fen: int = 0
    service_fen: int = 0
    transfer_fen: int = 0
    kwh: float = 0.0
    co2_kg: float = 0.0
    cu_hours: float = 0.0


@dataclass
class SimResult:
    """Everything a run produced: per-job records, totals, utilization, timings."""

    workload: Workload
    policy: str
    config: SimConfig
    records: Records
    totals: Totals
    util: np.ndarray  # [center, hour] chip-seconds held
    end_s: float
    wall_s: float
    policy_s: float
    cycles: int
    placements: int
    events: int
    overcommits: int
    notes: list[str]

"""Policies the simulator compares: ours (the production scheduler) and six baselines.

Every policy has the contract of `schedule_cycle`: a pure function of a
snapshot and the pending jobs, returning one `Decision` per job in input
order. The baselines estimate run time, transfer and cost with the
scheduler's own `evaluate` and build placements with its `to_placement`, so
they differ from ours only in how they choose — never in how they price. Each
baseline starts a job now, on a pool with enough free chips for its run, and
ignores deadlines and budgets; a job with no such pool waits for a later cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import cast

import numpy as np

from computenet.errors import ValidationError
from computenet.scheduler import STRATEGIES, Decision, JobRequest, Snapshot, schedule_cycle
from computenet.scheduler.framework import Options, evaluate, to_placement
from computenet.scheduler.lookahead import lookahead_cycle
from computenet.scheduler.plugins import PROFILES, Profile
from computenet.scheduler.snapshot import HORIZON_SLOTS

log = logging.getLogger(__name__)

# `ours` is the production scheduler with this strategy and the default profile: the
# greedy cycle that leaves far cheap starts of jobs with slack to a later cycle
# (bench/sim_quality.py: 1.046× the LP bound on `china` against 1.067× for the batch
# optimizer, 1.045× on the Alibaba pod list, where no job has a deadline), and with
# the `fastest` profile (`ours:fastest`) 1.106× Gavel's JCT floor against 1.136× for greedy
# without preemption, 1.091× with it (every Gavel job is preemptible: scheduler/preemption.py).
OURS_STRATEGY = "lookahead"
_NO_SHIFT = Profile("baseline", shift=False)


@dataclass
class SchedulerPolicy:
    """Ours: `computenet.scheduler.schedule_cycle` with a named profile and strategy, unchanged.

    With the `lookahead` strategy a deferred job keeps its decision until the
    instant `lookahead_cycle` names (its best start less `COMMIT_H`), instead
    of being evaluated again every cycle: what it would decide meanwhile is
    known unless chips freed or taken change its best option (then it finds
    out at that instant). A backlog of jobs waiting a day for a valley would
    otherwise be priced again every five minutes.
    """

    name: str = "ours"
    profile: str = "min-cost"
    strategy: str = "greedy"
    # job id → (decide again from, the request as deferred, the decision kept until then)
    _waiting: dict[str, tuple[datetime, JobRequest, Decision]] = field(
        default_factory=dict, init=False, repr=False
    )

    def keeps(self, job: JobRequest, now: datetime) -> bool:
        """Whether this policy keeps a decision on `job` (deferred, unchanged) past `now`."""
        w = self._waiting.get(job.id)
        return w is not None and now < w[0] and w[1] == job

    def decide_due(
        self, snapshot: Snapshot, jobs: Sequence[JobRequest], waiting: int
    ) -> tuple[list[Decision], dict[str, datetime]]:
        """One cycle over the jobs due a decision, for a caller that keeps deferred ones itself.

        The decisions of `jobs`, and for each job the `lookahead` strategy
        deferred the instant worth deciding it again: until then, unless its
        request changes, its decision stands (`keeps` says so, and `__call__`
        keeps it). `waiting`: jobs kept so that are not in `jobs`, counted
        against `MAX_WAITING`. The simulator calls this directly and keeps the
        deferred jobs out of its batch, instead of handing every kept job over
        each cycle (hundreds a cycle when a backlog waits for a valley).
        """
        decided, wake = self._decide(snapshot, jobs, waiting)
        kept = self._waiting
        if len(kept) > 10_000:  # jobs withdrawn while waiting: their instants pass
            now = snapshot.now
            self._waiting = kept = {k: w for k, w in kept.items() if now < w[0]}
        self._remember(jobs, decided, wake)
        return decided, wake

    def _decide(
        self, snapshot: Snapshot, jobs: Sequence[JobRequest], waiting: int
    ) -> tuple[list[Decision], dict[str, datetime]]:
        if self.strategy != "lookahead":
            return schedule_cycle(snapshot, jobs, self.profile, strategy=self.strategy), {}
        # The simulator reads the reasons of unplaced jobs only.
        return lookahead_cycle(snapshot, jobs, self.profile, waiting=waiting, explain_placed=False)

    def _remember(
        self, jobs: Sequence[JobRequest], decided: list[Decision], wake: dict[str, datetime]
    ) -> None:
        """Keep the deferred jobs' decisions until their instants; forget the others'."""
        waiting = self._waiting
        for j, d in zip(jobs, decided, strict=True):
            if j.id in wake:
                waiting[j.id] = (wake[j.id], j, d)
            else:
                waiting.pop(j.id, None)

    def __call__(self, snapshot: Snapshot, jobs: Sequence[JobRequest]) -> list[Decision]:
        """One production scheduling cycle."""
        if self.strategy != "lookahead":
            return schedule_cycle(snapshot, jobs, self.profile, strategy=self.strategy)
        now = snapshot.now
        waiting = self._waiting
        # One pass: a kept job's decision goes straight to its place in the answer (it is
        # most of a cycle's jobs when a backlog waits for a valley). `keeps`, inlined.
        out: list[Decision | None] = []
        due: list[JobRequest] = []
        at: list[int] = []
        for j in jobs:
            w = waiting.get(j.id)
            # A job resubmitted meanwhile (a requeue, a deadline dropped) is a new request.
            if w is not None and now < w[0] and (w[1] is j or w[1] == j):
                out.append(w[2])
            else:
                at.append(len(out))
                out.append(None)
                due.append(j)
        if len(waiting) > 2 * len(jobs) + 1_000:  # jobs withdrawn while waiting
            pending = {j.id for j in jobs}
            self._waiting = {k: w for k, w in waiting.items() if k in pending}
        decided, wake = self._decide(snapshot, due, len(jobs) - len(due))
        self._remember(due, decided, wake)
        for k, d in zip(at, decided, strict=True):
            out[k] = d
        return cast("list[Decision]", out)  # every place filled above


@dataclass
class Baseline:
    """A start-now heuristic: among pools with chips free now, pick one by `rule`."""

    name: str
    rule: str
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)
    _next_center: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def keeps(self, job: JobRequest, now: datetime) -> bool:
        """A start-now heuristic keeps nothing between cycles."""
        return False

    def __call__(self, snapshot: Snapshot, jobs: Sequence[JobRequest]) -> list[Decision]:
        """Place each job (in the given order) on the pool the rule picks, starting now."""
        free = snapshot.free.copy()
        out: list[Decision] = []
        for job in jobs:
            probe = replace(job, deadline=None, budget_cny=None, latency_class="batch")
            opts = evaluate(snapshot, free, probe, _NO_SHIFT)
            cand = np.flatnonzero(opts.feasible & (opts.slot == 0))
            if cand.size == 0:
                why = tuple(opts.why_not) or (f"{self.name}: no eligible pool has chips free now",)
                out.append(Decision(job.id, None, why))
                continue
            i = self._pick(snapshot, free, opts, cand)
            p = int(opts.pool[i])
            free[p, 0 : min(int(opts.n_slots[i]), HORIZON_SLOTS)] -= job.count
            center = snapshot.network.centers[int(snapshot.index.pool_center[p])].id
            reason = (
                f"{self.name}: {center} has {job.count}× {snapshot.index.pool_chip[p]} free now"
            )
            out.append(Decision(job.id, to_placement(snapshot, job, opts, i, (reason,)), (reason,)))
        return out

    def _pick(self, snap: Snapshot, free: np.ndarray, opts: Options, cand: np.ndarray) -> int:
        idx = snap.index
        pools = opts.pool[cand]
        if self.rule == "random":
            return int(cand[self._rng.integers(cand.size)])
        if self.rule == "round-robin":
            n_c = len(snap.network.centers)
            centers = idx.pool_center[pools]
            dist = (centers - self._next_center) % n_c
            k = int(np.argmin(dist))
            self._next_center = (int(centers[k]) + 1) % n_c
            return int(cand[k])
        if self.rule == "least-loaded":
            frac = free[pools, 0] / idx.pool_total[pools]
            return int(cand[int(np.argmax(frac))])
        if self.rule == "nearest-to-data":
            key = opts.transfer_s[cand] - 1e-9 * free[pools, 0] / idx.pool_total[pools]
            return int(cand[int(np.argmin(key))])
        if self.rule == "cheapest-energy":
            hour = snap.now.astimezone(snap.hour0.tzinfo).hour
            price = idx.tariff[pools, hour]
            key = price + 1e-9 * opts.energy[cand] / (1.0 + opts.energy[cand].max())
            return int(cand[int(np.argmin(key))])
        if self.rule == "agnostic":
            # All accelerators are equal to it: the pool with the most free chips wins.
            return int(cand[int(np.argmax(free[pools, 0]))])
        raise ValidationError(f"unknown baseline rule '{self.rule}'", field="policy")


BASELINES: dict[str, str] = {
    "random": "random",
    "round-robin": "round-robin",
    "least-loaded": "least-loaded",
    "nearest-to-data": "nearest-to-data",
    "cheapest-energy": "cheapest-energy",
    "heterogeneity-agnostic": "agnostic",
}
ALIASES = {"cheapest-energy-greedy": "cheapest-energy", "agnostic": "heterogeneity-agnostic"}
ALL_POLICIES = ("ours", *BASELINES)


def make_policy(name: str, seed: int = 0) -> SchedulerPolicy | Baseline:
    """A policy: `ours`, `ours:PROFILE`, `ours:STRATEGY`, `ours:STRATEGY:PROFILE` or a baseline.

    `ours` is the `lookahead` strategy (`scheduler/lookahead.py`) with the `min-cost` profile;
    `ours:PROFILE` the same strategy with that profile (under `fastest`, jobs that
    wait for chips are decided again each cycle, the order finishing them soonest
    first); `ours:STRATEGY` a registered strategy (`computenet.scheduler.STRATEGIES`)
    with `min-cost` (`ours:greedy`: one by one, each on its best option, no deferral).
    """
    name = ALIASES.get(name, name)
    if name == "ours":
        return SchedulerPolicy("ours", "min-cost", OURS_STRATEGY)
    if name.startswith("ours:"):
        parts = name.split(":")[1:]
        strategy, profile = "greedy", "min-cost"
        if len(parts) == 1 and parts[0] in STRATEGIES:
            strategy = parts[0]
        elif len(parts) == 1:
            profile, strategy = parts[0], OURS_STRATEGY
        elif len(parts) == 2:
            strategy, profile = parts
        if len(parts) > 2 or profile not in PROFILES or strategy not in STRATEGIES:
            raise ValidationError(
                f"unknown scheduler profile or strategy in '{name}'",
                field="policy",
                hint="profiles: " + ", ".join(PROFILES) + "; strategies: " + ", ".join(STRATEGIES),
            )
        return SchedulerPolicy(name, profile, strategy)
    if name in BASELINES:
        return Baseline(name, BASELINES[name], seed=seed)
    raise ValidationError(
        f"unknown policy '{name}'",
        field="policy",
        hint="use all, ours, ours:PROFILE or one of: " + ", ".join(BASELINES),
    )


def parse_policies(text: str) -> list[str]:
    """`all` or a comma-separated list of policy names, checked."""
    names = (
        list(ALL_POLICIES)
        if text.strip() == "all"
        else [t.strip() for t in text.split(",") if t.strip()]
    )
    if not names:
        raise ValidationError("no policy given", field="policies", hint="e.g. all or ours,random")
    for n in names:
        make_policy(n)
    return names

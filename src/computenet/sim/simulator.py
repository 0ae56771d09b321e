"""The simulation: jobs arrive, the production scheduler places them, centers and links run them.

Only the clock and the backends are swapped: every cycle cuts a `Snapshot`
from the capacity calendar, hands the pending jobs to a policy (for "ours",
`computenet.scheduler.schedule_cycle` itself), and the placements it returns
are carried out by simulated centers (chips, a local queue when chips are
still busy) and links (inputs staged over shared bandwidth). Every run is
metered with `computenet.metering.charge`, the function the server bills with.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import numpy as np

from computenet.metering import TransferLot, charge
from computenet.model import JobState, check_transition
from computenet.scheduler import HORIZON_SLOTS, Decision, JobRequest, Reservation, Snapshot
from computenet.scheduler.fairshare import FAIR_START_WINDOW, RECLAIMED, fair_cycle
from computenet.scheduler.framework import evaluate
from computenet.scheduler.index import network_index
from computenet.scheduler.ordering import StandingKey, order_key, standing_key, with_shares
from computenet.scheduler.plugins import PROFILES, Profile
from computenet.scheduler.preemption import RESUME_S, Running, choose, resumed, work_left
from computenet.scheduler.replan import MIN_EARLIER, REPLAN_BATCH, Planned, replan
from computenet.scheduler.tenancy import TenantUse, decay
from computenet.sim.calendar import CapacityCalendar
from computenet.sim.engine import (
    PRIO_ARRIVAL,
    PRIO_CYCLE,
    PRIO_FINISH,
    PRIO_OUTAGE,
    PRIO_START,
    PRIO_TRANSFER,
    Environment,
)
from computenet.sim.links import LinkModel
from computenet.sim.results import (
    CODE,
    STATES,
    TERMINAL_CODES,
    Outage,
    Policy,
    Records,
    SimConfig,
    SimResult,
    Totals,
)
from computenet.sim.workload import Workload

log = logging.getLogger(__name__)


@dataclass
class _Active:
    """A placed job until it ends: where, when, and what is still moving."""

    pool: int
    center: int
    count: int
    start_s: float
    finish_s: float
    run_est_s: float
    inputs: list[tuple[float, str, str, Decimal]]  # (GB, from, dataset id, ¥/GB)
    attempt: int
    state: JobState = JobState.SCHEDULED
    hold_s: float = math.nan
    run_s: float = math.nan
    transfers_left: int = 0
    moved: list[TransferLot] = field(default_factory=list)  # lots delivered, to be billed
    queued: bool = False
    staging: bool = False
    staged: bool = False
    # Set when it runs: the whole job's true run on this pool, the share of the work
    # still to do when this run began, and the seconds of restoring a checkpoint first.
    full_s: float = math.nan
    left0: float = 1.0
    restore_s: float = 0.0


def _paid(lots: list[TransferLot]) -> bool:
    """Whether the data moved so far costs anything (a job that only staged is billed for it)."""
    return any(lot.cny for lot in lots)


_NO_SHIFT = Profile("sim-feasibility", shift=False)

# The cyclic garbage collector's thresholds while a simulation runs (Python's defaults
# are 700, 10, 10). A run allocates millions of small containers (requests, decisions,
# placements, events), nearly all freed by reference counting; with the defaults the
# collector ran ~1,300 young and ~120 middle collections on `china` 30k × 9 days and
# took ~20 % of the CPU (the run with the collector off: 8.2 s against 10.2 s).
_GC_THRESHOLD = (100_000, 50, 100)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Collect cycles rarely while simulating; put the collector back as it was after.

    What exists before the run (the modules, the network, the workload) is
    frozen out of the collections (`gc.freeze`) unless the process froze
    something itself. Only when garbage is looked for changes, never what is
    kept: decisions are the same (`bench/sim_scale.py`'s fingerprint).
    """
    threshold = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(*(max(a, b) for a, b in zip(threshold, _GC_THRESHOLD, strict=True)))
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()


class _DecidesDue(Protocol):
    """`SchedulerPolicy.decide_due`: decisions of the due jobs, and the deferred ones' instants."""

    def __call__(
        self, snapshot: Snapshot, jobs: Sequence[JobRequest], waiting: int
    ) -> tuple[list[Decision], dict[str, datetime]]: ...


class Simulation:
    """One policy over one workload on one network; `run()` returns a `SimResult`."""

    def __init__(
        self,
        workload: Workload,
        policy: Policy,
        config: SimConfig | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.wl = workload
        self.net = workload.network
        self.policy = policy
        self.cfg = config or SimConfig()
        self.progress = progress
        self.env = Environment(self.cfg.epoch)
        self.cal = CapacityCalendar(self.net, self.env, self.cfg.patience_h)
        self.idx = network_index(self.net)
        self.links = LinkModel(self.net)
        n = len(workload)
        self.n = n
        self.rec = Records.empty(n)
        self.tot = Totals()
        n_pools = self.idx.n_pools
        self.total = self.idx.pool_total.astype(np.int64)
        self.held = np.zeros(n_pools, dtype=np.int64)
        self.centers = self.net.centers
        self.online = np.ones(len(self.centers), dtype=bool)
        self._down = np.zeros(len(self.centers), dtype=np.int64)
        self.queue: list[deque[int]] = [deque() for _ in range(n_pools)]
        self.req: dict[int, JobRequest] = {}
        self.pending: dict[int, None] = {}
        # The pending jobs in the cycle's order: a heap of (standing_key, job), and each
        # pending job's current key (an entry with another key is stale).
        self._backlog: list[tuple[StandingKey, int]] = []
        self._order: dict[int, StandingKey] = {}
        self.active: dict[int, _Active] = {}
        self.done = 0
        self._cycle_at: float | None = None
        self._feasible_memo: dict[object, tuple[bool, str]] = {}
        # Pending job → (the decision's reasons, their text as written to `rec.reasons`).
        self._said: dict[int, tuple[tuple[str, ...], str]] = {}
        self._empty_snap: Snapshot | None = None
        hours = math.ceil(max(workload.days, 1.0) * 24) + 24 * 7
        self.util = np.zeros((len(self.centers), hours))
        self.policy_s = 0.0
        self.cycles = 0
        self.placements = 0
        self.overcommits = 0
        self.replans = 0
        self._center_of = {c.id: i for i, c in enumerate(self.centers)}
        self._links_version = -1
        self._price: dict[tuple[str, str], Decimal] = {}
        paths = self.idx.paths
        rows = [paths.index(node) for node in self.net.node_ids]
        self._reaches_all = np.isfinite(
            paths.latency_s[np.ix_(np.array(rows), self.idx.center_node)]
        ).all(axis=1)
        self._outages = self._all_outages()
        # Tenancy (docs/tenancy.md): with several tenants, fair share orders the cycle.
        self._fair = len(set(workload.tenants)) > 1
        self._usage: dict[str, tuple[float, float]] = {}  # tenant → (decayed CU·h, at s)
        # A policy that decides only the jobs due a decision (`SchedulerPolicy.decide_due`):
        # the simulator keeps the deferred ones ("parked") out of the cycle itself, until
        # their instant or a change of their request, instead of handing each over every
        # cycle for the policy to recognize (3M visits in the 100k-job `china` run).
        # Fair share orders the whole backlog anew each cycle: it keeps the plain call.
        self._decide_due: _DecidesDue | None = (
            None if self._fair else getattr(policy, "decide_due", None)
        )
        self._parked: dict[int, tuple[datetime, JobRequest]] = {}  # job → (until, request)
        self._wakes: list[tuple[datetime, int]] = []  # heap of (until, job) of parked jobs
        # Preemption (scheduler/preemption.py): under a profile that preempts, with
        # preemptible jobs in the workload. A preempted job's share of its work still to
        # do, truly (`_left`) and as its plan tells it (`_left_plan`, what the server knows).
        prof = PROFILES.get(str(getattr(policy, "profile", "")))
        assert workload.preemptible is not None
        self._preempts: Profile | None = (
            prof if prof is not None and prof.preempt and workload.preemptible.any() else None
        )
        self._left: dict[int, float] = {}
        self._left_plan: dict[int, float] = {}

    # ---------------------------------------------------------------- setup

    def _all_outages(self) -> list[Outage]:
        outs = list(self.cfg.outages)
        if self.cfg.failure_mtbf_h:
            rng = np.random.default_rng(self.cfg.seed + 7919)
            horizon = self.wl.days * 86400.0
            for c in self.centers:
                t = 0.0
                while True:
                    t += rng.exponential(self.cfg.failure_mtbf_h * 3600.0)
                    if t >= horizon:
                        break
                    dur = rng.exponential(self.cfg.failure_mttr_h * 3600.0)
                    outs.append(Outage(c.id, t, t + dur, planned=False))
                    t += dur
        for o in outs:
            if o.center not in {c.id for c in self.centers}:
                from computenet.errors import ValidationError

                raise ValidationError(f"unknown center '{o.center}'", field="outages.center")
        return outs

    # ---------------------------------------------------------------- run

    def run(self) -> SimResult:
        """Simulate until every job has ended (or the drain limit), and collect the results."""
        with _few_collections():
            return self._run_all()

    def _run_all(self) -> SimResult:
        wall0 = time.perf_counter()
        env = self.env
        for k, o in enumerate(self._outages):
            if o.planned:
                ci = self._center_of[o.center]
                for p in np.flatnonzero(self.idx.pool_center == ci):
                    self.cal.reserve(
                        ("maint", k, int(p)), int(p), int(self.total[p]), o.start_s, o.end_s
                    )
            env.at(o.start_s, PRIO_OUTAGE, self._outage_start, k)
            env.at(o.end_s, PRIO_OUTAGE, self._outage_end, k)
        if self.n:
            env.at(float(self.wl.arrival[0]), PRIO_ARRIVAL, self._arrive, 0)
        limit = self.wl.days * 86400.0 + self.cfg.drain_days * 86400.0
        step = max(self.n // 200, 1)
        last_report = -1
        progress = self.progress
        if self.done < self.n:
            for _ in env.steps(limit):
                if progress is not None and self.done // step != last_report:
                    last_report = self.done // step
                    progress(self.done, self.n, env.now)
                if self.done >= self.n:
                    break
        end_s = env.now
        self._finalize(end_s)
        if self.progress is not None:
            self.progress(self.done, self.n, env.now)
        return SimResult(
            workload=self.wl,
            policy=self.policy.name,
            config=self.cfg,
            records=self.rec,
            totals=self.tot,
            util=self.util,
            end_s=end_s,
            wall_s=time.perf_counter() - wall0,
            policy_s=self.policy_s,
            cycles=self.cycles,
            placements=self.placements,
            events=env.processed,
            overcommits=self.overcommits,
            notes=list(self.wl.notes),
        )

    # ---------------------------------------------------------------- state changes

    def _set(self, i: int, new: JobState) -> None:
        old = STATES[self.rec.state[i]]
        check_transition(old, new)
        self.rec.state[i] = CODE[new]
        if CODE[new] in TERMINAL_CODES:
            self.done += 1
            self.rec.end[i] = self.env.now
            self.req.pop(i, None)

    def _want_cycle(self, at: float | None = None) -> None:
        """Ask for a scheduling cycle at the next cycle tick (or at `at`, if earlier is not due)."""
        now = self.env.now
        cs = self.cfg.cycle_s
        t = math.ceil(now / cs) * cs if at is None else at
        if self._cycle_at is not None and self._cycle_at <= t:
            return
        self._cycle_at = t
        self.env.at(t, PRIO_CYCLE, self._cycle, t)

    # ---------------------------------------------------------------- arrivals

    def _arrive(self, i: int) -> None:
        if i + 1 < self.n:
            self.env.at(float(self.wl.arrival[i + 1]), PRIO_ARRIVAL, self._arrive, i + 1)
        req = self.wl.request(i, self.cfg.epoch)
        ok, why = self._statically_feasible(i, req)
        self.req[i] = req
        if not ok:
            self.rec.reasons[i] = f"no center can ever run it: {why}"
            self._set(i, JobState.CANCELLED)
            return
        self.pending[i] = None
        self._queue_up(i)
        if req.deadline is not None and self.cfg.resubmit_late:
            self.env.at(float(self.wl.deadline[i]), PRIO_ARRIVAL, self._expire, i)  # type: ignore[index]
        if self.cfg.max_pending_days is not None:
            self.env.at(
                float(self.wl.arrival[i]) + self.cfg.max_pending_days * 86400.0,
                PRIO_ARRIVAL,
                self._withdraw,
                (i, 0),
            )
        self._want_cycle()

    def _statically_feasible(self, i: int, req: JobRequest) -> tuple[bool, str]:
        """Whether any pool could ever run the job (asked of `evaluate` on an empty network)."""
        wl = self.wl
        loc = int(wl.data_loc[i]) if wl.data_gb[i] > 0 else -1  # type: ignore[index]
        if loc >= 0 and self._reaches_all[loc] and not wl.residency[i]:  # type: ignore[index]
            loc = -2  # linked to every center: where exactly does not change the answer
        key = (int(wl.cls[i]), int(wl.count[i]), int(wl.shape[i]), loc, bool(wl.residency[i]))  # type: ignore[index]
        hit = self._feasible_memo.get(key)
        if hit is not None:
            return hit
        if self._empty_snap is None:
            self._empty_snap = Snapshot(
                network=self.net,
                now=self.cfg.epoch,
                index=self.idx,
                free=np.repeat(self.total[:, None], HORIZON_SLOTS, axis=1),
                online=np.ones(len(self.centers), dtype=bool),
                patience_h=self.cfg.patience_h,
            )
        snap = self._empty_snap
        probe = replace(req, deadline=None, budget_cny=None, latency_class="batch")
        opts = evaluate(snap, snap.free, probe, _NO_SHIFT)
        out = (bool(opts.feasible.any()), "; ".join(opts.why_not) or "no feasible option")
        self._feasible_memo[key] = out
        return out

    def _withdraw(self, token: tuple[int, int]) -> None:
        """The user gives up on a job that has waited too long without ever being placed."""
        i, attempts = token
        if i in self.pending and int(self.rec.attempts[i]) == attempts:
            del self.pending[i]
            self._parked.pop(i, None)
            why = self.rec.reasons.get(i, "never placed")
            self.rec.reasons[i] = (
                f"withdrawn after {self.cfg.max_pending_days:g} days pending: {why}"
            )
            self._set(i, JobState.CANCELLED)

    def _expire(self, i: int) -> None:
        """A pending job's deadline passed: it is resubmitted to run as soon as possible."""
        if i in self.pending and i in self.req and self.req[i].deadline is not None:
            self.req[i] = new = replace(self.req[i], deadline=None)
            parked = self._parked.get(i)
            if parked is not None and not (parked[1] is new or parked[1] == new):
                del self._parked[i]  # a new request: decided again (as `keeps` says)
            self._queue_up(i)
            self._want_cycle()

    # ---------------------------------------------------------------- the cycle

    def _cycle(self, t: float) -> None:
        if self._cycle_at != t:
            return
        self._cycle_at = None
        if self.cfg.replan:
            self._replan()
        if not self.pending:
            return
        now = self.env.now
        self.cycles += 1
        if self._preempts is not None:
            self._preempt_for_waiting(now, self._preempts)
        if self._decide_due is not None:
            self._cycle_due(now, self._decide_due)
            return
        batch = self._fair_batch() if self._fair else self._batch()
        reported = self.total - self.held
        snap = self.cal.snapshot(now, online=self.online, datasets={}, reported_free=reported)
        reqs = [self.req[i] for i in batch]
        t0 = time.perf_counter()
        if self._fair:  # fair share among the workload's tenants (docs/tenancy.md)
            if self._reclaim():
                batch = self._fair_batch()
                reqs = [self.req[i] for i in batch]
                snap = self.cal.snapshot(
                    now, online=self.online, datasets={}, reported_free=self.total - self.held
                )
            snap = replace(snap, tenants=self._tenant_uses())
            profile = str(getattr(self.policy, "profile", "min-cost"))
            reqs, decisions = fair_cycle(snap, reqs, self.policy, profile)
        else:
            decisions = self.policy(snap, reqs)
        self.policy_s += time.perf_counter() - t0
        said, written = self._said, self.rec.reasons
        for i, d in zip(batch, decisions, strict=True):
            if d.placement is None:
                # A kept decision (a deferred job) comes back every cycle with the same
                # reasons: join them once, unless something else wrote the job's reason.
                last = said.get(i)
                if last is None or last[0] is not d.reasons or written.get(i) is not last[1]:
                    text = "; ".join(d.reasons)
                    written[i] = text
                    said[i] = (d.reasons, text)
                continue
            said.pop(i, None)
            self._commit(i, d)
        self._next_cycle(now)

    def _next_cycle(self, now: float) -> None:
        if self.pending:
            # Nothing changes the calendar until a job ends (which asks for a cycle itself)
            # or the hour turns (the horizon moves, tariffs change).
            self._want_cycle(
                at=max(math.floor(now / 3600.0) * 3600.0 + 3600.0, now + self.cfg.cycle_s)
            )

    def _cycle_due(self, now: float, decide: _DecidesDue) -> None:
        """`_cycle` for a policy that decides only the due jobs (`SchedulerPolicy.decide_due`).

        The same batch and the same decisions as handing the whole batch to
        `SchedulerPolicy.__call__`: a parked job is one whose deferred decision
        that call would keep (its instant not reached, its request unchanged),
        and parked jobs in the batch are counted as `waiting`. They are never
        visited: their reasons were written when they were deferred.
        """
        at = self.env.datetime(now)
        parked, wakes = self._parked, self._wakes
        while wakes and not at < wakes[0][0]:  # kept while now < its instant
            until, i = heapq.heappop(wakes)
            p = parked.get(i)
            if p is not None and p[0] == until:
                del parked[i]
        if len(self.pending) <= self.cfg.max_batch:
            due = [i for i in self.pending if i not in parked]
            kept = len(self.pending) - len(due)
        else:
            batch = self._batch()
            due = [i for i in batch if i not in parked]
            kept = len(batch) - len(due)
        snap = self.cal.snapshot(
            now, online=self.online, datasets={}, reported_free=self.total - self.held
        )
        req = self.req
        reqs = [req[i] for i in due]
        t0 = time.perf_counter()
        decisions, wake = decide(snap, reqs, kept)
        self.policy_s += time.perf_counter() - t0
        said, written = self._said, self.rec.reasons
        for i, r, d in zip(due, reqs, decisions, strict=True):
            if d.placement is None:
                last = said.get(i)
                if last is None or last[0] is not d.reasons or written.get(i) is not last[1]:
                    text = "; ".join(d.reasons)
                    written[i] = text
                    said[i] = (d.reasons, text)
                again = wake.get(r.id)
                if again is not None:  # deferred: its decision stands until then
                    parked[i] = (again, r)
                    heapq.heappush(wakes, (again, i))
                continue
            said.pop(i, None)
            self._commit(i, d)
        self._next_cycle(now)

    def _replan(self) -> None:
        """Move placed, not yet started jobs to earlier or cheaper plans (as the server does).

        Only for the production scheduler's profiles; a job moves only within
        its pool (its inputs may already be on their way there).
        """
        profile = getattr(self.policy, "profile", None)
        if profile not in PROFILES:
            return
        now = self.env.now
        ahead = now + MIN_EARLIER.total_seconds()
        cands = [
            i
            for i, a in self.active.items()
            if a.state == JobState.SCHEDULED and math.isnan(a.hold_s) and a.start_s > ahead
        ]
        if not cands:
            return
        cands.sort(key=lambda i: (-self.req[i].priority, self.active[i].start_s, i))
        cands = cands[:REPLAN_BATCH]
        planned = []
        for i in cands:
            a = self.active[i]
            self.cal.release(i)
            chip = self.idx.pool_chip[a.pool]
            center = self.centers[a.center].id
            req = replace(self.req[i], pin_center=center, types=(chip,))
            held = Reservation(
                center, chip, a.count, self.env.datetime(a.start_s), self.env.datetime(a.finish_s)
            )
            planned.append(Planned(req, held, Decimal(int(self.rec.planned_fen[i])) / 100))
        snap = self.cal.snapshot(
            now, online=self.online, datasets={}, reported_free=self.total - self.held
        )
        moves = {m.job_id: m.placement for m in replan(snap, planned, str(profile))}
        for i, p in zip(cands, planned, strict=True):
            a = self.active[i]
            pl = moves.get(p.request.id)
            if pl is not None:
                a.start_s = max(self.env.seconds(pl.planned_start), now)
                a.finish_s = max(self.env.seconds(pl.finish), a.start_s)
                self.rec.planned_fen[i] = int(pl.total_cny * 100)
                self.replans += 1
                self.env.at(a.start_s, PRIO_START, self._start, (i, a.attempt))
            self.cal.reserve(i, a.pool, a.count, a.start_s, a.finish_s)

    def _queue_up(self, i: int) -> None:
        """Put pending job `i` in the backlog's order (again, when its request changed)."""
        key = standing_key(self.req[i])
        self._order[i] = key
        heapq.heappush(self._backlog, (key, i))

    def _batch(self) -> list[int]:
        """The pending jobs this cycle looks at: the scheduler's order, at most `max_batch`.

        The backlog is a heap in `standing_key` order (the cycle's order, which
        does not move with the clock), so a cycle takes its first `max_batch`
        jobs in O(max_batch log n) instead of sorting every pending job: with a
        backlog of 10⁵ jobs the sort was nearly all of a 1M-job run. Entries of
        jobs placed, withdrawn or re-ordered since are dropped as they surface.
        Jobs the policy keeps a decision on (`Policy.keeps`) come along in order
        without counting against `max_batch` (for a policy that decides only the
        due jobs, those parked by `_cycle_due`: the same ones).
        """
        if len(self.pending) <= self.cfg.max_batch:
            return list(self.pending)
        now = self.env.datetime()
        parked = self._parked if self._decide_due is not None else None
        out: list[int] = []
        counted = 0
        while self._backlog and counted < self.cfg.max_batch:
            key, i = heapq.heappop(self._backlog)
            if i in self.pending and self._order.get(i) == key and (not out or out[-1] != i):
                out.append(i)
                # A job whose decision the policy keeps (deferred to its hour) goes along
                # without taking a place: hundreds waiting must not starve the arrivals.
                counted += (
                    i not in parked
                    if parked is not None
                    else not self.policy.keeps(self.req[i], now)
                )
        for i in out:  # still pending until the cycle places them; placed ones drop out later
            heapq.heappush(self._backlog, (self._order[i], i))
        return out

    def _tenant_uses(self) -> dict[str, TenantUse]:
        """Each tenant's fair-share standing now: decayed CU·h placed, and its weight."""
        now = self.env.now
        out = {}
        for t in self.wl.tenants:
            used, at = self._usage.get(t, (0.0, now))
            out[t] = TenantUse(usage=decay(used, now - at), weight=self.wl.weight_of(t))
        return out

    def _reclaim(self) -> int:
        """Give back plans made ahead once another tenant waits, as the server does
        (`server.scheduling.reclaim_for_fair_share`): jobs placed, not started, no data
        moving or moved, starting later than `FAIR_START_WINDOW` go back to pending."""
        waiting = {self.req[i].tenant for i in self.pending}
        if not waiting:
            return 0
        now = self.env.now
        after = now + FAIR_START_WINDOW.total_seconds()
        ahead = [
            i
            for i, a in self.active.items()
            if a.state == JobState.SCHEDULED
            and math.isnan(a.hold_s)
            and not a.transfers_left
            and not a.moved
            and a.start_s > after
        ]
        if len(waiting | {self.req[i].tenant for i in ahead}) < 2:
            return 0
        for i in ahead:
            self.active.pop(i)
            self.cal.release(i)
            req = self.req[i]
            used, at = self._usage.get(req.tenant, (0.0, now))
            self._usage[req.tenant] = (max(decay(used, now - at) - req.cu_hours, 0.0), now)
            self.rec.reasons[i] = RECLAIMED
            self._set(i, JobState.PENDING)
            self.pending[i] = None
            self._queue_up(i)
        return len(ahead)

    def _fair_batch(self) -> list[int]:
        """The pending jobs this cycle looks at when fair share orders them: the first
        `max_batch` in the order with this cycle's fair-share tags (every pending job's
        tag moves with the usage, so the standing backlog heap cannot hold them)."""
        ids = list(self.pending)
        if len(ids) <= self.cfg.max_batch:
            return ids
        reqs = with_shares([self.req[i] for i in ids], self._tenant_uses())
        now = self.env.datetime()
        ranked = sorted(range(len(ids)), key=lambda k: order_key(reqs[k], now))
        return [ids[k] for k in ranked[: self.cfg.max_batch]]

    def _commit(self, i: int, d: Decision) -> None:
        pl = d.placement
        assert pl is not None
        p = self.idx.pool_of.get((pl.center, pl.chip))
        if p is None or pl.count != int(self.wl.count[i]):
            self.rec.reasons[i] = f"policy returned an impossible placement ({pl.center}/{pl.chip})"
            return
        ci = int(self.idx.pool_center[p])
        now = self.env.now
        start = max(self.env.seconds(pl.planned_start), now)
        finish = max(self.env.seconds(pl.finish), start)
        req = self.req[i]
        inputs = []
        by_id = {ds.id: ds for ds in req.inputs}
        for ds_id, src in pl.source_replicas.items():
            ds = by_id.get(ds_id)
            if ds is None or src == pl.center:
                continue
            price = self._price.get((src, pl.center))
            if price is None:
                price = self._price[(src, pl.center)] = self.idx.paths.price(src, pl.center)
            inputs.append((ds.size_gb * self.net.data_scale, src, ds_id, price))
        a = _Active(
            pool=p,
            center=ci,
            count=pl.count,
            start_s=start,
            finish_s=finish,
            run_est_s=pl.run_s,
            inputs=inputs,
            attempt=int(self.rec.attempts[i]),
        )
        del self.pending[i]
        self._parked.pop(i, None)
        if self._fair:  # fair share counts work when it is placed (as the server does)
            used, at = self._usage.get(req.tenant, (0.0, now))
            self._usage[req.tenant] = (decay(used, now - at) + req.cu_hours, now)
        self.active[i] = a
        self._set(i, JobState.SCHEDULED)
        self.rec.pool[i] = p
        self.rec.placed[i] = now
        self.rec.planned_fen[i] = int(pl.total_cny * 100)
        self.cal.reserve(i, p, a.count, start, finish)
        self.placements += 1
        if self.cfg.prefetch:
            self._stage(i, a)
        self.env.at(start, PRIO_START, self._start, (i, a.attempt))

    # ---------------------------------------------------------------- centers

    def _start(self, token: tuple[int, int]) -> None:
        i, attempt = token
        a = self.active.get(i)
        if a is None or a.attempt != attempt or a.state == JobState.RUNNING or a.queued:
            return
        if not math.isnan(a.hold_s):
            return  # re-planned earlier: it already started at its new start
        if self.held[a.pool] + a.count <= self.total[a.pool]:
            self._hold(i, a)
        else:
            # The chips are still busy (a job before overran its estimate): wait at the center.
            self.overcommits += 1
            a.queued = True
            self.queue[a.pool].append(i)

    def _hold(self, i: int, a: _Active) -> None:
        """Take the chips; run once the inputs are in."""
        now = self.env.now
        a.queued = False
        self.held[a.pool] += a.count
        a.hold_s = now
        self.rec.hold_start[i] = now
        if not a.staging:
            self._stage(i, a)
        elif a.staged:
            self._run(i, a)

    def _stage(self, i: int, a: _Active) -> None:
        """Start moving the inputs to the center (at lease time with prefetch, else at start)."""
        a.staging = True
        now = self.env.now
        center_id = self.centers[a.center].id
        for k, (gb, src, _ds, price) in enumerate(a.inputs):
            t = self.links.start((i, a.attempt, k), src, center_id, gb, now) if gb > 0 else None
            if t is not None and t.links:
                a.transfers_left += 1
            else:
                # Nothing to move over a link (empty input, or no path left): billed as is.
                a.moved.append(TransferLot.of_gb(gb, src, price))
                self.rec.wan_gb[i] += gb
        if a.transfers_left:
            a.state = JobState.STAGING
            self._set(i, JobState.STAGING)
            self._wake_links()
        else:
            self._staged((i, a.attempt))

    def _wake_links(self) -> None:
        t = self.links.next_completion()
        if math.isfinite(t) and self.links.version != self._links_version:
            self._links_version = self.links.version
            self.env.at(t, PRIO_TRANSFER, self._links_due, self.links.version)

    def _links_due(self, version: int) -> None:
        if version != self.links.version:
            return
        self._links_version = -1
        for t in self.links.finish_due(self.env.now):
            key: tuple[int, int, int] = t.key  # type: ignore[assignment]
            i, attempt, k = key
            a = self.active.get(i)
            if a is None or a.attempt != attempt:
                continue
            gb, src, _ds, price = a.inputs[k]
            a.moved.append(TransferLot.of_gb(gb, src, price))
            self.rec.wan_gb[i] += gb
            a.transfers_left -= 1
            if a.transfers_left == 0:
                self.env.at(self.env.now + t.latency_s, PRIO_TRANSFER, self._staged, (i, attempt))
        self._wake_links()

    def _staged(self, token: tuple[int, int]) -> None:
        i, attempt = token
        a = self.active.get(i)
        if a is None or a.attempt != attempt or a.staged:
            return
        a.staged = True
        if not math.isnan(a.hold_s):
            self._run(i, a)

    def _run(self, i: int, a: _Active) -> None:
        now = self.env.now
        a.state = JobState.RUNNING
        self._set(i, JobState.RUNNING)
        a.run_s = now
        self.rec.run_start[i] = now
        if now + a.run_est_s > a.finish_s + 1e-6:
            # Started late (slow staging or a busy pool): the agent's report moves the end.
            a.finish_s = now + a.run_est_s
            self.cal.reserve(i, a.pool, a.count, a.start_s, a.finish_s)
        rate = float(self.idx.pflops[self.wl.classes[int(self.wl.cls[i])]][a.pool]) * a.count
        a.full_s = float(self.wl.cu_hours[i]) / rate * 3600.0 * float(self.wl.runtime_factor[i])  # type: ignore[index]
        true_run = a.full_s
        left = self._left.get(i)
        if left is not None:  # resumed after a preemption: the rest, after restoring
            a.left0, a.restore_s = left, RESUME_S
            true_run = left * a.full_s + RESUME_S
        self.env.at(now + true_run, PRIO_FINISH, self._finish, (i, a.attempt))

    def _finish(self, token: tuple[int, int]) -> None:
        i, attempt = token
        a = self.active.get(i)
        if a is None or a.attempt != attempt or a.state != JobState.RUNNING:
            return
        self._meter(i, a, self.env.now)
        del self.active[i]
        self._set(i, JobState.SUCCEEDED)
        self._release(i, a)
        self._want_cycle()

    def _meter(self, i: int, a: _Active, until: float) -> None:
        """Bill this attempt with the server's metering function."""
        center = self.centers[a.center]
        chip_name = self.idx.pool_chip[a.pool]
        run_from = a.run_s if not math.isnan(a.run_s) else until
        ch = charge(
            center,
            self.net.chips[chip_name],
            self.net.throughput,
            self.wl.classes[int(self.wl.cls[i])],
            a.count,
            self.env.datetime(run_from),
            self.env.datetime(until),
            # Each input is a lot from its own source at its own path's price.
            transfers=a.moved,
        )
        e, s, tr = (int(x * 100) for x in (ch.energy_cny, ch.service_cny, ch.transfer_cny))
        r, t = self.rec, self.tot
        r.energy_fen[i] += e
        r.service_fen[i] += s
        r.transfer_fen[i] += tr
        r.kwh[i] += ch.kwh
        r.co2_kg[i] += ch.co2_kg
        r.cu_hours[i] += ch.cu_hours
        r.chip_hours[i] += ch.chip_hours
        t.energy_fen += e
        t.service_fen += s
        t.transfer_fen += tr
        t.kwh += ch.kwh
        t.co2_kg += ch.co2_kg
        t.cu_hours += ch.cu_hours

    def _release(self, i: int, a: _Active) -> None:
        """Give back chips, the reservation and the queue slot; let waiting jobs in."""
        self.cal.release(i)
        if a.queued:
            with contextlib.suppress(ValueError):
                self.queue[a.pool].remove(i)
            a.queued = False
        if not math.isnan(a.hold_s):
            self.held[a.pool] -= a.count
            self._spread(a.center, a.hold_s, self.env.now, a.count)
            a.hold_s = math.nan
            self._drain_queue(a.pool)

    def _drain_queue(self, p: int) -> None:
        q = self.queue[p]
        if not q:
            return
        kept: deque[int] = deque()
        while q:
            j = q.popleft()
            b = self.active.get(j)
            if b is None or not b.queued:
                continue
            if self.held[p] + b.count <= self.total[p]:
                self._hold(j, b)
            else:
                kept.append(j)
        self.queue[p] = kept

    def _spread(self, c: int, t0: float, t1: float, count: int) -> None:
        """Add `count` chips held over [t0, t1) to center `c`'s hourly chip-seconds."""
        if t1 <= t0:
            return
        h0, h1 = int(t0 // 3600), int(t1 // 3600)
        if h1 >= self.util.shape[1]:
            extra = np.zeros((self.util.shape[0], h1 + 1 - self.util.shape[1] + 24 * 7))
            self.util = np.concatenate([self.util, extra], axis=1)
        u = self.util[c]
        if h0 == h1:
            u[h0] += count * (t1 - t0)
        else:
            u[h0] += count * ((h0 + 1) * 3600.0 - t0)
            if h1 > h0 + 1:
                u[h0 + 1 : h1] += count * 3600.0
            u[h1] += count * (t1 - h1 * 3600.0)

    # ---------------------------------------------------------------- outages

    # ---------------------------------------------------------------- preemption

    def _preempt_for_waiting(self, now: float, profile: Profile) -> None:
        """Stop preemptible running jobs for much shorter waiting ones (`preemption.choose`,
        as the server's cycle does); a stop here is immediate (the server waits for the
        agent's report, counting the chips as free meanwhile)."""
        assert self.wl.preemptible is not None and self.wl.priority is not None
        running: dict[str, int] = {}
        cands = []
        for i, a in self.active.items():
            if a.state == JobState.RUNNING and self.wl.preemptible[i]:
                r = Running(
                    id=self.wl.job_id(i),
                    center=self.centers[a.center].id,
                    chip=self.idx.pool_chip[a.pool],
                    count=a.count,
                    left_s=max(a.finish_s - now, 0.0),
                    preemptions=int(self.rec.preemptions[i]),
                    priority=int(self.wl.priority[i]),
                )
                running[r.id] = i
                cands.append(r)
        if not cands:
            return
        snap = self.cal.snapshot(
            now, online=self.online, datasets={}, reported_free=self.total - self.held
        )
        t0 = time.perf_counter()
        # The jobs this cycle decides (as the server passes): not those parked until later.
        at = self.env.datetime(now)
        parked = self._parked
        waiting = [self.req[i] for i in self.pending if i not in parked or not at < parked[i][0]]
        chosen = choose(snap, waiting, cands, profile)
        self.policy_s += time.perf_counter() - t0
        for pre in chosen:
            self._preempt(running[pre.victim], pre.for_job)

    def _preempt(self, i: int, for_job: str) -> None:
        """Stop running job `i` (billed for what ran) and queue the rest of its work, to
        resume at its center from its checkpoint."""
        a = self.active.pop(i)
        now = self.env.now
        center, chip = self.centers[a.center].id, self.idx.pool_chip[a.pool]
        ran = max(now - a.run_s - a.restore_s, 0.0)
        self._left[i] = max(a.left0 - ran / a.full_s, 0.0)
        # The plan knows only the planned run: the server's estimate, one rule.
        self._left_plan[i] = work_left(
            self._left_plan.get(i, 1.0), now - a.run_s, a.run_est_s, a.restore_s > 0
        )
        self._meter(i, a, now)
        self._release(i, a)
        self.rec.attempts[i] += 1
        self.rec.preemptions[i] += 1
        self.rec.reasons[i] = (
            f"preempted at {center} for the shorter job {for_job}; resumes there from its"
            " checkpoint"
        )
        self._set(i, JobState.PENDING)
        self.req[i] = resumed(
            self.idx,
            replace(self.req[i], cu_hours=float(self.wl.cu_hours[i])),  # its work as submitted
            self._left_plan[i],
            center,
            chip,
            self.env.datetime(now),
        )
        self.pending[i] = None
        self._queue_up(i)

    def _outage_start(self, k: int) -> None:
        o = self._outages[k]
        ci = self._center_of[o.center]
        self._down[ci] += 1
        self.online[ci] = False
        for i in [i for i, a in self.active.items() if a.center == ci]:
            self._requeue(
                i, f"{o.center} went offline ({'maintenance' if o.planned else 'failure'})"
            )

    def _outage_end(self, k: int) -> None:
        o = self._outages[k]
        ci = self._center_of[o.center]
        if o.planned:
            for p in np.flatnonzero(self.idx.pool_center == ci):
                self.cal.release(("maint", k, int(p)))
        self._down[ci] -= 1
        if self._down[ci] <= 0:
            self._down[ci] = 0
            self.online[ci] = True
            self._want_cycle()

    def _requeue(self, i: int, why: str) -> None:
        """The job lost its center: bill what ran, free everything, and retry elsewhere."""
        a = self.active.pop(i)
        now = self.env.now
        for k in range(len(a.inputs)):
            self.rec.wan_gb[i] += self.links.cancel((i, a.attempt, k), now)
        self._wake_links()
        if a.state == JobState.RUNNING or _paid(a.moved):
            self._meter(i, a, now)
        self._release(i, a)
        self.rec.attempts[i] += 1
        self.rec.reasons[i] = why
        # Attempts stopped for preemption are not failures.
        if int(self.rec.attempts[i]) - int(self.rec.preemptions[i]) >= self.cfg.max_attempts:
            self._set(i, JobState.FAILED)
            return
        self._set(i, JobState.PENDING)
        req = self.req[i]
        center_id = self.centers[a.center].id
        if req.pin_center == center_id and i in self._left:
            # A preempted job's checkpoint is at the center it lost: it starts over elsewhere.
            req = replace(req, cu_hours=float(self.wl.cu_hours[i]), pin_center=None)
            del self._left[i]
            self._left_plan.pop(i, None)
        deadline = req.deadline
        if deadline is not None and self.cfg.resubmit_late and deadline <= self.env.datetime():
            deadline = None
        self.req[i] = replace(req, avoid_centers=(*req.avoid_centers, center_id), deadline=deadline)
        self.pending[i] = None
        self._queue_up(i)
        self._want_cycle()

    # ---------------------------------------------------------------- the end

    def _finalize(self, end_s: float) -> None:
        """Jobs still open when the run stops are cancelled (and billed for what ran)."""
        for i in list(self.pending):
            self.rec.reasons.setdefault(i, "never placed")
            self.rec.reasons[i] = "simulation ended while pending: " + self.rec.reasons[i]
            self._set(i, JobState.CANCELLED)
        self.pending.clear()
        for i in list(self.active):
            a = self.active.pop(i)
            for k in range(len(a.inputs)):
                self.rec.wan_gb[i] += self.links.cancel((i, a.attempt, k), end_s)
            if a.state == JobState.RUNNING or _paid(a.moved):
                self._meter(i, a, end_s)
            self._release(i, a)
            self.rec.reasons[i] = f"simulation ended while {a.state.value}"
            self._set(i, JobState.CANCELLED)

"""The immutable input of one scheduling cycle: network, time, capacity calendar, datasets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import numpy as np

from computenet.errors import ValidationError
from computenet.metering.vouchers import Voucher
from computenet.model import Dataset, JobSpec, Network, limits
from computenet.model.center import CST
from computenet.scheduler.index import NetworkIndex, network_index
from computenet.scheduler.region_quotes import Quotes
from computenet.scheduler.tenancy import TenantUse

# Capacity calendar: one slot per network hour, this many slots ahead.
HORIZON_SLOTS = 48
# A running job that overruns its estimate still holds its chips until at least
# now + this; the server's snapshot and the simulator's calendar both use it.
OVERRUN_HOLD = timedelta(minutes=1)
# The operator's default patience: the longest a batch job without a deadline may
# be held (its start planned later than its earliest) for cheaper power. A job with
# a deadline may wait as long as the deadline still holds; interactive jobs never wait.
DEFAULT_PATIENCE_H = 4.0


@dataclass(frozen=True)
class JobRequest:
    """A job as the scheduler sees it: resolved work, absolute deadline, input datasets."""

    id: str
    workload_class: str
    count: int
    cu_hours: float
    types: tuple[str, ...] = ()
    stack: str | None = None
    memory_gb: float | None = None
    inputs: tuple[Dataset, ...] = ()
    deadline: datetime | None = None
    budget_cny: Decimal | None = None
    priority: int = 0
    submitted_at: datetime | None = None
    latency_class: str = "batch"
    avoid_centers: tuple[str, ...] = ()
    pin_center: str | None = None
    # Why the job may not overflow to a parent network ('' = it may): scheduler/overflow.py.
    no_spill: str = ""
    # Tenancy (scheduler/tenancy.py): whose job it is, and its fair-share tag this cycle
    # (set by `ordering.with_shares`; 0 when one tenant is pending).
    tenant: str = ""
    share: float = 0.0


_fields_equal = JobRequest.__eq__


def _same_request(self: JobRequest, other: object) -> bool:
    # A request is most often compared with itself (a deferred job's kept decision in
    # the simulator, millions of times a run): the field-by-field comparison would say
    # the same, as each field is identical to itself.
    return self is other or _fields_equal(self, other)


JobRequest.__eq__ = _same_request  # type: ignore[method-assign,assignment]


@dataclass(frozen=True)
class Reservation:
    """Chips held by a scheduled or running job from `start` to `end` (network time)."""

    center: str
    chip: str
    count: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Snapshot:
    """Everything one cycle reads. Built once, never mutated by plugins.

    `free[p, s]` is the number of chips of pool `p` free during slot `s`;
    slot 0 runs from `now` to the next full hour, slot s ≥ 1 is the s-th
    full hour after that.
    """

    network: Network
    now: datetime
    index: NetworkIndex
    free: np.ndarray
    online: np.ndarray
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    # Regions' own quotes for pending jobs (scheduler/region_quotes.py): job id → quotes.
    quotes: Quotes = field(default_factory=dict)
    # The operator's patience (hours) for batch jobs without a deadline: see
    # `computenet.scheduler.ordering.DEFAULT_PATIENCE_H`; 0 never holds them.
    patience_h: float = DEFAULT_PATIENCE_H
    # Each tenant's quotas and use as the cycle begins (scheduler/tenancy.py); a tenant
    # not in it has no quota. Read by the quota filter, never written during a cycle.
    tenants: Mapping[str, TenantUse] = field(default_factory=dict)
    # Results that hold for this snapshot only (filters that read `online`); a copy
    # made with `dataclasses.replace` starts with an empty one.
    # Each tenant's compute vouchers with a balance, not expired (metering/vouchers.py): the
    # budget check compares a job's budget with what its tenant would pay after them.
    vouchers: Mapping[str, tuple[Voucher, ...]] = field(default_factory=dict)
    memo: dict[object, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def hour0(self) -> datetime:
        """Start of the hour that contains `now` (network time, CST)."""
        return self.now.astimezone(CST).replace(minute=0, second=0, microsecond=0)

    @cached_property
    def frac(self) -> float:
        """Hours from `hour0` to `now` (how much of slot 0's hour has passed)."""
        return (self.now - self.hour0).total_seconds() / 3600.0


def build_snapshot(
    network: Network,
    now: datetime,
    *,
    reservations: Iterable[Reservation] = (),
    datasets: Mapping[str, Dataset] | None = None,
    online: Mapping[str, bool] | None = None,
    reported_free: Mapping[tuple[str, str], int] | None = None,
    patience_h: float | None = None,
    vouchers: Mapping[str, tuple[Voucher, ...]] | None = None,
    quotes: Quotes | None = None,
) -> Snapshot:
    """Build the snapshot: pool totals minus reservations, capped by what agents report free now.

    `online` maps center id → reachable (missing centers count as online);
    `reported_free` maps (center, chip) → chips the agent says are free now;
    `patience_h` is the operator's patience for jobs without a deadline
    (default `ordering.DEFAULT_PATIENCE_H`); `quotes` are regions' own quotes
    for jobs (`region_quotes`), which price those options instead of the estimate.
    """
    idx = network_index(network)
    free = np.repeat(idx.pool_total[:, None].astype(np.int64), HORIZON_SLOTS, axis=1)
    for r in reservations:
        hold(free, idx, now, r)
    if reported_free:
        for (center, chip), n in reported_free.items():
            p = idx.pool_of.get((center, chip))
            if p is not None:
                free[p, 0] = min(free[p, 0], n)
    np.maximum(free, 0, out=free)
    up = np.ones(len(network.centers), dtype=bool)
    if online:
        for i, c in enumerate(network.centers):
            up[i] = online.get(c.id, True)
    return Snapshot(
        network=network,
        now=now,
        index=idx,
        free=free,
        online=up,
        datasets=dict(datasets or {}),
        quotes=dict(quotes or {}),
        patience_h=DEFAULT_PATIENCE_H if patience_h is None else patience_h,
        vouchers=dict(vouchers or {}),
    )


def hold(free: np.ndarray, idx: NetworkIndex, now: datetime, r: Reservation, sign: int = 1) -> None:
    """Take `r`'s chips out of the calendar `free` (in place); `sign=-1` gives them back.

    The one rule for which slots a reservation covers, used by `build_snapshot`
    and by re-planning (`computenet.scheduler.replan`).
    """
    p = idx.pool_of.get((r.center, r.chip))
    if p is None:
        return
    hour0 = now.astimezone(CST).replace(minute=0, second=0, microsecond=0)
    s0 = _slot_of(now, hour0, r.start)
    s1 = _slot_of(now, hour0, r.end, end=True)
    if s1 > s0:
        free[p, max(s0, 0) : min(s1, HORIZON_SLOTS)] -= sign * r.count


def _slot_of(now: datetime, hour0: datetime, t: datetime, end: bool = False) -> int:
    if t <= now:
        return 0
    hours = (t - hour0).total_seconds() / 3600.0
    s = int(np.ceil(hours)) if end else int(np.floor(hours))
    return max(s, 1 if end else 0)


def job_request(
    job_id: str,
    spec: JobSpec,
    network: Network,
    submitted_at: datetime,
    datasets: Mapping[str, Dataset] | None = None,
    *,
    avoid_centers: tuple[str, ...] = (),
    check_deadline: bool = True,
) -> JobRequest:
    """Check `spec` against `network` and resolve it into a `JobRequest`.

    Raises `ValidationError` naming the field: unknown class or chip, inputs
    that are not registered, a deadline already past.
    """
    matrix = network.throughput
    if spec.workload_class not in matrix.efficiency:
        raise ValidationError(
            f"unknown workload class '{spec.workload_class}'",
            field="class",
            hint=f"use one of: {', '.join(matrix.classes)}",
        )
    for i, t in enumerate(spec.chips.types):
        if t not in network.chips:
            raise ValidationError(
                f"unknown chip '{t}'",
                field=f"chips.types[{i}]",
                hint=f"known chips: {', '.join(sorted(network.chips))}",
            )
    work = spec.work
    if work.cu_hours is not None:
        cuh = work.cu_hours
    else:
        ref = work.reference_chip or ""
        if ref not in network.chips:
            raise ValidationError(
                f"unknown chip '{ref}'",
                field="work.reference_chip",
                hint=f"known chips: {', '.join(sorted(network.chips))}",
            )
        rate = matrix.delivered_pflops(spec.workload_class, network.chips[ref])
        if rate <= 0:
            raise ValidationError(
                f"{ref} cannot run class '{spec.workload_class}', so it cannot be the reference",
                field="work.reference_chip",
                hint="pick a chip that runs this class",
            )
        # reference_hours is the wall time on `count` reference chips.
        cuh = rate * (work.reference_hours or 0.0) * spec.chips.count
        if not cuh <= limits.MAX_CU_HOURS:
            raise ValidationError(
                f"{work.reference_hours} h on {spec.chips.count} × {ref} is {cuh:.3g} CU·h,"
                f" over the {limits.MAX_CU_HOURS:.0e} CU·h a job may be",
                field="work.reference_hours",
                hint="split the work into several jobs",
            )
    if spec.center is not None and spec.center not in {c.id for c in network.centers}:
        raise ValidationError(
            f"unknown center '{spec.center}'",
            field="center",
            hint=f"centers: {', '.join(c.id for c in network.centers)}",
        )
    ds = datasets or {}
    inputs = []
    for i, name in enumerate(spec.inputs):
        if name not in ds:
            raise ValidationError(
                f"unknown dataset '{name}'",
                field=f"inputs[{i}]",
                hint="register it first (cnet datasets add) or fix the name",
            )
        inputs.append(ds[name])
    deadline = spec.deadline_at(submitted_at)
    if check_deadline and deadline is not None and deadline <= submitted_at:
        raise ValidationError(
            f"deadline {deadline.isoformat()} is already past (now {submitted_at.isoformat()})",
            field="deadline",
            hint="give a later time or a duration such as 6h",
        )
    if check_deadline and deadline is not None and deadline > submitted_at + limits.MAX_AHEAD:
        raise ValidationError(
            f"deadline {deadline.isoformat()} is more than {limits.MAX_AHEAD.days} days ahead",
            field="deadline",
            hint="give an earlier deadline, or none",
        )
    return JobRequest(
        id=job_id,
        workload_class=spec.workload_class,
        count=spec.chips.count,
        cu_hours=cuh,
        types=spec.chips.types,
        stack=spec.chips.stack.value if spec.chips.stack else None,
        memory_gb=spec.chips.memory_gb,
        inputs=tuple(inputs),
        deadline=deadline,
        budget_cny=spec.budget_cny,
        priority=spec.priority,
        submitted_at=submitted_at,
        latency_class=spec.latency_class,
        avoid_centers=avoid_centers,
        pin_center=spec.center,
        no_spill=spec.no_spill_reason(),
    )

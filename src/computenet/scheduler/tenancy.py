"""Tenancy in the scheduler: quotas checked at placement, and what fair share reads.

A cycle's snapshot carries each tenant's `TenantUse` (`Snapshot.tenants`),
measured by the server from its database (`computenet.store.quotas`) or by
the simulator from its own records. Two rules live here, used by both:

* `quota_block` — whether placing `count` chips of type `chip` for a tenant
  would pass one of its quotas, and the reason shown on the waiting job
  (``tenant quota: 16 of 16 H100 in use``). The quota filter
  (`scheduler/plugins/quota.py`) asks it once per tenant, job size and chip
  type, never per option; `admit` applies it again to a cycle's decisions in
  order, so that several jobs of one tenant placed in the same cycle cannot
  pass a quota together.
* `decay` — the tenant's fair-share usage (CU·h) fades with a half-life, in
  the manner of Slurm's ``PriorityDecayHalfLife``; the order itself is
  `scheduler/ordering.py`'s.

Nothing here reads a clock or the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

# Slurm's default PriorityDecayHalfLife (7 days): usage older than this counts half.
HALF_LIFE_S = 7 * 86400.0

QUOTA_KINDS = ("chips", "cu_hours", "cny")
PERIODS = ("day", "month")
# The prefix of every reason a quota gives (the dashboard and tests look for it).
QUOTA_REASON = "tenant quota"


@dataclass(frozen=True)
class Quota:
    """One quota: `kind` ``chips`` (in use at once; `chip` None = every type) or
    ``cu_hours`` / ``cny`` (spent per `period`, ``day`` or ``month``), up to `limit`."""

    kind: str
    limit: Decimal
    chip: str | None = None
    period: str | None = None

    def label(self) -> str:
        """How the quota reads in a table: ``16 H100 in use``, ``500 CU·h per day``."""
        if self.kind == "chips":
            return f"{_num(self.limit)} {self.chip or 'chips'} in use"
        unit = "CU·h" if self.kind == "cu_hours" else "¥"
        amount = f"¥{self.limit}" if unit == "¥" else f"{_num(self.limit)} CU·h"
        return f"{amount} per {self.period}"


@dataclass(frozen=True)
class TenantUse:
    """A tenant's standing when a cycle starts.

    `chips`: chips in use (scheduled, staging or running) by chip type;
    `cu_hours` / `cny`: spent in the current period, by period (``day``,
    ``month``), counting active jobs at their estimate; `usage`: decayed CU·h
    for fair share; `weight`: its share weight (default 1).
    """

    quotas: tuple[Quota, ...] = ()
    chips: Mapping[str, int] = field(default_factory=dict)
    cu_hours: Mapping[str, float] = field(default_factory=dict)
    cny: Mapping[str, Decimal] = field(default_factory=dict)
    usage: float = 0.0
    weight: float = 1.0


def _num(v: Decimal | float) -> str:
    """A number without a needless fraction: 16, 2.5."""
    d = Decimal(str(v)).normalize()
    return f"{d:f}"


def quota_block(use: TenantUse, chip: str, count: int, cu_hours: float) -> str | None:
    """The reason a placement of `count` × `chip` (`cu_hours` of work) would pass a quota.

    None when every quota still holds. A chip quota counts what is in use
    (the limit may be reached, not passed); a CU·h quota counts this job's
    work too; a ¥ quota stops new placements once the period's spend reached it.
    """
    for q in use.quotas:
        if q.kind == "chips":
            if q.chip is not None and q.chip != chip:
                continue
            used = use.chips.get(q.chip, 0) if q.chip else sum(use.chips.values())
            if used + count > q.limit:
                what = q.chip or "chips"
                return f"{QUOTA_REASON}: {used} of {_num(q.limit)} {what} in use"
        elif q.kind == "cu_hours":
            spent = use.cu_hours.get(q.period or "month", 0.0)
            if spent + cu_hours > float(q.limit):
                return (
                    f"{QUOTA_REASON}: {spent:.1f} of {_num(q.limit)} CU·h used this {q.period}"
                    f" (the job needs {cu_hours:.1f})"
                )
        elif q.kind == "cny":
            paid = use.cny.get(q.period or "month", Decimal(0))
            if paid >= q.limit:
                return f"{QUOTA_REASON}: ¥{paid:.2f} of ¥{q.limit} spent this {q.period}"
    return None


def charged(use: TenantUse, chip: str, count: int, cu_hours: float, cny: Decimal) -> TenantUse:
    """`use` after one more placement (what `admit` counts within a cycle)."""
    chips = dict(use.chips)
    chips[chip] = chips.get(chip, 0) + count
    return TenantUse(
        quotas=use.quotas,
        chips=chips,
        cu_hours={p: use.cu_hours.get(p, 0.0) + cu_hours for p in PERIODS},
        cny={p: use.cny.get(p, Decimal(0)) + cny for p in PERIODS},
        usage=use.usage + cu_hours,
        weight=use.weight,
    )


class Placed(Protocol):
    """What `admit` needs of a placement (`computenet.model.Placement` has it)."""

    @property
    def chip(self) -> str:
        """The chip type placed on."""

    @property
    def count(self) -> int:
        """How many chips."""

    @property
    def total_cny(self) -> Decimal:
        """The estimated charge."""


def admit(
    tenants: Mapping[str, TenantUse],
    placed: Sequence[tuple[str, float, Placed]],
) -> list[str | None]:
    """For placements in the cycle's order — (tenant, CU·h, placement) — the quota reason
    that undoes each one, or None to keep it.

    The quota filter saw each tenant's use as it was when the cycle began;
    this walk adds the cycle's own placements one by one, so two jobs that
    each fit cannot pass a quota together. Only tenants with quotas cost
    anything.
    """
    now = dict(tenants)
    out: list[str | None] = []
    for tenant, cuh, p in placed:
        use = now.get(tenant)
        if use is None or not use.quotas:
            out.append(None)
            continue
        why = quota_block(use, p.chip, p.count, cuh)
        out.append(why)
        if why is None:
            now[tenant] = charged(use, p.chip, p.count, cuh, p.total_cny)
    return out


def decay(usage: float, elapsed_s: float, half_life_s: float = HALF_LIFE_S) -> float:
    """`usage` after `elapsed_s` seconds of decay with half-life `half_life_s`."""
    if elapsed_s <= 0 or usage == 0.0:
        return usage
    return float(usage * 0.5 ** (elapsed_s / half_life_s))

"""A region's own quote for a job, in place of this plane's estimate for that option.

The market between regions (docs/federation.md, "Quotes per job"): a region —
a whole ComputeNet network that joins this one as a center — prices a pending
job with its own scheduler, and this plane's scheduler compares that price and
finish with every other option. The server puts the fresh quotes into the
`Snapshot` (`Snapshot.quotes`); this module is the one rule for what a quote
does to a job's options, so the scheduler stays pure:

- A quote prices the region's earliest option for the job on its chip type
  (any type when the quote names none): the option costs the quote's total
  (the region's own price plus the fee this plane declares for it) plus what
  this plane adds (its own transfer lots into the region), and finishes when
  the region says, counted from when this plane hands the job over.
- The region's later-start options (this plane waiting for a cheaper hour)
  are dropped: the region quoted for now, and shifts by its own tariffs.
- A quote that says the region cannot run the job removes the region's options
  for that chip type, with the region's reason among the job's reasons.
- Feasibility is checked again with the quoted figures: the chips free in this
  plane's calendar, the deadline, the budget.
- Without a quote for a (job, region, chip) the option keeps this plane's
  estimate from its declaration of the region (its rate card).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from computenet.model import CostBreakdown, Placement
from computenet.scheduler import kernel

if TYPE_CHECKING:
    from computenet.scheduler.framework import Options
    from computenet.scheduler.snapshot import JobRequest, Snapshot

QUOTED = "priced by region"
"""How a placed job's reasons say that a region's own quote priced it (the reason's head)."""


@dataclass(frozen=True)
class RegionQuote:
    """A region's own quote for one job, as this plane uses it (see module doc).

    `center` is the region's center id here; `chip` the chip type priced (None:
    any). A price: `own_cny` is the region's own total, `fee_cny` the fee this
    plane adds (its ``fee:P%`` tag on that total, to the fen), `energy_cny` the
    energy part of `own_cny`, `finish` this plane's network time it would finish
    by if handed over now. Or `reason`: why the region cannot run it.
    """

    center: str
    chip: str | None = None
    own_cny: Decimal | None = None
    fee_cny: Decimal = Decimal("0.00")
    energy_cny: Decimal = Decimal("0.00")
    finish: datetime | None = None
    reason: str | None = None

    @property
    def total_cny(self) -> Decimal:
        """What this plane bills for the region's part: its own price plus the fee."""
        return (self.own_cny or Decimal(0)) + self.fee_cny


Quotes = Mapping[str, tuple[RegionQuote, ...]]
"""Job id → the fresh quotes of regions for it (`Snapshot.quotes`)."""


def for_pool(quotes: tuple[RegionQuote, ...], center: str, chip: str) -> RegionQuote | None:
    """The quote that prices `chip` at `center`: one for that chip, else one for any chip."""
    best: RegionQuote | None = None
    for q in quotes:
        if q.center != center:
            continue
        if q.chip == chip:
            return q
        if q.chip is None:
            best = q
    return best


def apply(
    snap: Snapshot,
    free: np.ndarray,
    job: JobRequest,
    opts: Options,
    quotes: tuple[RegionQuote, ...],
    n_pools: int,
    left_h: float,
    max_finish_h: float,
    check_budget: bool = True,
) -> bool:
    """Price `job`'s region options by the regions' own quotes, in place (see module doc).

    `opts` is the kernel's evaluation of `job` against `free`: its first
    `n_pools` options are each pool's earliest start, the rest later starts.
    Sets `opts.quoted` (option index → quote) and adds the regions' reasons to
    `opts.why_not`; returns whether any option changed (then the caller scores
    the options again). `check_budget` false leaves the budget to the caller (a
    tenant with vouchers: `scheduler/subsidy.py` checks what it pays after them).
    """
    fv, iv, ok = opts.fv, opts.iv, opts.feasible
    if fv is None or iv is None:
        return False
    idx = snap.index
    centers = snap.network.centers
    quoted: dict[int, RegionQuote] = {}
    said: set[tuple[str, str]] = set()
    changed = False
    for k in range(int(iv.shape[1])):
        p = int(iv[kernel.I_POOL, k])
        center = centers[int(idx.pool_center[p])].id
        chip = idx.pool_chip[p]
        q = for_pool(quotes, center, chip)
        if q is None:
            continue
        changed = True
        if k >= n_pools or q.reason is not None or q.own_cny is None or q.finish is None:
            ok[k] = False
            if q.reason is not None and (center, chip) not in said:
                said.add((center, chip))
                opts.why_not.append(f"not {center} ({chip}): {q.reason} (the region's own quote)")
            continue
        slot, n_slots = int(iv[kernel.I_SLOT, k]), int(iv[kernel.I_N_SLOTS, k])
        end = min(slot + n_slots, free.shape[1])
        fits = bool((free[p, slot:end] >= job.count).all())
        start_h = float(fv[kernel.F_START_H, k])
        wait_h = max(0.0, (q.finish - snap.now).total_seconds() / 3600.0)
        finish_h = start_h + float(fv[kernel.F_TRANSFER_S, k]) / 3600.0 + wait_h
        cost = float(q.total_cny) + float(fv[kernel.F_TRANSFER, k])
        fv[kernel.F_FINISH_H, k] = finish_h
        fv[kernel.F_ENERGY, k] = float(q.energy_cny)
        fv[kernel.F_SERVICE, k] = float(q.total_cny - q.energy_cny)
        fv[kernel.F_COST, k] = cost
        late = finish_h > max_finish_h or (job.deadline is not None and finish_h > left_h + 1e-9)
        dear = check_budget and job.budget_cny is not None and cost > float(job.budget_cny) + 1e-9
        ok[k] = fits and not late and not dear
        quoted[k] = q
        if fits and (late or dear):
            what = "misses the deadline" if late else f"is over the budget ¥{job.budget_cny}"
            opts.why_not.append(
                f"not {center} ({chip}): its own quote ¥{cost:.2f}, finishing in"
                f" {finish_h:.1f} h, {what}"
            )
    opts.quoted = quoted
    return changed


def reason(opts: Options, i: int) -> str | None:
    """The placed option's line saying whose price it is, when a region's quote priced it."""
    q = (opts.quoted or {}).get(i)
    if q is None:
        return None
    o = opts.at(i)
    extra = f" + transfer here ¥{o.transfer:.2f}" if o.transfer > 0.005 else ""
    return (
        f"{QUOTED} {q.center}'s own quote: ¥{q.own_cny} + fee ¥{q.fee_cny}{extra},"
        f" finishing by {q.finish:%Y-%m-%d %H:%M}"
    )


def priced(placement: Placement, q: RegionQuote) -> Placement:
    """`placement` with the region's quoted price: its energy, the rest and the fee as
    service, and this plane's own transfer lots into the region as transfer."""
    energy = min(q.energy_cny, q.total_cny)
    cost = CostBreakdown(
        energy_cny=energy,
        service_cny=q.total_cny - energy,
        transfer_cny=placement.cost.transfer_cny,
    )
    return placement.model_copy(update={"cost": cost})

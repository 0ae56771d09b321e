"""The budget check on what a tenant pays after its compute vouchers (pure).

A job's budget bounds what its tenant pays. When the tenant holds vouchers
(`Snapshot.vouchers`, their balances as the cycle begins), `framework`
leaves the budget out of the compiled kernel's check and calls `check`
here instead: each option is priced as the next charge would be at its
center, for the job's class, incurred at its planned finish, by the one
money rule (`metering.vouchers.paid_vec`, the vector form of
`apply_vouchers`). Tenants without vouchers keep the kernel's check on the
price itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np

from computenet.metering.vouchers import Voucher, paid_vec
from computenet.scheduler.snapshot import JobRequest, Snapshot


def wallet(snap: Snapshot, job: JobRequest) -> tuple[Voucher, ...]:
    """The vouchers the budget check of `job` counts (none without a budget)."""
    if job.budget_cny is None or not snap.vouchers:
        return ()
    return snap.vouchers.get(job.tenant, ())


def paid(
    snap: Snapshot,
    job: JobRequest,
    vouchers: Sequence[Voucher],
    cost: np.ndarray,
    pool: np.ndarray,
    finish_h: np.ndarray,
) -> np.ndarray:
    """What the tenant would pay (float ¥) of each option's `cost` after `vouchers`."""
    idx = snap.index
    names = snap.memo.get("center-ids")
    if names is None:
        names = snap.memo["center-ids"] = [c.id for c in snap.network.centers]
    return paid_vec(
        vouchers, cost, idx.pool_center[pool], names, job.workload_class, finish_h, snap.now
    )


def check(
    snap: Snapshot,
    job: JobRequest,
    vouchers: Sequence[Voucher],
    cost: np.ndarray,
    pool: np.ndarray,
    finish_h: np.ndarray,
    feasible: np.ndarray,
    why: list[str],
) -> None:
    """Mark infeasible (in place) the options whose price after vouchers exceeds the budget.

    When that leaves no option, `why` gets the budget reason naming the
    option that would cost the tenant least.
    """
    assert job.budget_cny is not None
    pays = paid(snap, job, vouchers, cost, pool, finish_h)
    over = feasible & (pays > float(job.budget_cny) + 1e-9)
    if not over.any():
        return
    feasible &= ~over
    if feasible.any():
        return
    k = int(np.flatnonzero(over)[np.argmin(pays[over])])
    center = snap.network.centers[snap.index.pool_center[pool[k]]].id
    finish = snap.now + timedelta(hours=float(finish_h[k]))
    why.append(
        f"budget ¥{job.budget_cny} but the cheapest option costs ¥{cost[k]:.2f} at {center},"
        f" ¥{pays[k]:.2f} after your vouchers (finishing {finish:%Y-%m-%d %H:%M}; raise the"
        " budget or relax the deadline)"
    )

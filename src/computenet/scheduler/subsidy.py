"""The budget check on what a tenant pays after its compute vouchers (pure).

A job's budget bounds what its tenant pays. When the tenant holds vouchers
(`Snapshot.vouchers`, their balances as the cycle begins), each option is
priced as the next charge would be at its center, for the job's class,
incurred at its planned finish, by the one money rule
(`metering.vouchers.paid_vec`, the vector form of `apply_vouchers`).

Done in two steps so that the compiled kernel keeps its work: `framework`
gives the kernel the `ceiling` instead of the budget — the highest price
that could fit the budget were every voucher to apply — so options that
cannot fit in any case are dropped there, and options priced within the
budget itself fit whatever the vouchers; `check` then prices, exactly, only
the options in between, and says whether any of them turned out over the
budget (then `framework` scores the options again). Tenants without
vouchers keep the kernel's check on the price itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np

from computenet.metering.vouchers import Voucher, paid_vec
from computenet.scheduler.snapshot import JobRequest, Snapshot

# Half a fen: a voucher's share is rounded to the fen, so what is left to pay may
# come out up to this much under the exact product.
HALF_FEN = 0.005


def wallet(snap: Snapshot, job: JobRequest) -> tuple[Voucher, ...]:
    """The vouchers the budget check of `job` counts (none without a budget)."""
    if job.budget_cny is None or not snap.vouchers:
        return ()
    return snap.vouchers.get(job.tenant, ())


def ceiling(job: JobRequest, vouchers: Sequence[Voucher]) -> float:
    """The highest price (float ¥) that could fit `job`'s budget after `vouchers`.

    The rule's inverse with every voucher of the job's class applying (more
    vouchers never make the tenant pay more): a voucher of share p with R
    left turns an amount owed x into max(x − round(x·p), x−R), its share
    rounded to the fen, so what may be owed before it is
    min((y + ½ fen)/(1−p), y+R) for y allowed after it. A hair over that, so
    that float rounding never drops an option that fits.
    """
    assert job.budget_cny is not None
    top = float(job.budget_cny)
    for v in sorted(vouchers, key=lambda x: x.id, reverse=True):
        left = float(v.remaining_cny)
        if left <= 0 or (v.classes and job.workload_class not in v.classes):
            continue
        share = float(v.pct) / 100.0
        top = top + left if share >= 1.0 else min((top + HALF_FEN) / (1.0 - share), top + left)
    return top * (1.0 + 1e-9) + 1e-6


def paid(
    snap: Snapshot,
    job: JobRequest,
    vouchers: Sequence[Voucher],
    cost: np.ndarray,
    pool: np.ndarray,
    finish_h: np.ndarray,
) -> np.ndarray:
    """What the tenant would pay (float ¥) of each option's `cost` after `vouchers`."""
    names = snap.memo.get("center-ids")
    if names is None:
        names = snap.memo["center-ids"] = [c.id for c in snap.network.centers]
    return paid_vec(
        vouchers,
        cost,
        snap.index.pool_center[pool],
        names,
        job.workload_class,
        finish_h,
        snap.now,
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
) -> bool:
    """Mark infeasible (in place) the options whose price after vouchers exceeds the budget.

    Only options priced over the budget itself are looked at. Returns whether
    any was marked; when that leaves no option, `why` gets the budget reason
    naming the option that would cost the tenant least.
    """
    assert job.budget_cny is not None
    limit = float(job.budget_cny) + 1e-9
    near = np.flatnonzero(feasible & (cost > limit))
    if near.size == 0:
        return False
    pays = paid(snap, job, vouchers, cost[near], pool[near], finish_h[near])
    over = near[pays > limit]
    if over.size == 0:
        return False
    feasible[over] = False
    if not feasible.any():
        k = int(over[np.argmin(pays[pays > limit])])
        why.append(reason(snap, job, vouchers, cost, pool, finish_h, k))
    return True


def reason(
    snap: Snapshot,
    job: JobRequest,
    vouchers: Sequence[Voucher],
    cost: np.ndarray,
    pool: np.ndarray,
    finish_h: np.ndarray,
    k: int,
) -> str:
    """Why no option fits the budget, naming option `k` and its price after vouchers."""
    after = float(
        paid(snap, job, vouchers, cost[k : k + 1], pool[k : k + 1], finish_h[k : k + 1])[0]
    )
    center = snap.network.centers[snap.index.pool_center[pool[k]]].id
    finish = snap.now + timedelta(hours=float(finish_h[k]))
    return (
        f"budget ¥{job.budget_cny} but the cheapest option costs ¥{cost[k]:.2f} at {center},"
        f" ¥{after:.2f} after your vouchers (finishing {finish:%Y-%m-%d %H:%M}; raise the"
        " budget or relax the deadline)"
    )

"""The tenant-quota filter: pools whose chips would take a tenant past one of its quotas.

The rule is `scheduler.tenancy.quota_block`; this filter asks it once per
chip type in the network for the job's tenant and size (memoized per cycle
under (tenant, chips, CU·h)), never per option. A job of a tenant without
quotas costs one dictionary look-up. The cycle's own placements are counted
afterwards by `tenancy.admit`.
"""

from __future__ import annotations

import numpy as np

from computenet.scheduler.plugins.filters import (
    FILTERS,
    FilterContext,
    FilterPlugin,
    FilterResult,
)


def tenant_quota(ctx: FilterContext) -> FilterResult:
    """The pool's chip type keeps the job's tenant within its quotas."""
    snap = ctx.snapshot
    idx = snap.index
    use = snap.tenants.get(ctx.job.tenant)
    if use is None or not use.quotas:
        return FilterResult(np.ones(idx.n_pools, dtype=bool))
    from computenet.scheduler.tenancy import quota_block

    why: dict[str, str | None] = {}
    for chip in set(idx.pool_chip):
        why[chip] = quota_block(use, chip, ctx.job.count, ctx.job.cu_hours)
    ok = np.array([why[c] is None for c in idx.pool_chip], dtype=bool)
    # The reason of the first pool still feasible before this filter (the chip the
    # job wanted), else any.
    reasons = [why[idx.pool_chip[p]] for p in np.flatnonzero(ctx.mask & ~ok)]
    reasons = reasons or [w for w in why.values() if w]
    return FilterResult(ok, next((r for r in reasons if r), ""))


FILTERS.register(
    FilterPlugin(
        "tenant-quota",
        tenant_quota,
        lambda j: (j.tenant, j.count, j.cu_hours),
        per_cycle=True,
        # No quota anywhere: every pool is kept (the first test of `tenant_quota`).
        keeps_all=lambda snap: not any(use.quotas for use in snap.tenants.values()),
    )
)

"""Per-tenant admission limits: submissions per second and jobs waiting to be scheduled.

Two limits, each a server-wide default (`Settings.submits_per_s`,
`Settings.max_pending_jobs`, 0 = none) that a tenant's row may override
(`TenantRow.submits_per_s` / `max_pending_jobs`, set by ``cnet admin
limits``). Both are checked on the submit path, which must stay cheap:

* the rate is a token bucket per tenant in memory (one second's worth of
  burst), checked before anything else, so a flood costs no database work;
* the pending count is read in the submit writer's own transaction, at most
  once a second per tenant, and counted up by every job the writer stores
  meanwhile; jobs leaving PENDING are seen at the next read, so near the cap
  the count errs towards refusing, never towards admitting too many.

A tenant's overrides are read from the database at most every
`OVERRIDES_TTL_S` real seconds (`cnet admin limits` writes the row directly).
Refusals are `RateLimitedError` (HTTP 429 with Retry-After).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computenet.errors import NotFoundError, RateLimitedError, ValidationError
from computenet.model import JobState
from computenet.store import Database
from computenet.store.accounts import audit
from computenet.store.schema import JobRow, TenantRow

# How long a tenant's overrides and its pending count are trusted (real seconds).
OVERRIDES_TTL_S = 5.0
PENDING_TTL_S = 1.0


@dataclass(frozen=True)
class TenantLimits:
    """The limits in force for one tenant (0 = no limit)."""

    max_pending_jobs: int
    submits_per_s: float
    # The highest `priority` the tenant's jobs may carry (None: uncapped); set by
    # `cnet admin tenant set --priority-ceiling`, applied at submit (server/jobs.py).
    priority_ceiling: int | None = None


class Admission:
    """Token buckets, cached overrides and pending counts for every tenant (thread-safe)."""

    def __init__(
        self,
        db: Database,
        *,
        max_pending_jobs: int,
        submits_per_s: float,
        real: Callable[[], float],
    ) -> None:
        self._db = db
        self.default = TenantLimits(max_pending_jobs, submits_per_s)
        self._real = real
        self._lock = threading.Lock()
        self._limits: dict[str, tuple[float, TenantLimits]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant → (tokens, at)
        self._pending: dict[str, tuple[float, int]] = {}  # tenant → (counted at, count)

    # -- overrides ---------------------------------------------------------------------

    def cached(self, tenant: str) -> TenantLimits | None:
        """The tenant's limits if read recently, else None (call `refresh`, off the loop)."""
        hit = self._limits.get(tenant)
        if hit is None or self._real() - hit[0] > OVERRIDES_TTL_S:
            return None
        return hit[1]

    def refresh(self, tenant: str, s: Session | None = None) -> TenantLimits:
        """Read the tenant's overrides from the database (a blocking read; in `s` when given)."""
        if s is None:
            with self._db.read() as own:
                row = own.get(TenantRow, tenant)
        else:
            row = s.get(TenantRow, tenant)
        lim = self.default
        if row is not None:
            lim = TenantLimits(
                self.default.max_pending_jobs
                if row.max_pending_jobs is None
                else row.max_pending_jobs,
                self.default.submits_per_s if row.submits_per_s is None else row.submits_per_s,
                row.priority_ceiling,
            )
        self._limits[tenant] = (self._real(), lim)
        return lim

    def limits(self, tenant: str) -> TenantLimits:
        """The tenant's limits, read through the cache."""
        return self.cached(tenant) or self.refresh(tenant)

    # -- rate --------------------------------------------------------------------------

    def take(self, tenant: str, lim: TenantLimits) -> None:
        """Spend one submission from the tenant's bucket; `RateLimitedError` when empty."""
        rate = lim.submits_per_s
        if rate <= 0:
            return
        burst = max(1.0, rate)
        now = self._real()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - at) * rate)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise RateLimitedError(
                    f"tenant '{tenant}' is over its {rate:g} submissions per second",
                    field="submits_per_s",
                    hint=f"retry in {wait:.2f} s, or ask an admin to raise it"
                    " (cnet admin limits TENANT --submits-per-s R)",
                    retry_after_s=wait,
                )
            self._buckets[tenant] = (tokens - 1.0, now)

    # -- pending -----------------------------------------------------------------------

    def admit_pending(self, s: Session, tenants: list[str]) -> list[RateLimitedError | None]:
        """For a batch of new jobs (their tenants, in order): None = admitted, else the refusal.

        Runs in the submit writer's transaction `s`; admitted jobs are counted
        as pending at once. Call `forget` if the transaction then fails.
        """
        now = self._real()
        out: list[RateLimitedError | None] = []
        for tenant in tenants:
            # Read in the writer's own transaction when stale: no second connection meanwhile.
            cap = (self.cached(tenant) or self.refresh(tenant, s)).max_pending_jobs
            if cap <= 0:
                out.append(None)
                continue
            hit = self._pending.get(tenant)
            if hit is None or now - hit[0] > PENDING_TTL_S:
                hit = (now, _count_pending(s, tenant))
            if hit[1] >= cap:
                self._pending[tenant] = hit
                out.append(
                    RateLimitedError(
                        f"tenant '{tenant}' already has {hit[1]} jobs pending, its limit is {cap}",
                        field="max_pending_jobs",
                        hint="wait for some to be scheduled, cancel some, or ask an admin to"
                        " raise it (cnet admin limits TENANT --max-pending N)",
                        retry_after_s=max(PENDING_TTL_S, 1.0),
                    )
                )
                continue
            self._pending[tenant] = (hit[0], hit[1] + 1)
            out.append(None)
        return out

    def forget(self, tenants: list[str]) -> None:
        """Drop the counts of `tenants` (their batch did not commit): recount next time."""
        for tenant in tenants:
            self._pending.pop(tenant, None)


def _count_pending(s: Session, tenant: str) -> int:
    q = select(func.count()).where(
        JobRow.tenant_id == tenant, JobRow.state == JobState.PENDING.value
    )
    return int(s.scalar(q) or 0)


def retry_after(exc: RateLimitedError) -> str:
    """The Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(exc.retry_after_s)))


def set_tenant_limits(
    db: Database | str,
    tenant: str,
    *,
    max_pending_jobs: int | None = None,
    submits_per_s: float | None = None,
    reset: bool = False,
    actor: str = "admin",
    now: datetime | None = None,
) -> TenantOverrides:
    """Set a tenant's overrides (None leaves one as it is; `reset` returns both to the default).

    `db` is the server's database or its URL (`cnet admin limits`). Writes an
    audit row (action ``tenant.limits``). Servers apply the change within
    `OVERRIDES_TTL_S` seconds.
    """
    if max_pending_jobs is not None and max_pending_jobs < 0:
        raise ValidationError("must be >= 0 (0: no limit)", field="--max-pending")
    if submits_per_s is not None and not 0 <= submits_per_s <= 1e6:
        raise ValidationError("must be between 0 (no limit) and 1e6", field="--submits-per-s")
    database = db if isinstance(db, Database) else Database(db)
    try:
        with database.write() as s:
            row = s.get(TenantRow, tenant)
            if row is None:
                raise NotFoundError(
                    f"no tenant '{tenant}'", field="tenant", hint="cnet admin create-tenant NAME"
                )
            if reset:
                row.max_pending_jobs = None
                row.submits_per_s = None
            if max_pending_jobs is not None:
                row.max_pending_jobs = max_pending_jobs
            if submits_per_s is not None:
                row.submits_per_s = submits_per_s
            out = TenantOverrides(tenant, row.max_pending_jobs, row.submits_per_s)
            audit(
                s,
                actor,
                "tenant.limits",
                f"tenant:{tenant}",
                {"max_pending_jobs": out.max_pending_jobs, "submits_per_s": out.submits_per_s},
                at=now,
            )
            return out
    finally:
        if database is not db:
            database.dispose()


@dataclass(frozen=True)
class TenantOverrides:
    """A tenant's own limits as stored; None where the server's default applies."""

    tenant: str
    max_pending_jobs: int | None
    submits_per_s: float | None

"""Tenancy in the store: quotas, share weight and priority ceiling, and each tenant's use.

`tenant_uses` measures what the scheduler's tenancy rules read
(`computenet.scheduler.tenancy.TenantUse`): chips in use by type (active jobs),
CU·h and ¥ spent in the current day and month (charges of jobs finished in
it, plus active jobs at their estimate), and the fair-share usage (CU·h
decayed with `HALF_LIFE_S`; active jobs count in full). Periods are network
time (CST) days and months, like bills.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from computenet.errors import NotFoundError, ValidationError
from computenet.model import JobState
from computenet.model.center import CST
from computenet.scheduler.tenancy import (
    HALF_LIFE_S,
    PERIODS,
    QUOTA_KINDS,
    Quota,
    TenantUse,
    decay,
)
from computenet.store.schema import ChargeRow, JobRow, QuotaRow, TenantRow

_ACTIVE = (JobState.SCHEDULED.value, JobState.STAGING.value, JobState.RUNNING.value)
# Charges older than this many half-lives weigh under 1/32: fair share ignores them.
_LOOKBACK = timedelta(seconds=5 * HALF_LIFE_S)
# The highest priority a job may ask for (model.limits.MAX_PRIORITY is 10).
_MAX_CEILING = 10


def tenant_row(s: Session, tenant: str) -> TenantRow:
    """The tenant's row; NotFoundError naming the fix when there is none."""
    row = s.get(TenantRow, tenant)
    if row is None:
        raise NotFoundError(
            f"no tenant '{tenant}'", field="tenant", hint="cnet admin create-tenant NAME"
        )
    return row


def check_quota(
    kind: str, limit: Decimal | str | float, chip: str | None, period: str | None
) -> Quota:
    """A valid `Quota`, or a ValidationError naming the option to fix."""
    if kind not in QUOTA_KINDS:
        raise ValidationError(
            f"unknown quota kind '{kind}'", field="--kind", hint="one of chips, cu_hours, cny"
        )
    try:
        value = Decimal(str(limit))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError(f"'{limit}' is not a number", field="--limit") from exc
    if not value.is_finite() or value < 0:
        raise ValidationError("must be a number >= 0", field="--limit")
    if kind == "chips":
        if period is not None:
            raise ValidationError(
                "a chips quota counts chips in use now: it has no period", field="--period"
            )
        if value != value.to_integral_value():
            raise ValidationError("a chips quota is a whole number of chips", field="--limit")
    else:
        if chip is not None:
            raise ValidationError(
                f"a {kind} quota covers every chip type: leave out --chip", field="--chip"
            )
        if period not in PERIODS:
            raise ValidationError(
                f"a {kind} quota needs a period", field="--period", hint="--period day or month"
            )
    if kind == "cny":
        value = value.quantize(Decimal("0.01"))
    return Quota(kind, value, chip, period)


def set_quota(s: Session, tenant: str, q: Quota, now: datetime) -> QuotaRow:
    """Set tenant's quota `q`, replacing the one of the same kind, chip and period."""
    tenant_row(s, tenant)
    row = _find(s, tenant, q.kind, q.chip, q.period)
    if row is None:
        row = QuotaRow(tenant_id=tenant, kind=q.kind, chip=q.chip, period=q.period, created_at=now)
        s.add(row)
    row.limit_value = q.limit
    s.flush()
    return row


def _find(
    s: Session, tenant: str, kind: str, chip: str | None, period: str | None
) -> QuotaRow | None:
    for row in s.scalars(
        select(QuotaRow).where(QuotaRow.tenant_id == tenant, QuotaRow.kind == kind)
    ):
        if row.chip == chip and row.period == period:
            return row
    return None


def clear_quotas(s: Session, tenant: str, kind: str | None = None, chip: str | None = None) -> int:
    """Remove the tenant's quotas (of `kind`, of `chip` when given); how many went."""
    tenant_row(s, tenant)
    q = delete(QuotaRow).where(QuotaRow.tenant_id == tenant)
    if kind is not None:
        q = q.where(QuotaRow.kind == kind)
    if chip is not None:
        q = q.where(QuotaRow.chip == chip)
    return int(s.execute(q).rowcount or 0)  # type: ignore[attr-defined]


def quotas_of(s: Session, tenants: Iterable[str] | None = None) -> dict[str, tuple[Quota, ...]]:
    """Every quota by tenant (only `tenants`' when given)."""
    q = select(QuotaRow).order_by(QuotaRow.tenant_id, QuotaRow.id)
    if tenants is not None:
        q = q.where(QuotaRow.tenant_id.in_(list(tenants)))
    out: dict[str, list[Quota]] = defaultdict(list)
    for r in s.scalars(q):
        out[r.tenant_id].append(Quota(r.kind, r.limit_value, r.chip, r.period))
    return {t: tuple(qs) for t, qs in out.items()}


def set_share(
    s: Session, tenant: str, *, weight: float | None = None, ceiling: int | None = None
) -> TenantRow:
    """Set the tenant's fair-share weight and priority ceiling (-1 removes the ceiling)."""
    row = tenant_row(s, tenant)
    if weight is not None:
        if not 0 < weight <= 1e6:
            raise ValidationError("must be > 0 and <= 1e6", field="--weight")
        row.share_weight = float(weight)
    if ceiling is not None:
        if not -1 <= ceiling <= _MAX_CEILING:
            raise ValidationError(
                f"must be between 0 and {_MAX_CEILING} (-1: no ceiling)",
                field="--priority-ceiling",
            )
        row.priority_ceiling = None if ceiling < 0 else ceiling
    s.flush()
    return row


def period_starts(now: datetime) -> dict[str, datetime]:
    """Start of the current network-time (CST) day and month."""
    day = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"day": day, "month": day.replace(day=1)}


def charged_usage(s: Session, now: datetime) -> dict[str, float]:
    """Each tenant's fair-share usage from its finished jobs: CU·h decayed to `now`."""
    out: dict[str, float] = defaultdict(float)
    q = select(ChargeRow.tenant_id, ChargeRow.finished_at, ChargeRow.cu_hours).where(
        ChargeRow.finished_at >= now - _LOOKBACK
    )
    for t, fin, work in s.execute(q):
        if fin is not None:
            out[t] += decay(float(work), (now - fin).total_seconds())
    return dict(out)


def charges_fingerprint(s: Session, now: datetime) -> tuple[int, float]:
    """(count, CU·h sum) of the charges `charged_usage` reads: one aggregate, no rows out.

    Equal fingerprints at two instants mean the same charges (a charge is written
    once per job), so the earlier `charged_usage`, decayed to now, still holds.
    """
    q = select(func.count(), func.coalesce(func.sum(ChargeRow.cu_hours), 0.0)).where(
        ChargeRow.finished_at >= now - _LOOKBACK
    )
    n, total = s.execute(q).one()
    return int(n), float(total)


def tenant_uses(
    s: Session,
    now: datetime,
    *,
    fair_share: bool = True,
    tenants: Iterable[str] | None = None,
    charged: dict[str, float] | None = None,
) -> dict[str, TenantUse]:
    """Every tenant's (or `tenants`') `TenantUse` at `now`.

    Tenants without quotas are measured only for fair share (`fair_share`);
    with neither, the answer is empty and costs two small queries. `charged`,
    when given, is a recent `charged_usage` (the server keeps one for a few
    seconds: usage decays over days).
    """
    want = set(tenants) if tenants is not None else None
    quotas = quotas_of(s, want)
    weights: dict[str, float] = {}
    for t, w in s.execute(select(TenantRow.id, TenantRow.share_weight)):
        if want is None or t in want:
            weights[t] = float(w if w is not None else 1.0)
    measure = set(weights) if fair_share else set(quotas)
    if not measure:
        return {}
    starts = period_starts(now)
    chips: dict[str, dict[str, int]] = defaultdict(dict)
    cuh: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(PERIODS, 0.0))
    cny: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(PERIODS, Decimal(0)))
    usage: dict[str, float] = defaultdict(float)
    active = s.execute(
        select(
            JobRow.tenant_id, JobRow.chip, JobRow.chips, JobRow.placement, JobRow.estimated_cny
        ).where(JobRow.state.in_(_ACTIVE), JobRow.tenant_id.in_(list(measure)))
    )
    for t, chip, n, placement, est in active:
        if chip:
            chips[t][chip] = chips[t].get(chip, 0) + int(n or 0)
        work = float((placement or {}).get("cu_hours", 0.0))
        usage[t] += work
        for p in PERIODS:
            cuh[t][p] += work
            cny[t][p] += est or Decimal(0)
    with_quotas = [t for t in measure if t in quotas]
    if with_quotas:
        done = s.execute(
            select(ChargeRow.tenant_id, ChargeRow.finished_at, ChargeRow.cu_hours)
            .add_columns(ChargeRow.total_cny)
            .where(ChargeRow.tenant_id.in_(with_quotas), ChargeRow.finished_at >= starts["month"])
        )
        for t, fin, work, total in done:
            for p in PERIODS:
                if fin is not None and fin >= starts[p]:
                    cuh[t][p] += float(work)
                    cny[t][p] += total
    if fair_share:
        for t, u in (charged if charged is not None else charged_usage(s, now)).items():
            if t in measure:
                usage[t] += u
    return {
        t: TenantUse(
            quotas=quotas.get(t, ()),
            chips=chips.get(t, {}),
            cu_hours=cuh[t],
            cny=cny[t],
            usage=usage.get(t, 0.0),
            weight=weights.get(t, 1.0),
        )
        for t in measure
    }


def priority_ceiling(s: Session, tenant: str) -> int | None:
    """The tenant's priority ceiling (None: uncapped, or no such tenant)."""
    return s.scalar(select(TenantRow.priority_ceiling).where(TenantRow.id == tenant))


def several_pending_tenants(s: Session) -> bool:
    """Whether PENDING jobs belong to two or more tenants (fair share matters only then).

    The least and the greatest tenant with a PENDING job: two seeks on
    ``ix_jobs_state_tenant``, whatever the backlog.
    """
    pending = JobRow.state == JobState.PENDING.value
    low = s.scalar(select(func.min(JobRow.tenant_id)).where(pending))
    if low is None:
        return False
    return s.scalar(select(func.max(JobRow.tenant_id)).where(pending)) != low


def reclaimable(s: Session, after: datetime) -> bool:
    """Whether fair share should give back plans made ahead: some PENDING job waits while
    another tenant holds an unleased plan starting after `after`, or two tenants wait."""
    pending = JobRow.state == JobState.PENDING.value
    first = s.scalar(select(func.min(JobRow.tenant_id)).where(pending))
    if first is None:
        return False
    ahead = select(JobRow.id).where(
        JobRow.state == JobState.SCHEDULED.value,
        JobRow.lease_center.is_(None),
        JobRow.planned_start > after,
    )
    # Tenants other than `first` as two index ranges (no scan of `first`'s own plans).
    for other in (JobRow.tenant_id < first, JobRow.tenant_id > first):
        if s.scalar(ahead.where(other).limit(1)) is not None:
            return True
    return several_pending_tenants(s)

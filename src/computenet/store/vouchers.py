"""Compute vouchers: issued vouchers, what each paid of each job, and applying them to a charge."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from computenet.metering.vouchers import Applied, Voucher, apply_vouchers
from computenet.store.schema import VoucherRow, VoucherUseRow


def as_voucher(row: VoucherRow) -> Voucher:
    """The pure view of a stored voucher (`metering.vouchers.Voucher`)."""
    return Voucher(
        id=row.id,
        tenant=row.tenant_id,
        issuer=row.issuer,
        pct=row.pct,
        cap_cny=row.cap_cny,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        centers=tuple(row.centers or ()),
        classes=tuple(row.classes or ()),
        used_cny=row.used_cny,
    )


def add_voucher(s: Session, row: VoucherRow) -> VoucherRow:
    """Store a new voucher; its id (the issue order) is set on return."""
    s.add(row)
    s.flush()
    return row


def list_vouchers(
    s: Session, tenant: str | None = None, *, for_update: bool = False
) -> list[VoucherRow]:
    """Vouchers in issue order, of one tenant or of all."""
    q = select(VoucherRow).order_by(VoucherRow.id)
    if tenant is not None:
        q = q.where(VoucherRow.tenant_id == tenant)
    if for_update:
        q = q.with_for_update()
    return list(s.scalars(q))


def live_vouchers(s: Session, now: datetime) -> dict[str, tuple[Voucher, ...]]:
    """Each tenant's vouchers not yet expired at `now` with a balance left, in issue order.

    What the scheduler's snapshot carries for the budget check: one small
    query per cycle (vouchers are few; a spent or expired one drops out).
    """
    q = select(VoucherRow).where(VoucherRow.valid_until > now).order_by(VoucherRow.id)
    out: dict[str, list[Voucher]] = defaultdict(list)
    for row in s.scalars(q):
        v = as_voucher(row)
        if v.remaining_cny > 0:
            out[v.tenant].append(v)
    return {t: tuple(vs) for t, vs in out.items()}


def uses_of(s: Session, job_ids: Iterable[str]) -> dict[str, list[VoucherUseRow]]:
    """What vouchers paid of each of `job_ids`, in issue order per job."""
    ids = list(job_ids)
    out: dict[str, list[VoucherUseRow]] = defaultdict(list)
    for k in range(0, len(ids), 500):  # bound the IN list
        q = (
            select(VoucherUseRow)
            .where(VoucherUseRow.job_id.in_(ids[k : k + 500]))
            .order_by(VoucherUseRow.job_id, VoucherUseRow.voucher_id)
        )
        for u in s.scalars(q):
            out[u.job_id].append(u)
    return out


def apply_to_charge(
    s: Session,
    job_id: str,
    tenant: str,
    charge_cny: Decimal,
    center: str,
    cls: str,
    at: datetime,
) -> Applied:
    """Apply `tenant`'s vouchers to job `job_id`'s charge, in the caller's transaction.

    A job metered again (a retried or later usage report) first gives back
    what its vouchers paid last time, then is applied afresh: the job's
    voucher lines are replaced, never added twice. The tenant's voucher rows
    are read ``FOR UPDATE`` (PostgreSQL), so two charges never spend one
    balance twice; SQLite's write transaction already serializes them.
    """
    rows = {r.id: r for r in list_vouchers(s, tenant, for_update=True)}
    for old in list(s.scalars(select(VoucherUseRow).where(VoucherUseRow.job_id == job_id))):
        row = rows.get(old.voucher_id)
        if row is not None:
            row.used_cny = row.used_cny - old.amount_cny
        s.delete(old)
    s.flush()
    applied = apply_vouchers(charge_cny, center, cls, at, [as_voucher(r) for r in rows.values()])
    for line in applied.lines:
        rows[line.voucher_id].used_cny = rows[line.voucher_id].used_cny + line.amount_cny
        s.add(VoucherUseRow(job_id=job_id, voucher_id=line.voucher_id, amount_cny=line.amount_cny))
    s.flush()
    return applied

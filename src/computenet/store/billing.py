"""Per-job charges and the bills summed from them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from computenet.store.schema import ChargeRow


def put_charge(s: Session, row: ChargeRow) -> ChargeRow:
    """Store (or replace) the charges of one job."""
    merged = s.merge(row)
    s.flush()
    return merged


def get_charge(s: Session, job_id: str) -> ChargeRow | None:
    """The charges of job `job_id`, if metered."""
    return s.get(ChargeRow, job_id)


def charges(s: Session, tenant: str, period: str) -> list[ChargeRow]:
    """A tenant's charges for jobs finished in `period` (YYYY-MM), in finishing order."""
    q = (
        select(ChargeRow)
        .where(ChargeRow.tenant_id == tenant, ChargeRow.period == period)
        .order_by(ChargeRow.finished_at, ChargeRow.job_id)
    )
    return list(s.scalars(q))

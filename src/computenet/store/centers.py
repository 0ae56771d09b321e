"""Centers as their agents report them, and datasets with their replicas."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computenet.model import Dataset
from computenet.store.schema import CenterRow, DatasetRow, ReplicaRow


def get_center(s: Session, center_id: str, *, for_update: bool = False) -> CenterRow | None:
    """The registered center `center_id`, if it ever registered."""
    if not for_update:
        return s.get(CenterRow, center_id)
    return s.scalar(select(CenterRow).where(CenterRow.id == center_id).with_for_update())


def list_centers(s: Session) -> list[CenterRow]:
    """Every registered center."""
    return list(s.scalars(select(CenterRow).order_by(CenterRow.id)))


def preempting_centers(s: Session) -> list[str]:
    """Ids of the centers whose agent registered `preempt` (server/preempting.py)."""
    return list(s.scalars(select(CenterRow.id).where(CenterRow.preempt.is_(True))))


def register_center(
    s: Session,
    center_id: str,
    *,
    new_data_key: str,
    at: datetime,
    real_now: float,
    data_url: str | None,
    backend: str,
    agent_version: str,
    protocol_version: str,
    capacity: list[dict[str, Any]],
    preempt: bool = False,
) -> CenterRow:
    """Insert or refresh a center; an existing center keeps its data key (tickets stay valid).

    `preempt`: the agent said it stops jobs for preemption (each registration says it anew).
    """
    row = get_center(s, center_id, for_update=True)
    if row is None:
        row = CenterRow(id=center_id, data_key=new_data_key, registered_at=at, running=[])
        s.add(row)
    row.data_url = data_url
    row.backend = backend
    row.agent_version = agent_version
    row.protocol_version = protocol_version
    row.capacity = capacity
    row.preempt = preempt
    row.last_heartbeat = real_now
    s.flush()
    return row


def record_heartbeat(
    s: Session, row: CenterRow, real_now: float, capacity: list[dict[str, Any]], running: list[str]
) -> None:
    """Mark the center alive now, with what it reports."""
    row.last_heartbeat = real_now
    row.capacity = capacity
    row.running = running
    s.flush()


def get_dataset(s: Session, dataset_id: str) -> DatasetRow | None:
    """The dataset `dataset_id`, if registered."""
    return s.get(DatasetRow, dataset_id)


def create_dataset(
    s: Session,
    *,
    dataset_id: str,
    tenant: str,
    size_bytes: int,
    sha256: str,
    residency: str | None,
    center: str,
    path: str,
    at: datetime,
) -> DatasetRow:
    """Register a dataset with its first replica."""
    row = DatasetRow(
        id=dataset_id,
        tenant_id=tenant,
        size_bytes=size_bytes,
        sha256=sha256,
        residency=residency,
        created_at=at,
    )
    s.add(row)
    s.flush()
    s.add(ReplicaRow(dataset_id=dataset_id, center=center, path=path, created_at=at))
    s.flush()
    return row


def list_datasets(s: Session, tenant: str | None = None) -> list[DatasetRow]:
    """Datasets of `tenant` (all when None), by id."""
    q = select(DatasetRow).order_by(DatasetRow.id)
    if tenant is not None:
        q = q.where(DatasetRow.tenant_id == tenant)
    return list(s.scalars(q))


def replicas(s: Session, dataset_ids: Iterable[str] | None = None) -> dict[str, list[ReplicaRow]]:
    """Replicas by dataset id (of the given datasets, or all)."""
    q = select(ReplicaRow).order_by(ReplicaRow.dataset_id, ReplicaRow.created_at)
    if dataset_ids is not None:
        ids = list(dataset_ids)
        if not ids:
            return {}
        q = q.where(ReplicaRow.dataset_id.in_(ids))
    out: dict[str, list[ReplicaRow]] = defaultdict(list)
    for r in s.scalars(q):
        out[r.dataset_id].append(r)
    return dict(out)


def add_replica(s: Session, dataset_id: str, center: str, path: str, at: datetime) -> ReplicaRow:
    """Record (or move) the replica of `dataset_id` at `center`."""
    row = s.get(ReplicaRow, (dataset_id, center))
    if row is None:
        row = ReplicaRow(dataset_id=dataset_id, center=center, path=path, created_at=at)
        s.add(row)
    else:
        row.path = path
    s.flush()
    return row


def datasets_as_model(
    s: Session, tenant: str | None = None, ids: Iterable[str] | None = None
) -> dict[str, Dataset]:
    """Datasets as the scheduler sees them ({id: Dataset} with replica centers)."""
    q = select(DatasetRow)
    if tenant is not None:
        q = q.where(DatasetRow.tenant_id == tenant)
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return {}
        q = q.where(DatasetRow.id.in_(wanted))
    rows = list(s.scalars(q))
    reps = replicas(s, [r.id for r in rows])
    return {
        r.id: Dataset(
            id=r.id,
            size_bytes=r.size_bytes,
            sha256=r.sha256,
            replicas=tuple(x.center for x in reps.get(r.id, [])),
            residency=r.residency,
        )
        for r in rows
    }


def dataset_owners(s: Session) -> dict[str, str]:
    """{dataset id: tenant} for every dataset."""
    return {str(i): str(t) for i, t in s.execute(select(DatasetRow.id, DatasetRow.tenant_id))}

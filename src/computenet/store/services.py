"""Services and their replica rows (tables `services`, `service_replicas`)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from computenet.store.schema import ServiceReplicaRow, ServiceRow


def get_service(
    s: Session, tenant: str, name: str, *, for_update: bool = False
) -> ServiceRow | None:
    """One tenant's service by name."""
    q = select(ServiceRow).where(ServiceRow.tenant_id == tenant, ServiceRow.name == name)
    if for_update:
        q = q.with_for_update()
    return s.scalars(q).first()


def list_services(s: Session, tenant: str | None = None) -> list[ServiceRow]:
    """Services by tenant and name (all tenants' when `tenant` is None)."""
    q = select(ServiceRow).order_by(ServiceRow.tenant_id, ServiceRow.name)
    if tenant is not None:
        q = q.where(ServiceRow.tenant_id == tenant)
    return list(s.scalars(q))


def replicas(
    s: Session, tenant: str, name: str, *, live_only: bool = False
) -> list[ServiceReplicaRow]:
    """A service's replica rows by slot (only those not retired when `live_only`)."""
    q = (
        select(ServiceReplicaRow)
        .where(ServiceReplicaRow.tenant_id == tenant, ServiceReplicaRow.service == name)
        .order_by(ServiceReplicaRow.slot)
    )
    if live_only:
        q = q.where(ServiceReplicaRow.retired.is_(False))
    return list(s.scalars(q))


def replica_of_job(s: Session, job_id: str) -> ServiceReplicaRow | None:
    """The replica row a job runs, if it is a replica."""
    return s.get(ServiceReplicaRow, job_id)


def drop_service(s: Session, tenant: str, name: str) -> None:
    """Remove a service and its replica rows (their jobs stay, as any job's history)."""
    s.execute(
        delete(ServiceReplicaRow).where(
            ServiceReplicaRow.tenant_id == tenant, ServiceReplicaRow.service == name
        )
    )
    s.execute(delete(ServiceRow).where(ServiceRow.tenant_id == tenant, ServiceRow.name == name))

"""The control plane's tables (SQLAlchemy 2, portable across SQLite and PostgreSQL).

Portability rules: money is exact decimal text (`Money`), instants are naive
UTC `DateTime` read back as aware UTC (`Instant`), structured data is `JSON`,
and nothing relies on SQLite-only SQL. Network-time instants (submitted,
planned, started, finished) and real-time instants (heartbeats, leases; unix
seconds as `Float`) are kept apart by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Instant(TypeDecorator[datetime]):
    """A timezone-aware instant stored as naive UTC (the same on every database)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware → naive UTC; naive values are refused (they are ambiguous)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("Instant columns take timezone-aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Naive UTC → aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """¥ as exact decimal text, so no database rounds it through a float."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        """Decimal → its exact text."""
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        """Text → Decimal."""
        return None if value is None else Decimal(value)


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for migrations)."""

    metadata = MetaData(naming_convention=NAMING)


class MetaRow(Base):
    """Small facts about the installation, e.g. the network clock's epoch."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class TenantRow(Base):
    """A tenant: the unit of isolation for jobs, datasets and bills."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Instant())
    # Per-tenant admission limits; None means the server's configured default.
    max_pending_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submits_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Tenancy (store/quotas.py): the highest `priority` a job of this tenant may carry
    # (None: uncapped) and its weight in the fair-share order (scheduler/ordering.py).
    priority_ceiling: Mapped[int | None] = mapped_column(Integer, nullable=True)
    share_weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")


class QuotaRow(Base):
    """One quota of a tenant, enforced when the scheduler places (store/quotas.py).

    `kind` is ``chips`` (chips of type `chip` in use at once; `chip` None = all types),
    ``cu_hours`` or ``cny`` (spent per `period`, ``day`` or ``month``); `limit_value` is
    exact decimal text (a count of chips, CU·h or ¥).
    """

    __tablename__ = "tenant_quotas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    chip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    limit_value: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(Instant())


class TokenRow(Base):
    """A bearer token, stored only as its sha256 hex digest."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("tenants.id"), nullable=True
    )
    center_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Instant())
    # Real (wall-clock) instants: a token past `expires_at` or with `revoked_at` set is dead.
    expires_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)


class CenterRow(Base):
    """A center's agent as last seen: registration, data endpoint, heartbeat, capacity."""

    __tablename__ = "centers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data_key: Mapped[str] = mapped_column(String(128))
    data_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    backend: Mapped[str] = mapped_column(String(32), default="local")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    protocol_version: Mapped[str] = mapped_column(String(16), default="")
    registered_at: Mapped[datetime] = mapped_column(Instant())
    # Real unix seconds: heartbeats and lease timeouts run on the wall clock.
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    capacity: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    running: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Bumped by `cnet admin rotate-data-key`; tickets signed with an older key stop working.
    data_key_version: Mapped[int] = mapped_column(Integer, default=1)
    # The agent said it stops jobs for preemption and keeps their checkpoints
    # (`RegisterRequest.preempt`): only such a center's jobs are ever preempted.
    preempt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DatasetRow(Base):
    """A registered dataset (ids are unique across the network)."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    residency: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Instant())


class ReplicaRow(Base):
    """A verified copy of a dataset at a center, at a path under the agent's data root."""

    __tablename__ = "dataset_replicas"

    dataset_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    center: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(Instant())


class JobRow(Base):
    """A job: spec, state, placement, lease and outcome."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_state_center", "state", "center"),
        Index("ix_jobs_tenant_submitted", "tenant_id", "submitted_at"),
        # Which tenants have jobs in a state (fair share, store/quotas.py): index seeks.
        Index("ix_jobs_state_tenant", "state", "tenant_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(128))
    workload_class: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(Instant())
    deadline: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    center: Mapped[str | None] = mapped_column(String(64), nullable=True)
    chip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    chips: Mapped[int] = mapped_column(Integer, default=0)
    planned_start: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    planned_finish: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    estimated_cny: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_center: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    leased_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Real unix seconds of the last heartbeat (or lease) that renewed this job's lease;
    # kept in the database so that any replica's reconciler judges it the same way.
    lease_renewed: Mapped[float | None] = mapped_column(Float, nullable=True)
    avoid_centers: Mapped[list[str]] = mapped_column(JSON, default=list)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    staging_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    usage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cost_cny: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Preemption (scheduler/preemption.py, server/preempting.py). `preemptible` copies the
    # spec's flag so that a cycle finds the candidates without reading specs.
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Non-null: the job it was asked to stop for (its agent has not reported the end yet).
    stop_for: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The fraction of its work still to do after preemptions (None: all of it), and where
    # its checkpoint is: it resumes only there, on the same chips.
    work_left: Mapped[float | None] = mapped_column(Float, nullable=True)
    resume_center: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resume_chip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When it was stopped (network time): it queues again as of then, behind the job it
    # was stopped for (`preemption.resumed`).
    stopped_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    # The charges of its earlier, preempted attempts ({field: exact text}), billed with
    # the last one: the job's charge row is their sum (server/metering.py).
    parts_billed: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class JobEventRow(Base):
    """One line of a job's timeline, written with every state change."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(Instant())
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    center: Mapped[str | None] = mapped_column(String(64), nullable=True)


class JobLogRow(Base):
    """A chunk of a job's output; `start_offset` is its byte offset in the job's whole log."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_job_start", "job_id", "start_offset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    attempt_offset: Mapped[int] = mapped_column(BigInteger)
    start_offset: Mapped[int] = mapped_column(BigInteger)
    nbytes: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class ChargeRow(Base):
    """What a finished job is billed: one row per job, money exact."""

    __tablename__ = "job_charges"
    __table_args__ = (Index("ix_job_charges_tenant_period", "tenant_id", "period"),)

    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    period: Mapped[str] = mapped_column(String(7))
    job_name: Mapped[str] = mapped_column(String(128))
    center: Mapped[str] = mapped_column(String(64))
    chip: Mapped[str] = mapped_column(String(64))
    chips: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Instant(), nullable=True)
    chip_hours: Mapped[float] = mapped_column(Float)
    cu_hours: Mapped[float] = mapped_column(Float)
    kwh: Mapped[float] = mapped_column(Float)
    co2_kg: Mapped[float] = mapped_column(Float)
    energy_cny: Mapped[Decimal] = mapped_column(Money())
    service_cny: Mapped[Decimal] = mapped_column(Money())
    transfer_cny: Mapped[Decimal] = mapped_column(Money())
    total_cny: Mapped[Decimal] = mapped_column(Money())


class AuditRow(Base):
    """One admin action (token made or revoked, key rotated, limits changed), never edited."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Instant(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LeaderRow(Base):
    """The leader lease of the control-plane replicas: one row per role (e.g. 'control-loop').

    `epoch` rises by one with every change of holder and fences a deposed leader's writes;
    `expires_real` is real unix seconds.
    """

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_real: Mapped[float] = mapped_column(Float)
    expires_real: Mapped[float] = mapped_column(Float)


class VoucherRow(Base):
    """A compute voucher (算力券) issued to a tenant: `pct` % of its charges, up to `cap_cny`.

    `used_cny` is what it has paid so far: the sum of its `voucher_uses`, kept
    here too so that a charge reads (and on PostgreSQL locks) one row per
    voucher. Validity is network time, ``[valid_from, valid_until)``.
    """

    __tablename__ = "vouchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), index=True)
    issuer: Mapped[str] = mapped_column(String(128))
    pct: Mapped[Decimal] = mapped_column(Money())
    cap_cny: Mapped[Decimal] = mapped_column(Money())
    used_cny: Mapped[Decimal] = mapped_column(Money())
    centers: Mapped[list[str]] = mapped_column(JSON, default=list)
    classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    valid_from: Mapped[datetime] = mapped_column(Instant())
    valid_until: Mapped[datetime] = mapped_column(Instant())
    issued_at: Mapped[datetime] = mapped_column(Instant())
    issued_by: Mapped[str] = mapped_column(String(128))


class VoucherUseRow(Base):
    """What one voucher paid of one job's charge (replaced with the charge when re-metered)."""

    __tablename__ = "voucher_uses"

    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    voucher_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("vouchers.id"), primary_key=True, index=True
    )
    amount_cny: Mapped[Decimal] = mapped_column(Money())


class ServiceRow(Base):
    """An inference service (docs/services.md): its file, and how many replicas it wants now.

    `wanted` is what `cnet serve scale` set (within the file's min and max); the
    control plane keeps that many replica jobs alive (server/services.py).
    """

    __tablename__ = "services"

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    wanted: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Instant())
    created_by: Mapped[str] = mapped_column(String(128))
    next_slot: Mapped[int] = mapped_column(Integer, default=0)
    # Autoscaling (server/services.py): each gateway's last report {name: [in flight, real
    # unix s, site or null, waiting]} (older rows: the first two), and since when (real) the
    # demand has called for more / fewer replicas.
    load: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    above_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    below_since: Mapped[float | None] = mapped_column(Float, nullable=True)


class ServiceReplicaRow(Base):
    """One replica of a service: the job that runs it, and where it listens once ready."""

    __tablename__ = "service_replicas"

    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer)
    endpoint: Mapped[str | None] = mapped_column(String(160), nullable=True)
    center: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)

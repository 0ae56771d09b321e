"""Initial schema: meta, tenants, tokens, centers, datasets, jobs, events, logs, charges.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Instants are naive-UTC DATETIME (`computenet.store.schema.Instant`), money is
decimal text (`Money`); the migration spells the underlying portable types so
that it never changes when the Python types do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _instant(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def _money(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=40), nullable=nullable)


def upgrade() -> None:
    """Create every table of the first release."""
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "centers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("data_key", sa.String(length=128), nullable=False),
        sa.Column("data_url", sa.String(length=512), nullable=True),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("protocol_version", sa.String(length=16), nullable=False),
        _instant("registered_at"),
        sa.Column("last_heartbeat", sa.Float(), nullable=True),
        sa.Column("capacity", sa.JSON(), nullable=False),
        sa.Column("running", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_centers")),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("center_id", sa.String(length=64), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tokens_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("residency", sa.String(length=64), nullable=True),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_datasets_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_index(op.f("ix_datasets_tenant_id"), "datasets", ["tenant_id"])
    op.create_table(
        "dataset_replicas",
        sa.Column("dataset_id", sa.String(length=128), nullable=False),
        sa.Column("center", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        _instant("created_at"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_replicas_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "center", name=op.f("pk_dataset_replicas")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("workload_class", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        _instant("submitted_at"),
        _instant("deadline", nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("placement", sa.JSON(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("center", sa.String(length=64), nullable=True),
        sa.Column("chip", sa.String(length=64), nullable=True),
        sa.Column("chips", sa.Integer(), nullable=False),
        _instant("planned_start", nullable=True),
        _instant("planned_finish", nullable=True),
        _money("estimated_cny", nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_center", sa.String(length=64), nullable=True),
        sa.Column("leased_at", sa.Float(), nullable=True),
        sa.Column("avoid_centers", sa.JSON(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        _instant("staging_at", nullable=True),
        _instant("started_at", nullable=True),
        _instant("finished_at", nullable=True),
        sa.Column("usage", sa.JSON(), nullable=False),
        _money("cost_cny", nullable=True),
        sa.Column("log_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_jobs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    )
    op.create_index(op.f("ix_jobs_lease_center"), "jobs", ["lease_center"])
    op.create_index("ix_jobs_state_center", "jobs", ["state", "center"])
    op.create_index("ix_jobs_tenant_submitted", "jobs", ["tenant_id", "submitted_at"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        _instant("at"),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("center", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index(op.f("ix_job_events_job_id"), "job_events", ["job_id"])
    op.create_table(
        "job_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempt_offset", sa.BigInteger(), nullable=False),
        sa.Column("start_offset", sa.BigInteger(), nullable=False),
        sa.Column("nbytes", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_logs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_logs")),
    )
    op.create_index("ix_job_logs_job_start", "job_logs", ["job_id", "start_offset"])
    op.create_table(
        "job_charges",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("job_name", sa.String(length=128), nullable=False),
        sa.Column("center", sa.String(length=64), nullable=False),
        sa.Column("chip", sa.String(length=64), nullable=False),
        sa.Column("chips", sa.Integer(), nullable=False),
        _instant("started_at", nullable=True),
        _instant("finished_at", nullable=True),
        sa.Column("chip_hours", sa.Float(), nullable=False),
        sa.Column("cu_hours", sa.Float(), nullable=False),
        sa.Column("kwh", sa.Float(), nullable=False),
        sa.Column("co2_kg", sa.Float(), nullable=False),
        _money("energy_cny"),
        _money("service_cny"),
        _money("transfer_cny"),
        _money("total_cny"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_charges_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_job_charges_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_charges")),
    )
    op.create_index("ix_job_charges_tenant_period", "job_charges", ["tenant_id", "period"])


def downgrade() -> None:
    """Drop every table (children first)."""
    for table in (
        "job_charges",
        "job_logs",
        "job_events",
        "jobs",
        "dataset_replicas",
        "datasets",
        "tokens",
        "centers",
        "tenants",
        "meta",
    ):
        op.drop_table(table)

"""Inference services: the services and their replica jobs (docs/services.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Two new tables; nothing existing changes, so the upgrade works on a database with rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the services and service_replicas tables."""
    op.create_table(
        "services",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("wanted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("next_slot", sa.Integer(), nullable=False),
        sa.Column("load", sa.JSON(), nullable=False),
        sa.Column("above_since", sa.Float(), nullable=True),
        sa.Column("below_since", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_services_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_services")),
    )
    op.create_table(
        "service_replicas",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=160), nullable=True),
        sa.Column("center", sa.String(length=64), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_service_replicas_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_service_replicas")),
    )
    op.create_index(op.f("ix_service_replicas_tenant_id"), "service_replicas", ["tenant_id"])


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_index(op.f("ix_service_replicas_tenant_id"), table_name="service_replicas")
    op.drop_table("service_replicas")
    op.drop_table("services")

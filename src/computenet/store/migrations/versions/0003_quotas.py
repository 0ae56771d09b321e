"""Tenancy: per-tenant quotas, the admin's priority ceiling and the fair-share weight
(and an index on jobs (state, tenant) for fair share's look-ups).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Every added column is nullable or has a server default, so the upgrade works on a
database with rows (SQLite adds such columns in place; no table rebuild).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two tenant columns and the quotas table."""
    op.add_column("tenants", sa.Column("priority_ceiling", sa.Integer(), nullable=True))
    op.add_column(
        "tenants",
        sa.Column("share_weight", sa.Float(), nullable=False, server_default="1"),
    )
    op.create_table(
        "tenant_quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("chip", sa.String(length=64), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=True),
        sa.Column("limit_value", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_quotas_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_quotas")),
    )
    op.create_index(op.f("ix_tenant_quotas_tenant_id"), "tenant_quotas", ["tenant_id"])
    op.create_index("ix_jobs_state_tenant", "jobs", ["state", "tenant_id"])


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_index("ix_jobs_state_tenant", table_name="jobs")
    op.drop_index(op.f("ix_tenant_quotas_tenant_id"), table_name="tenant_quotas")
    op.drop_table("tenant_quotas")
    with op.batch_alter_table("tenants") as b:
        b.drop_column("share_weight")
        b.drop_column("priority_ceiling")

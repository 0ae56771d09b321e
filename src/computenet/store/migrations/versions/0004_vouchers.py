"""Compute vouchers (算力券): the vouchers issued to tenants and what each paid of each job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Two new tables; nothing existing changes, so the upgrade works on a database with rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the vouchers and voucher_uses tables."""
    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=128), nullable=False),
        sa.Column("pct", sa.String(length=40), nullable=False),
        sa.Column("cap_cny", sa.String(length=40), nullable=False),
        sa.Column("used_cny", sa.String(length=40), nullable=False),
        sa.Column("centers", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_vouchers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
    )
    op.create_index(op.f("ix_vouchers_tenant_id"), "vouchers", ["tenant_id"])
    op.create_table(
        "voucher_uses",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("amount_cny", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_voucher_uses_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_voucher_uses_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("job_id", "voucher_id", name=op.f("pk_voucher_uses")),
    )
    op.create_index(op.f("ix_voucher_uses_voucher_id"), "voucher_uses", ["voucher_id"])


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_index(op.f("ix_voucher_uses_voucher_id"), table_name="voucher_uses")
    op.drop_table("voucher_uses")
    op.drop_index(op.f("ix_vouchers_tenant_id"), table_name="vouchers")
    op.drop_table("vouchers")

"""Trust and faults: token expiry and revocation time, tenant limits, data-key versions,
per-job lease renewal, the admin audit log and the control plane's leader lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Every added column is nullable or has a server default, so the upgrade works on a
database with rows (SQLite adds such columns in place; no table rebuild).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns and the two tables."""
    op.add_column("tokens", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.add_column("tokens", sa.Column("revoked_at", sa.DateTime(), nullable=True))
    op.add_column("tenants", sa.Column("max_pending_jobs", sa.Integer(), nullable=True))
    op.add_column("tenants", sa.Column("submits_per_s", sa.Float(), nullable=True))
    op.add_column(
        "centers",
        sa.Column("data_key_version", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column("jobs", sa.Column("lease_renewed", sa.Float(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_real", sa.Float(), nullable=False),
        sa.Column("expires_real", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_lease")),
    )


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_table("leader_lease")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("jobs") as b:
        b.drop_column("lease_renewed")
    with op.batch_alter_table("centers") as b:
        b.drop_column("data_key_version")
    with op.batch_alter_table("tenants") as b:
        b.drop_column("submits_per_s")
        b.drop_column("max_pending_jobs")
    with op.batch_alter_table("tokens") as b:
        b.drop_column("revoked_at")
        b.drop_column("expires_at")

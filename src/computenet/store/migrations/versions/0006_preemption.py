"""Preemption: which centers stop jobs for it, and each job's preemptions and resume point.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Every added column is nullable or has a server default, so the upgrade works on a
database with rows (SQLite adds such columns in place; no table rebuild).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns."""
    op.add_column(
        "centers", sa.Column("preempt", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "jobs", sa.Column("preemptible", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "jobs", sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("jobs", sa.Column("stop_for", sa.String(length=40), nullable=True))
    op.add_column("jobs", sa.Column("work_left", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("resume_center", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("resume_chip", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("stopped_at", sa.DateTime(), nullable=True))
    op.add_column("jobs", sa.Column("parts_billed", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    with op.batch_alter_table("jobs") as b:
        b.drop_column("parts_billed")
        b.drop_column("stopped_at")
        b.drop_column("resume_chip")
        b.drop_column("resume_center")
        b.drop_column("work_left")
        b.drop_column("stop_for")
        b.drop_column("preemptions")
        b.drop_column("preemptible")
    with op.batch_alter_table("centers") as b:
        b.drop_column("preempt")

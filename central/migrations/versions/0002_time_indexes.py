"""Indexes for the questions staff ask by date: loans by due date (overdue lists, reminders)
and circulation history by time (daily counts, pruning old history).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_loans_due", "loans", ["due"])
    op.create_index("ix_circulation_at", "circulation", ["at"])


def downgrade() -> None:
    op.drop_index("ix_circulation_at", table_name="circulation")
    op.drop_index("ix_loans_due", table_name="loans")

"""Patron sessions: opened by a successful patron check for a reader at a station, needed by
that station's account requests, loans and renewals for that reader.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "patron_sessions",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("patron_ref", sa.String(64), primary_key=True),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
    )
    op.create_index("ix_patron_sessions_ends_at", "patron_sessions", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_patron_sessions_ends_at", table_name="patron_sessions")
    op.drop_table("patron_sessions")

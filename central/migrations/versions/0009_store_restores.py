"""Restores of the store from a backup (store_restores): after one, each station journal's
numbering is taken from its next transaction, once (restore_numbering).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "store_restores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
    )
    op.create_index("ix_store_restores_restored_at", "store_restores", ["restored_at"])
    op.create_table(
        "restore_numbering",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("journal", sa.String(32), primary_key=True),
        sa.Column("restore_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("restore_numbering")
    op.drop_index("ix_store_restores_restored_at", table_name="store_restores")
    op.drop_table("store_restores")

"""Stock-takes (central/stocktake.py): stocktakes, the tags each saw (stocktake_seen) and the
station batches taken in (stocktake_batches, so that a batch sent twice counts once).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "stocktakes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("upto", sa.String(255)),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_stocktakes_site", "stocktakes", ["site"])
    op.create_table(
        "stocktake_seen",
        sa.Column("stocktake_id", sa.String(36), sa.ForeignKey("stocktakes.id"),
                  nullable=False),
        sa.Column("tag", sa.String(68), nullable=False),
        sa.Column("item_id", sa.String(64)),
        sa.Column("uid", sa.String(16), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stocktake_id", "tag", name="pk_stocktake_seen"),
    )
    op.create_table(
        "stocktake_batches",
        sa.Column("stocktake_id", sa.String(36), sa.ForeignKey("stocktakes.id"),
                  nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stocktake_id", "batch_id", name="pk_stocktake_batches"),
    )


def downgrade() -> None:
    op.drop_table("stocktake_batches")
    op.drop_table("stocktake_seen")
    op.drop_index("ix_stocktakes_site", table_name="stocktakes")
    op.drop_table("stocktakes")

"""Tagging the collection: set information per item (tagging_items) and every tag written at
a station (tagged_items), for `selfcheck central report --tagging`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tagging_items",
        sa.Column("item_id", sa.String(64), sa.ForeignKey("items.item_id"), primary_key=True),
        sa.Column("parts_in_item", sa.Integer, nullable=False),
        sa.Column("owner_isil", sa.String(16)),
    )
    op.create_table(
        "tagged_items",
        sa.Column("msg_id", sa.String(36), primary_key=True),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("tag_uid", sa.String(16), nullable=False),
        sa.Column("part_number", sa.Integer, nullable=False),
        sa.Column("parts_in_item", sa.Integer, nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("staff_ref", sa.String(64), nullable=False),
        sa.Column("tagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("overwrote", sa.Boolean, nullable=False),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("known", sa.Boolean, nullable=False),
    )
    op.create_index("ix_tagged_items_item_id", "tagged_items", ["item_id"])
    op.create_index("ix_tagged_items_tagged_at", "tagged_items", ["tagged_at"])


def downgrade() -> None:
    op.drop_index("ix_tagged_items_tagged_at", table_name="tagged_items")
    op.drop_index("ix_tagged_items_item_id", table_name="tagged_items")
    op.drop_table("tagged_items")
    op.drop_table("tagging_items")

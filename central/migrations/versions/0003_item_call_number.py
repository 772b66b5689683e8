"""items.call_number: the shelf mark that Koha and other systems export with each item
(952$o), kept for staff and receipts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A nullable column: a plain ALTER TABLE ADD COLUMN, on SQLite too.
    op.add_column("items", sa.Column("call_number", sa.String(255)))


def downgrade() -> None:
    # Not a batch (copy and move) op: on SQLite that drops `items`, which loans refer to.
    # ALTER TABLE DROP COLUMN needs SQLite 3.35 (bookworm has 3.40).
    op.drop_column("items", "call_number")

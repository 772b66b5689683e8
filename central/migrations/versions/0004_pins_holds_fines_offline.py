"""PINs (hash and lockout), item home branch, holds, fines, offline reconciliation and the
per-site offline list salt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # New columns are nullable or have a server default: plain ADD COLUMN, on SQLite too.
    op.add_column("patrons", sa.Column("pin_hash", sa.String(200)))
    op.add_column("patrons", sa.Column("pin_failures", sa.Integer(), nullable=False,
                                       server_default="0"))
    op.add_column("patrons", sa.Column("pin_locked_until", TZ))
    op.add_column("patron_refs", sa.Column("pin_failures", sa.Integer(), nullable=False,
                                           server_default="0"))
    op.add_column("patron_refs", sa.Column("pin_locked_until", TZ))
    op.add_column("items", sa.Column("home_site", sa.String(64)))
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(64), sa.ForeignKey("items.item_id"), nullable=False),
        sa.Column("patron_ref", sa.String(64), sa.ForeignKey("patrons.ref"), nullable=False),
        sa.Column("placed_at", TZ, nullable=False),
        sa.Column("pickup_site", sa.String(64)),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("pickup_by", sa.Date()),
    )
    op.create_index("ix_holds_item_id", "holds", ["item_id"])
    op.create_index("ix_holds_patron_ref", "holds", ["patron_ref"])
    op.create_table(
        "fines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("patron_ref", sa.String(64), sa.ForeignKey("patrons.ref"), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_fines_patron_ref", "fines", ["patron_ref"])
    op.create_table(
        "reconciliation",
        sa.Column("msg_id", sa.String(36), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("patron_ref", sa.String(64)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_index("ix_reconciliation_site", "reconciliation", ["site"])
    op.create_index("ix_reconciliation_at", "reconciliation", ["at"])
    op.create_table(
        "offline_salts",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("offline_salts", "reconciliation", "fines", "holds"):
        op.drop_table(table)  # their indexes go with them
    # ALTER TABLE DROP COLUMN: SQLite 3.35+ (see 0003).
    op.drop_column("items", "home_site")
    for table, columns in (("patron_refs", ("pin_locked_until", "pin_failures")),
                           ("patrons", ("pin_locked_until", "pin_failures", "pin_hash"))):
        for column in columns:
            op.drop_column(table, column)

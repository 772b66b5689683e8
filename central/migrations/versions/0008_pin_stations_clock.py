"""Wrong PINs per station and the PIN events staff see; the station's own time of a
transaction applied on the central's clock instead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pin_stations",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("window_start", TZ, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("pauses", sa.Integer, nullable=False),
        sa.Column("paused_until", TZ),
        sa.Column("last_at", TZ, nullable=False),
    )
    op.create_table(
        "pin_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("site", sa.String(64)),
        sa.Column("station", sa.String(64)),
        sa.Column("patron_ref", sa.String(64)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("until", TZ),
        sa.Column("by", sa.String(64)),
    )
    op.create_index("ix_pin_events_at", "pin_events", ["at"])
    op.add_column("reconciliation", sa.Column("station_at", TZ))


def downgrade() -> None:
    with op.batch_alter_table("reconciliation") as batch:
        batch.drop_column("station_at")
    op.drop_index("ix_pin_events_at", table_name="pin_events")
    op.drop_table("pin_events")
    op.drop_table("pin_stations")

"""A stock-take's sighting keeps what the library system said of the book's loan when it was
seen (SIP2 and Koha centrals), so that the console's report, which asks no library system,
says what the station was told.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("stocktake_seen", sa.Column("lent_there", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("stocktake_seen") as batch:
        batch.drop_column("lent_there")

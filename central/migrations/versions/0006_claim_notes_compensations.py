"""A claim's note (what the library system said before the request went out, to settle an
unknown outcome by comparing) and the loan a compensating return undid.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN, on SQLite too.
    op.add_column("sip2_claims", sa.Column("note", sa.String(64)))
    op.add_column("reconciliation", sa.Column("compensates", sa.String(36)))


def downgrade() -> None:
    with op.batch_alter_table("reconciliation") as batch:
        batch.drop_column("compensates")
    with op.batch_alter_table("sip2_claims") as batch:
        batch.drop_column("note")

"""The initial store: circulation (rules, patrons, items, loans, circulation, processed) and
the SIP2 backend's tables (sip2_claims, patron_refs).

IF NOT EXISTS everywhere: a store made by metadata.create_all() before migrations existed is
adopted as it is (and gains the tables it lacks).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("category", sa.String(32), primary_key=True),
        sa.Column("loan_days", sa.Integer, nullable=False),
        sa.Column("max_loans", sa.Integer, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "patrons",
        sa.Column("card_id", sa.String(64), primary_key=True),
        sa.Column("ref", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), sa.ForeignKey("rules.category"), nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("expires", sa.Date),
        if_not_exists=True,
    )
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("author", sa.String(200)),
        sa.Column("not_for_loan", sa.Boolean, nullable=False),
        sa.Column("sort_bin", sa.String(16)),
        if_not_exists=True,
    )
    op.create_table(
        "loans",
        sa.Column("item_id", sa.String(64), sa.ForeignKey("items.item_id"), primary_key=True),
        sa.Column("patron_ref", sa.String(64), sa.ForeignKey("patrons.ref"), nullable=False),
        sa.Column("loaned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due", sa.Date, nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_loans_patron_ref", "loans", ["patron_ref"], if_not_exists=True)
    op.create_table(
        "circulation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("msg_id", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("patron_ref", sa.String(64)),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_circulation_item_id", "circulation", ["item_id"], if_not_exists=True)
    op.create_table(
        "processed",
        sa.Column("msg_id", sa.String(36), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "sip2_claims",
        sa.Column("msg_id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "patron_refs",
        sa.Column("ref", sa.String(64), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    for table in ("patron_refs", "sip2_claims", "processed", "circulation", "loans", "items",
                  "patrons", "rules"):
        op.drop_table(table)

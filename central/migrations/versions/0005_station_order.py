"""Per-station order (station_order, held_tx, order_gaps); the dedupe, circulation and
reconciliation rows keyed by station and msg_id; processed.journal and a 64-bit seq.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TZ = sa.DateTime(timezone=True)


def _processed(name: str, *, new: bool) -> sa.Table:
    cols: list[sa.Column[Any]] = [sa.Column("msg_id", sa.String(36), nullable=False),
            sa.Column("site", sa.String(64), nullable=False),
            sa.Column("station", sa.String(64), nullable=False)]
    if new:
        cols.append(sa.Column("journal", sa.String(32), nullable=False, server_default=""))
    cols += [sa.Column("seq", sa.BigInteger if new else sa.Integer, nullable=False),
             sa.Column("kind", sa.String(8), nullable=False),
             sa.Column("result", sa.Text, nullable=False),
             sa.Column("applied_at", TZ, nullable=False)]
    key = (sa.PrimaryKeyConstraint("site", "station", "msg_id", name="pk_processed") if new
           else sa.PrimaryKeyConstraint("msg_id"))
    return op.create_table(name, *cols, key)


def _circulation(name: str, *, new: bool) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("msg_id", sa.String(36), nullable=False, unique=not new),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("patron_ref", sa.String(64)),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("at", TZ, nullable=False),
        *([sa.UniqueConstraint("site", "station", "msg_id", name="uq_circulation_msg")]
          if new else []),
    )


def _reconciliation(name: str, *, new: bool) -> sa.Table:
    key = (sa.PrimaryKeyConstraint("site", "station", "msg_id", name="pk_reconciliation")
           if new else sa.PrimaryKeyConstraint("msg_id"))
    return op.create_table(
        name,
        sa.Column("msg_id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("patron_ref", sa.String(64)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        key,
    )


INDEXES = {
    "processed": {"ix_processed_order": ["site", "station", "journal", "seq"]},
    "circulation": {"ix_circulation_item_id": ["item_id"], "ix_circulation_at": ["at"]},
    "reconciliation": {"ix_reconciliation_site": ["site"], "ix_reconciliation_at": ["at"]},
}
COMMON = {
    "processed": "msg_id, site, station, seq, kind, result, applied_at",
    "circulation": "id, msg_id, kind, item_id, patron_ref, site, station, at",
    "reconciliation": ("msg_id, site, station, kind, item_id, patron_ref, reason, at, "
                       "recorded_at"),
}
BUILD = {"processed": _processed, "circulation": _circulation,
         "reconciliation": _reconciliation}


def _rebuild(new: bool) -> None:
    """Copy each table into its new shape: the portable way to change a primary key or an
    unnamed unique constraint (SQLite cannot alter them; PostgreSQL names them its own way)."""
    bind = op.get_bind()
    for name, build in BUILD.items():
        build(f"{name}_next", new=new)
        cols = COMMON[name]
        op.execute(f"INSERT INTO {name}_next ({cols}) SELECT {cols} FROM {name}")
        op.drop_table(name)  # its indexes go with it
        op.rename_table(f"{name}_next", name)
        for index, columns in INDEXES[name].items():
            if new or index != "ix_processed_order":
                op.create_index(index, name, columns)
        if name == "circulation" and bind.dialect.name == "postgresql":
            # The copied ids were given explicitly: the serial must start past them.
            op.execute("SELECT setval(pg_get_serial_sequence('circulation', 'id'), "
                       "COALESCE((SELECT MAX(id) FROM circulation), 0) + 1, false)")


def upgrade() -> None:
    _rebuild(new=True)
    op.create_table(
        "station_order",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("journal", sa.String(32), primary_key=True),
        sa.Column("applied", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "held_tx",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("journal", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("msg_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
    )
    op.create_index("ix_held_tx_received_at", "held_tx", ["received_at"])
    op.create_table(
        "order_gaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("journal", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("msg_id", sa.String(36)),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_index("ix_order_gaps_site", "order_gaps", ["site"])
    op.create_index("ix_order_gaps_recorded_at", "order_gaps", ["recorded_at"])


def downgrade() -> None:
    for table in ("order_gaps", "held_tx", "station_order"):
        op.drop_table(table)
    _rebuild(new=False)

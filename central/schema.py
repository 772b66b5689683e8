"""Tables of the embedded circulation store (SQLAlchemy Core: SQLite or PostgreSQL).

The database is made by the migrations in central/migrations/, not by create_all(): a change
here needs a new revision there (tests/test_migrations.py compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

rules = Table(
    "rules", metadata,
    Column("category", String(32), primary_key=True),
    Column("loan_days", Integer, nullable=False),
    Column("max_loans", Integer, nullable=False),
)

patrons = Table(
    "patrons", metadata,
    Column("card_id", String(64), primary_key=True),
    # Pseudonymous reference: what travels on tx topics and in logs instead of the card number.
    Column("ref", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("category", String(32), ForeignKey("rules.category"), nullable=False),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("expires", Date),
)

items = Table(
    "items", metadata,
    Column("item_id", String(64), primary_key=True),
    Column("title", String(500), nullable=False),
    Column("author", String(200)),
    Column("call_number", String(255)),  # shelf mark, for staff and receipts (Koha 952$o)
    Column("not_for_loan", Boolean, nullable=False, default=False),
    Column("sort_bin", String(16)),
)

loans = Table(
    "loans", metadata,
    Column("item_id", String(64), ForeignKey("items.item_id"), primary_key=True),
    Column("patron_ref", String(64), ForeignKey("patrons.ref"), nullable=False, index=True),
    Column("loaned_at", DateTime(timezone=True), nullable=False),
    Column("due", Date, nullable=False, index=True),
)

# One row per applied loan, return or renewal: the circulation history.
circulation = Table(
    "circulation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", String(36), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("item_id", String(64), nullable=False, index=True),
    Column("patron_ref", String(64)),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)

# The dedupe row: written in the same database transaction as the effect.
processed = Table(
    "processed", metadata,
    Column("msg_id", String(36), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("result", Text, nullable=False),  # the ack as sent, JSON
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# -- used by the SIP2 backend (central/sip2/backend.py), in the same database

# A transaction being sent to the library system: taken before the request goes out, removed
# with the commit of its `processed` row. A claim that outlives its lease (a bridge died, or
# the answer never came) means the outcome is unknown: whoever takes it over asks the library
# system first (see central/sip2/backend.py).
sip2_claims = Table(
    "sip2_claims", metadata,
    Column("msg_id", String(36), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

# Pseudonymous patron references for a library system that knows patrons by card number only.
patron_refs = Table(
    "patron_refs", metadata,
    Column("ref", String(64), primary_key=True),
    Column("card_id", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

"""Tables of the embedded circulation store (SQLAlchemy Core: SQLite or PostgreSQL).

The database is made by the migrations in central/migrations/, not by create_all(): a change
here needs a new revision there (tests/test_migrations.py compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    # Salted scrypt hash (central/pin.py), never the PIN; failures count towards a lockout.
    Column("pin_hash", String(200)),
    Column("pin_failures", Integer, nullable=False, server_default="0"),
    Column("pin_locked_until", DateTime(timezone=True)),
)

items = Table(
    "items", metadata,
    Column("item_id", String(64), primary_key=True),
    Column("title", String(500), nullable=False),
    Column("author", String(200)),
    Column("call_number", String(255)),  # shelf mark, for staff and receipts (Koha 952$o)
    Column("not_for_loan", Boolean, nullable=False, default=False),
    Column("sort_bin", String(16)),
    Column("home_site", String(64)),  # owning branch (site code); None: returned anywhere
)

loans = Table(
    "loans", metadata,
    Column("item_id", String(64), ForeignKey("items.item_id"), primary_key=True),
    Column("patron_ref", String(64), ForeignKey("patrons.ref"), nullable=False, index=True),
    Column("loaned_at", DateTime(timezone=True), nullable=False),
    Column("due", Date, nullable=False, index=True),
)

# Holds (reservations) on an item: the queue is by placed_at. 'waiting' until the item comes
# back, then 'ready' on the pickup branch's hold shelf until pickup_by, or 'transit' on its
# way there. The loan to the holder removes the hold.
holds = Table(
    "holds", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(64), ForeignKey("items.item_id"), nullable=False, index=True),
    Column("patron_ref", String(64), ForeignKey("patrons.ref"), nullable=False, index=True),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("pickup_site", String(64)),  # None: any branch
    Column("status", String(8), nullable=False, default="waiting"),
    Column("pickup_by", Date),
)

fines = Table(
    "fines", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patron_ref", String(64), ForeignKey("patrons.ref"), nullable=False, index=True),
    Column("description", String(200), nullable=False),
    Column("amount", Integer, nullable=False),  # VND, whole dong
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Offline transactions the library system refused when they arrived: the reader had been
# told yes, so staff and operators must act (`selfcheck central report`). Also the returns a
# station sent by itself to undo a loan made after the reader was told it was not
# (`compensates`: that loan's msg_id; reason 'compensated', or why the return failed).
reconciliation = Table(
    "reconciliation", metadata,
    Column("msg_id", String(36), nullable=False),
    Column("site", String(64), nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("patron_ref", String(64)),
    Column("reason", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("compensates", String(36)),
    # The time the station gave, when its clock was out of bounds (central/tx_clock.py): the
    # transaction was applied at `at`, the central's time, instead.
    Column("station_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("site", "station", "msg_id", name="pk_reconciliation"),
)

# The per-site key of the offline list's card hashes: stable, so a station's list can be
# refreshed page by page; different per site, so two sites' lists cannot be joined.
offline_salts = Table(
    "offline_salts", metadata,
    Column("site", String(64), primary_key=True),
    Column("salt", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per applied loan, return or renewal: the circulation history.
circulation = Table(
    "circulation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", String(36), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("item_id", String(64), nullable=False, index=True),
    Column("patron_ref", String(64)),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    UniqueConstraint("site", "station", "msg_id", name="uq_circulation_msg"),
)

# The dedupe row: written in the same database transaction as the effect. Keyed by the
# station and its msg_id, so that no station's message can pass for another's.
processed = Table(
    "processed", metadata,
    Column("msg_id", String(36), nullable=False),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("journal", String(32), nullable=False, server_default=""),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("result", Text, nullable=False),  # the ack as sent, JSON
    Column("applied_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site", "station", "msg_id", name="pk_processed"),
    Index("ix_processed_order", "site", "station", "journal", "seq"),
)

# -- per-station order (central/ledger/order.py)

# How far each station journal's transactions have been applied: every seq up to `applied`
# is applied (its processed row) or given up as a gap (order_gaps).
station_order = Table(
    "station_order", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("journal", String(32), primary_key=True),
    Column("applied", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Transactions that came before their predecessor: released when the gap fills, or after the
# order wait with the gap recorded. Any bridge of the group may release them.
held_tx = Table(
    "held_tx", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("journal", String(32), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("msg_id", String(36), nullable=False),
    Column("payload", Text, nullable=False),  # the message as received, JSON
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)

# For reconciliation: 'gap', numbers first_seq..last_seq never came within the order wait
# and later ones were applied past them; 'late', the transaction msg_id (first_seq) came after
# its gap was given up and was applied then, out of order.
order_gaps = Table(
    "order_gaps", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False, index=True),
    Column("station", String(64), nullable=False),
    Column("journal", String(32), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("msg_id", String(36)),
    Column("recorded_at", DateTime(timezone=True), nullable=False, index=True),
)

# -- used by the SIP2 backend (central/backends/sip2/backend.py), in the same database

# A transaction being sent to the library system: taken before the request goes out, removed
# with the commit of its `processed` row. A claim that outlives its lease (a bridge died, or
# the answer never came) means the outcome is unknown: whoever takes it over asks the library
# system first (see central/backends/sip2/backend.py).
sip2_claims = Table(
    "sip2_claims", metadata,
    Column("msg_id", String(36), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    # What the library system said before the request went out (a renewal's count or due
    # date): an unknown outcome is settled by comparing, so a renewal is never sent twice.
    Column("note", String(64)),
)

# Pseudonymous patron references for a library system that knows patrons by card number only.
patron_refs = Table(
    "patron_refs", metadata,
    Column("ref", String(64), primary_key=True),
    Column("card_id", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Wrong PINs (CQ=N) counted here too: the lockout does not depend on the library system.
    Column("pin_failures", Integer, nullable=False, server_default="0"),
    Column("pin_locked_until", DateTime(timezone=True)),
)

# -- patron sessions (central/sessions.py), shared by every bridge

# Opened by a successful patron check for one reader at one station: that station's account
# requests, loans and renewals for that reader need it. Kept a day after it ends, to judge
# transactions that arrive late.
patron_sessions = Table(
    "patron_sessions", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("patron_ref", String(64), primary_key=True),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False, index=True),
)

# -- wrong PINs per station (central/pin_guard.py), shared by every bridge

# A station's wrong PINs in its current window, over every card: past the budget its PIN
# checks pause (longer at each pause within a day), so that a stolen station's credentials
# trying many cards slow that station down rather than lock the readers' cards.
pin_stations = Table(
    "pin_stations", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("failures", Integer, nullable=False),  # in the window
    Column("total", BigInteger, nullable=False),  # since the row was made: the fleet's counter
    Column("pauses", Integer, nullable=False),  # within a day of the last: each one longer
    Column("paused_until", DateTime(timezone=True)),
    Column("last_at", DateTime(timezone=True), nullable=False),
)

# What happened to cards and stations over wrong PINs, for staff: 'slowed', 'locked',
# 'unlocked' (a right PIN after a wait, or staff: `by`), 'station_paused'.
pin_events = Table(
    "pin_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("site", String(64)),
    Column("station", String(64)),
    Column("patron_ref", String(64)),
    Column("kind", String(16), nullable=False),
    Column("until", DateTime(timezone=True)),
    Column("by", String(64)),
)

# -- restores (`selfcheck central restore`, central/backup.py)

# One row per restore of the store from a backup. Stations kept numbering while the backup
# aged, so after a restore each station journal's numbering is taken from where its
# transactions say the station is (`acked_below`) instead of waiting for numbers the restored
# store never saw (central/ledger/order.py).
store_restores = Table(
    "store_restores", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("restored_at", DateTime(timezone=True), nullable=False, index=True),
    Column("source", String(500), nullable=False),  # the backup file, for whoever looks
)

# The first new transaction of each station journal since a restore (`restore_id`): a gap
# given up before the journal got past it is the restore's ('rebase'), one after it a gap.
restore_numbering = Table(
    "restore_numbering", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("journal", String(32), primary_key=True),
    Column("restore_id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the first number seen after the restore
    Column("taken_at", DateTime(timezone=True), nullable=False),
)

# -- stock-takes (central/stocktake.py): a shelf, call-number range or collection counted
# with a pad, a stack at a time, possibly over several stations and days

# One stock-take of one place: 'open' while a station works on it, 'paused' between (any
# station of the site may take it up again), 'closed' once the report is final.
stocktakes = Table(
    "stocktakes", metadata,
    Column("id", String(36), primary_key=True),
    Column("site", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # shelf, calls, collection
    Column("value", String(255), nullable=False),
    Column("upto", String(255)),  # calls: the last call number of the range
    Column("status", String(8), nullable=False),
    Column("station", String(64), nullable=False),  # the last station that worked on it
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
)

# Each tag seen once per stock-take (the first time, where): `tag` is the item id, or
# 'uid:' and the tag's UID when the tag gave no item id.
stocktake_seen = Table(
    "stocktake_seen", metadata,
    Column("stocktake_id", String(36), ForeignKey("stocktakes.id"), nullable=False),
    Column("tag", String(68), nullable=False),
    Column("item_id", String(64)),
    Column("uid", String(16), nullable=False),
    Column("station", String(64), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    # the library system's word on the book's loan when it was seen (SIP2, Koha); NULL: not
    # asked (the embedded store) or not answered
    Column("lent_there", Boolean),
    PrimaryKeyConstraint("stocktake_id", "tag", name="pk_stocktake_seen"),
)

# The batches of sightings taken in: a station's outbox sends a batch until it is answered,
# and a repeat must not count again (it is answered the same way, from the seen rows).
stocktake_batches = Table(
    "stocktake_batches", metadata,
    Column("stocktake_id", String(36), ForeignKey("stocktakes.id"), nullable=False),
    Column("batch_id", String(36), nullable=False),
    Column("station", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("stocktake_id", "batch_id", name="pk_stocktake_batches"),
)

# -- tagging the collection (central/tagging.py): converting a library to RFID, a book at a
# time at a station in staff mode

# What a tag needs beyond the item row: the set a multi-part item makes (one tag per part)
# and its owner's ISIL when it is not the central's default. Items without a row: 1 part.
tagging_items = Table(
    "tagging_items", metadata,
    Column("item_id", String(64), ForeignKey("items.item_id"), primary_key=True),
    Column("parts_in_item", Integer, nullable=False, default=1),
    Column("owner_isil", String(16)),
)

# One row per tag written and verified (a multi-part item has one per part), recorded once
# per msg_id from the station's tagging outbox: who (a staff card hash), where and when.
tagged_items = Table(
    "tagged_items", metadata,
    Column("msg_id", String(36), primary_key=True),
    Column("item_id", String(64), nullable=False, index=True),
    Column("tag_uid", String(16), nullable=False),
    Column("part_number", Integer, nullable=False),
    Column("parts_in_item", Integer, nullable=False),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("staff_ref", String(64), nullable=False),
    Column("tagged_at", DateTime(timezone=True), nullable=False, index=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("overwrote", Boolean, nullable=False),
    Column("offline", Boolean, nullable=False),
    Column("known", Boolean, nullable=False),  # the item was in the catalogue on receipt
)

"""Fleet tables in the central store (SQLAlchemy Core; own MetaData, same database)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

fleet_stations = Table(
    "fleet_stations", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("online", Boolean),
    # The session of the last birth: a will carrying an older session is stale.
    Column("session", Integer, nullable=False, default=0),
    Column("version", String(32)),
    Column("last_seen", Float),
    Column("changed", Float),
    Column("state", Text),  # the last `state` message, JSON
    Column("health", Text),  # the last `tele/health` message, JSON
    Column("config", Text),  # the last `config/reported`, JSON
    Column("last_event", Text),
)

fleet_events = Table(
    "fleet_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),
)

fleet_commands = Table(
    "fleet_commands", metadata,
    Column("cmd_id", String(64), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("name", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("updated", Float, nullable=False),
)

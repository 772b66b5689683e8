"""Fleet tables in the central store (SQLAlchemy Core; own MetaData, same database)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

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
    # Added later (nullable, see ensure): when it expires, who sent it, with what arguments.
    Column("expires", Float),
    Column("by", String(64)),
    Column("args", Text),  # JSON
)

# Alerts, raised and ended: the active ones (ended is NULL) come back after a restart; the
# ended ones say who acknowledged what, and when.
fleet_alerts = Table(
    "fleet_alerts", metadata,
    Column("site", String(64), primary_key=True),
    Column("station", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("since", Float, primary_key=True),
    Column("acked_by", String(64)),
    Column("acked_at", Float),
    Column("ended", Float, index=True),
)

# Operators of the web page. `sites` is a comma-separated list; empty means every site.
fleet_users = Table(
    "fleet_users", metadata,
    Column("name", String(64), primary_key=True),
    Column("pw_hash", String(200), nullable=False),  # argon2id, never the password
    Column("role", String(16), nullable=False),
    Column("sites", Text, nullable=False, default=""),
    Column("failures", Integer, nullable=False, default=0),
    Column("locked_until", Float),
    Column("created", Float, nullable=False),
)

# A session is known by the SHA-256 of its cookie: a leaked table does not log anyone in.
fleet_sessions = Table(
    "fleet_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires", Float, nullable=False),
)

fleet_audit = Table(
    "fleet_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("user", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(200), nullable=False, default=""),
    Column("result", String(32), nullable=False),
    Column("detail", Text),
    # Added later (nullable, see ensure): the client's address, and the site acted on (empty
    # for the library system, a login or a user change) so that the log filters by site.
    Column("addr", String(64)),
    Column("site", String(64), index=True),
)

# Health samples for a station's detail view, one per station every few minutes (the live
# rate is kept in memory): survives a restart of the service.
fleet_health = Table(
    "fleet_health", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("at", Float, nullable=False, index=True),
    Column("sample", Text, nullable=False),  # JSON: temp_c, outbox, load1, disk, skew
)


def ensure(engine: Engine) -> None:
    """Create the fleet tables, and add the columns added since a table was made: there is no
    migration tool for these tables, and each addition is a nullable column, which every
    database adds in place."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        have = inspect(conn)  # on this connection: SQLite would wait on a second one
        for table in (fleet_commands, fleet_audit):
            present = {c["name"] for c in have.get_columns(table.name)}
            for col in table.columns:
                if col.name not in present:
                    kind = col.type.compile(engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))
            # A column added above comes without its index (fleet_audit.site: the audit
            # log's site filter would read the whole table).
            indexed = {i["name"] for i in have.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexed:
                    index.create(conn)

"""How the central opens its database: below the store and the migrations, which both use it
(the migrations' scratch database is opened like any store)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

# How long a connection waits for another one's lock before "database is locked".
BUSY_WAIT_S = 30.0


def open_engine(url: str) -> Engine:
    """SQLite (WAL, synchronous=FULL, BEGIN IMMEDIATE) or PostgreSQL, by URL."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(multi_host(url), pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False,
                                              "timeout": BUSY_WAIT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        _wal(cur)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock at the start so two bridges never deadlock on an upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def multi_host(url: str) -> str:
    """libpq's multi-host form, `postgresql://USER@H1:P1,H2:P2/DB?target_session_attrs=
    read-write` (a primary and its standby: whichever takes writes now), in the form
    SQLAlchemy parses: no host in the authority, one `host=H:P` per host in the query. psycopg
    then hands libpq the same list, which tries the hosts in order on every connect."""
    scheme, sep, rest = url.partition("://")
    authority, _slash, tail = rest.partition("/")
    user, at, hosts = authority.rpartition("@")
    if not sep or "," not in hosts:
        return url
    db, _q, query = tail.partition("?")
    params = [f"host={h}" for h in hosts.split(",") if h]
    params += [query] if query else []
    return f"{scheme}://{user}{at}/{db}?{'&'.join(params)}"


def _wal(cur: sqlite3.Cursor) -> None:
    """Switch to WAL, waiting for other connections. SQLite answers "database is locked" at
    once, without its busy handler, when several connections switch a fresh file together
    (bridges starting at the same moment), so the wait is ours."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)

"""How the central opens its database: below the store and the migrations, which both use it
(the migrations' scratch database is opened like any store)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

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


def parse_url(url: str) -> URL:
    """The store URL as SQLAlchemy reads it, the multi-host form too (`multi_host`). One it
    cannot read is a ValueError whose message never holds the password (SQLAlchemy's may
    quote the whole URL)."""
    try:
        return make_url(multi_host(url))
    except (ArgumentError, ValueError) as exc:
        safe = hide_password(url)
        raise ValueError(str(exc).replace(multi_host(url), safe).replace(url, safe)) from None


def hide_password(url: str) -> str:
    """The URL for messages and logs, its password as ***: by hand, since SQLAlchemy cannot
    parse the multi-host form, which is kept as given. The userinfo ends at the last `@`
    before the query, so a password holding `@`, `/` or `:` is hidden whole."""
    scheme, sep, rest = url.partition("://")
    head, q, query = rest.partition("?")
    userinfo, at, hosts = head.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not sep or not at or not colon:
        return url
    return f"{scheme}://{user}:***@{hosts}{q}{query}"


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

"""The station journal: SQLite (WAL, synchronous=FULL) holding the outbox and counters.

A transaction is written here, with fsync, before the screen may call it accepted, and leaves
only when its `ack/tx` arrives. One connection guarded by a lock: the UI loop hands writes to a
thread, and acks are deleted from paho's network thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mqtt.messages import Message, encode

M = TypeVar("M", bound=Message)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    msg_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Security writes the library system allowed but the pad could not do: kept until the book is
-- back on the pad and written, or staff skip it (DESIGN.md invariant 3).
CREATE TABLE IF NOT EXISTS pending_security (
    uid TEXT PRIMARY KEY,
    item_id TEXT,
    title TEXT,
    state TEXT NOT NULL CHECK (state IN ('on_loan', 'in_library')),
    created REAL NOT NULL
);
-- How each pending write ended; a skip names the staff card by its hash, never its number.
CREATE TABLE IF NOT EXISTS security_log (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    item_id TEXT,
    how TEXT NOT NULL CHECK (how IN ('written', 'skipped')),
    staff_ref TEXT,
    at REAL NOT NULL
);
-- Refusals that came back when the reader was gone: the staff exceptions list.
CREATE TABLE IF NOT EXISTS exceptions (
    msg_id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    title TEXT,
    reason TEXT,
    created REAL NOT NULL,
    dismissed REAL
);
"""


class Journal:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _bump(self, name: str) -> int:
        row = self._db.execute(
            "INSERT INTO counters(name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value", (name,)
        ).fetchone()
        value: int = row[0]
        return value

    def next_session(self) -> int:
        with self._lock:
            return self._bump("session")

    def add(self, kind: str, topic: str, build: Callable[[int], M]) -> M:
        """Give the next sequence number to `build`, store the message, fsync, return it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._bump("seq")
                msg = build(seq)
                msg_id = getattr(msg, "msg_id")  # noqa: B009 - every outbox message has one
                self._db.execute(
                    "INSERT INTO outbox(msg_id, seq, kind, topic, payload, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (msg_id, seq, kind, topic, encode(msg), time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return msg

    def pending(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            return [(r[0], r[1], bytes(r[2])) for r in self._db.execute(
                "SELECT msg_id, topic, payload FROM outbox ORDER BY seq")]

    def delete(self, msg_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,))
            return cur.rowcount > 0

    def depth(self) -> tuple[int, float | None]:
        """Rows waiting for an ack, and the age in seconds of the oldest."""
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT count(*), min(created) FROM outbox").fetchone()
        return count, (time.time() - oldest) if oldest is not None else None

    # -- pending security writes
    def save_pending(self, uid: str, item_id: str | None, title: str | None,
                     state: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO pending_security(uid, item_id, title, state, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(uid) DO UPDATE SET state = excluded.state",
                (uid, item_id, title, state, time.time()))

    def clear_pending(self, uid: str, how: str, staff_ref: str | None = None) -> bool:
        """Ends a pending write (written or skipped) and logs how, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("DELETE FROM pending_security WHERE uid = ? "
                                       "RETURNING item_id", (uid,)).fetchone()
                if row is not None:
                    self._db.execute(
                        "INSERT INTO security_log(uid, item_id, how, staff_ref, at) "
                        "VALUES (?, ?, ?, ?, ?)", (uid, row[0], how, staff_ref, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return row is not None

    def pending_writes(self) -> list[tuple[str, str | None, str | None, str]]:
        """(uid, item_id, title, state), oldest first."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT uid, item_id, title, state FROM pending_security ORDER BY created")]

    def security_log(self) -> list[tuple[str, str | None, str, str | None]]:
        """(uid, item_id, how, staff_ref), oldest first."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT uid, item_id, how, staff_ref FROM security_log ORDER BY id")]

    # -- late refusals (staff exceptions)
    def keep_exception(self, msg_id: str, item_id: str, title: str | None,
                       reason: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO exceptions(msg_id, item_id, title, reason, created) "
                "VALUES (?, ?, ?, ?, ?)", (msg_id, item_id, title, reason, time.time()))

    def dismiss_exception(self, msg_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE exceptions SET dismissed = ? WHERE msg_id = ?",
                             (time.time(), msg_id))

    def open_exceptions(self) -> list[tuple[str, str, str | None, str | None]]:
        """(msg_id, item_id, title, reason) not yet dismissed, oldest first."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT msg_id, item_id, title, reason FROM exceptions "
                "WHERE dismissed IS NULL ORDER BY created")]

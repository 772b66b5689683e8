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

"""Operator commands seen by this station, and the applied remote config, in the station
journal's SQLite file (own connection, own tables): a command id is run once, even when the
command arrives again after a restart."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    cmd_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    result TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    settings TEXT NOT NULL
);
"""

KEEP_S = 30 * 86_400  # forget command ids after a month (commands expire long before)


class CommandLog:
    """On its own connection (`path`), or sharing the journal's connection and lock: a
    station then costs no extra file descriptors (hundreds of simulated stations share one
    process, and paho's select() cannot use descriptors past 1023)."""

    def __init__(self, path: Path | str | None = None, *,
                 shared: tuple[sqlite3.Connection, threading.Lock] | None = None) -> None:
        self._own = shared is None
        if shared is None:
            assert path is not None
            db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None,
                                 timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            shared = (db, threading.Lock())
        self._db, self._lock = shared
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute("DELETE FROM commands WHERE updated < ?", (time.time() - KEEP_S,))

    def close(self) -> None:
        if self._own:
            with self._lock:
                self._db.close()

    def claim(self, cmd_id: str, name: str) -> tuple[str, str | None, Any] | None:
        """Record a new command as queued and return None; for a known id, return its
        (state, reason, result) instead. Atomic: a command is claimed once."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO commands(cmd_id, name, state, updated) VALUES (?, ?, 'queued', ?) "
                "ON CONFLICT(cmd_id) DO NOTHING", (cmd_id, name, time.time()))
            if cur.rowcount == 1:
                return None
            state, reason, result = self._db.execute(
                "SELECT state, reason, result FROM commands WHERE cmd_id = ?",
                (cmd_id,)).fetchone()
        return state, reason, json.loads(result) if result else None

    def update(self, cmd_id: str, state: str, reason: str | None = None,
               result: Any = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE commands SET state = ?, reason = ?, result = ?, updated = ? "
                "WHERE cmd_id = ?",
                (state, reason, json.dumps(result) if result is not None else None,
                 time.time(), cmd_id))

    def unfinished(self) -> list[tuple[str, str]]:
        """(cmd_id, name) of commands a crash or restart left queued or in progress."""
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT cmd_id, name FROM commands WHERE state IN ('queued', 'in_progress')")]

    def remote_config(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            row = self._db.execute("SELECT version, settings FROM remote_config").fetchone()
        return (row[0], json.loads(row[1])) if row else (0, {})

    def set_remote_config(self, version: int, settings: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO remote_config(id, version, settings) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET version = excluded.version, "
                "settings = excluded.settings", (version, json.dumps(settings)))

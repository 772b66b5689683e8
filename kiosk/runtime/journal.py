"""The station journal: SQLite (WAL, synchronous=FULL) holding the outbox and counters.

A transaction is written here, with fsync, before the screen may call it accepted, and leaves
only when its `ack/tx` arrives. One connection guarded by a lock: the UI loop hands writes to a
thread, and acks are deleted from paho's network thread.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from selfcheck.drivers.seen import TagUid
from selfcheck.mqtt.messages import Message, TxBase, encode

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
-- The journal's id, made with it: the central orders a station's transactions by seq within
-- one journal (a journal older than the id has none, and keeps none).
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), journal TEXT);
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
-- Loans the screen called "not borrowed" (no answer in time) whose answer has not come yet:
-- should it come as made, the loan is checked back in (undo_loan). Left with the answer.
CREATE TABLE IF NOT EXISTS told_not_lent (
    msg_id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    title TEXT,
    created REAL NOT NULL
);
-- The offline list (req/offline-list): card hashes only, never card numbers. One list at a
-- time, replaced whole; offline_meta holds its one row.
CREATE TABLE IF NOT EXISTS offline_list (
    card_hash TEXT PRIMARY KEY,
    patron_ref TEXT NOT NULL,
    display_name TEXT NOT NULL,
    max_offline_loans INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offline_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    salt TEXT NOT NULL,
    generated_at REAL NOT NULL,
    valid_until REAL NOT NULL
);
-- Transactions done under the offline policy: what counts a patron's offline loans, and
-- what staff and demos look back on. `acked` is set when the central's ack arrives.
CREATE TABLE IF NOT EXISTS offline_tx (
    msg_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    patron_ref TEXT,
    created REAL NOT NULL,
    acked REAL
);
"""

# The journal's layout, in PRAGMA user_version. 1 is the layout before it was numbered (a file
# with tables and user_version 0); each later version is one step in _STEPS, run in order in
# one transaction on the first start of the new software. A journal newer than this software
# (a rollback to an older release) is refused, not opened: the old code would not know the
# newer tables and could lose what they hold.
VERSION = 2
_STEPS: dict[int, str] = {
    # 1 -> 2: the patron's offline loans are counted on every offline checkout; with a long
    # offline spell the count scans the whole table without this index.
    2: "CREATE INDEX IF NOT EXISTS offline_tx_loans ON offline_tx(patron_ref) "
       "WHERE kind = 'loan';",
}


class JournalVersionError(RuntimeError):
    """The journal was written by a newer release of the station software."""

    def __init__(self, path: Path, found: int) -> None:
        super().__init__(
            f"the journal {path} has schema version {found}, newer than this software's "
            f"{VERSION}: a newer release of the station software wrote it. Update the "
            f"station to that release again; the journal was left as it is")
        self.path, self.found = path, found


def journal_version(path: Path) -> int:
    """The schema version of the journal at `path`, read only (0: none there yet, or one
    from before the number, which this release migrates)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found: int = db.execute("PRAGMA user_version").fetchone()[0]
        return found
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to VERSION: create a fresh one, upgrade an older one step by step,
    refuse a newer one."""
    found: int = db.execute("PRAGMA user_version").fetchone()[0]
    if found > VERSION:
        raise JournalVersionError(path, found)
    if found == VERSION:
        db.executescript(_SCHEMA)  # IF NOT EXISTS throughout: a no-op on a whole file
        return
    # _SCHEMA is version 1 (its IF NOT EXISTS leaves an old file's tables as they are), so a
    # new file and an unnumbered one take the same steps.
    db.execute("BEGIN IMMEDIATE")
    try:
        for stmt in _statements(_SCHEMA):
            db.execute(stmt)
        for version in range(max(found, 1) + 1, VERSION + 1):
            for stmt in _statements(_STEPS[version]):
                db.execute(stmt)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """A script as single statements (executescript would commit the migration's
    transaction half-way)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]


class Journal:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # A shared flock on the file while the journal is open says "a station runs on it" to
        # `selfcheck doctor`, which must then not log in as the station (the broker would drop
        # the station for it). flock, not fcntl: SQLite's own locks are fcntl locks, and the
        # two kinds never meet on Linux. The kernel drops it with the process, however it ends.
        self._running = open(self.path, "rb")  # held until close()
        fcntl.flock(self._running, fcntl.LOCK_SH)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            _migrate(self._db, self.path)
        except BaseException:
            self._db.close()
            self._running.close()
            raise
        self._db.execute(
            "INSERT OR IGNORE INTO identity(id, journal) SELECT 1, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'seq')", (uuid.uuid4().hex,))
        row = self._db.execute("SELECT journal FROM identity").fetchone()
        self.journal_id: str | None = row[0] if row is not None else None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._running.close()

    @staticmethod
    def in_use(path: Path | str) -> bool:
        """Whether a station has the journal at `path` open now (see __init__)."""
        try:
            f = open(path, "rb")
        except OSError:  # no journal there (or no folder): no station on it either
            return False
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False  # closing the file let go of the lock

    def shared_connection(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """The connection and its lock, for tables others keep in the same file (the
        command log): a station then costs no extra file descriptors."""
        return self._db, self._lock

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
                msg = self._put(kind, topic, build)
                msg_id = getattr(msg, "msg_id")  # noqa: B009 - every outbox message has one
                if kind == "loan":  # borrowed again now: this loan decides, not an undo
                    self._db.execute("DELETE FROM told_not_lent WHERE item_id = ?",
                                     (getattr(msg, "item_id"),))  # noqa: B009
                if getattr(msg, "offline", False):  # counted with the outbox row, atomically
                    self._db.execute(
                        "INSERT INTO offline_tx(msg_id, kind, item_id, patron_ref, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (msg_id, kind, getattr(msg, "item_id", ""),
                         getattr(msg, "patron_ref", None), time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return msg

    def _put(self, kind: str, topic: str, build: Callable[[int], M]) -> M:
        """The next seq, the message built with it, its outbox row (inside the caller's
        transaction)."""
        seq = self._bump("seq")
        msg = build(seq)
        if isinstance(msg, TxBase):
            # Where the station is, for the central after a restore of its store: a row
            # leaves the outbox only at its ack, so every seq below the lowest one still here
            # has been acknowledged. Fixed in the payload now, so lower than the truth by the
            # time of a resend, which the central takes as safe (central/ledger/order.py).
            low = self._db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
            msg = msg.model_copy(update={"acked_below": seq if low is None else int(low)})
        self._db.execute(
            "INSERT INTO outbox(msg_id, seq, kind, topic, payload, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (getattr(msg, "msg_id"), seq, kind, topic, encode(msg), time.time()))  # noqa: B009
        return msg

    def pending(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            return [(r[0], r[1], bytes(r[2])) for r in self._db.execute(
                "SELECT msg_id, topic, payload FROM outbox ORDER BY seq")]

    def last_seq(self) -> int:
        """The sequence number the newest transaction got (0: none yet), acked or not."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
        return 0 if row is None else int(row[0])

    def seq_of(self, msg_id: str) -> int | None:
        """The sequence number of a row still waiting for its ack."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM outbox WHERE msg_id = ?",
                                   (msg_id,)).fetchone()
        return None if row is None else int(row[0])

    def delete(self, msg_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,))
            self._db.execute("UPDATE offline_tx SET acked = ? WHERE msg_id = ? AND acked IS NULL",
                             (time.time(), msg_id))
            self._db.execute("DELETE FROM told_not_lent WHERE msg_id = ?", (msg_id,))
            return cur.rowcount > 0

    # -- loans the reader was told they did not get
    def tell_not_lent(self, msg_id: str, item_id: str, title: str | None) -> None:
        """Remembered only while the loan still waits for its answer: one that came meanwhile
        has settled the screen already."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO told_not_lent(msg_id, item_id, title, created) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM outbox WHERE msg_id = ?)",
                (msg_id, item_id, title, time.time(), msg_id))

    def told_not_lent(self, msg_id: str) -> tuple[str, str | None] | None:
        """(item_id, title) of a loan the reader was told they did not get, still waiting."""
        with self._lock:
            row = self._db.execute("SELECT item_id, title FROM told_not_lent WHERE msg_id = ?",
                                   (msg_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def undo_loan(self, msg_id: str, topic: str, build: Callable[[int], M]) -> M | None:
        """The loan `msg_id` came back as made after the reader was told it was not: in one
        transaction its outbox row goes, a return (`build`, given the next seq) takes its
        place in the outbox, and staff get an exception. None if it was settled already."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "DELETE FROM told_not_lent WHERE msg_id = ? RETURNING item_id, title",
                    (msg_id,)).fetchone()
                msg = None
                if row is not None:
                    self._db.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,))
                    msg = self._put("return", topic, build)
                    self._db.execute(
                        "INSERT OR IGNORE INTO exceptions(msg_id, item_id, title, reason, "
                        "created) VALUES (?, ?, ?, 'compensated', ?)",
                        (msg_id, row[0], row[1], time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return msg

    def depth(self) -> tuple[int, float | None]:
        """Rows waiting for an ack, and the age in seconds of the oldest."""
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT count(*), min(created) FROM outbox").fetchone()
        return count, (time.time() - oldest) if oldest is not None else None

    # -- pending security writes
    def save_pending(self, uid: TagUid, item_id: str | None, title: str | None,
                     state: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO pending_security(uid, item_id, title, state, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(uid) DO UPDATE SET state = excluded.state",
                (uid, item_id, title, state, time.time()))

    def clear_pending(self, uid: TagUid, how: str, staff_ref: str | None = None) -> bool:
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

    def pending_writes(self) -> list[tuple[TagUid, str | None, str | None, str]]:
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

    # -- the offline list
    def store_offline_list(self, salt: str, generated_at: float, valid_until: float,
                           entries: Iterable[tuple[str, str, str, int]]) -> int:
        """Replace the list with (card_hash, patron_ref, display_name, max_offline_loans)
        rows, in one transaction; returns how many."""
        rows = list(entries)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM offline_list")
                self._db.executemany("INSERT OR REPLACE INTO offline_list VALUES (?, ?, ?, ?)",
                                     rows)
                self._db.execute("INSERT OR REPLACE INTO offline_meta VALUES (1, ?, ?, ?)",
                                 (salt, generated_at, valid_until))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def drop_expired_offline_list(self, now: float) -> bool:
        """Delete a list past its valid_until: it lends nothing any more, and card hashes
        left on the disk of a stolen station only help a brute force. True if dropped."""
        with self._lock:
            row = self._db.execute("SELECT valid_until FROM offline_meta").fetchone()
            if row is None or row[0] > now:
                return False  # the usual case: a read, no write
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = self._db.execute("DELETE FROM offline_meta WHERE valid_until <= ?",
                                        (now,)).rowcount
                if gone:
                    self._db.execute("DELETE FROM offline_list")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return bool(gone)

    def offline_meta(self) -> tuple[str, float, float] | None:
        """(salt, generated_at, valid_until) of the stored list, epoch seconds; None: none."""
        with self._lock:
            row = self._db.execute(
                "SELECT salt, generated_at, valid_until FROM offline_meta").fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def offline_entry(self, card_hash: str, now: float) -> tuple[str, str, int] | None:
        """(patron_ref, display_name, offline loans left) for a card hash on a list still
        valid at `now`. Loans left: the list's limit less this patron's offline loans made
        since the list was generated or still waiting for their ack."""
        with self._lock:
            meta = self._db.execute(
                "SELECT generated_at, valid_until FROM offline_meta").fetchone()
            if meta is None or meta[1] <= now:
                return None  # no list, or past valid_until: returns only
            row = self._db.execute(
                "SELECT patron_ref, display_name, max_offline_loans FROM offline_list "
                "WHERE card_hash = ?", (card_hash,)).fetchone()
            if row is None:
                return None
            used = self._db.execute(
                "SELECT count(*) FROM offline_tx WHERE kind = 'loan' AND patron_ref = ? "
                "AND (acked IS NULL OR created >= ?)", (row[0], meta[0])).fetchone()[0]
        return row[0], row[1], max(0, row[2] - used)

    def offline_transactions(self) -> list[tuple[str, str, str, str | None, bool]]:
        """(msg_id, kind, item_id, patron_ref, acked), oldest first."""
        with self._lock:
            return [(r[0], r[1], r[2], r[3], r[4] is not None) for r in self._db.execute(
                "SELECT msg_id, kind, item_id, patron_ref, acked FROM offline_tx "
                "ORDER BY created")]

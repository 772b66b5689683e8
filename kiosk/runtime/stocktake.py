"""Taking stock at a station: the stock-take's requests, its journal and its outbox.

While a stock-take runs, the pad's tags come here instead of the self-check core (the
runtime's `_on_tags`): no loan, return or security write happens. Each stack's new tags are
written to the stock-take journal (its own SQLite file beside the station journal, WAL,
synchronous=FULL) before they are sent, and stay there until the central answered: the same
outbox (mqtt/outbox.py) that carries the transactions sends them, again after a reconnect or
when an answer is late, and the central counts each batch once. So a stock-take goes on
offline, and what the pad saw is reported when the central is back.

Threads: `on_tags` runs on the pad's thread, answers on paho's; one lock guards the run and
the journal's connection (never held while sending). The requests block their caller (the
screen calls them from a worker thread).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from selfcheck.drivers.seen import SeenTag
from selfcheck.kiosk.stocktake import Counts, StocktakeRun, place_label
from selfcheck.mqtt import messages
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.outbox import Outbox
from selfcheck.mqtt.station_link import StationLink

log = logging.getLogger(__name__)

TOPIC = "stocktake-seen"  # the outbox's topic column: the request's name
TICK_S = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    stocktake_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
-- The stock-take this station works on: after a restart, or offline, it goes on with it.
CREATE TABLE IF NOT EXISTS current (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stocktake_id TEXT NOT NULL,
    info TEXT NOT NULL
);
"""


def journal_path(journal: Path) -> Path | str:
    return ":memory:" if str(journal) == ":memory:" else \
        journal.with_name(journal.name + ".stocktake")


class StocktakeJournal:
    """The outbox rows of the stock-take (an OutboxStore) and its current stock-take."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.lock = threading.Lock()

    def add(self, batch_id: str, stocktake_id: str, payload: bytes) -> None:
        with self.lock:
            self._db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)",
                             (batch_id, stocktake_id, payload, time.time()))

    def pending(self) -> list[tuple[str, str, bytes]]:
        with self.lock:
            rows = self._db.execute("SELECT batch_id, payload FROM batches "
                                    "ORDER BY created, rowid").fetchall()
        return [(r[0], TOPIC, bytes(r[1])) for r in rows]

    def delete(self, msg_id: str) -> bool:
        with self.lock:
            return self._db.execute("DELETE FROM batches WHERE batch_id = ?",
                                    (msg_id,)).rowcount == 1

    def depth(self, stocktake_id: str | None = None) -> int:
        with self.lock:
            if stocktake_id is None:
                return int(self._db.execute("SELECT count(*) FROM batches").fetchone()[0])
            return int(self._db.execute("SELECT count(*) FROM batches WHERE stocktake_id = ?",
                                        (stocktake_id,)).fetchone()[0])

    def set_current(self, info: messages.StocktakeInfo | None) -> None:
        with self.lock:
            if info is None:
                self._db.execute("DELETE FROM current")
            else:
                self._db.execute("INSERT OR REPLACE INTO current VALUES (1, ?, ?)",
                                 (info.stocktake_id, info.model_dump_json()))

    def current(self) -> messages.StocktakeInfo | None:
        with self.lock:
            row = self._db.execute("SELECT info FROM current").fetchone()
        return None if row is None else messages.StocktakeInfo.model_validate_json(row[0])

    def close(self) -> None:
        with self.lock:
            self._db.close()


def counts_of(info: messages.StocktakeInfo) -> Counts:
    return Counts(expected=info.expected, seen=info.seen, found=info.found,
                  missing=info.missing, misplaced=info.misplaced, on_loan=info.on_loan,
                  unknown=info.unknown)


class StationStocktake:
    def __init__(self, link: StationLink, journal: Path, *, resend_after_s: float,
                 request_s: float, stopped: threading.Event) -> None:
        self.link = link
        self.journal = StocktakeJournal(journal_path(journal))
        self.outbox = Outbox(self.journal, self._send, resend_after_s=resend_after_s)
        self.request_s = request_s
        self.run = StocktakeRun()
        self.info: messages.StocktakeInfo | None = self.journal.current()
        self.listeners: list[Callable[[], None]] = []  # any thread: the screen reschedules
        self.stack_times: list[float] = []  # seconds from a stack's tags to all answered
        # Raised on every change of the pad while counting: a stack put on or lifted off is
        # staff at work (the screen's idle time-out starts again on it).
        self.pad_changes = 0
        self._stack_started: dict[str, float] = {}  # batch_id -> when its tags came
        self._lock = threading.Lock()
        self._stopped = stopped
        self._thread = threading.Thread(target=self._tick, name="stocktake", daemon=True)
        self._thread.start()

    # -- state
    @property
    def active(self) -> bool:
        return self.run.stocktake_id is not None and self.run.phase.value == "running"

    def _changed(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a screen's trouble must not stop the pad or paho thread
                log.exception("stock-take listener failed")

    # -- requests to the central (blocking: from a worker thread)
    def _ask(self, name: str, msg: messages.Message) -> messages.Message | None:
        future: Future[messages.Message] = self.link.request(name, msg, self.request_s)
        try:
            return future.result(self.request_s)
        except Exception as exc:  # timed out, not connected, a bad answer: no answer
            log.info("stock-take %s got no answer: %s", name, exc)
            return None

    def places(self) -> messages.StocktakeRes | None:
        res = self._ask("stocktake", messages.StocktakeReq(action="places"))
        return res if isinstance(res, messages.StocktakeRes) else None

    def begin(self, place: messages.Place | None = None,
              stocktake_id: str | None = None) -> messages.StocktakeRes | None:
        """Open (or take up) a stock-take at the central and start counting; None: no answer.
        Without the central only this station's own current one goes on (`go_on`)."""
        res = self._ask("stocktake", messages.StocktakeReq(action="open", place=place,
                                                           stocktake_id=stocktake_id))
        if not isinstance(res, messages.StocktakeRes):
            return None
        if res.ok and res.stocktake is not None:
            self._start(res.stocktake)
        return res

    def go_on(self) -> bool:
        """Go on with this station's current stock-take without the central (offline)."""
        if self.info is None or self.info.status == "closed":
            return False
        self._start(self.info)
        return True

    def _start(self, info: messages.StocktakeInfo) -> None:
        with self._lock:
            self.info = info
            self.run.begin(info.stocktake_id, place_label(info.place), counts_of(info))
        self.journal.set_current(info)
        log.info("stock-take %s of %s %s started", info.stocktake_id, info.place.kind,
                 info.place.value)
        self._changed()

    def pause(self) -> bool:
        """Stop counting here; the central keeps it paused for any station. Offline the
        station stops all the same and tells the central when it can (the queued batches
        go first either way)."""
        sid = self.run.stocktake_id
        with self._lock:
            self.run.end()
        self._changed()
        if sid is None:
            return False
        res = self._ask("stocktake", messages.StocktakeReq(action="pause", stocktake_id=sid))
        return isinstance(res, messages.StocktakeRes) and res.ok

    def close(self) -> messages.StocktakeRes | None:
        """Close for good (the report is final). Refused here while this station still has
        books the central has not taken in: they would be left out."""
        sid = self.run.stocktake_id
        if sid is None or self.journal.depth(sid):
            return None
        res = self._ask("stocktake", messages.StocktakeReq(action="close", stocktake_id=sid))
        if isinstance(res, messages.StocktakeRes) and res.ok:
            with self._lock:
                self.run.end()
                self.run.stocktake_id = None
                self.info = res.stocktake
            self.journal.set_current(None)
            self._changed()
            return res
        return res if isinstance(res, messages.StocktakeRes) else None

    @property
    def unsent(self) -> int:
        return self.journal.depth()

    # -- the pad (its thread)
    def on_tags(self, tags: tuple[SeenTag, ...]) -> None:
        with self._lock:
            self.pad_changes += 1
            sid = self.run.stocktake_id
            batches = self.run.tags(tags)
        if not batches or sid is None:
            self._changed()  # the count on the pad
            return
        now = time.monotonic()
        at = dt.datetime.now(dt.UTC)
        for b in batches:
            batch_id = uuid7()
            msg = messages.StocktakeSeenReq(
                stocktake_id=sid, batch_id=batch_id, at=at,
                tags=[messages.SeenEntry(uid=u, item_id=i) for u, i in b.tags])
            payload = messages.encode(msg)
            self.journal.add(batch_id, sid, payload)  # journal first, then send
            self._stack_started[batch_id] = now
            self.outbox.submit(batch_id, TOPIC, payload)
        self._changed()

    # -- the outbox's sending and the answers (paho's thread)
    def _send(self, topic: str, payload: bytes) -> bool:
        if not self.link.connected.is_set():
            return False
        msg = messages.decode(payload, messages.StocktakeSeenReq)
        future = self.link.request(TOPIC, msg, self.request_s)
        future.add_done_callback(self._answered)
        return True

    def _answered(self, future: Future[messages.Message]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the outbox sends it again
        res = future.result()
        if not isinstance(res, messages.StocktakeSeenRes):
            return
        if not res.ok:  # closed or unknown at the central: nothing to count it into
            log.warning("stock-take batch %s dropped: %s", res.batch_id, res.reason)
            self.outbox.on_ack(res.batch_id)
            return
        with self._lock:
            self.run.answered([(b.uid, b.item_id, b.title, b.verdict) for b in res.books],
                              counts_of(res.stocktake) if res.stocktake else None)
            if res.stocktake is not None and res.stocktake.stocktake_id == self.run.stocktake_id:
                self.info = res.stocktake
        started = self._stack_started.pop(res.batch_id, None)
        if started is not None:
            self.stack_times.append(time.monotonic() - started)
        self.outbox.on_ack(res.batch_id)
        self._changed()

    def _tick(self) -> None:
        """Resend what waited too long; everything again after a reconnect."""
        was_up = False
        while not self._stopped.wait(TICK_S):
            try:
                up = self.link.connected.is_set()
                if up and not was_up:
                    self.outbox.on_connected()
                elif up:
                    self.outbox.resend_due()
                was_up = up
            except sqlite3.ProgrammingError:  # the journal closed under us: shutting down
                return
            except Exception:
                log.exception("stock-take resend failed")

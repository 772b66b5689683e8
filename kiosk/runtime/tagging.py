"""The tagging desk at a station (kiosk/staff_tagging.py), wired to the station's pad watcher,
card reader (the barcode scanner), MQTT link and a small outbox of its own.

Every tag written goes into the tagging outbox (SQLite beside the journal, fsync'd) before the
screen says "done", and is sent as `tx/tagged` until the central's `ack/tx`: tagging offline
is queued and reported when the station is back. It is kept apart from the journal's
transactions on purpose: a tag written changes no loan, and must not take a number in the
station's transaction order (the central would wait for it before the next loan).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from selfcheck.drivers.pad.base import BookPad, PadError
from selfcheck.drivers.seen import SeenTag, uid_bytes
from selfcheck.drivers.tags import TagDecodeError, decode_tag, iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk import staff_tagging as st
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.outbox import Outbox

if TYPE_CHECKING:
    from selfcheck.kiosk.runtime.station import StationRuntime

log = logging.getLogger(__name__)

BLOCK = 4
RESEND_CHECK_S = 1.0


def store_path(journal: Path) -> Path | str:
    if str(journal) == ":memory:":
        return ":memory:"
    return journal.with_name(journal.name + ".tagging")


class TaggingStore:
    """The tagging outbox, and when this station tagged items (the desk's counts)."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outbox (msg_id TEXT PRIMARY KEY, "
                         "topic TEXT NOT NULL, payload BLOB NOT NULL, at REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS tagged (msg_id TEXT PRIMARY KEY, "
                         "item_id TEXT NOT NULL, part INTEGER NOT NULL, at REAL NOT NULL)")

    def add(self, msg_id: str, topic: str, payload: bytes, item_id: str, part: int,
            at: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?)",
                             (msg_id, topic, payload, at))
            self._db.execute("INSERT OR IGNORE INTO tagged VALUES (?, ?, ?, ?)",
                             (msg_id, item_id, part, at))
            self._db.execute("COMMIT")

    def pending(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            return [(m, t, bytes(p)) for m, t, p in self._db.execute(
                "SELECT msg_id, topic, payload FROM outbox ORDER BY at, msg_id")]

    def delete(self, msg_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM outbox WHERE msg_id = ?",
                                    (msg_id,)).rowcount > 0

    def items_since(self, since: float) -> list[float]:
        """When each item (its first part) was tagged here since `since` (epoch seconds)."""
        with self._lock:
            return [at for (at,) in self._db.execute(
                "SELECT at FROM tagged WHERE at >= ? AND part = 1 ORDER BY at", (since,))]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def write_item(pad: BookPad, action: st.WriteTags, afi: int) -> tuple[st.TagResult, ...]:
    """On the pad's thread: for each tag, check it is blank (unless staff said overwrite),
    write the item's ISO 28560-3 block, read it back, decode it, then set the AFI."""
    results = []
    item = action.item
    for w in action.writes:
        uid = uid_bytes(w.uid)
        try:
            memory = iso28560_3.encode(item.item_id, owner_isil=action.owner_isil,
                                       type_of_usage=action.type_of_usage,
                                       parts_in_item=item.parts_in_item,
                                       part_number=w.part_number)
        except ValueError as exc:
            log.warning("item %s cannot be encoded: %s", item.item_id, exc)
            results.append(st.TagResult(w.uid, False, "write"))
            continue
        memory += bytes(-len(memory) % BLOCK)
        blocks = len(memory) // BLOCK
        try:
            if not action.overwrite:
                old = pad.read_blocks(uid, 0, blocks)
                if any(old) and any(b != 0xFF for b in old):
                    results.append(st.TagResult(w.uid, False, "holds_data"))
                    continue
            pad.write_blocks(uid, 0, memory)
        except PadError as exc:
            log.info("tag %s not written: %s", w.uid, exc)
            results.append(st.TagResult(w.uid, False, "write"))
            continue
        try:
            back = pad.read_blocks(uid, 0, blocks)
        except PadError:
            results.append(st.TagResult(w.uid, False, "gone"))
            continue
        try:
            same = back == memory and decode_tag(back, uid=uid).primary_item_id == item.item_id
        except TagDecodeError:
            same = False
        if not same:
            results.append(st.TagResult(w.uid, False, "verify"))
            continue
        try:
            pad.write_afi(uid, afi)
        except PadError:
            results.append(st.TagResult(w.uid, False, "write"))
            continue
        results.append(st.TagResult(w.uid, True))
    return tuple(results)


class TaggingRuntime:
    """The desk on the station's loop: fed by the station's hooks (tags, cards, acks) and
    by its own view listener (mode changes, resends)."""

    def __init__(self, station: StationRuntime) -> None:
        self.station = station
        config = station.config
        self.desk = st.TaggingDesk(st.TaggingConfig(owner_isil=config.desk.owner_isil), uuid7)
        self.store = TaggingStore(store_path(config.journal))
        self.outbox = Outbox(self.store, station.link.send,
                             resend_after_s=config.timeouts.resend_after_s)
        # The msg_ids waiting for their ack, in memory: the station's every ack passes
        # `on_ack` on paho's thread, and a loan's must not cost a database look-up
        self._mine = {msg_id for msg_id, _, _ in self.store.pending()}
        self.active = False
        self.present: tuple[SeenTag, ...] = ()
        self.sound: Callable[[bool], None] = lambda ok: None  # the screen plays it
        self.sounds: list[bool] = []  # what was played, newest last (tests, the demo)
        self.listeners: list[Callable[[st.TaggingView], None]] = []
        self._online = False
        self._resent = 0.0
        self._resending = False
        station.add_listener(self._on_view)

    # -- the station's hooks (any thread)
    def on_tags(self, tags: tuple[SeenTag, ...]) -> None:
        self.station.run_soon(self._tags, tags)

    def takes_card(self, card_id: str) -> bool:
        """A scan while the desk is open is a book's barcode (a staff card: back to the
        staff screen); the core does not see it."""
        if self.station.core.mode is not core.Mode.TAGGING:
            return False
        if card_id in self.station.config.desk.staff_cards:
            self.station.run_soon(self.station.feed, core.Touch("staff_exit"))
        else:
            self.station.run_soon(self.feed, st.Barcode(card_id))
        return True

    def on_ack(self, ack: messages.AckTx) -> bool:
        """paho's thread: True when the ack was for a tag written here."""
        if ack.msg_id not in self._mine:
            return False
        self._mine.discard(ack.msg_id)
        self.outbox.on_ack(ack.msg_id)
        self.station.run_soon(self.feed, st.Acked(ack.msg_id))
        return True

    def press(self, button: st.Press) -> None:
        """A button of the tagging screen (UI loop)."""
        self.feed(st.Pressed(button))

    # -- the desk
    def view(self) -> st.TaggingView:
        return self.desk.view(dt.datetime.now().astimezone())

    def feed(self, event: st.TaggingEvent) -> None:
        # Closed: staff's input is not taken, but what is under way still ends (a tag written
        # after staff left is recorded all the same)
        if not self.active and isinstance(event, st.Barcode | st.Tags | st.Pressed):
            return
        for action in self.desk.handle(event, dt.datetime.now().astimezone()):
            if isinstance(action, st.Sound):
                self.sounds.append(action.ok)
                self.sound(action.ok)
            else:
                self.station.spawn(self._perform(action))
        view = self.view()
        for listener in self.listeners:
            listener(view)

    def _tags(self, tags: tuple[SeenTag, ...]) -> None:
        self.present = tags
        if self.active:
            self.feed(st.Tags(tags))

    def _on_view(self, view: core.View) -> None:
        active = view.mode is core.Mode.TAGGING
        if active and not self.active:
            self.active = True
            midnight = dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0,
                                                              microsecond=0)
            history = [dt.datetime.fromtimestamp(at).astimezone()
                       for at in self.store.items_since(midnight.timestamp())]
            self.desk.start(self.station.core.staff or "staff", history)
            self.feed(st.Tags(self.present))
        elif not active and self.active:
            self.active = False
        if view.online != self._online:
            self._online = view.online
            if view.online:
                self.station.spawn(asyncio.to_thread(self.outbox.on_connected))
        if time.monotonic() - self._resent >= RESEND_CHECK_S and not self._resending:
            self._resent = time.monotonic()
            self._resending = True
            self.station.spawn(self._resend())

    async def _resend(self) -> None:
        try:
            await asyncio.to_thread(self.outbox.resend_due)
        finally:
            self._resending = False

    async def _perform(self, action: st.TaggingAction) -> None:
        try:
            await self._do(action)
        except Exception:  # said in the log: a task's exception would otherwise vanish
            log.exception("tagging: %s failed", type(action).__name__)

    async def _do(self, action: st.TaggingAction) -> None:
        if isinstance(action, st.LookUp):
            await self._look_up(action.barcode)
        elif isinstance(action, st.WriteTags):
            afi = self.station.config.afi.in_library
            future = self.station.watcher.on_pad(lambda pad: write_item(pad, action, afi))
            try:
                results = await asyncio.wrap_future(future)
            except Exception as exc:  # the pad itself failed: nothing verified
                log.warning("tagging write failed: %s", exc)
                results = tuple(st.TagResult(w.uid, False, "write") for w in action.writes)
            self.feed(st.Written(action.item.item_id, results))
        elif isinstance(action, st.RecordTagged):
            await asyncio.to_thread(self._record, action)

    async def _look_up(self, barcode: str) -> None:
        timeout = self.station.config.timeouts.request_s
        future = self.station.link.request("item", messages.ItemReq(item_id=barcode), timeout)
        res = await self.station._answer(future, messages.ItemRes, timeout, "item look-up")
        if res is None:
            self.feed(st.ItemLooked(barcode, None))
        elif not res.ok:
            self.feed(st.ItemLooked(barcode, None, unknown=True))
        else:
            self.feed(st.ItemLooked(barcode, st.ItemInfo(
                res.item_id, res.title, res.owner_isil, res.parts_in_item, res.not_for_loan)))

    def _record(self, action: st.RecordTagged) -> None:
        """Stored (fsync) first, sent after: the outbox sends it again until the ack."""
        c = self.station.config
        topic = topics.tagged(c.site, c.station)
        msg = messages.TxTagged(msg_id=action.msg_id, site=c.site, station=c.station,
                                at=action.at.astimezone(dt.UTC), item_id=action.item_id,
                                tag_uid=action.tag_uid, part_number=action.part_number,
                                parts_in_item=action.parts_in_item,
                                staff_ref=self.desk.staff_ref, overwrote=action.overwrote,
                                offline=action.offline)
        payload = messages.encode(msg)
        self.store.add(action.msg_id, topic, payload, action.item_id, action.part_number,
                       action.at.timestamp())
        self._mine.add(action.msg_id)
        self.outbox.submit(action.msg_id, topic, payload)

    def close(self) -> None:
        self.store.close()


"""The station runtime: wires the self-check core to the pad, the card reader, the journal
and the MQTT link on one asyncio loop. Blocking work (SQLite fsync, pad I/O) runs in threads.
The Kivy UI and the headless simulator both drive a StationRuntime."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from selfcheck.drivers.card.base import CardReader
from selfcheck.drivers.pad.base import BookPad
from selfcheck.drivers.pad.watcher import PadWatcher
from selfcheck.drivers.printer import PaperEvent, open_printer
from selfcheck.drivers.seen import SeenTag, uid_bytes
from selfcheck.kiosk import core, receipt
from selfcheck.kiosk.config import StationConfig
from selfcheck.kiosk.runtime import edge
from selfcheck.kiosk.runtime.agent import FleetAgent
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.kiosk.runtime.stocktake import StationStocktake
from selfcheck.kiosk.settings import StationSettings
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.outbox import Outbox
from selfcheck.mqtt.station_link import StationLink
from selfcheck.system.sdnotify import notify

if TYPE_CHECKING:
    from selfcheck.drivers.printer import ReceiptPrinter

M = TypeVar("M", bound=messages.Message)

log = logging.getLogger(__name__)

VERSION = "0.1.0"
TICK_S = 0.25


PAPER_POLL_S = 60.0  # how often an idle station asks the printer about its paper


def core_config(config: StationConfig) -> core.CoreConfig:
    desk, t = config.desk, config.timeouts
    return core.CoreConfig(default_lang=desk.lang, ack_timeout_s=t.ack_s,
                           inactivity_s=t.inactivity_s, summary_s=t.summary_screen_s,
                           offline_returns=config.offline.returns,
                           station_mode=desk.mode, confirm_count=desk.confirm_count,
                           multipart=desk.multipart, owner_isil=desk.owner_isil,
                           staff_cards=desk.staff_cards, help_after=desk.help_after,
                           receipt=desk.receipt, can_print=config.printer is not None,
                           can_email=config.mail is not None, pin=desk.pin,
                           offline_loans=config.offline.loans,
                           return_station_clear_s=desk.return_clear_s)


class StationRuntime:
    def __init__(self, settings: StationSettings, pad: BookPad, card: CardReader) -> None:
        # The file's settings, for the screen and the devices; what the runtime acts on is
        # `config`, replaced whole by `reconfigure` (never edited).
        self.settings = settings
        self.config: StationConfig = settings.config
        config = self.config
        self.core = core.SelfCheck(core_config(config), uuid7)
        self.journal = Journal(config.journal)
        self.link = StationLink(config.site, config.station, config.broker.address,
                                version=VERSION, next_session=self.journal.next_session,
                                on_ack=self._on_ack, on_connected=self._on_connected,
                                mode=lambda: self.config.desk.mode,
                                security=config.broker.security,
                                channels=("cmd/req/+", "config/desired"),
                                on_channel=lambda c, p: self.agent.on_channel(c, p))
        self.outbox = Outbox(self.journal, self.link.send,
                             resend_after_s=config.timeouts.resend_after_s)
        self.watcher = PadWatcher(pad, self._on_tags, afi=config.afi,
                                  on_health=self._on_pad_health)
        self.card = card
        self.pad_ok = True
        self.card_ok = True
        stats = getattr(card, "stats", None)  # real card readers report open/lost
        if stats is not None and hasattr(stats, "on_health"):
            stats.on_health = self._on_card_health
        self.version = VERSION
        self.exit_code = 0  # set by a `restart` command
        self.reload: Callable[[], StationSettings] | None = None  # re-reads the config file
        self._listeners: list[Callable[[core.View], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        # Staff taking stock (kiosk/runtime/stocktake.py): its own journal and outbox.
        self.stocktake = StationStocktake(self.link, config.journal,
                                          resend_after_s=config.timeouts.resend_after_s,
                                          request_s=config.timeouts.request_s,
                                          stopped=self._stop)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._card_thread: threading.Thread | None = None
        self._dead_reported: frozenset[str] = frozenset()
        # Telemetry, operator commands, remote config; it steers this runtime only through
        # the methods of agent.Station.
        self.agent = FleetAgent(self, self.link, self.journal.shared_connection())
        self.agent.start()  # the remote config applied before the restart, before anything
        self.add_listener(self.agent.on_view)
        self.printer: ReceiptPrinter | None = None
        if config.printer is not None:
            self.printer = open_printer(config.printer, on_paper=self._on_paper)
            self.agent.set_printer("ok", "ok")
        self._paper_polled = 0.0
        self._list_fetched = 0.0  # monotonic time of the last offline list fetch (0: due)
        self._list_task: asyncio.Task[Any] | None = None
        self._list_refused = False  # the central said not_offline: said once in the log
        # Staff tagging books (converting to RFID): its own desk and outbox
        # (kiosk/runtime/tagging.py), reached from the staff screen
        from selfcheck.kiosk.runtime.tagging import TaggingRuntime

        self.tagging = TaggingRuntime(self)

    # -- wiring
    def reconfigure(self, config: StationConfig,
                    settings: StationSettings | None = None) -> None:
        """Take a new config (an operator's remote change; `settings`: a reloaded file) and
        hand it to what uses it. UI loop only. What only a restart changes (the broker, the
        journal, the devices) is left as it is."""
        self.config = config
        if settings is not None:
            self.settings = settings
        # The core takes it as an event, between two others (a session keeps its language).
        self.feed(core.Reconfigure(core_config(config)))
        self.agent.reconfigured(config)

    def run_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` on the station's loop, from any thread; dropped before `run`
        and after the loop closed."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def outbox_depth(self) -> tuple[int, float | None]:
        """Transactions waiting for their ack, and the age in seconds of the oldest."""
        return self.journal.depth()

    def reader_counters(self) -> dict[str, int]:
        """The pad driver's counters, for tele/health (empty when it keeps none)."""
        counters = getattr(self.watcher.pad, "counters", None)
        return {k: int(v) for k, v in vars(counters).items()} if counters is not None else {}

    def service_message(self) -> str | None:
        """Staff's out-of-service message, English first (for operators), None in service."""
        closed = self.core.closed_by
        return None if closed is None else closed.message_en or closed.message_vi

    def add_listener(self, listener: Callable[[core.View], None]) -> None:
        self._listeners.append(listener)

    def view(self) -> core.View:
        return self.core.view(time.monotonic())

    def feed(self, event: core.Event) -> None:
        """Give the core an event (UI loop only) and carry out what it asks for."""
        ignored, undeclared = self.core.ignored.total(), self.core.undeclared.total()
        for action in self.core.handle(event, time.monotonic()):
            if isinstance(action, core.ToldNotLent):
                # In the journal before the screen says it: after a power cut the answer
                # must still find what the reader was told. Rare, and one small commit.
                self.journal.tell_not_lent(action.msg_id, action.item_id, action.title)
                continue
            self.spawn(self._perform(action))
        if self.core.ignored.total() != ignored:
            log.debug("core ignored %s in mode %s", self.core.ignored_recent[-1][1],
                      self.core.ignored_recent[-1][0].value)
        if self.core.undeclared.total() != undeclared:  # a fault in the core: say it once each
            start, key, end = self.core.undeclared_last
            log.warning("core step not in its table: %s led from %s to %s", key, start.value,
                        end.value)
        view = self.view()
        for listener in self._listeners:
            listener(view)

    def feed_threadsafe(self, event: core.Event) -> None:
        self.run_soon(self.feed, event)

    def spawn(self, coro: Any) -> None:
        """Run a coroutine on the station's loop (from the loop), kept until it ends; like
        `run_soon`, dropped when no loop runs (a runtime driven by hand, before `run`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle
    async def run(self) -> None:
        """Run until `stop()`; the caller's loop becomes the station's loop."""
        self._loop = asyncio.get_running_loop()
        await self._restore()
        self.link.start()
        self.watcher.start()
        self._card_thread = threading.Thread(target=self.card.run,
                                             args=(self._on_card, self._stop),
                                             name="card-reader", daemon=True)
        self._card_thread.start()
        last_resend = time.monotonic()
        try:
            while not self._stop.is_set():
                self.feed(core.Tick())
                if time.monotonic() - last_resend >= 1.0:
                    last_resend = time.monotonic()
                    await asyncio.to_thread(self.outbox.resend_due)
                    self.spawn(self.agent.tick())
                    self._maybe_fetch_list()
                    if (self.printer is not None and not self.core.busy
                            and time.monotonic() - self._paper_polled >= PAPER_POLL_S):
                        self._paper_polled = time.monotonic()
                        self.spawn(asyncio.to_thread(self._poll_paper))
                await asyncio.sleep(TICK_S)
        finally:
            await self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def stopped_threads(self) -> list[str]:
        """The station's threads that ended while they should run: paho's network loop,
        the pad's polling loop, the card reader."""
        if self._stop.is_set():
            return []
        dead = []
        if not self.link.loop_alive():
            dead.append("mqtt")
        if not self.watcher.alive():
            dead.append("pad")
        card = self._card_thread
        if card is not None and not card.is_alive():
            dead.append("card")
        return dead

    def threads_ok(self) -> bool:
        """For the watchdog: False when a thread died, which is reported once (log, systemd
        status, and an event when the MQTT loop still runs) so the restart has a cause."""
        dead = frozenset(self.stopped_threads())
        if dead and dead != self._dead_reported:
            self._dead_reported = dead
            what = ", ".join(sorted(dead))
            log.critical("thread stopped: %s; no more watchdog pings, systemd restarts us",
                         what)
            notify(f"STATUS=thread stopped: {what}; waiting for the watchdog restart")
            if "mqtt" not in dead:
                self.agent.telemetry.event("staff_needed", "critical",
                                           f"station thread stopped: {what}; restarting")
        return not dead

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.watcher.stop()
        await asyncio.to_thread(self.link.stop)
        self.agent.close()
        if self.printer is not None:
            self.printer.close()
        self.journal.close()

    # -- actions
    async def _perform(self, action: core.Action) -> None:
        if isinstance(action, core.CheckPatron):
            await self._check_patron(action)
        elif isinstance(action, core.CheckOffline):
            await self._check_offline(action.card_id)
        elif isinstance(action, core.LoadAccount):
            await self._load_account(action.patron_ref)
        elif isinstance(action, core.RecordTx):
            await self._record(action)
        elif isinstance(action, core.WriteSecurity):
            future = self.watcher.write_security(uid_bytes(action.uid), action.state)
            try:
                await asyncio.wrap_future(future)
                ok = True
            except Exception as exc:
                log.info("security write on %s failed: %s", action.uid, exc)
                ok = False
                self.agent.security_failed(action.uid)
            self.feed(core.SecurityWritten(action.uid, ok))
        elif isinstance(action, core.SavePending):
            w = action.write
            await asyncio.to_thread(self.journal.save_pending, w.uid, w.item_id, w.title,
                                    w.state)
        elif isinstance(action, core.ClearPending):
            await asyncio.to_thread(self.journal.clear_pending, action.uid, action.how,
                                    action.staff_ref)
        elif isinstance(action, core.KeepException):
            r = action.refusal
            await asyncio.to_thread(self.journal.keep_exception, r.msg_id, r.item_id, r.title,
                                    r.reason)
        elif isinstance(action, core.DropException):
            await asyncio.to_thread(self.journal.dismiss_exception, action.msg_id)
        elif isinstance(action, core.Notify):
            self.agent.telemetry.event(action.kind, action.severity,  # type: ignore[arg-type]
                                       action.detail, item_id=action.item_id)
        elif isinstance(action, core.SendReceipt):
            ok = await asyncio.to_thread(self._send_receipt, action)
            self.feed(core.ReceiptSent(action.via, ok))

    async def _restore(self) -> None:
        """Pending security writes and staff exceptions survive a restart in the journal."""
        pending = await asyncio.to_thread(self.journal.pending_writes)
        late = await asyncio.to_thread(self.journal.open_exceptions)
        self.feed(core.Restored(
            tuple(core.PendingWrite(u, i, t, s)  # type: ignore[arg-type]
                  for u, i, t, s in pending),
            tuple(core.LateRefusal(*row) for row in late)))

    # -- receipts (a worker thread: printers and mail relays block)
    def _send_receipt(self, action: core.SendReceipt) -> bool:
        c = self.config
        summary = receipt.SessionSummary(
            library=c.desk.library_name, station=c.station,
            when=dt.datetime.now().astimezone(), patron_name=action.patron_name,
            items=receipt.items_from_lines(action.lines))
        slip = receipt.build_receipt(summary, action.lang)
        try:
            if action.via == "print":
                assert self.printer is not None
                self.printer.print_receipt(slip)
                self.agent.set_printer("ok", self.agent.paper)
            else:
                from selfcheck.drivers.printer.mail import send_receipt

                assert c.mail is not None and action.to is not None
                send_receipt(slip, action.to, c.mail)
            return True
        except Exception as exc:  # the session is over either way; staff see the event
            log.warning("receipt by %s failed: %s", action.via, exc)
            if action.via == "print":
                self.agent.set_printer("fault", self.agent.paper)
            return False

    def _poll_paper(self) -> None:
        assert self.printer is not None
        self.printer.paper()  # a change calls _on_paper

    def _on_paper(self, event: PaperEvent) -> None:
        paper = event.current.value
        if paper == "unknown":
            self.agent.set_printer("fault", self.agent.paper)
        else:
            self.agent.set_printer("ok", paper)  # type: ignore[arg-type]

    async def _check_patron(self, action: core.CheckPatron) -> None:
        timeout = self.config.timeouts.request_s
        req = messages.PatronCheckReq(card_id=action.card_id, pin=action.pin)
        future = self.link.request("patron", req, timeout)
        # Sent: drop our references to the PIN (the core kept it in the action only).
        del req, action
        result = await self._answer(future, messages.PatronCheckRes, timeout, "patron check")
        self.feed(edge.patron_checked(result))

    async def _answer(self, future: Future[messages.Message], kind: type[M], timeout: float,
                      what: str) -> M | None:
        """The central's answer to a request, or None (no answer in time, offline, bad)."""
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except (TimeoutError, ConnectionError, messages.MessageError) as exc:
            log.info("%s got no answer: %s", what, exc)
            return None
        return answer if isinstance(answer, kind) else None

    async def _check_offline(self, card_id: str) -> None:
        """The central did not answer: is this card on the stored, still valid list?"""
        patron = await asyncio.to_thread(self._offline_lookup, card_id)
        del card_id
        self.feed(core.OfflineChecked(patron))

    def _offline_lookup(self, card_id: str) -> core.OfflinePatron | None:
        self.journal.drop_expired_offline_list(time.time())
        meta = self.journal.offline_meta()
        if meta is None:
            return None
        entry = self.journal.offline_entry(messages.card_hash(meta[0], card_id), time.time())
        return None if entry is None else core.OfflinePatron(*entry)

    async def _load_account(self, patron_ref: str) -> None:
        timeout = self.config.timeouts.request_s
        future = self.link.request("account", messages.AccountReq(patron_ref=patron_ref),
                                   timeout)
        self.feed(edge.account_loaded(await self._answer(future, messages.AccountRes, timeout,
                                                          "account request")))

    # -- the offline list: fetched on connect and every offline_list_s
    def _maybe_fetch_list(self) -> None:
        if self._list_task is None or self._list_task.done():  # not while one is stored
            self.spawn(asyncio.to_thread(self.journal.drop_expired_offline_list, time.time()))
        if not self.config.offline.loans or not self.link.connected.is_set():
            return
        if self._list_task is not None and not self._list_task.done():
            return
        if self._list_fetched and time.monotonic() - self._list_fetched < \
                self.config.offline.list_every_s:
            return
        self._list_task = asyncio.ensure_future(self.fetch_offline_list())
        self._tasks.add(self._list_task)
        self._list_task.add_done_callback(self._tasks.discard)

    async def fetch_offline_list(self) -> bool:
        """All pages, then stored at once; a list whose pages disagree is not stored."""
        timeout = self.config.timeouts.offline_list_request_s
        pages: list[messages.OfflineListRes] = []
        page, total = 1, 1
        try:
            while page <= total:
                future = self.link.request("offline-list", messages.OfflineListReq(page=page),
                                           timeout)
                answer = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
                if not isinstance(answer, messages.OfflineListRes):
                    raise messages.MessageError("schema", "not res.offline-list/1")
                if answer.ok is False:  # not served a list: keep none, ask again much later
                    return await self._no_offline_list(answer)
                if pages and (answer.salt, answer.generated_at) != (pages[0].salt,
                                                                    pages[0].generated_at):
                    page, total, pages = 1, 1, []  # regenerated between pages: start again
                    continue
                pages.append(answer)
                total = answer.pages
                page += 1
        except (TimeoutError, ConnectionError, messages.MessageError) as exc:
            log.info("offline list not fetched: %s", exc)
            self._list_fetched = time.monotonic() - self.config.offline.list_every_s + 60
            return False  # the stored list (if still valid) stays; try again in a minute
        first = pages[0]
        rows = [(e.card_hash, e.patron_ref, e.display_name, e.max_offline_loans)
                for p in pages for e in p.entries]
        count = await asyncio.to_thread(self.journal.store_offline_list, first.salt,
                                        first.generated_at.timestamp(),
                                        first.valid_until.timestamp(), rows)
        self._list_fetched = time.monotonic()
        self._list_refused = False
        log.info("offline list: %d patrons, valid until %s", count, first.valid_until)
        return True

    async def _no_offline_list(self, answer: messages.OfflineListRes) -> bool:
        """The central does not serve this station a list: whatever is stored goes (its
        readers may no longer borrow here offline), and the next ask is a period away."""
        await asyncio.to_thread(self.journal.store_offline_list, answer.salt,
                                answer.generated_at.timestamp(),
                                answer.valid_until.timestamp(), [])
        self._list_fetched = time.monotonic()
        if not self._list_refused:
            self._list_refused = True
            log.warning("offline list refused by the central (%s): no loans while offline",
                        answer.reason)
        return False

    async def _record(self, action: core.RecordTx) -> None:
        s = self.config
        now = dt.datetime.now(dt.UTC)
        topic = topics.tx(s.site, s.station, action.kind)

        def build(seq: int) -> messages.TxLoan | messages.TxReturn | messages.TxRenew:
            common: dict[str, Any] = dict(msg_id=action.msg_id, seq=seq,
                                          journal=self.journal.journal_id, site=s.site,
                                          station=s.station, at=now, item_id=action.item_id,
                                          offline=action.offline)
            if action.kind == "renew":
                assert action.patron_ref is not None
                return messages.TxRenew(patron_ref=action.patron_ref, **common)
            if action.kind == "loan":
                assert action.patron_ref is not None
                deadline = now + dt.timedelta(seconds=s.timeouts.loan_deadline_s)
                return messages.TxLoan(patron_ref=action.patron_ref, deadline=deadline,
                                       confirmed=list(action.confirmed), **common)
            return messages.TxReturn(**common)

        # Journal first (fsync), and only then may the screen move on from "recording".
        msg = await asyncio.to_thread(self.journal.add, action.kind, topic, build)
        self.agent.telemetry.recorded(action.msg_id, action.kind)
        self.feed(core.Recorded(action.msg_id))
        await asyncio.to_thread(self.outbox.submit, action.msg_id, topic, messages.encode(msg))

    # -- callbacks from other threads
    def _on_ack(self, ack: messages.AckTx) -> None:
        if self.tagging.on_ack(ack):
            return  # a tag written by the tagging desk, not a transaction
        # What the reader was last shown stands: a loan they were told they did not get, made
        # after all, is checked back in (the journal does it in one transaction).
        undo = self._undo_loan(ack) if ack.ok and \
            self.journal.told_not_lent(ack.msg_id) is not None else None
        if undo is None:
            # The screen first, the outbox row's removal (a commit, an fsync) after: the row
            # stays until the ack either way, and one left by a power cut in between is only
            # sent again and answered from the central's stored result.
            self.feed_threadsafe(edge.ack_received(ack))
            self.outbox.on_ack(ack.msg_id)
            self.agent.telemetry.acked(ack)
            return
        self.outbox.on_ack(ack.msg_id)
        self.agent.telemetry.acked(ack)
        log.warning("loan %s was made after the reader was told it was not: checked back in "
                    "as %s", ack.msg_id, undo.msg_id)
        self.outbox.submit(undo.msg_id, topics.tx(undo.site, undo.station, "return"),
                           messages.encode(undo))
        self.feed_threadsafe(core.LoanUndone(ack.msg_id, undo.item_id, ack.title))

    def _undo_loan(self, ack: messages.AckTx) -> messages.TxReturn | None:
        s = self.config
        msg_id = uuid7()

        def build(seq: int) -> messages.TxReturn:
            return messages.TxReturn(msg_id=msg_id, seq=seq, journal=self.journal.journal_id,
                                     site=s.site, station=s.station,
                                     at=dt.datetime.now(dt.UTC), item_id=ack.item_id,
                                     compensates=ack.msg_id)

        return self.journal.undo_loan(ack.msg_id, topics.tx(s.site, s.station, "return"), build)

    def _on_connected(self, up: bool) -> None:
        if up:
            self.outbox.on_connected()
            self._list_fetched = 0.0  # every connect: fetch the offline list again
        self.agent.connected(up)
        self.feed_threadsafe(core.Connectivity(up))

    def _on_tags(self, tags: tuple[SeenTag, ...]) -> None:
        self.tagging.on_tags(tags)  # kept for when the tagging desk opens
        if self.stocktake.active:  # books counted on the shelf: not lent, not returned
            self.stocktake.on_tags(tags)
            return
        self.feed_threadsafe(core.TagsPresent(tags))

    def _on_card(self, card_id: str) -> None:
        if self.tagging.takes_card(card_id):
            return  # a book's barcode at the tagging desk
        self.feed_threadsafe(core.CardRead(card_id))

    def _on_pad_health(self, ok: bool) -> None:
        self.pad_ok = ok
        self.agent.pad_health(ok)

    def _on_card_health(self, ok: bool) -> None:
        self.card_ok = ok
        self.agent.card_health(ok)

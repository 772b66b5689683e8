"""The station without a screen: the runtime with its devices and no Kivy.

It can be killed at any moment and started again on the same journal: whatever is pending is
sent again on connect. With `events`, each transaction's state changes go to standard output as
JSON lines (msg_id, seq, kind, item, status), for crash tests, the chaos run and scripts. With
simulated devices, commands on standard input stand in for the reader and the screen:

    card CARD_ID          a card on the card reader
    place ITEM_ID [UID]   a book (ISO 28560-3 tag) on the pad; the UID defaults from the item
    lift ITEM_ID          the book off the pad
    touch BUTTON          a button of the screen (return, done, finish, cancel, loan_yes,
                          loan_no, ...)
    pin DIGITS            the PIN pad's OK with these digits
    drain                 stop once every transaction has its ack
    quit                  stop now
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import IO, Any, get_args

from selfcheck.drivers.card.base import CardReader, SimulatedCardReader
from selfcheck.drivers.pad.base import BookPad
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.system.sdnotify import notify, watchdog_interval_s

BUTTONS = frozenset(get_args(core.Button))


def uid_for(item_id: str) -> bytes:
    """A stable ISO 15693 UID for a simulated book (E0: the ISO 15693 prefix)."""
    return bytes.fromhex(f"E0F1{zlib.crc32(item_id.encode()):08X}0000")


class EventPrinter:
    """A view listener that writes one JSON line per change of a transaction's status."""

    def __init__(self, runtime: StationRuntime, out: IO[str]) -> None:
        self._rt = runtime
        self._out = out
        self._seen: dict[str, str] = {}  # msg_id -> last status written
        self._seq: dict[str, int] = {}
        self._screen: tuple[str, bool] | None = None

    def __call__(self, view: core.View) -> None:
        screen = (view.mode.value, view.online)
        if screen != self._screen:  # what a person would see change: the screen, the link
            self._screen = screen
            self.emit(event="screen", mode=screen[0], online=screen[1])
        for line in view.lines:
            if line.msg_id is None or line.status is core.Status.RECORDING:
                continue
            status = line.status.value
            if self._seen.get(line.msg_id) == status:
                continue
            self._seen[line.msg_id] = status
            seq = self._seq.get(line.msg_id)
            if seq is None:  # the row is in the journal from `Recorded` until its ack
                seq = self._rt.journal.seq_of(line.msg_id)
                if seq is not None:
                    self._seq[line.msg_id] = seq
            # asking: what the reader is asked to accept (the screen's question)
            extra = {"confirm": dataclasses.asdict(line.confirm)} if line.confirm else {}
            self.emit(event="tx", msg_id=line.msg_id, seq=seq, kind=line.kind,
                      item=line.item_id, status=status, reason=line.reason, **extra)

    def emit(self, **fields: Any) -> None:
        fields["at"] = round(time.time(), 3)
        self._out.write(json.dumps(fields, ensure_ascii=False) + "\n")
        self._out.flush()


class Commands:
    """Standard input as the simulated reader's hands and the screen's buttons."""

    def __init__(self, runtime: StationRuntime, pad: SimulatedPad, card: SimulatedCardReader,
                 printer: EventPrinter | None, on_drain: Callable[[], None]) -> None:
        self._rt, self._pad, self._card = runtime, pad, card
        self._printer = printer
        self._on_drain = on_drain

    def do(self, text: str) -> None:
        words = text.split()
        if not words:
            return
        verb, args = words[0], words[1:]
        if verb == "card" and len(args) == 1:
            self._card.present(args[0])
        elif verb == "place" and len(args) in (1, 2):
            uid = bytes.fromhex(args[1]) if len(args) == 2 else uid_for(args[0])
            self._pad.place(uid, iso28560_3.encode(args[0]))
        elif verb == "lift" and len(args) in (1, 2):
            self._pad.lift(bytes.fromhex(args[1]) if len(args) == 2 else uid_for(args[0]))
        elif verb == "touch" and len(args) == 1 and args[0] in BUTTONS:
            self._rt.feed(core.Touch(args[0]))  # type: ignore[arg-type]
        elif verb == "pin" and len(args) == 1 and args[0].isdigit():
            self._rt.feed(core.PinEntered(args[0]))
        elif verb == "drain" and not args:
            self._on_drain()
        elif verb == "quit" and not args:
            self._rt.stop()
        elif self._printer is not None:
            self._printer.emit(event="error", command=text.strip(),
                               why="unknown command or wrong arguments")


def takes_commands(pad: BookPad, card: CardReader) -> bool:
    """Whether standard input drives the devices: only simulated ones have hands to lend."""
    return isinstance(pad, SimulatedPad) and isinstance(card, SimulatedCardReader)


async def run_headless(settings: StationSettings, pad: BookPad, card: CardReader, *,
                       events: bool = False, stdin: IO[str] | None = None,
                       out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    rt = StationRuntime(settings, pad, card)
    printer = EventPrinter(rt, out) if events else None
    if printer is not None:
        rt.add_listener(printer)
    draining = threading.Event()
    loop = asyncio.get_running_loop()
    if isinstance(pad, SimulatedPad) and isinstance(card, SimulatedCardReader):  # takes_commands
        commands = Commands(rt, pad, card, printer, draining.set)
        source = stdin or sys.stdin

        def read() -> None:
            for text in source:
                loop.call_soon_threadsafe(commands.do, text)
        threading.Thread(target=read, name="commands", daemon=True).start()
    runner = asyncio.ensure_future(rt.run())
    notify("READY=1\nSTATUS=running without a screen")
    if printer is not None:
        printer.emit(event="ready", station=settings.station, journal=rt.journal.journal_id)
    interval = watchdog_interval_s()
    pinged = 0.0
    stopping = False
    while not runner.done():
        await asyncio.sleep(0.1)
        now = loop.time()
        if interval is not None and now - pinged >= interval:
            pinged = now
            notify("WATCHDOG=1")  # from the loop: a blocked loop stops the pings
        # Once: the runtime takes a moment to stop, and it closes the journal as it does.
        if draining.is_set() and not stopping and rt.journal.depth()[0] == 0:
            stopping = True
            if printer is not None:
                printer.emit(event="drained")
            rt.stop()
    await runner
    notify("STOPPING=1")
    return rt.exit_code

"""Barcode scanner as a keyboard wedge.

Two sources: a byte/text stream of typed lines (stdin, a FIFO, a test's StringIO),
and a Linux input device (`/dev/input/by-id/...-event-kbd`) read directly with the
kernel's `struct input_event` layout, so no evdev package is needed. Grabbing the
device keeps the scanner's keystrokes out of the kiosk UI.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import os
import select
import struct
import threading
from typing import IO

from pydantic import Field

from selfcheck.drivers.card.barcode import BarcodeOptions, BarcodeSink, KeyDecoder, LineSplitter
from selfcheck.drivers.card.base import OnCard
from selfcheck.drivers.card.stats import CardReaderStats
from selfcheck.drivers.reopen import keep_open

log = logging.getLogger(__name__)

# struct input_event on 64-bit Linux: struct timeval (two longs), __u16 type, __u16 code,
# __s32 value. Native sizes, since we read the running kernel's own layout.
INPUT_EVENT = struct.Struct("llHHi")
EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int)


class WedgeOptions(BarcodeOptions):
    grab: bool = True  # exclusive access to the input device
    reopen_delay_s: float = Field(default=0.5, gt=0)
    reopen_max_s: float = Field(default=10.0, gt=0)


def _pump_fd(fd: int, splitter: LineSplitter, sink: BarcodeSink, stop: threading.Event) -> None:
    """Read `fd` until EOF or `stop`; select() keeps the loop responsive to `stop`."""
    while not stop.is_set():
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        data = os.read(fd, 4096)
        if not data:
            return
        for item in splitter.feed(data):
            sink.handle(item)


class StreamBarcodeReader:
    """Typed lines from a stream. At EOF it reports what it has and waits for `stop`."""

    def __init__(self, stream: IO[str] | IO[bytes], opts: BarcodeOptions | None = None) -> None:
        self.stream = stream
        self.opts = opts or BarcodeOptions()
        self.stats = CardReaderStats()

    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        sink = BarcodeSink(self.opts, self.stats, on_card)
        splitter = LineSplitter(self.opts.max_len)
        try:
            fd: int | None = self.stream.fileno()
        except (OSError, io.UnsupportedOperation, AttributeError):
            fd = None
        try:
            if fd is not None:
                # Read the descriptor, not the buffered object: select() cannot see data
                # already sitting in a Python buffer.
                _pump_fd(fd, splitter, sink, stop)
            else:
                self._pump_lines(splitter, sink, stop)
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed under us
            log.warning("barcode input stream failed: %s", exc)
        for item in splitter.feed(b"\n"):  # a last line without terminator
            sink.handle(item)
        log.info("barcode input stream ended")
        stop.wait()

    def _pump_lines(self, splitter: LineSplitter, sink: BarcodeSink, stop: threading.Event) -> None:
        while not stop.is_set():
            line = self.stream.readline()
            if not line:
                return
            data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
            for item in splitter.feed(data):
                sink.handle(item)


class EvdevBarcodeReader:
    """A scanner seen by Linux as a keyboard, read from its input event device."""

    def __init__(self, path: str, opts: WedgeOptions | None = None) -> None:
        self.path = path
        self.opts = opts or WedgeOptions()
        self.stats = CardReaderStats()

    def run(self, on_card: OnCard, stop: threading.Event) -> None:
        sink = BarcodeSink(self.opts, self.stats, on_card)

        def use(fd: int) -> None:
            self._grab(fd)
            try:
                self._pump(fd, sink, stop)
            except OSError as exc:
                if exc.errno not in (errno.ENODEV, errno.EIO):  # those mean: unplugged
                    log.warning("barcode scanner %s read error: %s", self.path, exc)

        keep_open(f"barcode scanner {self.path}",
                  # O_NONBLOCK: opening a FIFO (tests) must not block; reads go via select.
                  lambda: os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), use, os.close,
                  stats=self.stats, stop=stop, delay_s=self.opts.reopen_delay_s,
                  max_delay_s=self.opts.reopen_max_s)

    def _grab(self, fd: int) -> None:
        if not self.opts.grab:
            return
        try:
            fcntl.ioctl(fd, EVIOCGRAB, 1)
        except OSError as exc:
            # Not fatal: scans still arrive, they just also reach the focused widget.
            log.warning("could not grab %s (%s); keystrokes also reach the UI", self.path, exc)

    def _pump(self, fd: int, sink: BarcodeSink, stop: threading.Event) -> None:
        decoder = KeyDecoder()
        splitter = LineSplitter(self.opts.max_len)
        pending = b""
        while not stop.is_set():
            if not select.select([fd], [], [], 0.2)[0]:
                continue
            data = os.read(fd, INPUT_EVENT.size * 64)
            if not data:
                return  # unplugged (or the test's FIFO writer went away)
            pending += data
            usable = len(pending) - len(pending) % INPUT_EVENT.size
            typed = bytearray()
            for _sec, _usec, ev_type, code, value in INPUT_EVENT.iter_unpack(pending[:usable]):
                typed += decoder.feed(ev_type, code, value)
            pending = pending[usable:]
            for item in splitter.feed(bytes(typed)):
                sink.handle(item)

"""The serial side of the pad drivers: a pyserial URL, request/response with timeouts, reconnect.

`serial.serial_for_url` makes the same code run on ``/dev/ttyUSB0``, ``socket://host:port`` and
``loop://``. A USB-serial pad that is unplugged makes the device node vanish (SerialException or
OSError); we close, then reopen the same URL with backoff (selfcheck.drivers.reopen, the loop
every device shares) until it is back or the reconnect window runs out, and count the reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import serial

from selfcheck.drivers.pad.base import PadCounters, PadError
from selfcheck.drivers.pad.framing import FrameDecoder
from selfcheck.drivers.reopen import Backoff, reopen

F = TypeVar("F")

POLL = 0.02  # pyserial read timeout; reads return as soon as a byte is there


class PadUnplugged(PadError):
    """The pad's port is gone and did not come back within the reconnect window."""


class PadTimeout(PadError):
    """No (good) answer from the pad in time."""


class SerialLink:
    def __init__(self, url: str, *, baudrate: int, parity: str = serial.PARITY_NONE,
                 counters: PadCounters, timeout: float = 0.5, retries: int = 2,
                 reconnect_window: float = 10.0, opener: Callable[..., Any] | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self.parity = parity
        self.counters = counters
        self.timeout = timeout
        self.retries = retries
        self.reconnect_window = reconnect_window
        self._opener = opener or serial.serial_for_url
        self._port: Any = None
        self._ever_opened = False
        self.bytes_out = 0
        self.bytes_in = 0

    # -- connection
    def open(self) -> None:
        if self._port is None:
            try:
                self._port = self._opener(self.url, baudrate=self.baudrate, parity=self.parity,
                                          timeout=POLL, write_timeout=max(1.0, self.timeout))
            except (serial.SerialException, OSError, ValueError) as exc:
                raise PadUnplugged(f"cannot open {self.url}: {exc}") from exc
            self._ever_opened = True

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def _reconnect(self, cause: BaseException) -> None:
        self.close()
        deadline = time.monotonic() + self.reconnect_window

        def wait(delay: float) -> bool:  # give up rather than sleep past the window
            if time.monotonic() + delay > deadline:
                return True
            time.sleep(delay)
            return False

        if reopen(self._open_once, Backoff(0.05, 1.0), wait, errors=(PadUnplugged,)) is None:
            raise PadUnplugged(f"{self.url} is gone ({cause}) and did not come back "
                               f"within {self.reconnect_window:g} s") from cause
        self.counters.reconnects += 1

    def _open_once(self) -> bool:
        self.open()
        return True

    def _ensure_open(self) -> None:
        if self._port is None:
            if self._ever_opened:
                self._reconnect(PadUnplugged("port closed after an error"))
            else:
                self.open()

    # -- traffic
    def transact(self, request: bytes, decoder: FrameDecoder[F],
                 accept: Callable[[F], bool], timeout: float | None = None) -> F:
        """Send `request`, return the first decoded frame `accept` takes.

        Retries on silence and on garbled answers (every command we send is idempotent), and
        reconnects when the port fails. Raises PadTimeout or PadUnplugged.
        """
        wait = self.timeout if timeout is None else timeout
        failure: PadError | None = None
        for _ in range(self.retries + 1):
            try:
                self._ensure_open()
                decoder.reset()
                self._port.reset_input_buffer()
                self._port.write(request)
                self.bytes_out += len(request)
                frame = self._await(decoder, accept, wait)
            except (serial.SerialException, OSError) as exc:
                failure = PadUnplugged(f"{self.url}: {exc}")
                self._reconnect(exc)
                continue
            if frame is not None:
                return frame
            failure = PadTimeout(f"no answer from the pad on {self.url} within {wait:g} s")
        assert failure is not None
        raise failure

    def _await(self, decoder: FrameDecoder[F], accept: Callable[[F], bool],
               wait: float) -> F | None:
        deadline = time.monotonic() + wait
        port = self._port
        while time.monotonic() < deadline:
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            self.bytes_in += len(chunk)
            before = decoder.errors
            frames = decoder.feed(chunk)
            self.counters.frame_errors += decoder.errors - before
            for frame in frames:
                if accept(frame):
                    return frame
        return None

    def read_for(self, duration: float) -> bytes:
        """Everything that arrives within `duration` (line readers talk unasked)."""
        out = bytearray()
        try:
            self._ensure_open()
            deadline = time.monotonic() + duration
            while True:
                waiting = self._port.in_waiting
                if waiting:
                    out += self._port.read(waiting)
                elif time.monotonic() >= deadline:
                    break
                else:
                    out += self._port.read(1)
        except (serial.SerialException, OSError) as exc:
            self._reconnect(exc)
        self.bytes_in += len(out)
        return bytes(out)

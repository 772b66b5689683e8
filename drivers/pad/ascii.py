"""BookPad driver for ASCII line readers: they print the UIDs they see and can do nothing else."""

from __future__ import annotations

import time

from selfcheck.drivers.pad.ascii_codec import LineDecoder
from selfcheck.drivers.pad.base import PadCounters, PadError
from selfcheck.drivers.pad.transport import SerialLink

CANNOT = "an ASCII line reader only reports UIDs: it cannot {} (use a 3M 810 or FEIG pad)"


class AsciiPad:
    """Implements BookPad, read-only.

    Such readers repeat the UIDs in the field every few hundred milliseconds, so `inventory`
    listens for `window` seconds and reports every UID heard within the last `hold` seconds.
    """

    def __init__(self, url: str, *, baudrate: int = 9600, window: float = 0.15,
                 hold: float = 1.0, uid_order: str = "auto",
                 reconnect_window: float = 10.0) -> None:
        self.counters = PadCounters()
        self.link = SerialLink(url, baudrate=baudrate, counters=self.counters,
                               reconnect_window=reconnect_window)
        self._decoder = LineDecoder(uid_order)
        self._window = window
        self._hold = hold
        self._seen: dict[bytes, float] = {}

    def inventory(self) -> list[bytes]:
        data = self.link.read_for(self._window)
        before = self._decoder.errors
        uids = self._decoder.feed(data)
        self.counters.frame_errors += self._decoder.errors - before
        now = time.monotonic()
        for uid in uids:
            self._seen[uid] = now
        self._seen = {u: t for u, t in self._seen.items() if now - t <= self._hold}
        self.counters.inventories += 1
        return list(self._seen)

    def read_blocks(self, uid: bytes, first: int, count: int) -> bytes:
        self.counters.read_errors += 1
        raise PadError(CANNOT.format("read tag memory"))

    def write_blocks(self, uid: bytes, first: int, data: bytes) -> None:
        raise PadError(CANNOT.format("write tag memory"))

    def read_afi(self, uid: bytes) -> int:
        raise PadError(CANNOT.format("read the AFI"))

    def write_afi(self, uid: bytes, afi: int) -> None:
        self.counters.afi_write_failures += 1
        raise PadError(CANNOT.format("write the AFI (security)"))

    def close(self) -> None:
        self.link.close()

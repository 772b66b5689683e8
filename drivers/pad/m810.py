"""BookPad driver for the 3M 810 pad (and 3M-protocol compatibles) over a pyserial URL."""

from __future__ import annotations

from selfcheck.drivers.pad import m810_codec as c
from selfcheck.drivers.pad.base import PadCounters, PadError
from selfcheck.drivers.pad.common import read_chunked, write_afi_verified, write_chunked
from selfcheck.drivers.pad.transport import SerialLink


class M810Pad:
    """Implements BookPad. Blocking; run it in a thread."""

    def __init__(self, url: str, *, timeout: float = 0.5, retries: int = 2,
                 reconnect_window: float = 10.0, max_blocks: int = 8,
                 afi_write_attempts: int = 3) -> None:
        self.counters = PadCounters()
        self.link = SerialLink(url, baudrate=c.BAUDRATE, counters=self.counters,
                               timeout=timeout, retries=retries,
                               reconnect_window=reconnect_window)
        self._decoder = c.Decoder()
        self._max_blocks = max_blocks
        self._afi_attempts = afi_write_attempts
        self._wire: dict[bytes, bytes] = {}  # normalised UID -> as the pad sends it

    def _call(self, request: c.Frame, uid: bytes | None = None) -> c.Frame:
        def accept(frame: c.Frame) -> bool:
            # Stray frames (another command's late answer, an unasked FE report) are skipped.
            if frame.start != request.start or frame.cmd != request.cmd:
                return False
            return uid is None or frame.body[2:10] == uid

        return self.link.transact(request.encode(), self._decoder, accept)

    def _to_wire(self, uid: bytes) -> bytes:
        if len(uid) != 8:
            raise PadError(f"a UID has 8 bytes, got {len(uid)}")
        return self._wire.get(uid, uid)

    def version(self) -> str:
        return c.parse_version(self.link.transact(
            c.version_request().encode(), self._decoder,
            lambda f: f.start == c.START_VERSION))

    def inventory(self) -> list[bytes]:
        wire_uids = c.parse_inventory(self._call(c.inventory_request()))
        self.counters.inventories += 1
        out = []
        for wire in wire_uids:
            uid = c.normalise_uid(wire)
            self._wire[uid] = wire
            out.append(uid)
        return out

    def read_blocks(self, uid: bytes, first: int, count: int) -> bytes:
        wire = self._to_wire(uid)

        def read_part(start: int, n: int) -> bytes:
            return c.parse_read(self._call(c.read_request(wire, start, n), wire), start, n)[1]

        return read_chunked(self.counters, first, count, self._max_blocks, read_part)

    def write_blocks(self, uid: bytes, first: int, data: bytes) -> None:
        wire = self._to_wire(uid)

        def write_part(start: int, n: int, part: bytes) -> None:
            _, written = c.parse_write(self._call(c.write_request(wire, start, part), wire))
            if written != n:
                raise PadError(f"pad wrote {written} of {n} blocks")

        write_chunked(first, data, c.BLOCK_SIZE, self._max_blocks, write_part)

    def read_afi(self, uid: bytes) -> int:
        wire = self._to_wire(uid)
        return c.parse_get_afi(self._call(c.get_afi_request(wire), wire))[1]

    def write_afi(self, uid: bytes, afi: int) -> None:
        write_afi_verified(self.counters, uid, afi, self._write_afi_once, self.read_afi,
                           self._afi_attempts)

    def _write_afi_once(self, uid: bytes, afi: int) -> None:
        wire = self._to_wire(uid)
        c.parse_write_afi(self._call(c.write_afi_request(wire, afi), wire))

    def close(self) -> None:
        self.link.close()

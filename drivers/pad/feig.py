"""BookPad driver for FEIG readers in ISO host mode (ID CPR.M02, ISC.MR/LR) over a pyserial URL."""

from __future__ import annotations

from selfcheck.drivers.pad import feig_codec as c
from selfcheck.drivers.pad.base import PadCounters, PadError
from selfcheck.drivers.pad.common import read_chunked, write_afi_verified, write_chunked
from selfcheck.drivers.pad.transport import SerialLink

BLOCK_ORDERS = ("reversed", "tag")


class FeigPad:
    """Implements BookPad. Blocking; run it in a thread.

    `block_order`: how the reader is configured to send the bytes of a data block. "reversed"
    (the byte order dpavlin/Biblio-RFID found on a CPR-M02) or "tag" (memory order). Data in and
    out of this class is always in tag memory order, which is what the tag decoders expect.
    """

    def __init__(self, url: str, *, adr: int = c.BROADCAST, block_order: str = "reversed",
                 block_size: int = 4, timeout: float = 0.5, retries: int = 2,
                 reconnect_window: float = 10.0, max_blocks: int = 16,
                 afi_write_attempts: int = 3) -> None:
        if block_order not in BLOCK_ORDERS:
            raise ValueError(f"block_order is one of {BLOCK_ORDERS}")
        self.counters = PadCounters()
        self.link = SerialLink(url, baudrate=c.BAUDRATE, parity=c.PARITY,
                               counters=self.counters, timeout=timeout, retries=retries,
                               reconnect_window=reconnect_window)
        self._decoder = c.Decoder()
        self._adr = adr
        self._reversed = block_order == "reversed"
        self._block_size = block_size
        self._max_blocks = max_blocks
        self._afi_attempts = afi_write_attempts

    def _call(self, request: c.Frame) -> c.Frame:
        # The reader answers with its own address, so match on the command only.
        return self.link.transact(request.encode(), self._decoder,
                                  lambda f: f.cmd == request.cmd)

    @staticmethod
    def _check_uid(uid: bytes) -> bytes:
        if len(uid) != 8:
            raise PadError(f"a UID has 8 bytes, got {len(uid)}")
        return uid

    def inventory(self) -> list[bytes]:
        uids: list[bytes] = []
        more = False
        for _ in range(32):  # 0x94 "more data": fetch the rest with MODE.MORE
            result = c.parse_inventory(self._call(c.inventory_request(self._adr, more)))
            uids += [u for u in result.uids if u not in uids]
            more = result.more
            if not more:
                break
        self.counters.inventories += 1
        return uids

    def read_blocks(self, uid: bytes, first: int, count: int) -> bytes:
        self._check_uid(uid)

        def read_part(start: int, n: int) -> bytes:
            size, raw = c.parse_read(self._call(c.read_request(uid, start, n, self._adr)), n)
            self._block_size = size  # the tag says its block size; writes use it
            return c.reorder_blocks(raw, size, self._reversed)

        return read_chunked(self.counters, first, count, self._max_blocks, read_part)

    def write_blocks(self, uid: bytes, first: int, data: bytes) -> None:
        self._check_uid(uid)
        size = self._block_size

        def write_part(start: int, n: int, part: bytes) -> None:
            wire = c.reorder_blocks(part, size, self._reversed)
            c.check_status(self._call(c.write_request(uid, start, wire, size, self._adr)))

        write_chunked(first, data, size, self._max_blocks, write_part)

    def read_afi(self, uid: bytes) -> int:
        self._check_uid(uid)
        return c.parse_system_info(self._call(c.system_info_request(uid, self._adr))).afi

    def write_afi(self, uid: bytes, afi: int) -> None:
        write_afi_verified(self.counters, uid, afi, self._write_afi_once, self.read_afi,
                           self._afi_attempts)

    def _write_afi_once(self, uid: bytes, afi: int) -> None:
        self._check_uid(uid)
        c.check_status(self._call(c.write_afi_request(uid, afi, self._adr)))

    def close(self) -> None:
        self.link.close()

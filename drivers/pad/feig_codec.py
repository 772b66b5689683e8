"""FEIG ISO host protocol (ID CPR.M02, ISC.MR/LR, standard frame): frames and messages. Sans-IO.

Frame (38400 8E1): ``LEN | COM-ADR | CMD | DATA | CRC16 (LSB first)``. LEN is the whole frame
length, itself and the CRC included (so at most 255). Responses start DATA with a STATUS byte.
CRC16: poly 0x8408 (reflected 0x1021), preset 0xFFFF, no final xor, over LEN..last data byte -
CRC-16/MCRF4XX. A frame followed by its CRC has CRC 0.

ISO 15693 host commands are CMD 0xB0 with the ISO command in DATA (sources: FEIG system manuals
for ID ISC.MR/PR101 and ISC.LR200, chapters "[0xB0] Host commands"; dpavlin/Biblio-RFID
``lib/RFID/Biblio/Reader/CPRM02.pm``):

- 01 inventory:            ``01 MODE``  -> ``STATUS DATA-SETS (TR-TYPE DSFID UID(8))*``;
  STATUS 0x94: more tags than fit, ask again with MODE bit 7 (MORE) set.
- 23 read multiple blocks: ``23 MODE UID DB-ADR DB-N`` -> ``STATUS DB-N DB-SIZE (SEC DB)*``
- 24 write multiple:       ``24 MODE UID DB-ADR DB-N DB-SIZE DB*`` -> ``STATUS``
- 27 write AFI:            ``27 MODE UID AFI`` -> ``STATUS``
- 2B get system info:      ``2B MODE UID`` -> ``STATUS DSFID UID AFI MEM-SIZE(2) IC-REF``

MODE 0x01 = addressed (UID follows). UIDs travel most significant byte first. The byte order
inside a data block is a reader setting; `reorder_blocks` turns it into tag order.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from selfcheck.drivers.pad.base import LOCK_AFI, PadError
from selfcheck.drivers.pad.framing import BAD, SHORT, FrameDecoder

BAUDRATE = 38400
PARITY = "E"
BITS_PER_BYTE = 11  # 8E1
BROADCAST = 0xFF

CMD_ISO = 0xB0
CMD_RF_RESET = 0x69
CMD_SOFTWARE_VERSION = 0x65
KNOWN_CMDS = frozenset({0x52, 0x55, 0x63, 0x65, 0x66, 0x69, 0x6A, 0x6E, 0x80, 0x81, 0x82, 0x83,
                        0x8A, 0x8B, 0xA0, 0xB0, 0xB1, 0xB2, 0xB3})

ISO_INVENTORY = 0x01
ISO_READ_MULTIPLE = 0x23
ISO_WRITE_MULTIPLE = 0x24
ISO_WRITE_AFI = 0x27
ISO_LOCK_AFI = LOCK_AFI
ISO_SYSTEM_INFO = 0x2B

MODE_ADDRESSED = 0x01
MODE_MORE = 0x80

STATUS_OK = 0x00
STATUS_NO_TRANSPONDER = 0x01
STATUS_RF_ERROR = 0x83
STATUS_MORE_DATA = 0x94
STATUS_ISO_ERROR = 0x95
STATUS_TEXT = {
    0x01: "no transponder",
    0x02: "data false",
    0x03: "write error",
    0x04: "address error",
    0x05: "wrong transponder type",
    0x80: "unknown parameter",
    0x81: "length error",
    0x82: "command not available",
    0x83: "RF communication error",
    0x84: "RF warning",
    0x94: "more data",
    0x95: "ISO 15693 error",
}

TR_TYPE_ISO15693 = 0x03
MIN_LEN = 5  # LEN ADR CMD CRC CRC

# Bit-reversal of every byte value, so the reflected CRC runs on binascii's C crc_hqx.
_REV8 = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


class ProtocolError(PadError):
    """A frame with a good CRC whose content does not fit the command's layout."""


def crc(data: bytes) -> int:
    """CRC-16/MCRF4XX: reflected CCITT = bit-reversed crc_hqx of the bit-reversed bytes."""
    value = binascii.crc_hqx(data.translate(_REV8), 0xFFFF)
    return int(f"{value:016b}"[::-1], 2)


@dataclass(frozen=True)
class Frame:
    adr: int
    cmd: int
    data: bytes = b""

    @property
    def status(self) -> int:
        """Response frames only: the STATUS byte."""
        return self.data[0] if self.data else -1

    def encode(self) -> bytes:
        return encode_frame(self.adr, self.cmd, self.data)


def encode_frame(adr: int, cmd: int, data: bytes = b"") -> bytes:
    length = len(data) + MIN_LEN
    if length > 255:
        raise ValueError("FEIG standard frame longer than 255 bytes")
    head = bytes([length, adr, cmd]) + data
    return head + crc(head).to_bytes(2, "little")


class Decoder(FrameDecoder[Frame]):
    """`commands`: control bytes a frame may carry; anything else is not a frame start."""

    def __init__(self, commands: frozenset[int] = KNOWN_CMDS) -> None:
        super().__init__()
        self._commands = commands

    def _probe(self, buf: bytearray, i: int) -> int:
        length = buf[i]
        if length < MIN_LEN:
            return BAD
        if len(buf) - i < 3:
            return SHORT
        if buf[i + 2] not in self._commands:
            return BAD
        end = i + length
        if end > len(buf):
            return SHORT
        if crc(bytes(buf[i:end])) != 0:  # CRC over data+CRC (LSB first) of a good frame is 0
            return BAD
        return end

    def _wanted(self, buf: bytearray, i: int) -> int:
        return i + 3 if len(buf) - i < 3 else i + buf[i]

    def _build(self, raw: bytes) -> Frame:
        return Frame(raw[1], raw[2], raw[3:-2])


def reorder_blocks(data: bytes, block_size: int, reversed_order: bool) -> bytes:
    """Blocks as the reader sends them <-> tag memory order (the same swap both ways)."""
    if not reversed_order or block_size <= 1:
        return data
    return b"".join(data[k:k + block_size][::-1] for k in range(0, len(data), block_size))


# -- requests (host -> reader)

def iso(adr: int, data: bytes) -> Frame:
    return Frame(adr, CMD_ISO, data)


def inventory_request(adr: int = BROADCAST, more: bool = False) -> Frame:
    return iso(adr, bytes([ISO_INVENTORY, MODE_MORE if more else 0x00]))


def read_request(uid: bytes, first: int, count: int, adr: int = BROADCAST) -> Frame:
    return iso(adr, bytes([ISO_READ_MULTIPLE, MODE_ADDRESSED]) + uid + bytes([first, count]))


def write_request(uid: bytes, first: int, blocks: bytes, block_size: int,
                  adr: int = BROADCAST) -> Frame:
    """`blocks` already in the reader's block byte order."""
    count = len(blocks) // block_size
    return iso(adr, bytes([ISO_WRITE_MULTIPLE, MODE_ADDRESSED]) + uid
               + bytes([first, count, block_size]) + blocks)


def write_afi_request(uid: bytes, afi: int, adr: int = BROADCAST) -> Frame:
    return iso(adr, bytes([ISO_WRITE_AFI, MODE_ADDRESSED]) + uid + bytes([afi]))


def system_info_request(uid: bytes, adr: int = BROADCAST) -> Frame:
    return iso(adr, bytes([ISO_SYSTEM_INFO, MODE_ADDRESSED]) + uid)


# -- responses (reader -> host)

def check_status(frame: Frame, allowed: tuple[int, ...] = (STATUS_OK,)) -> bytes:
    """DATA after STATUS; raise PadError for a failure status."""
    if not frame.data:
        raise ProtocolError("response without STATUS")
    status = frame.data[0]
    if status not in allowed:
        text = STATUS_TEXT.get(status, "unknown status")
        extra = f" (ISO error {frame.data[1]:02X})" if status == STATUS_ISO_ERROR and len(
            frame.data) > 1 else ""
        raise PadError(f"FEIG reader status {status:02X}: {text}{extra}")
    return frame.data[1:]


@dataclass(frozen=True)
class Inventory:
    uids: list[bytes]
    more: bool


def parse_inventory(frame: Frame) -> Inventory:
    if frame.status == STATUS_NO_TRANSPONDER:
        return Inventory([], False)
    rest = check_status(frame, (STATUS_OK, STATUS_MORE_DATA))
    if not rest:
        raise ProtocolError("inventory response without DATA-SETS")
    count, records = rest[0], rest[1:]
    if len(records) != 10 * count:
        raise ProtocolError(f"inventory says {count} tags but carries {len(records)} bytes")
    uids = [records[10 * k + 2:10 * k + 10] for k in range(count)
            if records[10 * k] & 0x0F == TR_TYPE_ISO15693]
    return Inventory(uids, frame.status == STATUS_MORE_DATA)


def parse_read(frame: Frame, count: int) -> tuple[int, bytes]:
    """(block size, block bytes as the reader sent them, without the security bytes)."""
    rest = check_status(frame)
    if len(rest) < 2:
        raise ProtocolError("read response without DB-N/DB-SIZE")
    n, size = rest[0], rest[1]
    records = rest[2:]
    if n != count or size == 0 or len(records) != n * (size + 1):
        raise ProtocolError(f"asked for {count} blocks, got {n} x {size} in {len(records)} bytes")
    out = b"".join(records[k * (size + 1) + 1:(k + 1) * (size + 1)] for k in range(n))
    return size, out


@dataclass(frozen=True)
class SystemInfo:
    dsfid: int
    uid: bytes
    afi: int
    mem_size: bytes
    ic_ref: int


def parse_system_info(frame: Frame) -> SystemInfo:
    rest = check_status(frame)
    if len(rest) < 13:
        raise ProtocolError(f"system info response too short ({len(rest)} bytes)")
    return SystemInfo(rest[0], rest[1:9], rest[9], rest[10:12], rest[12])


# -- the reader's side, for the simulator

def response(adr: int, cmd: int, status: int, data: bytes = b"") -> Frame:
    return Frame(adr, cmd, bytes([status]) + data)

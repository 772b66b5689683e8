"""3M 810 book pad protocol: frames, requests and responses. Sans-IO.

Frame (19200 8N1): ``D6 | LEN(2, BE) | CMD | ... | CRC(2, BE)``. LEN counts the bytes after
itself, the CRC included. CRC = CRC-16/CCITT (poly 0x1021, init 0xFFFF) over LEN..last data byte,
xor 0xFFFF. The reader-version exchange uses the start byte D5 with the same layout.

Layouts below come from the published captures in dpavlin/Biblio-RFID
(``lib/Biblio/RFID/Reader/3M810.pm`` and the ``3m-810.pl`` capture notes); every example frame
there checks with this CRC (see tests/test_pad_3m810.py). Responses put a status byte after
CMD: 00 is success, 06 is failure (tag gone, RF error).

- FE inventory:   ``FE 00 05``              -> ``FE 00 00 05 N UID*N``
- 02 read blocks: ``02 UID FIRST COUNT``    -> ``02 00 UID N (BLOCK(2, LE) DATA(4))*N``
- 04 write:       ``04 UID FIRST COUNT 00 DATA`` -> ``04 00 UID COUNT``
- 0A get AFI:     ``0A UID``                -> ``0A 00 UID AFI``
- 09 write AFI:   ``09 UID AFI``            -> ``09 00 UID``
- version:        ``D5 | 04 00 11``         -> ``D5 | 04 00 11 V1 V2 V3 V4``

UIDs: the pad sends the 8 UID bytes most significant first (captures show ``E0 04 01 00 ...``:
E0 then the NXP manufacturer code 04). `normalise_uid` still accepts a reversed UID, because some
firmware and clones report LSB first.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from selfcheck.drivers.pad.base import PadError
from selfcheck.drivers.pad.framing import BAD, SHORT, FrameDecoder

BAUDRATE = 19200
BITS_PER_BYTE = 10  # 8N1
START = 0xD6
START_VERSION = 0xD5

CMD_READ = 0x02
CMD_WRITE = 0x04
CMD_WRITE_AFI = 0x09
CMD_GET_AFI = 0x0A
CMD_INVENTORY = 0xFE
VERSION_BODY = b"\x04\x00\x11"

STATUS_OK = 0x00
STATUS_FAIL = 0x06

BLOCK_SIZE = 4
MAX_LEN = 1024  # longest LEN we accept; a real pad's frames are far shorter


class ProtocolError(PadError):
    """A frame with a good CRC whose content does not fit the command's layout."""


def crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF) ^ 0xFFFF


@dataclass(frozen=True)
class Frame:
    """One frame: `body` is CMD and what follows it, without LEN and CRC."""

    body: bytes
    start: int = START

    @property
    def cmd(self) -> int:
        return self.body[0] if self.body else -1

    def encode(self) -> bytes:
        return encode_frame(self.body, self.start)


def encode_frame(body: bytes, start: int = START) -> bytes:
    head = (len(body) + 2).to_bytes(2, "big") + body
    return bytes([start]) + head + crc(head).to_bytes(2, "big")


class Decoder(FrameDecoder[Frame]):
    def _probe(self, buf: bytearray, i: int) -> int:
        if buf[i] not in (START, START_VERSION):
            return BAD
        if len(buf) - i < 3:
            return SHORT
        length = buf[i + 1] << 8 | buf[i + 2]
        if not 3 <= length <= MAX_LEN:
            return BAD
        end = i + 3 + length
        if end > len(buf):
            return SHORT
        if crc(bytes(buf[i + 1:end - 2])) != buf[end - 2] << 8 | buf[end - 1]:
            return BAD
        return end

    def _wanted(self, buf: bytearray, i: int) -> int:
        if len(buf) - i < 3:
            return i + 3
        return i + 3 + (buf[i + 1] << 8 | buf[i + 2])

    def _build(self, raw: bytes) -> Frame:
        return Frame(raw[3:-2], raw[0])


def normalise_uid(wire: bytes) -> bytes:
    """MSB-first UID (E0 ...) from the 8 bytes as the pad sent them."""
    if len(wire) == 8 and wire[0] != 0xE0 and wire[7] == 0xE0:
        return wire[::-1]
    return bytes(wire)


# -- requests (host -> pad)

def inventory_request() -> Frame:
    return Frame(bytes([CMD_INVENTORY, 0x00, 0x05]))


def read_request(uid: bytes, first: int, count: int) -> Frame:
    return Frame(bytes([CMD_READ]) + uid + bytes([first, count]))


def write_request(uid: bytes, first: int, data: bytes) -> Frame:
    if len(data) % BLOCK_SIZE:
        raise ValueError("write data must be whole 4-byte blocks")
    count = len(data) // BLOCK_SIZE
    return Frame(bytes([CMD_WRITE]) + uid + bytes([first, count, 0x00]) + data)


def get_afi_request(uid: bytes) -> Frame:
    return Frame(bytes([CMD_GET_AFI]) + uid)


def write_afi_request(uid: bytes, afi: int) -> Frame:
    return Frame(bytes([CMD_WRITE_AFI]) + uid + bytes([afi]))


def version_request() -> Frame:
    return Frame(VERSION_BODY, START_VERSION)


# -- responses (pad -> host); each raises ProtocolError on a layout that does not fit

def _status(frame: Frame, cmd: int, min_len: int) -> bytes:
    body = frame.body
    if len(body) < 2 or body[0] != cmd:
        raise ProtocolError(f"expected a {cmd:02X} response, got {body[:2].hex().upper()}")
    if body[1] != STATUS_OK:
        raise PadError(f"3M pad reports failure {body[1]:02X} for command {cmd:02X}")
    if len(body) < min_len:
        raise ProtocolError(f"{cmd:02X} response too short ({len(body)} bytes)")
    return body[2:]


def parse_inventory(frame: Frame) -> list[bytes]:
    """Wire-order UIDs."""
    rest = _status(frame, CMD_INVENTORY, 5)
    count = rest[2]
    uids = rest[3:]
    if len(uids) != 8 * count:
        raise ProtocolError(f"inventory says {count} tags but carries {len(uids)} UID bytes")
    return [uids[k:k + 8] for k in range(0, len(uids), 8)]


def parse_read(frame: Frame, first: int, count: int) -> tuple[bytes, bytes]:
    """(wire UID, data of blocks first..first+count-1 in order)."""
    rest = _status(frame, CMD_READ, 11)
    uid, n, records = rest[:8], rest[8], rest[9:]
    if n != count or len(records) != 6 * n:
        raise ProtocolError(f"asked for {count} blocks, got {n} in {len(records)} bytes")
    out = bytearray()
    for k in range(n):
        rec = records[6 * k:6 * k + 6]
        number = int.from_bytes(rec[:2], "little")
        if number != first + k:
            raise ProtocolError(f"expected block {first + k}, got block {number}")
        out += rec[2:]
    return uid, bytes(out)


def parse_write(frame: Frame) -> tuple[bytes, int]:
    rest = _status(frame, CMD_WRITE, 11)
    return rest[:8], rest[8]


def parse_get_afi(frame: Frame) -> tuple[bytes, int]:
    rest = _status(frame, CMD_GET_AFI, 11)
    return rest[:8], rest[8]


def parse_write_afi(frame: Frame) -> bytes:
    return _status(frame, CMD_WRITE_AFI, 10)[:8]


def parse_version(frame: Frame) -> str:
    if frame.start != START_VERSION or not frame.body.startswith(VERSION_BODY):
        raise ProtocolError("not a version response")
    return ".".join(str(b) for b in frame.body[3:])


# -- the pad's side, for the simulator

def ok_response(cmd: int, payload: bytes = b"") -> Frame:
    return Frame(bytes([cmd, STATUS_OK]) + payload)


def fail_response(cmd: int, uid: bytes, extra: bytes = b"") -> Frame:
    return Frame(bytes([cmd, STATUS_FAIL]) + uid + extra)


def inventory_response(uids: list[bytes]) -> Frame:
    return ok_response(CMD_INVENTORY, b"\x00\x05" + bytes([len(uids)]) + b"".join(uids))


def read_response(uid: bytes, first: int, blocks: list[bytes]) -> Frame:
    records = b"".join((first + k).to_bytes(2, "little") + b for k, b in enumerate(blocks))
    return ok_response(CMD_READ, uid + bytes([len(blocks)]) + records)

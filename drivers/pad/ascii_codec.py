"""Plain ASCII line readers: one UID per line, as hex. Sans-IO.

Seen in the wild: ``E004010012345678``, ``E0:04:01:00:12:34:56:78``, ``UID: E0 04 ...``, CR, LF
or CRLF endings, and readers that print the UID least significant byte first
(``78563412000104E0``). `uid_order` "auto" turns a UID that ends in E0 (the ISO 15693 allocation
class byte) around; "msb" and "lsb" force the order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

MAX_LINE = 80  # a longer line without an end is noise, not a UID
_LABEL = re.compile(rb"^[A-Za-z_ #]*[:=]\s*")
_SEPARATORS = re.compile(rb"[\s:\-.]")
_HEX16 = re.compile(rb"[0-9A-Fa-f]{16}")
UID_ORDERS = ("auto", "msb", "lsb")


def parse_line(line: bytes, uid_order: str = "auto") -> bytes | None:
    """The MSB-first UID on one line, or None if the line is not a UID."""
    text = _SEPARATORS.sub(b"", _LABEL.sub(b"", line.strip()))
    if not _HEX16.fullmatch(text):
        return None
    uid = bytes.fromhex(text.decode("ascii"))
    if uid_order == "lsb" or (uid_order == "auto" and uid[0] != 0xE0 and uid[7] == 0xE0):
        uid = uid[::-1]
    return uid


class LineDecoder:
    """Feed bytes, get UIDs. Never raises on input; bad lines count in `errors`."""

    def __init__(self, uid_order: str = "auto") -> None:
        if uid_order not in UID_ORDERS:
            raise ValueError(f"uid_order is one of {UID_ORDERS}")
        self._order = uid_order
        self._buf = bytearray()
        self.errors = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        return list(self._uids())

    def _uids(self) -> Iterator[bytes]:
        while True:
            m = re.search(rb"[\r\n]", self._buf)
            if m is None:
                if len(self._buf) > MAX_LINE:
                    self._buf.clear()
                    self.errors += 1
                return
            line = bytes(self._buf[:m.start()])
            del self._buf[:m.end()]
            if not line.strip():
                continue
            uid = parse_line(line, self._order) if len(line) <= MAX_LINE else None
            if uid is None:
                self.errors += 1
            else:
                yield uid


def encode_line(uid: bytes, lsb_first: bool = False) -> bytes:
    """How the simulator prints a UID."""
    return (uid[::-1] if lsb_first else uid).hex().upper().encode("ascii") + b"\r\n"

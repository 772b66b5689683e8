"""Tags with no library data model: a plain barcode in memory, or only the chip's UID.

"barcode": the memory starts with the item's barcode in ASCII letters, digits and '-./',
NUL-terminated, and nothing but NULs follows (some vendors program tags this way). At least
3 characters, so that a stray byte or two in blank memory is not taken for an item.
"uid": the tag's UID (hex, as the reader gave it) stands in for the item id.
"""

from __future__ import annotations

import re

from selfcheck.drivers.tags.model import TagDecodeError, TagInfo

BARCODE = "barcode"
UID = "uid"
_BARCODE = re.compile(rb"[0-9A-Za-z./-]{3,32}")


def decode_barcode(data: bytes) -> TagInfo:
    data = bytes(data)
    end = data.find(b"\x00")
    if end < 0:
        raise TagDecodeError(len(data), "barcode: no NUL terminator")
    match = _BARCODE.fullmatch(data, 0, end)
    if not match:
        bad = next((i for i in range(end) if not _BARCODE.fullmatch(data[i:i + 1] * 3)), end)
        why = "too short" if bad == end else f"0x{data[bad]:02X} is not a barcode character"
        raise TagDecodeError(bad, f"barcode: {why}")
    tail = data[end:].lstrip(b"\x00")
    if tail:
        raise TagDecodeError(len(data) - len(tail), "barcode: data after the NUL terminator")
    return TagInfo(model=BARCODE, primary_item_id=data[:end].decode("ascii"))


def encode_barcode(barcode: str, size: int = 0) -> bytes:
    raw = barcode.encode("ascii")
    if not _BARCODE.fullmatch(raw):
        raise ValueError("barcode: 3 to 32 of A-Z a-z 0-9 . / -")
    return (raw + b"\x00").ljust(size, b"\x00")


def decode_uid(uid: bytes) -> TagInfo:
    if not uid:
        raise TagDecodeError(0, "uid: no UID given")
    text = bytes(uid).hex().upper()
    return TagInfo(model=UID, primary_item_id=text, uid=text)

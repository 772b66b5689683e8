"""ISO 28560-3 (the 'Danish' fixed-length model): sans-IO decode and encode.

Layout of the 32/34-byte basic block (DESIGN.md, domain facts): byte 0 version/type of usage,
1 parts in item, 2 part number, 3-18 primary item id, 19-20 CRC (low byte first),
21-22 country, 23-33 rest of the ISIL.
"""

from __future__ import annotations

import binascii

from drivers.tags.model import TagDecodeError, TagInfo

MODEL = "28560-3"
BLOCK_LEN = 34
_CRC_OFFSET = 19


def crc(block: bytes) -> int:
    """CRC-16/CCITT-FALSE over bytes 0-18 and 21-31, then two zero bytes."""
    return binascii.crc_hqx(block[0:19] + block[21:32] + b"\x00\x00", 0xFFFF)


def _text(raw: bytes, offset: int, field: str) -> str:
    value = raw.split(b"\x00", 1)[0]
    try:
        return value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TagDecodeError(offset + exc.start, f"{field} is not ASCII") from None


def decode(data: bytes) -> TagInfo:
    if len(data) < 32:
        raise TagDecodeError(len(data), f"{MODEL} needs 32 bytes, got {len(data)}")
    block = bytes(data[:BLOCK_LEN]).ljust(BLOCK_LEN, b"\x00")
    stored = block[_CRC_OFFSET] | block[_CRC_OFFSET + 1] << 8
    if crc(block) != stored:
        raise TagDecodeError(_CRC_OFFSET, f"{MODEL} CRC mismatch (stored {stored:04X}, "
                             f"computed {crc(block):04X})")
    version = block[0] >> 4
    if version != 1:
        raise TagDecodeError(0, f"{MODEL} version {version} is not 1")
    item_id = _text(block[3:19], 3, "primary item id")
    if not item_id:
        raise TagDecodeError(3, "primary item id is empty")
    country = _text(block[21:23], 21, "country")
    isil_rest = _text(block[23:34], 23, "ISIL")
    return TagInfo(
        model=MODEL,
        primary_item_id=item_id,
        type_of_usage=block[0] & 0x0F,
        parts_in_item=block[1],
        part_number=block[2],
        country=country or None,
        owner_isil=f"{country}-{isil_rest}" if country and isil_rest else None,
    )


def encode(
    primary_item_id: str,
    *,
    type_of_usage: int = 1,
    parts_in_item: int = 1,
    part_number: int = 1,
    owner_isil: str | None = None,
) -> bytes:
    raw_id = primary_item_id.encode("ascii")
    if not 0 < len(raw_id) <= 16:
        raise ValueError("primary_item_id: 1 to 16 ASCII characters")
    country, rest = b"", b""
    if owner_isil:
        head, _, tail = owner_isil.partition("-")
        country, rest = head.encode("ascii"), tail.encode("ascii")
        if len(country) != 2 or len(rest) > 11:
            raise ValueError("owner_isil: 'CC-REST' with a 2-letter country and up to 11 more")
    block = bytearray(BLOCK_LEN)
    block[0] = 0x10 | (type_of_usage & 0x0F)
    block[1] = parts_in_item
    block[2] = part_number
    block[3:19] = raw_id.ljust(16, b"\x00")
    block[21:23] = country.ljust(2, b"\x00")
    block[23:34] = rest.ljust(11, b"\x00")
    value = crc(bytes(block))
    block[19], block[20] = value & 0xFF, value >> 8
    return bytes(block)

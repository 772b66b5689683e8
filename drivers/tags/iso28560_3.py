"""ISO 28560-3 (the 'Danish' fixed-length model): sans-IO decode and encode.

Basic block (DESIGN.md, domain facts): byte 0 version/type of usage, 1 parts in item,
2 part number, 3-18 primary item id (NUL padded), 19-20 CRC (low byte first), 21-22 country,
23-31 rest of the ISIL in a 32-byte block, 23-33 in a 34-byte block.

The CRC is CRC-16/CCITT-FALSE over the 32 bytes that remain when the CRC field is cut out
(0-18, 21-33); a 32-byte block counts bytes 32-33 as zero. A 34-byte block whose last two
bytes are zero therefore has the same CRC as its 32-byte form. This is what the public
implementations do (GallusMax/libdanrfid CRC.DDCRC: every byte but 19-20, zero-filled to 34;
BibliothekTHWildau/ISO28560 TagCRC: 0-18 and 21-33, zero-filled to 32 bytes) and what
DESIGN.md's "0-18 and 21-31 followed by two zero bytes" says for a 32-byte block. A 34-byte
block whose ISIL runs into bytes 32-33 but whose CRC was taken over its 32-byte form (that
sentence read literally) is accepted too and reported as variant "short-crc"; encode() always
writes the CRC over 0-18 and 21-33.

Optional blocks follow the basic block: length (whole block), block id (2 bytes, low first),
checksum (XOR of the whole block is zero), payload; a length byte 0 ends the chain. Block 1
(library extension: media format, item id NUL, owner institution) carries item ids longer
than the 16 bytes of the basic block; block 4 carries the title.

Variants seen in the wild, reported in TagInfo.variant:
- "nibble-swapped": version in the low nibble of byte 0 and type of usage in the high one
  (Bibliotheca; libdanrfid reads 0x21 as 'not for loan' on their tags);
- "swapped-set-info": part number in byte 1 and parts in item in byte 2;
- "block-reversed": each 4-byte block read back to front (a reader's byte order setting);
- "short-crc": a 34-byte block with the CRC of its first 32 bytes (see above).
"""

from __future__ import annotations

import array
from binascii import crc_hqx

from selfcheck.drivers.tags.model import TagDecodeError, TagInfo

MODEL = "28560-3"
BLOCK_LEN = 34
SHORT_BLOCK_LEN = 32
_CRC_OFFSET = 19
_ID_LEN = 16
BLOCK_LIBRARY = 1
BLOCK_TITLE = 4
_ZERO2 = b"\x00\x00"
_VARIANTS = ("nibble-swapped", "swapped-set-info", "block-reversed", "short-crc")
_ENCODE_VARIANTS = _VARIANTS[:3]


def crc(block: bytes) -> int:
    """CRC-16/CCITT-FALSE over bytes 0-18 and 21-33 (bytes 32-33 taken as zero if absent)."""
    return crc_hqx(bytes(block[21:34]).ljust(13, b"\x00"), crc_hqx(bytes(block[0:19]), 0xFFFF))


def _basic_len(data: bytes) -> int:
    """Length of the basic block whose CRC matches, 0 if none does."""
    stored = data[19] | data[20] << 8
    head = crc_hqx(data[21:32], crc_hqx(data[0:19], 0xFFFF))
    if len(data) >= BLOCK_LEN and crc_hqx(data[32:34], head) == stored:
        return BLOCK_LEN
    if crc_hqx(_ZERO2, head) == stored:
        return SHORT_BLOCK_LEN
    return 0


def _isil_runs_on(data: bytes) -> bool:
    """A block whose CRC matched in its 32-byte form but whose ISIL goes on into bytes 32-33
    (9 ISIL bytes with no NUL, then ISIL characters): a 34-byte block with a "short-crc".
    An optional block there instead has the low byte of its block id (1, 4, ...: not an ISIL
    character) in byte 33."""
    if len(data) < BLOCK_LEN or b"\x00" in data[23:32]:
        return False
    b32, b33 = data[32], data[33]
    return 0x20 < b32 < 0x7F and (b33 == 0 or 0x20 < b33 < 0x7F)


_WORD = next(t for t in "IL" if array.array(t).itemsize == 4)


def _reverse_blocks(data: bytes) -> bytes:
    # Each 4-byte block's byte order reversed: a 32-bit byte swap, done in C (a loop in
    # Python cost a millisecond on a garbled 2 KiB read).
    words = array.array(_WORD, data[:len(data) - len(data) % 4])
    words.byteswap()
    return words.tobytes()


def _ascii(raw: bytes, offset: int, field: str) -> str:
    value = raw.split(b"\x00", 1)[0]
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TagDecodeError(offset + exc.start, f"{field} is not ASCII") from None
    if not text.isprintable():
        bad = next(i for i, ch in enumerate(text) if not ch.isprintable())
        raise TagDecodeError(offset + bad, f"{field} has a control character")
    return text


def decode(data: bytes) -> TagInfo:
    data = bytes(data)
    if len(data) < SHORT_BLOCK_LEN:
        raise TagDecodeError(len(data), f"{MODEL} needs 32 bytes, got {len(data)}")
    variants: set[str] = set()
    blen = _basic_len(data)
    if not blen:
        flipped = _reverse_blocks(data)
        blen = _basic_len(flipped)
        if not blen:
            stored = data[19] | data[20] << 8
            raise TagDecodeError(_CRC_OFFSET, f"{MODEL} CRC mismatch (stored {stored:04X}, "
                                 f"computed {crc(data[:SHORT_BLOCK_LEN]):04X})")
        data = flipped
        variants.add("block-reversed")
    if blen == SHORT_BLOCK_LEN and _isil_runs_on(data):
        blen = BLOCK_LEN
        variants.add("short-crc")
    b0 = data[0]
    if b0 >> 4 == 1:
        usage = b0 & 0x0F
    elif b0 & 0x0F == 1:
        usage = b0 >> 4
        variants.add("nibble-swapped")
    else:
        raise TagDecodeError(0, f"{MODEL} version {b0 >> 4} is not 1")
    parts, part = data[1], data[2]
    if parts < part:  # a part number above the count only makes sense read the other way
        parts, part = part, parts
        variants.add("swapped-set-info")
    item_id = _ascii(data[3:19], 3, "primary item id")
    if not item_id:
        raise TagDecodeError(3, "primary item id is empty")
    country = _ascii(data[21:23], 21, "country")
    isil_rest = _ascii(data[23:blen], 23, "ISIL")
    title = None
    if len(data) > blen and data[blen]:
        long_id, title = _optional_blocks(data, blen)
        if long_id:
            if not long_id.startswith(item_id):
                raise TagDecodeError(blen, "long item id in block 1 does not extend the basic "
                                     "block's item id")
            item_id = long_id
    return TagInfo(
        model=MODEL,
        primary_item_id=item_id,
        type_of_usage=usage,
        parts_in_item=parts,
        part_number=part,
        country=country or None,
        owner_isil=f"{country}-{isil_rest}" if country and isil_rest else None,
        title=title,
        variant="+".join(v for v in _VARIANTS if v in variants) or None,
    )


def _optional_blocks(data: bytes, pos: int) -> tuple[str | None, str | None]:
    """Walk the optional blocks; return (long item id, title)."""
    long_id = title = None
    end = len(data)
    while pos < end and data[pos]:
        size = data[pos]
        if size < 4:
            raise TagDecodeError(pos, f"optional block length {size} is below 4")
        if pos + size > end:
            raise TagDecodeError(pos, f"optional block of {size} bytes runs past the end "
                                 f"of the data ({end} bytes)")
        check = 0
        for b in data[pos:pos + size]:
            check ^= b
        if check:
            raise TagDecodeError(pos + 3, f"optional block checksum mismatch (XOR {check:02X})")
        block_id = data[pos + 1] | data[pos + 2] << 8
        payload = data[pos + 4:pos + size]
        if block_id == BLOCK_LIBRARY and len(payload) > 1:
            long_id = _ascii(payload[1:], pos + 5, "long item id") or None
        elif block_id == BLOCK_TITLE:
            raw = payload.split(b"\x00", 1)[0]
            try:
                title = raw.decode("utf-8")
            except UnicodeDecodeError:
                title = raw.decode("latin-1")  # older writers used the platform code page
        pos += size
    return long_id, title


def has_basic_block(data: bytes) -> bool:
    """True if `data` starts with a basic block whose CRC checks (in either block order)."""
    data = bytes(data)
    return len(data) >= SHORT_BLOCK_LEN and bool(_basic_len(data)
                                                  or _basic_len(_reverse_blocks(data)))


def truncated(data: bytes) -> bool:
    """True if `data` holds a valid basic block whose optional blocks run to or past the end
    of the data with no end byte: a read of too few blocks."""
    data = bytes(data)
    if not has_basic_block(data):
        return False
    blen = _basic_len(data)
    if not blen:
        data = _reverse_blocks(data)
        blen = _basic_len(data)
    if blen == SHORT_BLOCK_LEN and _isil_runs_on(data):
        blen = BLOCK_LEN
    pos = blen
    while pos < len(data):
        size = data[pos]
        if not size:
            return False
        if size < 4:
            return False  # corrupt, more data will not help
        pos += size
    return True  # the chain reached the end of the data without an end byte


def _block(block_id: int, payload: bytes) -> bytes:
    size = len(payload) + 4
    if size > 0xFF:
        raise ValueError(f"optional block {block_id} is longer than 255 bytes")
    out = bytearray((size, block_id & 0xFF, block_id >> 8, 0)) + payload
    check = 0
    for b in out:
        check ^= b
    out[3] = check
    return bytes(out)


def encode(
    primary_item_id: str,
    *,
    type_of_usage: int = 1,
    parts_in_item: int = 1,
    part_number: int = 1,
    owner_isil: str | None = None,
    title: str | None = None,
    block_len: int = BLOCK_LEN,
    variant: str | None = None,
) -> bytes:
    """The tag memory for one item: basic block, then optional blocks and an end byte.

    Item ids longer than 16 characters go whole into a library extension block (the basic
    block keeps the first 16). `variant` writes a known deviation, for tests and re-tagging.
    """
    raw_id = primary_item_id.encode("ascii")
    if not raw_id or not primary_item_id.isprintable():
        raise ValueError("primary_item_id: printable ASCII, at least one character")
    if block_len not in (SHORT_BLOCK_LEN, BLOCK_LEN):
        raise ValueError("block_len: 32 or 34")
    if not 0 <= type_of_usage <= 15:
        raise ValueError("type_of_usage: 0 to 15")
    if not (0 <= part_number <= parts_in_item <= 255):
        raise ValueError("set info: 0 <= part_number <= parts_in_item <= 255")
    flags = set((variant or "").split("+")) - {""}
    if flags - set(_ENCODE_VARIANTS):
        raise ValueError(f"variant: '+'-joined names from {_ENCODE_VARIANTS}")
    country, rest = b"", b""
    if owner_isil:
        head, _, tail = owner_isil.partition("-")
        country, rest = head.encode("ascii"), tail.encode("ascii")
        if len(country) != 2 or len(rest) > block_len - 23:
            raise ValueError(f"owner_isil: 'CC-REST' with a 2-letter country and up to "
                             f"{block_len - 23} more")
    block = bytearray(block_len)
    block[0] = (type_of_usage << 4 | 1) if "nibble-swapped" in flags else (0x10 | type_of_usage)
    block[1], block[2] = parts_in_item, part_number
    if "swapped-set-info" in flags:
        block[1], block[2] = part_number, parts_in_item
    block[3:19] = raw_id[:_ID_LEN].ljust(_ID_LEN, b"\x00")
    block[21:23] = country.ljust(2, b"\x00")
    block[23:block_len] = rest.ljust(block_len - 23, b"\x00")
    value = crc(bytes(block))
    block[19], block[20] = value & 0xFF, value >> 8
    tail_blocks = b""
    if len(raw_id) > _ID_LEN:
        tail_blocks += _block(BLOCK_LIBRARY, b"\x00" + raw_id + b"\x00")
    if title:
        tail_blocks += _block(BLOCK_TITLE, title.encode("utf-8"))
    out = bytes(block) + (tail_blocks + b"\x00" if tail_blocks else b"")
    if "block-reversed" in flags:
        out = _reverse_blocks(out.ljust(-(-len(out) // 4) * 4, b"\x00"))
    return out

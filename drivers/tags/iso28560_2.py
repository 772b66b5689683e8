"""ISO 28560-2 (ISO/IEC 15962 no-directory encoding, DSFID 0x06): sans-IO decode and encode.

Each data element is: precursor (bit 7 offset flag, bits 6-4 compaction, bits 3-0 relative
OID; 15 means an extension byte follows holding OID - 15), [extension byte], [offset: the
count of pad bytes after the data], length (EBV-8), data, pad bytes. A precursor of 0 ends
the data. The primary item id (OID 1) comes first; the content parameter (OID 2) is a bit
map of the other OIDs present, its first bit standing for OID 3.

The DSFID sits in its own tag register, so the model is recognised from this structure,
never from the DSFID alone.
"""

from __future__ import annotations

from selfcheck.drivers.tags import compaction as cp
from selfcheck.drivers.tags.model import TagDecodeError, TagInfo

MODEL = "28560-2"
DSFID = 0x06
OID_ITEM, OID_CONTENT, OID_ISIL, OID_SET, OID_USAGE, OID_SHELF, OID_TITLE = 1, 2, 3, 4, 5, 6, 17
_TEXT_OIDS = {OID_ITEM: "primary_item_id", OID_SHELF: "shelf_location", OID_TITLE: "title"}


def _ebv8(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(3):
        if pos >= len(data):
            raise TagDecodeError(pos, "data ends inside a length")
        b = data[pos]
        pos += 1
        value = value << 7 | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    raise TagDecodeError(pos - 1, "length longer than 3 bytes")


def _ebv8_bytes(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _elements(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(start offset, OID, compaction, data) for each element, in tag order."""
    out: list[tuple[int, int, int, bytes]] = []
    seen: set[int] = set()
    pos, end = 0, len(data)
    while pos < end and data[pos]:
        start, pre = pos, data[pos]
        comp, oid = (pre >> 4) & 7, pre & 0x0F
        pos += 1
        if oid == 0:
            raise TagDecodeError(start, f"precursor {pre:02X} has relative OID 0")
        if oid == 15:
            if pos >= end:
                raise TagDecodeError(pos, "data ends before the OID extension byte")
            oid += data[pos]
            pos += 1
        pad = 0
        if pre & 0x80:
            if pos >= end:
                raise TagDecodeError(pos, "data ends before the offset byte")
            pad = data[pos]
            pos += 1
        length, pos = _ebv8(data, pos)
        if pos + length + pad > end:
            raise TagDecodeError(start, f"OID {oid}: {length} data bytes and {pad} pad bytes "
                                 f"run past the end of the data ({end} bytes)")
        if not out and oid != OID_ITEM:
            raise TagDecodeError(start, f"first element is OID {oid}, not the primary item id")
        if oid in seen:
            raise TagDecodeError(start, f"OID {oid} appears twice")
        seen.add(oid)
        out.append((start, oid, comp, data[pos:pos + length]))
        pos += length + pad
    if not out:
        raise TagDecodeError(0, f"{MODEL}: no data elements (first byte is 00)")
    return out


def _text(start: int, oid: int, comp: int, raw: bytes) -> str:
    try:
        return cp.unpack_text(comp, raw)
    except cp.CompactionError as exc:
        raise TagDecodeError(start, f"OID {oid}: {exc.reason} (data byte {exc.index})") from None


def decode(data: bytes) -> TagInfo:
    data = bytes(data)
    fields: dict[str, object] = {"model": MODEL}
    for start, oid, comp, raw in _elements(data):
        if oid in _TEXT_OIDS:
            fields[_TEXT_OIDS[oid]] = _text(start, oid, comp, raw)
        elif oid == OID_ISIL:
            if comp == cp.APPLICATION:
                try:
                    isil = cp.isil_unpack(raw)
                except cp.CompactionError as exc:
                    raise TagDecodeError(start, f"owner ISIL: {exc.reason}") from None
            else:
                isil = _text(start, oid, comp, raw)
            fields["owner_isil"] = isil or None
            country = isil.partition("-")[0]
            fields["country"] = country if len(country) == 2 and "-" in isil else None
        elif oid == OID_SET:
            digits = _text(start, oid, comp, raw)
            if not (digits.isascii() and digits.isdigit()) or len(digits) > 6:
                raise TagDecodeError(start, f"set info {digits!r} is not 1 to 6 digits")
            digits = digits.zfill(len(digits) + len(digits) % 2)
            half = len(digits) // 2
            fields["parts_in_item"], fields["part_number"] = int(digits[:half]), int(digits[half:])
        elif oid == OID_USAGE:
            if comp != cp.APPLICATION or len(raw) != 1:
                raise TagDecodeError(start, "type of usage is not one application-defined byte")
            fields["type_of_usage"], fields["usage_subtype"] = raw[0] >> 4, raw[0] & 0x0F
        elif oid == OID_CONTENT and comp != cp.APPLICATION:
            raise TagDecodeError(start, "content parameter is not an application-defined bit map")
    if not fields.get("primary_item_id"):
        raise TagDecodeError(0, "primary item id is empty")
    return TagInfo.model_validate(fields)


def truncated(data: bytes) -> bool:
    """True if `data` looks like the start of 28560-2 data cut off before its end byte (a
    read of too few blocks): the elements run to or past the end with no 00 precursor."""
    pos, end = 0, len(data)
    if not end or data[0] & 0x0F != OID_ITEM:
        return False  # not this model (the primary item id comes first)
    while pos < end:
        pre = data[pos]
        if not pre:
            return False
        pos += 1 + (pre & 0x0F == 15)
        pad = 0
        if pre & 0x80:
            if pos >= end:
                return True
            pad = data[pos]
            pos += 1
        length = 0
        for _ in range(3):
            if pos >= end:
                return True
            b = data[pos]
            pos += 1
            length = length << 7 | (b & 0x7F)
            if not b & 0x80:
                break
        else:
            return False  # not a valid length: corrupt, not short
        pos += length + pad
    return True


def _element(oid: int, comp: int, raw: bytes, *, align: int = 0, at: int = 0) -> bytes:
    """One element; with align > 0 the element ends on a block boundary (for locking)."""
    ext = b""
    rel = oid
    if oid >= 15:
        if oid - 15 > 0xFF:
            raise ValueError(f"OID {oid} too large")
        rel, ext = 15, bytes((oid - 15,))
    body = _ebv8_bytes(len(raw)) + raw
    if not align:
        return bytes((comp << 4 | rel,)) + ext + body
    size = 1 + len(ext) + 1 + len(body)
    pad = -(at + size) % align
    return bytes((0x80 | comp << 4 | rel,)) + ext + bytes((pad,)) + body + bytes(pad)


def encode(
    primary_item_id: str,
    *,
    owner_isil: str | None = None,
    type_of_usage: int | None = None,
    usage_subtype: int = 0,
    parts_in_item: int | None = None,
    part_number: int | None = None,
    shelf_location: str | None = None,
    title: str | None = None,
    block_size: int = 4,
) -> bytes:
    """Tag memory for one item. The primary item id ends on a block boundary so it can be
    locked; every value takes its shortest compaction (UTF-8 for non-Latin-1 titles)."""
    if not primary_item_id:
        raise ValueError("primary_item_id is empty")
    optional: list[tuple[int, int, bytes]] = []
    if owner_isil:
        try:
            optional.append((OID_ISIL, cp.APPLICATION, cp.isil_pack(owner_isil)))
        except ValueError:
            optional.append((OID_ISIL, *cp.pack_text(owner_isil)))
    if parts_in_item is not None or part_number is not None:
        parts = 1 if parts_in_item is None else parts_in_item
        part = 1 if part_number is None else part_number
        if not 0 <= part <= parts <= 999:
            raise ValueError("set info: 0 <= part_number <= parts_in_item <= 999")
        width = len(str(parts))
        optional.append((OID_SET, *cp.pack_text(f"{parts:0{width}d}{part:0{width}d}")))
    if type_of_usage is not None:
        if not (0 <= type_of_usage <= 15 and 0 <= usage_subtype <= 15):
            raise ValueError("type_of_usage and usage_subtype: 0 to 15")
        optional.append((OID_USAGE, cp.APPLICATION, bytes((type_of_usage << 4 | usage_subtype,))))
    if shelf_location:
        optional.append((OID_SHELF, *cp.pack_text(shelf_location)))
    if title:
        optional.append((OID_TITLE, *cp.pack_text(title)))
    out = bytearray(_element(OID_ITEM, *cp.pack_text(primary_item_id), align=block_size))
    if optional:
        bitmap = 0
        top = max(oid for oid, _, _ in optional)
        nbits = -(-(top - 2) // 8) * 8
        for oid, _, _ in optional:
            bitmap |= 1 << (nbits - (oid - 2))
        out += _element(OID_CONTENT, cp.APPLICATION, bitmap.to_bytes(nbits // 8, "big"))
        for oid, comp, raw in optional:
            out += _element(oid, comp, raw)
    out.append(0)
    out += bytes(-len(out) % block_size)
    return bytes(out)

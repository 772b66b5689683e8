"""ISO/IEC 15962 no-directory compaction schemes, as ISO 28560-2 uses them. Sans-IO.

Codes (3 bits of the precursor): 0 application-defined (ISIL compaction for the owner
ISIL, a bit map for the content parameter, one byte for type of usage), 1 integer,
2 numeric, 3 5-bit, 4 6-bit, 5 7-bit, 6 octet (ISO 8859-1), 7 UTF-8.

Bit-packed strings are padded to a byte with the leading bits of a filler character that
never ends real data: '@' (00000) in 5-bit, space (100000, as the 28560-2 Annex D example
'QA268.L55' shows) in 6-bit, DEL (1111111) in 7-bit. The ISIL scheme pads with 1s.
Decoders raise `CompactionError(index, reason)`; index counts bytes into the value.
"""

from __future__ import annotations

APPLICATION, INTEGER, NUMERIC, BIT5, BIT6, BIT7, OCTET, UTF8 = range(8)
NAMES = ("application", "integer", "numeric", "5-bit", "6-bit", "7-bit", "octet", "utf-8")


class CompactionError(ValueError):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


# --- bit-packed character sets -------------------------------------------------------------

def _k_bit_ok(text: str, k: int) -> bool:
    if k == 5:
        return all(0x40 <= ord(c) <= 0x5F for c in text) and not text.endswith("@")
    if k == 6:
        return all(0x20 <= ord(c) <= 0x5F for c in text) and not text.endswith(" ")
    return all(ord(c) < 0x7F for c in text)


_PAD = {5: 0b00000, 6: 0b100000, 7: 0b1111111}


def _pack(text: str, k: int) -> bytes:
    mask = (1 << k) - 1
    value = 0
    for c in text:
        value = value << k | (ord(c) & mask)
    bits = k * len(text)
    pad = -bits % 8
    value = value << pad | (_PAD[k] >> (k - pad) if pad <= k else 0)
    return value.to_bytes((bits + pad) // 8, "big")


def _unpack(raw: bytes, k: int) -> str:
    total = 8 * len(raw)
    n = total // k
    value = int.from_bytes(raw, "big")
    mask = (1 << k) - 1
    codes = [(value >> (total - k * (i + 1))) & mask for i in range(n)]
    # the last code lies wholly in the padding when it and the leftover bits fit in a byte
    if codes and k + total - k * n <= 7 and codes[-1] == _PAD[k]:
        codes.pop()
    if k == 6:
        return "".join(chr(c if c >= 0x20 else c | 0x40) for c in codes)
    if k == 5:
        return "".join(chr(c | 0x40) for c in codes)
    return "".join(map(chr, codes))


# --- numbers -------------------------------------------------------------------------------

def _numeric_pack(text: str) -> bytes:
    digits = text + ("F" if len(text) % 2 else "")
    return bytes.fromhex(digits)


def _numeric_unpack(raw: bytes) -> str:
    text = raw.hex()
    if text.endswith("f"):
        text = text[:-1]
    for i, ch in enumerate(text):
        if not ch.isdigit():
            raise CompactionError(i // 2, f"numeric compaction has nibble {ch.upper()}")
    return text


def _integer_ok(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def _integer_pack(text: str) -> bytes:
    value = int(text)
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


# --- ISIL compaction (ISO 28560-2 Annex C): 5-bit upper/lower sets, 4-bit digits -------------

_UPPER = "-ABCDEFGHIJKLMNOPQRSTUVWXYZ:"
_LOWER = "-abcdefghijklmnopqrstuvwxyz/"
_DIGIT = "0123456789-:"
# control codes per set: (latch upper, shift upper, latch lower, shift lower, latch num, shift num)
_SETS = {"U": (_UPPER, 5), "L": (_LOWER, 5), "N": (_DIGIT, 4)}
_CTRL = {
    "U": {28: ("latch", "L"), 29: ("shift", "L"), 30: ("latch", "N"), 31: ("shift", "N")},
    "L": {28: ("latch", "U"), 29: ("shift", "U"), 30: ("latch", "N"), 31: ("shift", "N")},
    "N": {12: ("latch", "U"), 13: ("shift", "U"), 14: ("latch", "L"), 15: ("shift", "L")},
}
_CODE = {s: {v: k for k, v in table.items()} for s, table in _CTRL.items()}


def _isil_set(ch: str) -> str:
    for name in ("U", "L", "N"):
        if ch in _SETS[name][0]:
            return name
    raise ValueError(f"ISIL character {ch!r} has no ISIL compaction code")


def isil_pack(text: str) -> bytes:
    mode, value, bits = "U", 0, 0

    def put(code: int, width: int) -> None:
        nonlocal value, bits
        value, bits = value << width | code, bits + width

    for i, ch in enumerate(text):
        chars, width = _SETS[mode]
        if ch in chars:
            put(chars.index(ch), width)
            continue
        target = _isil_set(ch)
        nxt = text[i + 1] if i + 1 < len(text) else ""
        how = "latch" if nxt and nxt in _SETS[target][0] else "shift"
        put(_CODE[mode][(how, target)], width)
        put(_SETS[target][0].index(ch), _SETS[target][1])
        if how == "latch":
            mode = target
    pad = -bits % 8
    put((1 << pad) - 1, pad)
    return value.to_bytes(bits // 8, "big")


def isil_unpack(raw: bytes) -> str:
    total = 8 * len(raw)
    value = int.from_bytes(raw, "big")
    pos, mode, shift, out = 0, "U", "", []
    while True:
        left = total - pos
        current = shift or mode
        chars, width = _SETS[current]
        if left < width or (left < 8 and value & ((1 << left) - 1) == (1 << left) - 1):
            break
        code = (value >> (left - width)) & ((1 << width) - 1)
        pos += width
        shift = ""
        if code < len(chars):
            out.append(chars[code])
        elif code in _CTRL[current]:
            how, target = _CTRL[current][code]
            if how == "latch":
                mode = target
            else:
                shift = target
        else:
            raise CompactionError((pos - width) // 8, f"ISIL code {code} is not defined")
    return "".join(out)


# --- the front door ------------------------------------------------------------------------

def pack_text(text: str) -> tuple[int, bytes]:
    """The shortest compaction for a string (ties go to the lower code), and its bytes."""
    candidates: list[tuple[int, bytes]] = []
    if _integer_ok(text) and len(text) <= 38:
        candidates.append((INTEGER, _integer_pack(text)))
    if text.isascii() and text.isdigit():
        candidates.append((NUMERIC, _numeric_pack(text)))
    for k, code in ((5, BIT5), (6, BIT6), (7, BIT7)):
        if text and _k_bit_ok(text, k):
            candidates.append((code, _pack(text, k)))
    try:
        candidates.append((OCTET, text.encode("latin-1")))
    except UnicodeEncodeError:
        candidates.append((UTF8, text.encode("utf-8")))
    return min(candidates, key=lambda c: (len(c[1]), c[0]))


MAX_INTEGER_BYTES = 64  # 154 digits: far more than any library's item or patron number


def unpack_text(code: int, raw: bytes) -> str:
    if code == INTEGER:
        if not raw:
            raise CompactionError(0, "integer compaction with no bytes")
        if len(raw) > MAX_INTEGER_BYTES:  # str() of a longer one can exceed Python's limit
            raise CompactionError(MAX_INTEGER_BYTES, f"integer compaction of {len(raw)} "
                                  f"bytes (at most {MAX_INTEGER_BYTES})")
        return str(int.from_bytes(raw, "big"))
    if code == NUMERIC:
        return _numeric_unpack(raw)
    if code in (BIT5, BIT6, BIT7):
        return _unpack(raw, code + 2)
    if code == OCTET:
        return raw.decode("latin-1")
    if code == UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CompactionError(exc.start, f"invalid UTF-8 ({exc.reason})") from None
    raise CompactionError(0, f"compaction {NAMES[code]} is not text")

"""Vietnamese text to Windows-1258 bytes, the way the code page is meant to be used.

CP1258 holds the base letters (â ê ô ă ơ ư đ ...) and the five tone marks as *combining*
characters (0xCC grave, 0xEC acute, 0xDE tilde, 0xD2 hook above, 0xF2 dot below), plus a few
precomposed letters (à á è é ...). Python's own "cp1258" codec only maps code points one to one,
so "ệ" (U+1EC7) fails; like iconv, we use the precomposed byte when there is one and otherwise
write the base letter followed by its tone mark: "ệ" -> ê (0xEA) + dot below (0xF2).
"""

from __future__ import annotations

import unicodedata

# The tone marks CP1258 carries as combining characters; every other mark (circumflex, breve,
# horn) stays composed with its base letter.
TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")


def encode_char(ch: str, replacement: bytes = b"?") -> bytes:
    try:
        return ch.encode("cp1258")
    except UnicodeEncodeError:
        pass
    decomposed = unicodedata.normalize("NFD", ch)
    tones = "".join(c for c in decomposed if c in TONE_MARKS)
    base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in TONE_MARKS))
    try:
        return base.encode("cp1258") + tones.encode("cp1258")
    except UnicodeEncodeError:
        return replacement


def encode(text: str, replacement: bytes = b"?") -> bytes:
    """`text` in CP1258; a character the code page cannot show becomes `replacement`."""
    return b"".join(encode_char(ch, replacement) for ch in unicodedata.normalize("NFC", text))

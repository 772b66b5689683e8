"""Library tag data models (ISO 28560 family). Sans-IO: bytes in, TagInfo out.

Auto detection tries the models from the most to the least self-checking: 28560-3 (CRC),
28560-2 (element structure), a plain barcode, and last the UID if one was given. The DSFID
is never enough on its own: many installed tags carry 0 whatever their model.
"""

from __future__ import annotations

from collections.abc import Callable

from selfcheck.drivers.tags import fallback, iso28560_2, iso28560_3
from selfcheck.drivers.tags.model import TagDecodeError, TagInfo

__all__ = ["DECODERS", "MODELS", "TagDecodeError", "TagInfo", "decode_tag", "truncated"]

DECODERS: dict[str, Callable[[bytes], TagInfo]] = {
    iso28560_3.MODEL: iso28560_3.decode,
    iso28560_2.MODEL: iso28560_2.decode,
    fallback.BARCODE: fallback.decode_barcode,
}
MODELS = ("auto", *DECODERS, fallback.UID)


def decode_tag(data: bytes, *, model: str = "auto", uid: bytes | None = None) -> TagInfo:
    """Decode a tag's user memory. `model` is 'auto' or one of MODELS.

    With `uid`, a tag whose memory fits no model decodes as model 'uid' (the UID is the
    item id). Raises TagDecodeError naming the byte and the reason otherwise.
    """
    if model == fallback.UID:
        return fallback.decode_uid(uid or b"")
    if model != "auto":
        decoder = DECODERS.get(model)
        if decoder is None:
            raise TagDecodeError(0, f"unknown tag model {model!r}")
        return decoder(data)
    if not data and uid:
        return fallback.decode_uid(uid)
    errors: list[tuple[str, TagDecodeError]] = []
    for name, decoder in DECODERS.items():
        try:
            return decoder(data)
        except TagDecodeError as exc:
            errors.append((name, exc))
    if uid:
        return fallback.decode_uid(uid)
    # the model that read furthest is the likeliest one; name the others too
    name, best = max(errors, key=lambda e: e[1].offset)
    others = "; ".join(f"{n}: {e}" for n, e in errors if e is not best)
    raise TagDecodeError(best.offset, f"fits no tag model ({name}: {best.reason}; {others})")


def truncated(data: bytes) -> bool:
    """True if `data` looks like library data cut short by reading too few blocks: a 28560-3
    basic block or 28560-2 elements that run to the end without their end byte. A reader
    then reads more blocks before decoding."""
    if iso28560_3.has_basic_block(data):
        return iso28560_3.truncated(data)
    return iso28560_2.truncated(data)

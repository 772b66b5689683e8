"""Library tag data models (ISO 28560 family). Sans-IO: bytes in, TagInfo out."""

from __future__ import annotations

from drivers.tags import iso28560_3
from drivers.tags.model import TagDecodeError, TagInfo

__all__ = ["TagDecodeError", "TagInfo", "decode_tag"]


def decode_tag(data: bytes, *, model: str = "auto", uid: bytes | None = None) -> TagInfo:
    """Decode a tag's user memory. `model` is 'auto' or a model name such as '28560-3'."""
    if model in ("auto", iso28560_3.MODEL):
        return iso28560_3.decode(data)
    raise TagDecodeError(0, f"unknown tag model {model!r}")

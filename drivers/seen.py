"""What a pad reports about one tag, as the station core sees it. No I/O imports: the core
imports this, and must load no threads, sockets or pydantic (the tag model is for typing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NewType

if TYPE_CHECKING:
    from selfcheck.drivers.tags.model import TagInfo


# A tag's UID from the pad to the journal: 16 upper-case hex digits, MSB first, as people read
# it off a reader's screen. The pad protocols speak bytes; tag_uid and uid_bytes translate.
TagUid = NewType("TagUid", str)


def tag_uid(raw: bytes) -> TagUid:
    return TagUid(raw.hex().upper())


def uid_bytes(uid: TagUid) -> bytes:
    return bytes.fromhex(uid)


@dataclass(frozen=True)
class SeenTag:
    uid: TagUid
    item: TagInfo | None
    error: str | None = None

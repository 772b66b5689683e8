"""What a pad reports about one tag, as the station core sees it. No I/O imports: the core
imports this, and must load no threads, sockets or pydantic (the tag model is for typing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfcheck.drivers.tags.model import TagInfo


@dataclass(frozen=True)
class SeenTag:
    uid: str  # 16 upper-case hex digits, MSB first
    item: TagInfo | None
    error: str | None = None

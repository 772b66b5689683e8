"""Card UID -> patron id text, as the site's library system expects it.

Pure functions: the same UID bytes print differently depending on what the card
was enrolled with (a desk reader showing hex, a Wiegand reader showing the UID as
a little-endian number, ...), so the mapping is site configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from selfcheck.drivers.card.config import parse_options


class UidFormat(StrEnum):
    HEX = "hex"  # upper-case, first UID byte first (how nfcpy and most readers show it)
    HEX_REVERSED = "hex-reversed"  # bytes reversed, as some readers send them
    DECIMAL = "decimal"  # UID bytes as one big-endian unsigned integer
    DECIMAL_REVERSED = "decimal-reversed"  # little-endian: what many Wiegand readers print


class UidMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: UidFormat = UidFormat.HEX
    # Left-pad with zeros to this many characters (0 = no padding). Never truncates.
    pad: int = Field(default=0, ge=0, le=64)


def load_uid_mapping(data: Mapping[str, Any]) -> UidMapping:
    """Build a mapping from site config; raises CardConfigError naming the bad field."""
    return parse_options(UidMapping, "card UID mapping", data)


def map_uid(uid: bytes, mapping: UidMapping) -> str:
    """Render `uid` as the patron id text configured by `mapping`."""
    if not uid:
        raise ValueError("empty card UID")
    fmt = mapping.format
    if fmt is UidFormat.HEX:
        text = uid.hex().upper()
    elif fmt is UidFormat.HEX_REVERSED:
        text = uid[::-1].hex().upper()
    elif fmt is UidFormat.DECIMAL:
        text = str(int.from_bytes(uid, "big"))
    else:
        text = str(int.from_bytes(uid, "little"))
    return text.zfill(mapping.pad)

"""ESC/POS real-time paper status, sans-IO: the query bytes to send and the parsing of the
one-byte answer. The transport lives in drivers.printer.device.

Two commands answer with the paper sensors (Epson ESC/POS reference):

- DLE EOT 4 (10 04 04), real-time: processed on arrival even while the printer is busy or
  offline. Answer: bit 1 and bit 4 fixed 1, bits 0 and 7 fixed 0; bits 2-3 set = roll paper
  near end; bits 5-6 set = roll paper end (out). So 0x12 ok, 0x1E low, 0x72/0x7E out.
- GS r 1 (1D 72 01): queued behind the print data, so it answers after the job is printed.
  Answer: bits 0-1 set = near end; bits 2-3 set = paper end; bit 4 and bit 7 fixed 0.
  So 0x00 ok, 0x03 low, 0x0C/0x0F out.

The fixed bits let us tell a real answer from a stray byte (an ASB report, line noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

DLE_EOT_PAPER = b"\x10\x04\x04"
GS_R_PAPER = b"\x1d\x72\x01"

StatusCommand = Literal["dle-eot", "gs-r"]
QUERY: dict[StatusCommand, bytes] = {"dle-eot": DLE_EOT_PAPER, "gs-r": GS_R_PAPER}


class Paper(StrEnum):
    OK = "ok"
    LOW = "low"
    OUT = "out"
    UNKNOWN = "unknown"  # no answer (printer off, cable out, transport that cannot read)


class StatusError(ValueError):
    """A byte that is not a valid answer to the query."""


def parse_dle_eot_paper(byte: int) -> Paper:
    if byte & 0b1001_0011 != 0b0001_0010:
        raise StatusError(f"not a DLE EOT 4 answer: 0x{byte:02X} (fixed bits 1,4 = 1; 0,7 = 0)")
    if byte & 0x60:  # either end sensor bit: some firmwares set only one of the pair
        return Paper.OUT
    if byte & 0x0C:
        return Paper.LOW
    return Paper.OK


def parse_gs_r_paper(byte: int) -> Paper:
    if byte & 0b1001_0000:
        raise StatusError(f"not a GS r 1 answer: 0x{byte:02X} (fixed bits 4,7 = 0)")
    if byte & 0x0C:
        return Paper.OUT
    if byte & 0x03:
        return Paper.LOW
    return Paper.OK


PARSERS: dict[StatusCommand, Callable[[int], Paper]] = {
    "dle-eot": parse_dle_eot_paper, "gs-r": parse_gs_r_paper,
}


def parse_answer(command: StatusCommand, data: bytes) -> Paper:
    """The paper state from what the printer sent back: the last byte that is a valid
    answer wins (older ones are stale replies to earlier queries); none gives UNKNOWN."""
    parse = PARSERS[command]
    for byte in reversed(data):
        try:
            return parse(byte)
        except StatusError:
            continue
    return Paper.UNKNOWN


@dataclass(frozen=True)
class PaperEvent:
    previous: Paper
    current: Paper


class PaperMonitor:
    """Turns successive readings into change events, so that a callback (an MQTT evt/paper
    publish) fires once per change, not on every poll."""

    def __init__(self, on_change: Callable[[PaperEvent], None] | None = None) -> None:
        self.state = Paper.UNKNOWN
        self._on_change = on_change

    def update(self, state: Paper) -> PaperEvent | None:
        if state == self.state:
            return None
        event = PaperEvent(self.state, state)
        self.state = state
        if self._on_change is not None:
            self._on_change(event)
        return event

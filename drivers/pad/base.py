"""The book-pad interface every reader driver implements, and its health counters.

Drivers are blocking (pyserial) and run in a thread; the station never calls them from the UI
loop. UIDs are 8 bytes, most significant byte first (E0 ... for ISO 15693).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PadError(Exception):
    """The pad did not do what was asked (no answer, RF error, tag gone)."""


# ISO 15693 command code of Lock AFI. Locking makes the AFI permanent, which would leave a book
# stuck "on loan" or "in library" for ever, so no driver sends it and no AFI write takes 0x28.
LOCK_AFI = 0x28


def afi_problem(afi: int) -> str | None:
    """Why `afi` may never be written (the one rule for drivers, simulators and settings)."""
    if afi == LOCK_AFI:
        return "0x28 is the Lock AFI command code: never written, locking is permanent"
    if not 0 <= afi <= 0xFF:
        return f"AFI {afi} is not a byte"
    return None


@dataclass
class PadCounters:
    """Health counters reported in telemetry."""

    inventories: int = 0
    reads: int = 0
    read_errors: int = 0
    afi_writes: int = 0
    afi_write_failures: int = 0
    frame_errors: int = 0
    reconnects: int = 0


class BookPad(Protocol):
    counters: PadCounters

    def inventory(self) -> list[bytes]:
        """UIDs of the tags in the field now."""
        ...

    def read_blocks(self, uid: bytes, first: int, count: int) -> bytes:
        """`count` blocks of user memory from block `first`, concatenated."""
        ...

    def write_blocks(self, uid: bytes, first: int, data: bytes) -> None: ...

    def read_afi(self, uid: bytes) -> int: ...

    def write_afi(self, uid: bytes, afi: int) -> None:
        """Write the AFI; drivers read it back to verify and never send Lock AFI."""
        ...

    def close(self) -> None: ...


@dataclass
class AfiPolicy:
    """Per-site AFI values (ISO 28560-1 defaults)."""

    in_library: int = 0x07
    on_loan: int = 0xC2

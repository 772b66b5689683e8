"""Pieces every BookPad driver shares: chunking and the verified security write."""

from __future__ import annotations

from collections.abc import Callable

from selfcheck.drivers.pad.base import PadCounters, PadError

# ISO 15693 command code of Lock AFI. Locking makes the AFI permanent, which would leave a book
# stuck "on loan" or "in library" for ever, so no driver sends it and no AFI write takes 0x28.
LOCK_AFI = 0x28


def chunks(first: int, count: int, size: int) -> list[tuple[int, int]]:
    """(start block, block count) pieces of at most `size` blocks."""
    return [(s, min(size, first + count - s)) for s in range(first, first + count, size)]


def write_afi_verified(counters: PadCounters, uid: bytes, afi: int,
                       write_once: Callable[[bytes, int], None],
                       read_back: Callable[[bytes], int], attempts: int = 3) -> None:
    """Write the AFI, read it back, retry a few times; count the outcome."""
    if afi == LOCK_AFI:
        raise PadError("0x28 is the Lock AFI command code: never written, locking is permanent")
    if not 0 <= afi <= 0xFF:
        raise PadError(f"AFI {afi} is not a byte")
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        try:
            write_once(uid, afi)
            got = read_back(uid)
        except PadError as exc:
            last = exc
            continue
        if got == afi:
            counters.afi_writes += 1
            return
        last = PadError(f"AFI read back {got:02X} after writing {afi:02X}")
    counters.afi_write_failures += 1
    raise PadError(f"security (AFI) write to {uid.hex().upper()} failed: {last}") from last

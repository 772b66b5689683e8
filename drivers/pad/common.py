"""Pieces every BookPad driver shares: chunking and the verified security write."""

from __future__ import annotations

from collections.abc import Callable

from selfcheck.drivers.pad.base import PadCounters, PadError, afi_problem
from selfcheck.drivers.seen import tag_uid


def chunks(first: int, count: int, size: int) -> list[tuple[int, int]]:
    """(start block, block count) pieces of at most `size` blocks."""
    return [(s, min(size, first + count - s)) for s in range(first, first + count, size)]


def read_chunked(counters: PadCounters, first: int, count: int, max_blocks: int,
                 read_part: Callable[[int, int], bytes]) -> bytes:
    """`count` blocks from `first`, read `max_blocks` at a time by read_part(start, n); counted
    once as a read or a read error."""
    data = bytearray()
    try:
        for start, n in chunks(first, count, max_blocks):
            data += read_part(start, n)
    except PadError:
        counters.read_errors += 1
        raise
    counters.reads += 1
    return bytes(data)


def write_chunked(first: int, data: bytes, block_size: int, max_blocks: int,
                  write_part: Callable[[int, int, bytes], None]) -> None:
    """`data`, zero-padded to whole blocks, written `max_blocks` at a time by
    write_part(start, n, part)."""
    if len(data) % block_size:
        data = data + bytes(-len(data) % block_size)
    for start, n in chunks(first, len(data) // block_size, max_blocks):
        write_part(start, n, data[(start - first) * block_size:(start - first + n) * block_size])


def write_afi_verified(counters: PadCounters, uid: bytes, afi: int,
                       write_once: Callable[[bytes, int], None],
                       read_back: Callable[[bytes], int], attempts: int = 3) -> None:
    """Write the AFI, read it back, retry a few times; count the outcome."""
    if why := afi_problem(afi):
        raise PadError(why)
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
    raise PadError(f"security (AFI) write to {tag_uid(uid)} failed: {last}") from last

"""Bench: tag books on the simulated 3M 810 pad at 19,200 baud, as the tagging desk does
(kiosk/runtime/tagging.py): the poll that finds the blank tag (inventory, read), the check
that it is blank, the write of the ISO 28560-3 block, the read back, the AFI write and its
verification. The floor is the wire time of those frames; the figure is books a minute for
the pad's part (a person scanning and placing the book adds seconds on top).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

from selfcheck.drivers.pad import m810_codec
from selfcheck.drivers.pad.m810 import M810Pad
from selfcheck.drivers.pad.simulators import M810Simulator
from selfcheck.drivers.seen import tag_uid
from selfcheck.kiosk import staff_tagging as st
from selfcheck.kiosk.runtime.tagging import write_item
from selfcheck.lab.bench.cmd import Figure, figure

BLOCKS = 9


def _one_book(sim: M810Simulator, pad: M810Pad, n: int) -> tuple[float, int]:
    uid = bytes.fromhex("E0040150") + (0x30000000 + n).to_bytes(4, "big")
    sim.place(uid, bytes(4 * BLOCKS), 0x00)
    link = pad.link
    before = link.bytes_in + link.bytes_out
    t0 = time.perf_counter()
    [found] = pad.inventory()  # the watcher's poll, and its first read of the new tag
    pad.read_blocks(found, 0, BLOCKS)
    action = st.WriteTags(st.ItemInfo(f"TV{n:06d}"), "VN-HN0001", st.CIRCULATING,
                          (st.TagWrite(tag_uid(found), 1),), overwrite=False)
    [result] = write_item(pad, action, 0x07)
    elapsed = time.perf_counter() - t0
    sim.lift(uid)
    if not result.ok:
        raise RuntimeError(f"book {n}: {result.problem}")
    return elapsed, link.bytes_in + link.bytes_out - before


def run(args: argparse.Namespace) -> Iterator[Figure]:
    books = 10 if getattr(args, "quick", False) else 50
    with M810Simulator(pty=True) as sim:
        pad = M810Pad(sim.url)
        try:
            _one_book(sim, pad, 0)  # warm up: open the port, first imports
            runs = [_one_book(sim, pad, n) for n in range(1, books + 1)]
        finally:
            pad.close()
    per_book = statistics.median(r[0] for r in runs)
    nbytes = runs[0][1]
    wire = nbytes * m810_codec.BITS_PER_BYTE / m810_codec.BAUDRATE
    yield figure("tagging.3m810.book.bytes", nbytes, "bytes", transport="pty")
    yield figure("tagging.3m810.book.wire_time", wire * 1000, "ms")
    yield figure("tagging.3m810.book.time", per_book * 1000, "ms", baseline=wire * 1000,
                 books=books)
    yield figure("tagging.3m810.books_per_minute", 60 / per_book, "books/min",
                 wire_bound=round(60 / wire, 1))

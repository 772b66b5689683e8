"""Bench: identify and read a stack of 10 books on the simulated 3M 810 pad at 19200 baud.

The simulator paces its line at the real baud rate, so the floor is the wire time of the bytes
exchanged (both ways, 10 bits a byte for 8N1). The figure to watch is the ratio: how much the
driver, the decoder and the host add on top of the wire (aim: within 1.2 times).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

from selfcheck.drivers.pad import m810_codec
from selfcheck.drivers.pad.m810 import M810Pad
from selfcheck.drivers.pad.simulators import M810Simulator
from selfcheck.drivers.tags import decode_tag, iso28560_3
from selfcheck.lab.bench.cmd import Figure, figure

BOOKS = 10
BLOCKS = 9  # the 34-byte ISO 28560-3 basic block


def _stack(sim: M810Simulator) -> None:
    for k in range(BOOKS):
        uid = bytes.fromhex("E0040150") + (0x20000000 + k).to_bytes(4, "big")
        sim.place(uid, iso28560_3.encode(f"3900{k:08d}", owner_isil="VN-HN0001"))


def _one_pass(pad: M810Pad) -> tuple[float, int]:
    link = pad.link
    before = link.bytes_in + link.bytes_out
    t0 = time.perf_counter()
    uids = pad.inventory()
    items = [decode_tag(pad.read_blocks(uid, 0, BLOCKS)) for uid in uids]
    elapsed = time.perf_counter() - t0
    if len(items) != BOOKS:
        raise RuntimeError(f"read {len(items)} of {BOOKS} books")
    return elapsed, link.bytes_in + link.bytes_out - before


def run(args: argparse.Namespace) -> Iterator[Figure]:
    rounds = 2 if getattr(args, "quick", False) else 5
    with M810Simulator(pty=True) as sim:
        _stack(sim)
        pad = M810Pad(sim.url)
        try:
            _one_pass(pad)  # warm up: open the port, first imports
            passes = [_one_pass(pad) for _ in range(rounds)]
        finally:
            pad.close()
    elapsed = statistics.median(p[0] for p in passes)
    nbytes = passes[0][1]
    wire = nbytes * m810_codec.BITS_PER_BYTE / m810_codec.BAUDRATE
    yield figure("pad.3m810.stack10.bytes", nbytes, "bytes", transport="pty")
    yield figure("pad.3m810.stack10.wire_time", wire * 1000, "ms")
    yield figure("pad.3m810.stack10.time", elapsed * 1000, "ms", baseline=wire * 1000,
                 books=BOOKS, blocks=BLOCKS, rounds=rounds)

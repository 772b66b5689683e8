"""An in-memory book pad for the demo and tests: tags are placed and lifted by calls."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from selfcheck.drivers.pad.base import PadCounters, PadError, afi_problem
from selfcheck.drivers.seen import tag_uid

BLOCK_SIZE = 4


@dataclass
class SimTag:
    uid: bytes
    memory: bytearray
    afi: int = 0x07


class SimulatedPad:
    """Implements BookPad. Thread-safe: the demo panel places tags while the watcher polls."""

    def __init__(self) -> None:
        self.counters = PadCounters()
        self._tags: dict[bytes, SimTag] = {}
        self._lock = threading.Lock()
        # AFI writes to these tags fail, as on a tag at the edge of the field or lifted
        # mid-write: how the demo shows a pending security write.
        self.failing_writes: set[bytes] = set()

    # -- what a person does with books
    def place(self, uid: bytes, memory: bytes, afi: int = 0x07) -> None:
        with self._lock:
            self._tags[uid] = SimTag(uid, bytearray(memory.ljust(-(-len(memory) // 4) * 4,
                                                                 b"\x00")), afi)

    def lift(self, uid: bytes) -> None:
        with self._lock:
            self._tags.pop(uid, None)

    def afi_of(self, uid: bytes) -> int | None:
        with self._lock:
            tag = self._tags.get(uid)
            return tag.afi if tag else None

    def on_pad(self) -> list[bytes]:
        with self._lock:
            return list(self._tags)

    # -- BookPad
    def _tag(self, uid: bytes) -> SimTag:
        tag = self._tags.get(uid)
        if tag is None:
            raise PadError(f"tag {tag_uid(uid)} is not in the field")
        return tag

    def inventory(self) -> list[bytes]:
        with self._lock:
            self.counters.inventories += 1
            return list(self._tags)

    def read_blocks(self, uid: bytes, first: int, count: int) -> bytes:
        with self._lock:
            try:
                tag = self._tag(uid)
            except PadError:
                self.counters.read_errors += 1
                raise
            self.counters.reads += 1
            return bytes(tag.memory[first * BLOCK_SIZE:(first + count) * BLOCK_SIZE])

    def write_blocks(self, uid: bytes, first: int, data: bytes) -> None:
        with self._lock:
            tag = self._tag(uid)
            tag.memory[first * BLOCK_SIZE:first * BLOCK_SIZE + len(data)] = data

    def read_afi(self, uid: bytes) -> int:
        with self._lock:
            return self._tag(uid).afi

    def write_afi(self, uid: bytes, afi: int) -> None:
        if why := afi_problem(afi):
            raise PadError(why)
        with self._lock:
            try:
                if uid in self.failing_writes:
                    raise PadError(f"tag {tag_uid(uid)}: no answer to write AFI")
                self._tag(uid).afi = afi
            except PadError:
                self.counters.afi_write_failures += 1
                raise
            self.counters.afi_writes += 1

    def close(self) -> None:
        pass

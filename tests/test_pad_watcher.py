"""PadWatcher reads as many blocks as the tag's data needs (28560-2 titles, 28560-3 optional
blocks), and still reads tags whose memory is smaller than its first read."""

from __future__ import annotations

import queue

import pytest

from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.simulators import M810Simulator
from selfcheck.drivers.pad.watcher import PadWatcher, SeenTag
from selfcheck.drivers.tags import iso28560_2, iso28560_3

TITLE = "Cho tôi xin một vé đi tuổi thơ — Nguyễn Nhật Ánh"


def uid(n: int) -> bytes:
    return bytes.fromhex(f"E00401500000{n:04X}")


def seen_on_pad(memories: dict[bytes, bytes]) -> dict[str, SeenTag]:
    got: queue.Queue[tuple[SeenTag, ...]] = queue.Queue()
    with M810Simulator(listen="127.0.0.1:0") as sim:
        pad = open_pad("3m810", sim.url, timeout=1.0)
        for u, memory in memories.items():
            sim.place(u, memory)
        watcher = PadWatcher(pad, got.put, poll_s=0.05)
        watcher.start()
        try:
            while True:
                snapshot = got.get(timeout=20)
                if len(snapshot) == len(memories):
                    return {s.uid: s for s in snapshot}
        finally:
            watcher.stop()
            pad.close()


@pytest.mark.parametrize("memory_bytes", [112, 0])  # an ICODE SLIX, and memory just fitting
def test_long_28560_2_title_is_read_whole(memory_bytes: int) -> None:
    data = iso28560_2.encode("39000008", owner_isil="VN-HN0001", type_of_usage=1,
                             shelf_location="895.9223 NG-A", title=TITLE)
    assert len(data) > 9 * 4  # more than the first read
    memory = data.ljust(memory_bytes, b"\x00")
    seen = seen_on_pad({uid(1): memory})[uid(1).hex().upper()]
    assert seen.error is None and seen.item is not None
    assert seen.item.title == TITLE
    assert seen.item.shelf_location == "895.9223 NG-A"


def test_28560_3_optional_title_block_and_small_tag() -> None:
    titled = iso28560_3.encode("39000001", owner_isil="VN-HN0001", title=TITLE)
    small = iso28560_3.encode("39000002", owner_isil="VN-HN0001", block_len=32)
    seen = seen_on_pad({uid(1): titled.ljust(112, b"\x00"),
                        uid(2): small})  # SLIX-L: 8 blocks, no block 8 to read
    assert seen[uid(1).hex().upper()].item.title == TITLE  # type: ignore[union-attr]
    assert seen[uid(2).hex().upper()].item.primary_item_id == "39000002"  # type: ignore[union-attr]

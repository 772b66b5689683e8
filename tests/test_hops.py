"""The round trip's breakdown (mqtt/hops.py, bench/transactions.py): nothing recorded unless
asked, another process's clock placed by a ping exchange, each hop timed from the previous."""

from __future__ import annotations

import json
from pathlib import Path

from selfcheck.lab.bench.transactions import HOPS, breakdown
from selfcheck.lab.broker import free_port
from selfcheck.mqtt import hops


def test_no_hook_by_default_and_a_recorder_keeps_marks_until_removed() -> None:
    assert hops.HOOKS == []  # the hot path's test stays false outside the benchmark
    recorder = hops.Recorder(keep=2).install()
    try:
        hops.mark("decided", "m1", 1.0)
        hops.mark("published", "m1")
        hops.mark("station_done", "m1", 3.0)  # over `keep`: dropped
    finally:
        recorder.remove()
    hops.mark("decided", "m2", 4.0)
    assert [m[:2] for m in recorder.marks] == [("decided", "m1"), ("published", "m1")]
    assert recorder.marks[0][2] == 1.0


def test_a_recorder_dumps_what_it_kept(tmp_path: Path) -> None:
    recorder = hops.Recorder()
    recorder("bridge_received", "m1", 2.5)
    recorder.dump(tmp_path / "marks.json")
    assert json.loads((tmp_path / "marks.json").read_text()) == [["bridge_received", "m1", 2.5]]


def test_the_clock_offset_of_a_process_sharing_ours_is_about_nothing() -> None:
    port = free_port()
    sock = hops.serve_clock(port)
    try:
        offset, uncertainty = hops.clock_offset(port, pings=20)
    finally:
        sock.close()
    assert abs(offset) <= uncertainty + 0.001
    assert uncertainty < 0.05


def test_each_hop_is_timed_from_the_previous_one_on_our_clock() -> None:
    local = [("decided", "a", 10.0), ("journal_committed", "a", 10.001),
             ("published", "a", 10.0015), ("station_received", "a", 10.004),
             ("station_done", "a", 10.0042),
             ("decided", "b", 20.0)]  # b never came back: not a sample
    # The bridge's clock runs 100 s ahead of ours; it took no order step (--no-order).
    remote = [("bridge_received", "a", 110.002), ("bridge_taken", "a", 110.0021),
              ("ledger_committed", "a", 110.003), ("ack_published", "a", 110.0031)]
    table = breakdown(["a", "b"], local, remote, offset=100.0)
    assert set(table) == {*HOPS[1:], "total"} - {"order_admitted"}
    assert all(len(v) == 1 for v in table.values())
    assert round(table["bridge_received"][0], 3) == 0.5  # ms since published
    assert round(table["station_received"][0], 3) == 0.9  # ms since the ack went out
    assert round(table["total"][0], 3) == 4.2

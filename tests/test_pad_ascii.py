"""ASCII line readers: line parsing, fuzzing, and the read-only driver against the simulator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfcheck.drivers.pad import ascii_codec as c
from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.ascii import AsciiPad
from selfcheck.drivers.pad.base import PadError
from selfcheck.drivers.pad.simulators import AsciiSimulator

UID = bytes.fromhex("E004010012345678")


@pytest.mark.parametrize("line", [
    b"E004010012345678",
    b"e004010012345678",
    b"E0:04:01:00:12:34:56:78",
    b"E0 04 01 00 12 34 56 78",
    b"UID: E004010012345678",
    b"78563412000104E0",  # LSB first, turned around
    b"  E004010012345678  ",
])
def test_line_formats(line: bytes) -> None:
    assert c.parse_line(line) == UID


@pytest.mark.parametrize("line", [b"", b"hello", b"E00401001234567", b"E0040100123456789",
                                  b"E00401001234567G"])
def test_not_a_uid(line: bytes) -> None:
    assert c.parse_line(line) is None


def test_forced_order() -> None:
    assert c.parse_line(b"E004010012345678", "lsb") == UID[::-1]
    assert c.parse_line(b"78563412000104E0", "msb") == UID[::-1]


def test_decoder_splits_lines_across_chunks() -> None:
    d = c.LineDecoder()
    assert d.feed(b"E0040100") == []
    assert d.feed(b"12345678\r\nnoise\nE0040100") == [UID]
    assert d.errors == 1
    assert d.feed(b"12345678\n") == [UID]


@given(st.lists(st.binary(max_size=100), max_size=10))
def test_fuzz_never_raises(chunks: list[bytes]) -> None:
    d = c.LineDecoder()
    for chunk in chunks:
        for uid in d.feed(chunk):
            assert len(uid) == 8


@pytest.mark.parametrize("where", ["pty", "socket"])
def test_driver_reports_uids_and_refuses_memory(where: str) -> None:
    kw = {"pty": True} if where == "pty" else {"listen": "127.0.0.1:0"}
    with AsciiSimulator(interval=0.05, **kw) as sim:
        sim.place(UID)
        pad = open_pad("ascii", sim.url, window=0.15, hold=0.5)
        try:
            assert pad.inventory() == [UID]
            sim.inject_garbage(b"#garbage line\r\n")
            assert pad.inventory() == [UID]
            assert pad.counters.frame_errors >= 1
            for call in (lambda: pad.read_blocks(UID, 0, 1), lambda: pad.read_afi(UID),
                         lambda: pad.write_afi(UID, 0xC2),
                         lambda: pad.write_blocks(UID, 0, b"1234")):
                with pytest.raises(PadError, match="cannot"):
                    call()
        finally:
            pad.close()


def test_lifted_tag_drops_out_after_hold() -> None:
    with AsciiSimulator(pty=True, interval=0.05, lsb_first=True) as sim:
        sim.place(UID)
        pad = AsciiPad(sim.url, window=0.15, hold=0.3)
        try:
            assert pad.inventory() == [UID]  # printed LSB first, normalised
            sim.lift(UID)
            pad.inventory()
            pad.inventory()
            assert pad.inventory() == []
        finally:
            pad.close()

"""Paper status parsing (sans-IO) and the simulator's stream scanner."""

from __future__ import annotations

import pytest

from selfcheck.drivers.printer.simulator import EscPosScanner, status_answer
from selfcheck.drivers.printer.status import (
    DLE_EOT_PAPER,
    GS_R_PAPER,
    Paper,
    PaperEvent,
    PaperMonitor,
    StatusError,
    parse_answer,
    parse_dle_eot_paper,
    parse_gs_r_paper,
)


# DLE EOT 4 answer (Epson): bits 1 and 4 fixed 1 -> 0x12 base; near end adds bits 2,3 (0x0C);
# paper end adds bits 5,6 (0x60).
@pytest.mark.parametrize(("byte", "paper"), [
    (0x12, Paper.OK), (0x1E, Paper.LOW), (0x72, Paper.OUT), (0x7E, Paper.OUT),
    (0x16, Paper.LOW), (0x32, Paper.OUT),  # firmwares that set one bit of a pair
])
def test_dle_eot_paper(byte: int, paper: Paper) -> None:
    assert parse_dle_eot_paper(byte) == paper


@pytest.mark.parametrize("byte", [0x00, 0x10, 0x02, 0x13, 0x92, 0xFF])
def test_dle_eot_fixed_bits_checked(byte: int) -> None:
    with pytest.raises(StatusError):
        parse_dle_eot_paper(byte)


# GS r 1 answer: near end bits 0,1 (0x03); paper end bits 2,3 (0x0C); bits 4 and 7 fixed 0.
@pytest.mark.parametrize(("byte", "paper"), [
    (0x00, Paper.OK), (0x03, Paper.LOW), (0x0C, Paper.OUT), (0x0F, Paper.OUT),
])
def test_gs_r_paper(byte: int, paper: Paper) -> None:
    assert parse_gs_r_paper(byte) == paper


@pytest.mark.parametrize("byte", [0x10, 0x12, 0x80])
def test_gs_r_fixed_bits_checked(byte: int) -> None:
    with pytest.raises(StatusError):
        parse_gs_r_paper(byte)


def test_last_valid_answer_wins_and_noise_is_skipped() -> None:
    assert parse_answer("dle-eot", b"\x12\x1e") == Paper.LOW  # a stale reply first
    assert parse_answer("dle-eot", b"\x72\xff") == Paper.OUT  # trailing noise ignored
    assert parse_answer("dle-eot", b"") == Paper.UNKNOWN
    assert parse_answer("dle-eot", b"\x00\xff") == Paper.UNKNOWN


def test_monitor_reports_each_change_once() -> None:
    seen: list[PaperEvent] = []
    mon = PaperMonitor(seen.append)
    for state in [Paper.OK, Paper.OK, Paper.LOW, Paper.LOW, Paper.OUT, Paper.OK]:
        mon.update(state)
    assert [(e.previous, e.current) for e in seen] == [
        (Paper.UNKNOWN, Paper.OK), (Paper.OK, Paper.LOW), (Paper.LOW, Paper.OUT),
        (Paper.OUT, Paper.OK)]


@pytest.mark.parametrize("paper", [Paper.OK, Paper.LOW, Paper.OUT])
def test_simulator_answers_parse_back(paper: Paper) -> None:
    assert parse_dle_eot_paper(status_answer(DLE_EOT_PAPER, paper)[0]) == paper
    assert parse_gs_r_paper(status_answer(GS_R_PAPER, paper)[0]) == paper


def test_scanner_skips_raster_data_that_looks_like_a_query() -> None:
    # GS v 0, m=0, 3 bytes a row, 1 row: the data is 10 04 04 itself.
    raster = b"\x1dv0\x00\x03\x00\x01\x00" + DLE_EOT_PAPER
    sc = EscPosScanner()
    out = sc.feed(b"\x1b@" + raster + DLE_EOT_PAPER + b"ab")
    assert out.queries == [DLE_EOT_PAPER]
    assert out.printed == b"\x1b@" + raster + b"ab"


def test_scanner_waits_for_split_commands() -> None:
    sc = EscPosScanner()
    assert sc.feed(b"x\x10").queries == []
    out = sc.feed(b"\x04\x04\x1dv0\x00\x01\x00\x02")
    assert out.queries == [DLE_EOT_PAPER]
    out = sc.feed(b"\x00\xff\x10")
    assert out.printed == b"\x1dv0\x00\x01\x00\x02\x00\xff\x10"

"""FEIG ISO host protocol: CRC and frames, fuzzing, and the driver against the simulator over a
pty and a socket at 38400 8E1, with garbage, CRC errors, silence, status codes and unplugging."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfcheck.drivers.pad import feig_codec as c
from selfcheck.drivers.pad import open_pad
from selfcheck.drivers.pad.base import PadError
from selfcheck.drivers.pad.feig import FeigPad
from selfcheck.drivers.pad.simulators import FeigSimulator
from selfcheck.drivers.pad.transport import PadTimeout
from selfcheck.drivers.tags import decode_tag, iso28560_3

UID = bytes.fromhex("E004010012345678")
BOOK = iso28560_3.encode("39000456", owner_isil="VN-HN0001")


def crc_bitwise(data: bytes) -> int:
    """The textbook loop (as in FEIG's manuals and Biblio-RFID's CPRM02.pm)."""
    value = 0xFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ 0x8408 if value & 1 else value >> 1
    return value


def test_crc_matches_published_example() -> None:
    # "02 00 09 FF B0 01 00 18 43": an ISO inventory in FEIG's advanced frame, quoted in a
    # public Java reader HAL; the CRC (LSB first) is 18 43. Same CRC as the standard frame.
    assert c.crc(bytes.fromhex("020009FFB00100")) == 0x4318
    assert crc_bitwise(bytes.fromhex("020009FFB00100")) == 0x4318


@given(st.binary(max_size=300))
def test_fast_crc_equals_bitwise(data: bytes) -> None:
    assert c.crc(data) == crc_bitwise(data)


def test_inventory_request_layout() -> None:
    raw = c.inventory_request().encode()
    assert raw[:5] == bytes.fromhex("07FFB00100")
    assert int.from_bytes(raw[5:], "little") == crc_bitwise(raw[:5])


@given(st.integers(0, 255), st.sampled_from(sorted(c.KNOWN_CMDS)), st.binary(max_size=250))
def test_frame_round_trip(adr: int, cmd: int, data: bytes) -> None:
    f = c.Frame(adr, cmd, data)
    assert c.Decoder().feed(f.encode()) == [f]


PARSERS = [c.parse_inventory, c.parse_system_info, c.check_status,
           lambda f: c.parse_read(f, 2)]


def _parse_all(frames: list[c.Frame]) -> None:
    for f in frames:
        for parse in PARSERS:
            try:
                parse(f)
            except PadError:  # the documented error (ProtocolError is one)
                pass


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzz_random_bytes_never_raise(chunks: list[bytes]) -> None:
    decoder = c.Decoder()
    for chunk in chunks:
        _parse_all(decoder.feed(chunk))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.integers(0, 200),
       st.integers(1, 255))
def test_fuzz_mutated_frame_then_good_frame(pre: bytes, post: bytes, pos: int,
                                            flip: int) -> None:
    good = c.response(0, c.CMD_ISO, 0, bytes([2, 4]) + b"\x00abcd\x00efgh")
    bad = bytearray(good.encode())
    bad[pos % len(bad)] ^= flip
    got = c.Decoder().feed(pre + bytes(bad) + good.encode() + post)
    assert good in got
    _parse_all(got)


def test_status_codes() -> None:
    assert c.parse_inventory(c.response(0, c.CMD_ISO, c.STATUS_NO_TRANSPONDER)).uids == []
    with pytest.raises(PadError, match="RF communication error"):
        c.check_status(c.response(0, c.CMD_ISO, c.STATUS_RF_ERROR))
    more = c.parse_inventory(c.response(0, c.CMD_ISO, c.STATUS_MORE_DATA,
                                        b"\x01\x03\x00" + UID))
    assert more.more and more.uids == [UID]


def test_block_order_is_normalised() -> None:
    assert c.reorder_blocks(b"\x01\x02\x03\x04\x05\x06\x07\x08", 4, True) == (
        b"\x04\x03\x02\x01\x08\x07\x06\x05")
    assert c.reorder_blocks(b"\x01\x02\x03\x04", 4, False) == b"\x01\x02\x03\x04"


# -- driver against the simulator, at 38400 8E1

@pytest.fixture(params=["pty", "socket"])
def sim(request: pytest.FixtureRequest) -> Iterator[FeigSimulator]:
    kw = {"pty": True} if request.param == "pty" else {"listen": "127.0.0.1:0"}
    with FeigSimulator(**kw) as s:
        s.place(UID, BOOK, 0x07)
        yield s


@pytest.fixture
def pad(sim: FeigSimulator) -> Iterator[FeigPad]:
    p = FeigPad(sim.url, timeout=0.3, retries=1, reconnect_window=3.0)
    yield p
    p.close()


def test_inventory_read_write_afi(sim: FeigSimulator, pad: FeigPad) -> None:
    assert pad.inventory() == [UID]
    data = pad.read_blocks(UID, 0, 9)
    assert decode_tag(data).primary_item_id == "39000456"
    pad.write_afi(UID, 0xC2)
    assert sim.afi_of(UID) == 0xC2
    pad.write_blocks(UID, 9, b"\x01\x02\x03\x04")
    tag = sim.tag(UID)
    assert tag is not None and tag.memory[36:40] == b"\x01\x02\x03\x04"  # tag order
    assert pad.counters.afi_writes == 1 and pad.counters.reads == 1


@pytest.mark.parametrize("order", ["reversed", "tag"])
def test_block_order_setting(order: str) -> None:
    with FeigSimulator(pty=True, block_order=order) as sim:
        sim.place(UID, BOOK)
        pad = open_pad("feig", sim.url, block_order=order, timeout=0.3)
        try:
            assert pad.read_blocks(UID, 0, 9)[:34] == BOOK
        finally:
            pad.close()


def test_more_data_status_fetches_the_rest() -> None:
    uids = [bytes.fromhex("E0040100000000") + bytes([k]) for k in range(7)]
    with FeigSimulator(pty=True, max_datasets=3) as sim:
        for uid in uids:
            sim.place(uid, BOOK)
        pad = FeigPad(sim.url, timeout=0.3)
        try:
            assert pad.inventory() == uids
            assert sim.requests == 3
        finally:
            pad.close()


def test_empty_pad(sim: FeigSimulator, pad: FeigPad) -> None:
    sim.lift(UID)
    assert pad.inventory() == []
    with pytest.raises(PadError, match="no transponder"):
        pad.read_blocks(UID, 0, 1)
    assert pad.counters.read_errors == 1


def test_rf_error_is_reported(sim: FeigSimulator, pad: FeigPad) -> None:
    sim.rf_error_next = 1
    with pytest.raises(PadError, match="83"):
        pad.inventory()
    assert pad.inventory() == [UID]


def test_garbage_and_crc_errors(sim: FeigSimulator, pad: FeigPad) -> None:
    sim.inject_garbage(b"\x0d\x00\xb0garbage\x07")
    assert pad.inventory() == [UID]
    assert pad.counters.frame_errors >= 1
    sim.corrupt_next = 1
    assert pad.read_afi(UID) == 0x07
    assert pad.counters.frame_errors >= 2


def test_silent_reader_times_out(sim: FeigSimulator, pad: FeigPad) -> None:
    sim.silent = True
    with pytest.raises(PadTimeout):
        pad.inventory()


def test_lock_afi_is_never_sent(sim: FeigSimulator, pad: FeigPad) -> None:
    with pytest.raises(PadError, match="Lock AFI"):
        pad.write_afi(UID, 0x28)
    assert sim.requests == 0 and not sim.locked_afi


def test_unplugged_reader_reconnects() -> None:
    with FeigSimulator(listen="127.0.0.1:0") as sim:
        sim.place(UID, BOOK)
        pad = FeigPad(sim.url, timeout=0.3, retries=1, reconnect_window=5.0)
        try:
            assert pad.inventory() == [UID]
            sim.unplug()
            replug = threading.Timer(0.4, sim.replug)
            replug.start()
            assert pad.read_afi(UID) == 0x07
            replug.join()
            assert pad.counters.reconnects == 1
        finally:
            pad.close()

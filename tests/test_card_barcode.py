"""Barcode scanners: the pure line/key decoding, then the serial and keyboard-wedge
transports over a real pty, TCP socket (pyserial `socket://`), FIFO and stream."""

from __future__ import annotations

import io
import os
import pty
import socket
import struct
import termios
import time
import tty
from collections.abc import Callable
from typing import Any

import pytest

from selfcheck.drivers.card import open_card_reader
from selfcheck.drivers.card.barcode import (
    BadBarcode,
    BarcodeOptions,
    BarcodeSink,
    KeyDecoder,
    LineSplitter,
    LineTooLong,
    clean_barcode,
)
from selfcheck.drivers.card.barcode_serial import SerialBarcodeOptions, SerialBarcodeReader
from selfcheck.drivers.card.barcode_wedge import (
    INPUT_EVENT,
    EvdevBarcodeReader,
    StreamBarcodeReader,
)
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.card.config import CardConfigError
from selfcheck.drivers.card.stats import CardReaderStats

# --- pure decoding -------------------------------------------------------------------


def test_clean_strips_prefix_suffix_and_spaces():
    opts = BarcodeOptions(prefix="]C0", suffix="#")
    assert clean_barcode(b"]C0 30012345678 #", opts) == "30012345678"
    assert clean_barcode(b"30012345678", opts) == "30012345678"  # prefix is optional
    assert clean_barcode(b"", opts) is None
    assert clean_barcode(b"   ", opts) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"3001\x1b[2J", "non-printable"),
        (b"30\x0012", "non-printable"),
        (b"\xff\xfe12", "not-utf8"),
        (b"9" * 65, "too-long"),
        (b"]C0", "empty"),
    ],
)
def test_clean_rejects_garbled_lines_with_a_reason(raw, reason):
    with pytest.raises(BadBarcode) as err:
        clean_barcode(raw, BarcodeOptions(prefix="]C0"))
    assert err.value.reason == reason


def test_splitter_handles_cr_lf_crlf_and_partial_reads():
    s = LineSplitter(max_len=16)
    assert s.feed(b"A1\rB2\nC3\r\n") == [b"A1", b"B2", b"C3"]
    assert s.feed(b"D") == []
    assert s.feed(b"4") == []
    assert s.feed(b"\r\n\r\n") == [b"D4"]


def test_splitter_drops_overlong_line_without_buffering_it():
    s = LineSplitter(max_len=8)
    assert s.feed(b"0123456789") == []
    assert s.feed(b"abcdef" * 1000) == []
    assert s.feed(b"xyz\r") == [LineTooLong(10 + 6000 + 3)]
    assert s.feed(b"OK1\r") == [b"OK1"]  # the next line is fine again


def test_sink_counts_and_survives_a_failing_handler():
    stats = CardReaderStats()
    got: list[str] = []

    def on_card(card: str) -> None:
        got.append(card)
        if card == "BOOM":
            raise RuntimeError("UI fell over")

    sink = BarcodeSink(BarcodeOptions(max_len=8), stats, on_card)
    for item in [b"A1", b"BOOM", b"\x07x", LineTooLong(99), b"B2"]:
        sink.handle(item)
    assert got == ["A1", "BOOM", "B2"]
    assert stats.cards == 3
    assert stats.rejected == {"non-printable": 1, "too-long": 1}


def keys(text: str) -> list[tuple[int, int, int]]:
    """Key events a US-layout wedge scanner sends for `text` + Enter."""
    codes = {c: i for i, c in enumerate("1234567890", start=2)}
    codes |= {c: i for i, c in enumerate("qwertyuiop", start=16)}
    codes |= {c: i for i, c in enumerate("asdfghjkl", start=30)}
    codes |= {c: i for i, c in enumerate("zxcvbnm", start=44)}
    codes |= {"-": 12}
    events: list[tuple[int, int, int]] = []
    for ch in text:
        shifted = ch.isupper()
        if shifted:
            events.append((1, 42, 1))
        code = codes[ch.lower()]
        events += [(4, 4, code), (1, code, 1), (0, 0, 0), (1, code, 0), (0, 0, 0)]
        if shifted:
            events.append((1, 42, 0))
    return [*events, (1, 28, 1), (1, 28, 0)]


def test_key_decoder_shift_enter_and_unknown_keys():
    d = KeyDecoder()
    typed = b"".join(d.feed(*e) for e in keys("Lib-0042x"))
    assert typed == b"Lib-0042x\r"
    assert d.feed(1, 59, 1) == b"\x00"  # F1: no text, makes the line garbled on purpose
    assert d.feed(1, 2, 2) == b""  # autorepeat ignored


# --- serial transport ----------------------------------------------------------------


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_serial_scanner_on_a_pty_at_its_baud(run_reader):
    master, slave = pty.openpty()
    tty.setraw(master)
    try:
        path = os.ttyname(slave)
        reader = open_card_reader("barcode-serial", path, baudrate=115200, prefix="%",
                                  max_len=20)
        r = run_reader(reader)
        wait_until(lambda: reader.stats.up is True)  # the port open (raw mode) before we write
        os.write(master, b"%30012345678\r\n")
        os.write(master, b"300\x1b99\r")  # garbled: dropped
        os.write(master, b"7" * 50 + b"\n")  # too long: dropped
        os.write(master, b"3001")  # a line split across reads
        time.sleep(0.3)
        os.write(master, b"87654321\n")
        assert r.take(2) == ["30012345678", "300187654321"]
        wait_until(lambda: reader.stats.rejected_total == 2)
        assert reader.stats.rejected == {"non-printable": 1, "too-long": 1}
        port = os.open(path, os.O_RDONLY | os.O_NOCTTY)
        try:
            assert termios.tcgetattr(port)[5] == termios.B115200  # the configured baud
        finally:
            os.close(port)
    finally:
        os.close(master)
        os.close(slave)


def test_serial_scanner_reconnects_after_unplug_and_drops_the_cut_line(run_reader):
    # socket:// stands in for a USB-serial scanner: closing the connection is the unplug.
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    try:
        reader = SerialBarcodeReader(f"socket://127.0.0.1:{port}",
                                     SerialBarcodeOptions(reopen_delay_s=0.05))
        health: list[bool] = []
        reader.stats.on_health = health.append  # the station's card_reader_lost/back
        r = run_reader(reader)
        # pyserial's socket:// open() discards input that arrives while it connects
        # (reset_input_buffer), as a real port's open flushes; so wait before sending.
        conn, _ = server.accept()
        wait_until(lambda: health == [True])
        conn.sendall(b"FIRST1\r\n12345")
        assert r.take(1) == ["FIRST1"]
        time.sleep(0.3)
        conn.close()
        conn, _ = server.accept()  # the reader came back by itself
        wait_until(lambda: health == [True, False, True])
        conn.sendall(b"SECOND2\r")
        assert r.take(1) == ["SECOND2"]  # not "12345SECOND2"
        assert reader.stats.reconnects == 1
        assert health == [True, False, True]
        conn.close()
    finally:
        server.close()


def test_serial_scanner_absent_at_start_is_retried(run_reader, tmp_path):
    path = tmp_path / "ttyMissing"
    reader = SerialBarcodeReader(str(path), SerialBarcodeOptions(reopen_delay_s=0.05))
    health: list[bool] = []
    reader.stats.on_health = health.append
    r = run_reader(reader)
    wait_until(lambda: health == [False])
    time.sleep(0.3)  # a few retries more (after 0.05 s, then twice as long each time)
    assert r.thread.is_alive()
    assert health == [False]  # told once, not at every retry
    master, slave = pty.openpty()
    tty.setraw(master)
    try:
        os.symlink(os.ttyname(slave), path)  # "plugged in"
        wait_until(lambda: reader.stats.reconnects == 1)
        assert health == [False, True]
        time.sleep(0.1)
        os.write(master, b"LATE99\r")
        assert r.take(1) == ["LATE99"]
    finally:
        os.close(master)
        os.close(slave)


# --- keyboard wedge ------------------------------------------------------------------


def test_wedge_lines_from_a_text_stream(run_reader):
    stream = io.StringIO("30012345678\n\n\x1b[A\n 4455 \nLAST")
    reader = StreamBarcodeReader(stream, BarcodeOptions())
    r = run_reader(reader)
    assert r.take(3) == ["30012345678", "4455", "LAST"]
    wait_until(lambda: reader.stats.rejected == {"non-printable": 1})


def test_wedge_lines_from_a_pipe_fd(run_reader):
    rfd, wfd = os.pipe()
    with open(rfd, "rb", buffering=0) as rf:
        reader = StreamBarcodeReader(rf, BarcodeOptions(suffix="!"))
        r = run_reader(reader)
        os.write(wfd, b"AB12!\r\nCD")
        os.write(wfd, b"34\n")
        assert r.take(2) == ["AB12", "CD34"]
        os.close(wfd)
        r.close()


def event_bytes(events: list[tuple[int, int, int]]) -> bytes:
    return b"".join(INPUT_EVENT.pack(0, 0, *e) for e in events)


def test_wedge_evdev_events_from_a_fifo_with_reconnect(run_reader, tmp_path):
    fifo = tmp_path / "event-kbd"
    os.mkfifo(fifo)
    reader = open_card_reader("barcode-wedge", str(fifo), source="evdev",
                              reopen_delay_s=0.05)
    assert isinstance(reader, EvdevBarcodeReader)
    r = run_reader(reader)
    # The writer side of the FIFO is the "device": closing it is an unplug.
    with open(fifo, "wb", buffering=0) as dev:
        data = event_bytes(keys("Card-77")) + event_bytes([(1, 59, 1), (1, 28, 1)])
        dev.write(data[:7])  # events split mid-struct must still decode
        time.sleep(0.1)
        dev.write(data[7:])
        assert r.take(1) == ["Card-77"]
        wait_until(lambda: reader.stats.rejected == {"non-printable": 1})
    wait_until(lambda: reader.stats.reconnects >= 1)  # saw the unplug, opened again
    with open(fifo, "wb", buffering=0) as dev:
        dev.write(event_bytes(keys("again9")))
        assert r.take(1) == ["again9"]


# --- factory and config errors -------------------------------------------------------


def test_factory_kinds(tmp_path):
    assert isinstance(open_card_reader("sim", ""), SimulatedCardReader)
    assert isinstance(open_card_reader("barcode-serial", "loop://"), SerialBarcodeReader)
    f = tmp_path / "lines.txt"
    f.write_bytes(b"X1\n")
    assert isinstance(open_card_reader("barcode-wedge", str(f)), StreamBarcodeReader)
    assert isinstance(open_card_reader("barcode-wedge", "/dev/input/event7"),
                      EvdevBarcodeReader)


@pytest.mark.parametrize(
    ("kind", "opts", "field"),
    [
        ("nfc", {"format": "hexx"}, "format"),
        ("nfc", {"pad": -1}, "pad"),
        ("nfc", {"targets": ["106X"]}, "targets.0"),
        ("nfc", {"baudrate": 9600}, "baudrate"),
        ("barcode-serial", {"baudrate": "fast"}, "baudrate"),
        ("barcode-serial", {"max_len": 0}, "max_len"),
        ("barcode-wedge", {"source": "mouse"}, "source"),
        ("barcode-wedge", {"grab": "maybe"}, "grab"),
        ("sim", {"port": 1}, "port"),
        ("laser", {}, "kind"),
    ],
)
def test_factory_config_errors_name_the_field(kind, opts, field):
    with pytest.raises(CardConfigError) as err:
        open_card_reader(kind, "/dev/input/event0" if kind == "barcode-wedge" else "x", **opts)
    assert err.value.field == field
    assert repr(field) in str(err.value)


def test_serial_loop_url(run_reader):
    # loop:// echoes what is written; the reader opens its own instance, so drive it
    # through an opener that keeps a handle for the test.
    import serial

    ports: list[Any] = []

    def opener(url: str, **kw: Any) -> Any:
        ports.append(serial.serial_for_url(url, **kw))
        return ports[-1]

    reader = SerialBarcodeReader("loop://", SerialBarcodeOptions(baudrate=19200), opener=opener)
    r = run_reader(reader)
    wait_until(lambda: bool(ports))
    ports[0].write(b"LOOP42\r")
    assert r.take(1) == ["LOOP42"]
    assert ports[0].baudrate == 19200


def test_stats_struct_is_plain():
    s = CardReaderStats()
    s.count_reject("too-long")
    s.count_reject("too-long")
    assert s.rejected_total == 2
    assert struct.calcsize("llHHi") == INPUT_EVENT.size

"""Receipt bytes checked against ESC/POS derived by hand, and the real driver over the
network (and a pyserial socket:// URL) against the printer simulator."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from escpos.printer import Dummy
from PIL import Image, ImageFont, ImageOps

from selfcheck.drivers.printer import (
    Paper,
    PaperEvent,
    PrinterError,
    ReceiptPrinter,
    cp1258,
    load_config,
)
from selfcheck.drivers.printer.config import PrinterConfigError
from selfcheck.drivers.printer.document import Receipt, ReceiptLine
from selfcheck.drivers.printer.render import load_fonts, raster, render, render_image
from selfcheck.drivers.printer.simulator import PrinterSimulator
from selfcheck.kiosk.receipt import ReceiptItem, SessionSummary, build_receipt

# -- Vietnamese in CP1258, byte by byte
#
# Windows-1258 (Microsoft's table, also iconv's) has the base letters ê=0xEA, ư=0xFD, ă=0xE3,
# ô=0xF4, đ=0xF0, Đ=0xD0 and the five tones only as combining marks: grave U+0300=0xCC,
# acute U+0301=0xEC, tilde U+0303=0xDE, hook U+0309=0xD2, dot below U+0323=0xF2. A few
# toned letters are precomposed (à=0xE0, á=0xE1, é=0xE9, ...); ã is not (0xE3 is ă).
#   "Truyện" = T r u y | ệ = ê + dot below | n  -> 54 72 75 79 EA F2 6E
#   "Kiều"   = K i | ề = ê + grave | u          -> 4B 69 EA CC 75


@pytest.mark.parametrize(("text", "expected"), [
    ("Truyện Kiều", bytes.fromhex("54 72 75 79 EA F2 6E 20 4B 69 EA CC 75")),
    ("Thư viện", bytes.fromhex("54 68 FD 20 76 69 EA F2 6E")),
    ("Đã trả", bytes.fromhex("D0 61 DE 20 74 72 61 D2")),
    ("mượn", bytes.fromhex("6D FD F5 F2 6E")),  # ư = 0xFD, ợ = ơ (0xF5) + dot below
    ("sách", bytes.fromhex("73 E1 63 68")),  # á is precomposed in CP1258
    ("Nguyễn", bytes.fromhex("4E 67 75 79 EA DE 6E")),
    ("中", b"?"),
])
def test_cp1258_encoding(text: str, expected: bytes) -> None:
    assert cp1258.encode(text) == expected


def test_cp1258_agrees_with_iconv_and_round_trips() -> None:
    text = "Truyện Kiều, Nguyễn Du: Trăm năm trong cõi người ta, chữ tài chữ mệnh khéo là ghét nhau"
    ours = cp1258.encode(text)
    try:
        theirs = subprocess.run(["iconv", "-f", "UTF-8", "-t", "CP1258"], input=text.encode(),
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        theirs = ours  # no iconv with CP1258 here: the round trip below still checks
    assert ours == theirs
    assert unicodedata.normalize("NFC", ours.decode("cp1258")) == text


# -- a whole job, text-cp1258


def cfg_text(**kw: object) -> dict[str, object]:
    return {"vietnamese": "text-cp1258", "codepage": 52, "columns": 16, "cut": "partial", **kw}


SMALL = Receipt(lang="vi", subject="", lines=(
    ReceiptLine("Thư viện", "title"),
    ReceiptLine("Truyện Kiều", "bold"),
    ReceiptLine("", "rule"),
    ReceiptLine("Đã trả"),
))

# Derived from the Epson ESC/POS reference, command by command:
EXPECTED_SMALL = b"".join([
    b"\x1b\x40",                  # ESC @        initialise (resets the code page too)
    b"\x1b\x74\x34",              # ESC t 52     code page 52 = WPC1258 on Epson
    b"\x1b\x61\x01",              # ESC a 1      centre
    b"\x1b\x21\x18",              # ESC ! 0x18   emphasized (bit 3) + double height (bit 4)
    bytes.fromhex("54 68 FD 20 76 69 EA F2 6E") + b"\n",  # "Thư viện" LF
    b"\x1b\x21\x00",              # ESC ! 0      normal
    b"\x1b\x61\x00",              # ESC a 0      left
    b"\x1b\x45\x01",              # ESC E 1      bold on
    bytes.fromhex("54 72 75 79 EA F2 6E 20 4B 69 EA CC 75") + b"\n",  # "Truyện Kiều" LF
    b"\x1b\x45\x00",              # ESC E 0      bold off
    b"-" * 16 + b"\n",            # a rule as wide as the 16 columns
    bytes.fromhex("D0 61 DE 20 74 72 61 D2") + b"\n",  # "Đã trả" LF
    b"\x1b\x64\x05",              # ESC d 5      feed 5 lines up to the cutter
    b"\x1d\x56\x01",              # GS V 1       partial cut
])


def test_small_receipt_bytes_cp1258() -> None:
    assert render(SMALL, load_config(cfg_text())) == EXPECTED_SMALL


def test_other_codepage_number_and_full_cut() -> None:
    job = render(SMALL, load_config(cfg_text(codepage=94, cut="full")))
    assert job[:5] == b"\x1b@\x1bt\x5e"  # ESC t 94: WPC1258 on many Chinese clones
    assert job.endswith(b"\x1bd\x05\x1dV\x00")  # GS V 0: full cut


SUMMARY = SessionSummary(
    "Thư viện tỉnh Thừa Thiên Huế", "hue-01", dt.datetime(2025, 3, 5, 14, 7),
    "Nguyễn Thị Ánh 9704000012345678",
    (ReceiptItem("30001", "Truyện Kiều", "borrowed", due=dt.date(2025, 3, 19)),
     ReceiptItem("30002", "Số đỏ", "refused", reason="on_loan_to_other")))


def decode_text_job(job: bytes) -> list[str]:
    """The printed lines of a text-cp1258 job: commands removed, CP1258 decoded to NFC."""
    for cmd in (b"\x1b@", b"\x1bt4", b"\x1ba\x01", b"\x1ba\x00", b"\x1b!\x18", b"\x1b!\x00",
                b"\x1bE\x01", b"\x1bE\x00", b"\x1bd\x05", b"\x1dV\x01"):
        job = job.replace(cmd, b"")
    return unicodedata.normalize("NFC", job.decode("cp1258")).split("\n")[:-1]


def test_full_receipt_text_matches_its_content() -> None:
    receipt = build_receipt(SUMMARY, "vi")
    job = render(receipt, load_config(cfg_text(columns=42)))
    printed = decode_text_job(job)
    assert printed == [line.strip() for line in receipt.as_text(42).splitlines()]
    assert "Đã mượn, hạn trả 19/03/2025" in printed
    assert b"9704000012345678" not in job


# -- image mode


def test_raster_bytes_by_hand() -> None:
    # 16 x 2 dots: row 0 has dot 0 and dot 15 black, row 1 is all black.
    img = Image.new("1", (16, 2), 1)
    img.putpixel((0, 0), 0)
    img.putpixel((15, 0), 0)
    for x in range(16):
        img.putpixel((x, 1), 0)
    # GS v 0 m=0, xL xH = 2 bytes a row, yL yH = 2 rows; MSB = leftmost dot, 1 = black.
    assert raster(img) == b"\x1dv0\x00\x02\x00\x02\x00" + bytes([0x80, 0x01, 0xFF, 0xFF])


def fonts_or_skip() -> None:
    try:
        load_fonts(None, 24)
    except PrinterConfigError as exc:
        pytest.skip(str(exc))


def parse_raster_job(job: bytes) -> Image.Image:
    """Reassembles the bands of GS v 0 in an image job into one 1-bit image (1 = black)."""
    assert job.startswith(b"\x1b@\x1ba\x00")
    pos, rows, width = 5, [], None
    while job[pos:pos + 3] == b"\x1dv0":
        assert job[pos + 3] == 0
        x = int.from_bytes(job[pos + 4:pos + 6], "little")
        y = int.from_bytes(job[pos + 6:pos + 8], "little")
        width = width or x
        assert x == width
        rows.append(job[pos + 8:pos + 8 + x * y])
        pos += 8 + x * y
    assert job[pos:] == b"\x1bd\x05\x1dV\x01"
    data = b"".join(rows)
    assert width is not None
    return Image.frombytes("1", (width * 8, len(data) // width), data)


def test_image_job_is_the_rendered_receipt() -> None:
    fonts_or_skip()
    cfg = load_config({"vietnamese": "image", "paper_width_px": 512})
    receipt = build_receipt(SUMMARY, "vi")
    job = render(receipt, cfg)
    got = parse_raster_job(job)  # bits as sent: 1 = black
    want = render_image(receipt, cfg)  # PIL "1": 0 = black
    assert got.size == want.size == (512, want.height)
    want_bits = ImageOps.invert(want.convert("L")).convert("1").tobytes()  # now 1 = black
    assert got.tobytes() == want_bits
    assert sum(bin(b).count("1") for b in want_bits) > 1000  # not a blank page


def test_image_job_changes_with_the_diacritics() -> None:
    # "Truyện" and "Truyen" must print differently: the marks are drawn, not dropped.
    fonts_or_skip()
    cfg = load_config({"vietnamese": "image"})
    a = Receipt("vi", "", (ReceiptLine("Truyện Kiều"),))
    b = Receipt("vi", "", (ReceiptLine("Truyen Kieu"),))
    assert render(a, cfg) != render(b, cfg)


def test_font_without_vietnamese_is_refused(tmp_path: Path) -> None:
    # Pillow's built-in Aileron has Latin letters but no Vietnamese ones: it would print boxes.
    font = ImageFont.load_default(24)
    assert isinstance(font, ImageFont.FreeTypeFont) and isinstance(font.path, io.BytesIO)
    (tmp_path / "aileron.ttf").write_bytes(font.path.getvalue())
    with pytest.raises(PrinterConfigError, match=r"printer\.font: .* has no Vietnamese"):
        load_fonts(str(tmp_path / "aileron.ttf"), 24)
    with pytest.raises(PrinterConfigError, match=r"printer\.font: cannot load"):
        load_fonts(str(tmp_path / "missing.ttf"), 24)


# -- the driver against the simulator


@pytest.fixture
def sim() -> Iterator[PrinterSimulator]:
    with PrinterSimulator() as s:
        yield s


def network_printer(sim: PrinterSimulator, events: list[PaperEvent] | None = None,
                    **kw: object) -> ReceiptPrinter:
    cfg = load_config({"transport": "network", "url": f"127.0.0.1:{sim.port}",
                       "status_timeout_s": 1.0, **cfg_text(), **kw})
    return ReceiptPrinter(cfg, on_paper=events.append if events is not None else None)


def test_network_print_bytes_reach_the_printer(sim: PrinterSimulator) -> None:
    printer = network_printer(sim)
    assert printer.print_receipt(SMALL) == Paper.OK
    printer.close()
    wait_for(lambda: len(sim.printed) >= len(EXPECTED_SMALL))
    assert sim.take_printed() == EXPECTED_SMALL
    assert sim.queries == [b"\x10\x04\x04", b"\x10\x04\x04"]  # before and after the job


def test_paper_low_and_out_are_reported(sim: PrinterSimulator) -> None:
    events: list[PaperEvent] = []
    printer = network_printer(sim, events)
    assert printer.paper() == Paper.OK
    sim.paper = Paper.LOW
    assert printer.print_receipt(SMALL) == Paper.LOW  # low still prints
    sim.paper = Paper.OUT
    assert printer.paper() == Paper.OUT
    with pytest.raises(PrinterError, match="paper out"):
        printer.print_receipt(SMALL)
    sim.paper = Paper.OK
    assert printer.paper() == Paper.OK
    printer.close()
    assert [e.current for e in events] == [Paper.OK, Paper.LOW, Paper.OUT, Paper.OK]


def test_gs_r_status(sim: PrinterSimulator) -> None:
    printer = network_printer(sim, status="gs-r")
    sim.paper = Paper.LOW
    assert printer.paper() == Paper.LOW
    sim.paper = Paper.OUT
    assert printer.paper() == Paper.OUT
    printer.close()
    assert set(sim.queries) == {b"\x1dr\x01"}


def test_silent_printer_gives_unknown(sim: PrinterSimulator) -> None:
    sim.answer_status = False
    printer = network_printer(sim, status_timeout_s=0.2)
    assert printer.paper() == Paper.UNKNOWN
    printer.print_receipt(SMALL)  # unknown paper does not stop printing
    printer.close()


def test_image_job_over_the_network(sim: PrinterSimulator) -> None:
    fonts_or_skip()
    printer = network_printer(sim, vietnamese="image")
    printer.print_receipt(build_receipt(SUMMARY, "en"))
    printer.close()
    job = render(build_receipt(SUMMARY, "en"), printer.cfg)
    wait_for(lambda: len(sim.printed) >= len(job))
    assert sim.take_printed() == job
    assert len(sim.queries) == 2  # raster data did not fake a status query


def test_serial_url_transport(sim: PrinterSimulator) -> None:
    # pyserial's socket:// URL: the same driver path as /dev/ttyUSB0, with status reads.
    events: list[PaperEvent] = []
    cfg = load_config({"transport": "serial", "url": f"socket://127.0.0.1:{sim.port}",
                       **cfg_text()})
    printer = ReceiptPrinter(cfg, on_paper=events.append)
    sim.paper = Paper.LOW
    assert printer.print_receipt(SMALL) == Paper.LOW
    printer.close()
    wait_for(lambda: len(sim.printed) >= len(EXPECTED_SMALL))
    assert sim.take_printed() == EXPECTED_SMALL
    assert [e.current for e in events] == [Paper.LOW]


def test_dummy_transport_collects_the_job() -> None:
    cfg = load_config(cfg_text())
    dummy = Dummy()
    printer = ReceiptPrinter(cfg, escpos=dummy)
    assert printer.print_receipt(SMALL) == Paper.UNKNOWN  # a dummy cannot read
    assert dummy.output == EXPECTED_SMALL


def test_unreachable_printer_raises_printer_error() -> None:
    with PrinterSimulator() as s:
        port = s.port
    printer = ReceiptPrinter(load_config({"transport": "network", "url": f"127.0.0.1:{port}",
                                          "status": "none", "timeout_s": 1}))
    with pytest.raises(PrinterError):
        printer.print_receipt(SMALL)


@pytest.mark.parametrize(("raw", "key"), [
    ({"transport": "network", "url": "printer:abc"}, "printer.url"),
    ({"transport": "usb", "url": "epson"}, "printer.url"),
    ({"transport": "serial"}, "printer.url"),
    ({"transport": "parallel"}, "printer.transport"),
    ({"vietnamese": "utf8"}, "printer.vietnamese"),
    ({"codepage": 256}, "printer.codepage"),
    ({"paper_width_px": 500}, "printer.paper_width_px"),
    ({"profile": "no-such-printer"}, "printer.profile"),
    ({"papr": "ok"}, "printer.papr"),
])
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(PrinterConfigError, match=key.replace(".", r"\.")):
        load_config(raw)


def wait_for(cond: object, timeout: float = 3.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("timed out")

"""Every decoder that takes bytes from outside, with valid seed inputs and the one error type
it documents. A fuzz run passes when no input raises anything else (or takes too long)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]  # the documented error type(s)
    seeds: tuple[bytes, ...]
    tokens: tuple[bytes, ...] = ()  # pieces the mutator splices in (digits, brackets, ...)
    max_len: int = 24 * 1024  # longest input: above what the decoder accepts or buffers


# -- tags (ISO 28560-3, -2, and the automatic choice with its fallbacks)
def _tag_targets() -> list[Target]:
    from selfcheck.drivers.tags import decode_tag, iso28560_2, iso28560_3
    from selfcheck.drivers.tags.model import TagDecodeError

    seeds = (iso28560_3.encode("39000001"), iso28560_3.encode("3900000000000000001234"),
             iso28560_3.encode("39000002", owner_isil="VN-HN0001", title="Truyện Kiều"),
             iso28560_2.encode("39000003", owner_isil="VN-HN0001", title="Số đỏ",
                               parts_in_item=2, part_number=1, shelf_location="A-12"),
             iso28560_2.encode("1234567890"), b"BARCODE1\0")
    tokens = (b"\x00", b"\xff", b"\x06", b"\x11", b"\x21", "²".encode(), "١".encode(),
              b"\xc0\x80", b"VN-")
    return [
        Target("tag-28560-3", iso28560_3.decode, (TagDecodeError,), seeds, tokens),
        Target("tag-28560-2", iso28560_2.decode, (TagDecodeError,), seeds, tokens),
        Target("tag-auto", decode_tag, (TagDecodeError,), seeds, tokens),
    ]


# -- book pad frames: a stream in odd chunks through the resynchronising decoder, then the
# response parsers on every frame it yields
def _chunks(data: bytes) -> Iterable[bytes]:
    step = (data[0] % 7 + 1) if data else 1
    return (data[i:i + step] for i in range(0, len(data), step))


def _m810(data: bytes) -> None:
    from selfcheck.drivers.pad import m810_codec as c

    decoder = c.Decoder()
    for chunk in _chunks(data):
        for frame in decoder.feed(chunk):
            for parse in (c.parse_inventory, c.parse_write, c.parse_get_afi, c.parse_write_afi,
                          c.parse_version, lambda f: c.parse_read(f, 0, 4)):
                try:
                    parse(frame)
                except c.ProtocolError:
                    pass


def _feig(data: bytes) -> None:
    from selfcheck.drivers.pad import feig_codec as c

    decoder = c.Decoder()
    for chunk in _chunks(data):
        for frame in decoder.feed(chunk):
            for parse in (c.parse_inventory, c.parse_system_info, lambda f: c.parse_read(f, 4),
                          c.check_status):
                try:
                    parse(frame)
                except c.ProtocolError:
                    pass


def _ascii(data: bytes) -> None:
    from selfcheck.drivers.pad.ascii_codec import LineDecoder

    decoder = LineDecoder()
    for chunk in _chunks(data):
        decoder.feed(chunk)


def _pad_targets() -> list[Target]:
    from selfcheck.drivers.pad import feig_codec as f
    from selfcheck.drivers.pad import m810_codec as m
    from selfcheck.drivers.pad.base import PadError

    uid = bytes.fromhex("E004010000001234")
    m_seeds = tuple(fr.encode() for fr in (
        m.inventory_response([uid, uid[::-1]]), m.read_response(uid, 0, [b"\x11\x01\x01\x00"] * 4),
        m.ok_response(0x09, uid), m.fail_response(0x0A, uid), m.ok_response(0x11, b"\x01\x02")))
    f_seeds = tuple(fr.encode() for fr in (
        f.response(0, 0xB0, 0, b"\x01\x00\x00" + uid), f.response(0, 0xB0, 1),
        f.response(0, 0xB0, 0, b"\x04\x04" + b"\x00\x11\x01\x01\x00" * 4),
        f.response(0, 0xB0, 0x94, b"\x01\x00\x00" + uid)))
    tokens = (b"\xd6", b"\xd6\x00", b"\xd6\x03\xff", b"\x00\x00", b"\xff\xff", b"\r\n")
    a_seeds = (b"E004010000001234\r\n", b"UID: E0:04:01:00:00:00:12:34\r\n",
               b"341200000001 04E0\n")
    return [
        # a little over the scanners' 4 KiB buffer: a serial read is far shorter
        Target("pad-3m810", _m810, (PadError,), tuple(a + b for a in m_seeds for b in m_seeds),
               tokens, 6 * 1024),
        Target("pad-feig", _feig, (PadError,), tuple(a + b for a in f_seeds for b in f_seeds),
               tokens, 6 * 1024),
        Target("pad-ascii", _ascii, (PadError,), a_seeds, (b"\r", b"\n", b":", b"E0"),
               6 * 1024),
    ]


# -- SIP2 replies: the frame codec, then the reply parser its command has
def _sip2(data: bytes) -> None:
    from selfcheck.central.backends.sip2 import codec
    from selfcheck.central.backends.sip2 import messages as sm

    parsers: dict[str, Callable[[codec.Message], object]] = {
        "12": sm.circulation, "10": sm.circulation, "30": sm.circulation, "24": sm.patron,
        "64": sm.patron, "18": sm.item, "66": sm.renew_all_result, "36": sm.end_session_result,
        "38": sm.fee_paid_result, "94": sm.login_ok, "98": sm.acs_online}
    profile = _SIP2_PROFILES[data[0] % 2] if data else _SIP2_PROFILES[0]
    msg = codec.decode(data, profile)
    parse = parsers.get(msg.command)
    if parse is not None:
        parse(msg)


_SIP2_PROFILES: list[Any] = []  # codec.Profile, imported with the target


def _sip2_target() -> Target:
    from selfcheck.central.backends.sip2 import codec

    _SIP2_PROFILES[:] = [codec.Profile("utf-8"), codec.Profile("ascii")]
    when = "20260101    120000"
    replies = [
        ("12", "1YNY" + when, [("AO", "inst"), ("AA", "DG0001"), ("AB", "39000001"),
                               ("AJ", "Truyện Kiều"), ("AH", "20260201    235900")]),
        ("10", "1YNN" + when, [("AO", "inst"), ("AB", "39000001"), ("AQ", "main"),
                               ("CV", "01"), ("AF", "Hold")]),
        ("30", "1YNY" + when, [("AO", "inst"), ("AB", "39000001"), ("AH", "2026-02-01")]),
        ("24", " " * 14 + "001" + when, [("AO", "inst"), ("AA", "DG0001"), ("AE", "Ngọc"),
                                         ("BL", "Y")]),
        ("64", " " * 14 + "001" + when + "0001" + "0002" + "0000" + "0000" + "0000" + "0000",
         [("AO", "inst"), ("AA", "DG0001"), ("AE", "Ngọc"), ("CB", "0010"), ("AU", "39000001"),
          ("BL", "Y"), ("CQ", "Y")]),
        ("18", "030001" + when, [("AB", "39000001"), ("AJ", "Số đỏ"), ("CF", "2"),
                                 ("CM", "20260110    000000")]),
        ("66", "1" + "0001" + "0000" + when, [("AO", "inst"), ("BM", "39000001")]),
        ("36", "Y" + when, [("AO", "inst"), ("AA", "DG0001")]),
        ("38", "Y" + when, [("AO", "inst"), ("AA", "DG0001")]),
        ("94", "1", []),
        ("98", "YYYNYN" + "060" + "003" + "20260101    120000" + "2.00", [("AO", "inst")]),
    ]
    seeds = []
    for i, (command, fixed, fields) in enumerate(replies):
        msg = codec.Message(command, fixed, tuple(fields))
        seeds.append(codec.encode(msg, codec.Profile("utf-8"), sequence=i % 10))
        seeds.append(codec.encode(msg, codec.Profile("ascii", error_detection=False)))
    tokens = ("²".encode(), "１".encode(), "٣".encode(), b"AZ", b"AY", b"|", b"-9F9", b" ",
              b"AH", b"CF", b"\r")
    return Target("sip2-reply", _sip2, (codec.Sip2Error,), tuple(seeds), tokens)


# -- MQTT messages: every model, the topic's kind for transactions, command arguments
def _mqtt(data: bytes) -> None:
    from selfcheck.mqtt import commands, messages, registry

    msg = registry.decode(data)
    if isinstance(msg, messages.TxBase):  # again, as the bridge does with the topic's kind
        try:
            messages.decode_tx(data, ("loan", "return", "renew", "other")[len(data) % 4])
        except messages.MessageError:
            pass
    if isinstance(msg, commands.CommandReq):
        for name in commands.ARGS:
            try:
                commands.parse_args(name, msg.args)
            except messages.MessageError:
                pass


def _mqtt_target() -> Target:
    from selfcheck.mqtt import commands, messages, telemetry

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    mid = "019b7a2c-1d2e-7f00-8a00-0123456789ab"
    base = dict(msg_id=mid, seq=7, site="demo-lib", station="st-1", at=now, item_id="39000001")
    models: list[messages.Message] = [
        messages.TxLoan(**base, patron_ref="p-1", deadline=now),
        messages.TxReturn(**base),
        messages.TxRenew(**base, patron_ref="p-1"),
        messages.AckTx(msg_id=mid, ok=False, reason="late", item_id="39000001",
                       due=now.date(), screen_message=["a", "b"]),
        messages.Status(online=True, session=3, version="1", mode="selfcheck"),
        messages.PatronCheckReq(card_id="DG0001", pin="1234"),
        messages.OfflineListReq(page=2),
        messages.OfflineListRes(site="demo-lib", salt="0" * 32, generated_at=now,
                                valid_until=now, page=1, pages=1, entries=[
                                    messages.OfflineEntry(card_hash="a" * 32, patron_ref="p-1",
                                                          display_name="Ngọc",
                                                          max_offline_loans=2)]),
        messages.AccountRes(ok=True, loans=[messages.AccountLoan(item_id="1", due=now.date())],
                            holds_waiting=[messages.HoldWaiting(title="t", position=1)]),
        commands.CommandReq(cmd_id="c-1", issued_at=now, expires_at=now,
                            args={"message_vi": "Tạm ngừng", "policy": "returns"}),
        telemetry.Event(kind="paper_low", at=now, detail="x"),
        telemetry.ConfigDesired(version=2, settings=telemetry.ConfigSettings(lang="en")),
        telemetry.Health(at=now, uptime_s=1.5, reader={"polls": 3}, tx={"loan.ok": 1}),
    ]
    tokens = (b"[", b"{", b"]", b"}", b"[[[[[[[[[[[[[[[[[[[[", b"1e999", b"NaN",
              b"-9223372036854775809", b"18446744073709551616", b"\"2026-01-01T00:00:00\"",
              b"\"\\u0000\"", b"null", b"\"tx.loan/1\"", b"\"cmd.req/1\"", b"\xff", b"0")
    return Target("mqtt", _mqtt, (messages.MessageError,),
                  tuple(messages.encode(m) for m in models), tokens)


# -- barcode lines from a serial or wedge scanner
def _barcode(data: bytes) -> None:
    from selfcheck.drivers.card.barcode import (
        BarcodeOptions,
        LineSplitter,
        LineTooLong,
        clean_barcode,
    )

    opts = BarcodeOptions(prefix="]C1", max_len=64)
    splitter = LineSplitter(opts.max_len)
    for chunk in _chunks(data):
        for line in splitter.feed(chunk):
            if not isinstance(line, LineTooLong):
                clean_barcode(line, opts)


def _barcode_target() -> Target:
    from selfcheck.drivers.card.barcode import BadBarcode

    return Target("barcode", _barcode, (BadBarcode,),
                  (b"DG0001\r\n", b"]C1DG0002\r\n\r\n", b"  39000001 \n", b"\x00\r"),
                  (b"\r", b"\n", b"]C1", "²".encode(), b"\x1b", b"\xe2\x80\x8b"), 6 * 1024)


# -- files read from disk (the station config, catalogue imports): written to a RAM folder
def _scratch(name: str) -> Path:
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="selfcheck-fuzz-", dir=shm if shm.is_dir() else None))
    return folder / name


class _ConfigFile:
    def __init__(self) -> None:
        self.path = _scratch("station.toml")

    def __call__(self, data: bytes) -> None:
        from selfcheck.kiosk.settings import load_settings

        self.path.write_bytes(data)
        load_settings(self.path)


# The shapes that once went wrong: nesting deeper than tomllib's recursion, a journal in
# /proc, a space in the broker's host, card reader options the reader does not have.
CONFIG_SEEDS = (
    b'site = "demo-lib"\nstation = "st-1"\nbroker = "127.0.0.1:1883"\n',
    b'pad = "3m810"\npad_url = "socket://127.0.0.1:9000"\npad_options = {block_order = '
    b'"msb"}\nafi_on_loan = 194\ninactivity_s = 30.0\nstaff_cards = ["S1", "S2"]\n',
    b'tls = true\nca_file = "/nonexistent/ca.pem"\nlang = "en"\nbroker = "h:8883"\n',
    b'lang = "en"\nx = ' + b"[" * 600 + b"]" * 600 + b"\n",
    b'a = ' + b"{b = " * 600 + b"1" + b"}" * 600 + b"\n",
    b'journal = "/proc/self/station.db"\n',
    b'broker = "broker lan:8883"\n',
    b'card_options = {format = "nonsense", x = [1, {y = 2}]}\n',
    b'card_reader = "barcode-serial"\ncard_url = "/dev/null"\ncard_options = {baudrate = '
    b'"fast"}\n',
    b'card_reader = "nfc"\ncard_url = "usb"\ncard_options = {format = "decimal-reversed", '
    b'targets = ["106A"]}\n',
)
_CONFIG_TOKENS = (b"[", b"{", b"[[[[[[[[[[", b"\"", b"'''", b"99999", "１８８３".encode(), b"= ",
                  b"\n", b"0", b"-1", b"nan", b"inf", b"a" * 300, b"/proc/", b"/sys/", b" ",
                  b"\\u0000", b"#", b"card_options = {")


def _config_targets() -> list[Target]:
    # The station command's own way in (its language read first, then these settings) is a
    # layer above the lab: tests/test_fuzz.py runs these seeds through it.
    return [
        Target("station-config", _ConfigFile(), (ValidationError, ValueError), CONFIG_SEEDS,
               _CONFIG_TOKENS),
    ]


# -- catalogue imports: CSV (rules, patrons, items) and binary MARC21
class _CsvImport:
    def __init__(self) -> None:
        self.path = _scratch("import.csv")

    def __call__(self, data: bytes) -> None:
        from selfcheck.central.importer import (
            CatalogueError,
            parse_items_csv,
            parse_patrons,
            parse_rules,
        )

        self.path.write_bytes(data)
        refused: list[CatalogueError] = []
        # All three: the header decides which one reads rows, the others refuse the columns;
        # refused when none of them could read the file.
        for parse in (parse_rules, parse_patrons, parse_items_csv):
            try:
                parsed = parse(self.path)
            except CatalogueError as exc:
                refused.append(exc)
                continue
            for problem in parsed.problems:
                str(problem)
        if len(refused) == 3:
            raise refused[0]


class _MarcImport:
    def __init__(self) -> None:
        self.path = _scratch("import.mrc")

    def __call__(self, data: bytes) -> None:
        from selfcheck.central.importer import parse_marc

        self.path.write_bytes(data)
        # pymarc warns and prints about each odd MARC-8 byte: noise in the fuzz table
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            parsed = parse_marc(self.path)
        for problem in parsed.problems:
            str(problem)


_CSV_SEEDS = (
    b"category,loan_days,max_loans\nADULT,21,5\nCHILD,14,3\n",
    "cardnumber;surname;firstname;categorycode;dateexpiry\nDG1001;Nguy\u1ec5n;V\u0103n An;ADULT;"
    "2027-01-31\n".encode(),
    b"card_id,name,category,expires,pin\nDG1,An,ADULT,31/12/2027,1234\n",
    "barcode\ttitle\tauthor\tnotforloan\tlocation\n39100001\tT\u1eaft \u0111\u00e8n\tNg\u00f4 "
    "T\u1ea5t T\u1ed1\t0\tA\n".encode(),
    # the shapes that once went wrong: a 200,000-character cell, 400 quotes on a line, a NUL
    b"barcode,title\n39100001," + b"x" * 200_000 + b"\n",
    b"category,loan_days,max_loans\n" + b'"' * 400 + b",21,5\nADULT,21,5\n",
    b"cardnumber,surname,firstname,categorycode\nDG1,Nguy\x00en,An,ADULT\n",
    # a quote left open: the next line becomes part of the title
    'barcode,title\n39100001,"T\u1eaft \u0111\u00e8n\n39100002,S\u1ed1 \u0111\u1ecf\n'.encode(),
)


def _marc_seeds() -> tuple[bytes, ...]:
    from pymarc import Field, Indicators, Record, Subfield

    def record(title: str, barcode: str, leader9: str = "a") -> bytes:
        r = Record(force_utf8=leader9 == "a")
        author = "Nguy\u1ec5n Du"
        r.add_field(Field("245", Indicators("1", "0"), [Subfield("a", title + " /"),
                                                        Subfield("c", author)]))
        r.add_field(Field("100", Indicators("1", " "), [Subfield("a", author + ",")]))
        r.add_field(Field("952", Indicators(" ", " "), [
            Subfield("p", barcode), Subfield("o", "895.9"), Subfield("7", "0"),
            Subfield("c", "A")]))
        data = bytearray(r.as_marc())
        data[9:10] = leader9.encode()
        return bytes(data)

    good = record("Truy\u1ec7n Ki\u1ec1u", "39100001")
    ascii_ = record("So do", "39100002", " ")
    broken = []
    for at, value in ((24, b"24X0abcd9999"), (27, b"9999"), (31, b"99999"), (12, b"00010"),
                      (12, b"99999")):
        b = bytearray(good)
        b[at:at + len(value)] = value
        broken.append(bytes(b))
    unterminated = bytearray(good)
    unterminated[unterminated.index(b"\x1e")] = ord("0")
    return (good, ascii_, good + ascii_, *broken, bytes(unterminated), good[:-7])


def _import_targets() -> list[Target]:
    from selfcheck.central.importer import CatalogueError

    csv_tokens = (b'"', b'""', b",", b";", b"\t", b"\r\n", b"\n", b"\x00", b"\xef\xbb\xbf",
                  b"0000-00-00", b"31/02/2026", b"-1", "\u1ec5".encode(), "e\u0303".encode())
    marc_tokens = (b"\x1e", b"\x1f", b"\x1d", b"00000", b"99999", b"952", b"245", b"\x1fp",
                   b"\xe1", b"\xff")
    return [
        Target("import-csv", _CsvImport(), (CatalogueError,), _CSV_SEEDS, csv_tokens,
               256 * 1024),
        Target("import-marc", _MarcImport(), (CatalogueError,), _marc_seeds(), marc_tokens),
    ]


def all_targets() -> list[Target]:
    return [*_tag_targets(), *_pad_targets(), _sip2_target(), _mqtt_target(),
            _barcode_target(), *_config_targets(), *_import_targets()]

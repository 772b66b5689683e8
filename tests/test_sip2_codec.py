"""The SIP2 codec and session without I/O: frames, AY/AZ, resends, charsets, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.backends.sip2.codec import (
    Framer,
    Message,
    Profile,
    Sip2ChecksumError,
    Sip2ProtocolError,
    checksum,
    decode,
    encode,
    fold,
)
from selfcheck.central.backends.sip2.session import Reply, Session, Write

UTF8, ASCII = Profile("utf-8"), Profile("ascii")
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def test_checksum_is_twos_complement_of_the_byte_sum() -> None:
    # The worked example of the 3M spec: "09N19980821 085721..." style frames sum to 0 with AZ.
    frame = encode(m.sc_status(), UTF8, 3)
    assert frame.endswith(b"\r") and b"AY3AZ" in frame
    body = frame[:-1]
    assert (sum(body[:-4]) + int(body[-4:], 16)) & 0xFFFF == 0
    assert checksum(b"AZ") == f"{(-(ord('A') + ord('Z'))) & 0xFFFF:04X}".encode()


def test_round_trip_keeps_vietnamese_in_utf8() -> None:
    msg = Message("12", "1NNY" + m.sip_date(NOW), (("AB", "39000001"), ("AJ", "Truyện Kiều"),
                                                   ("AF", "Mượn thành công"), ("AF", "Hạn 6/12")))
    back = decode(encode(msg, UTF8, 5), UTF8)
    assert back.get("AJ") == "Truyện Kiều" and back.all("AF") == ["Mượn thành công", "Hạn 6/12"]
    assert back.sequence == 5


def test_ascii_profile_folds_diacritics_and_reads_cp850() -> None:
    assert fold("Đoàn Giỏi — Đất rừng phương Nam") == "Doan Gioi ? Dat rung phuong Nam"
    assert fold("Nguyễn Văn An") == "Nguyen Van An"
    frame = encode(m.checkin("tv", "39000001", "Thư viện tỉnh", NOW), ASCII, 1)
    assert b"APThu vien tinh|" in frame
    assert decode(b"18030201" + m.sip_date(NOW).encode() + b"AB1|AJCaf\x82|\r",
                  ASCII).get("AJ") == "Café"


def test_bad_checksum_and_out_of_spec_frames_are_named() -> None:
    good = encode(m.sc_status(), UTF8, 0)
    bad = good[:3] + bytes([good[3] ^ 1]) + good[4:]
    with pytest.raises(Sip2ChecksumError):
        decode(bad, UTF8)
    with pytest.raises(Sip2ProtocolError) as err:
        decode(b"XX123\r", UTF8)
    assert err.value.field == "command"
    with pytest.raises(Sip2ProtocolError) as err:
        decode(b"941AJ\xff\xfe|\r", UTF8)
    assert err.value.field == "AJ"
    with pytest.raises(Sip2ProtocolError) as err:
        decode(b"12\r", UTF8)
    assert err.value.field == "fixed"
    with pytest.raises(Sip2ProtocolError) as err:
        encode(Message("17", m.sip_date(NOW), (("AB", "a|b"),)), UTF8, 1)
    assert err.value.field == "AB"


def test_reply_fields_circulation_mapping_with_alert_type() -> None:
    frame = (b"101YNY" + m.sip_date(NOW).encode() + b"AOtv|AB39000002|AQmain|AJS\xe1\xbb\x91 "
             b"\xc4\x91\xe1\xbb\x8f|CLB2|CV01|AFGi\xe1\xbb\xaf cho b\xe1\xba\xa1n \xc4\x91\xe1"
             b"\xbb\x8dc kh\xc3\xa1c|AGPhi\xe1\xba\xbfu tr\xe1\xba\xa3|\r")
    r = m.circulation(decode(frame, UTF8))
    assert (r.ok, r.security, r.alert, r.alert_type, r.sort_bin) == (True, True, True, "01",
                                                                      "B2")
    assert r.title == "Số đỏ" and r.text.screen == ("Giữ cho bạn đọc khác",)
    assert r.text.print_lines == ("Phiếu trả",)
    with pytest.raises(Sip2ProtocolError) as err:
        m.circulation(decode(b"12X" + b"N" * 3 + m.sip_date(NOW).encode() + b"AB1|\r", UTF8))
    assert err.value.field == "ok"


def test_due_dates_in_the_formats_seen() -> None:
    assert m.parse_due("20261206    235900") == dt.date(2026, 12, 6)
    assert m.parse_due("2026-12-06 23:59") == dt.date(2026, 12, 6)
    assert m.parse_due("soon") is None and m.parse_due("") is None


def test_framer_takes_cr_and_cr_lf_and_split_reads() -> None:
    f = Framer()
    assert f.feed(b"941AY0AZ") == []
    assert f.feed(b"FDF4\r\n9") == [b"941AY0AZFDF4\r"]
    assert f.feed(b"41\r") == [b"941\r"]
    with pytest.raises(Sip2ProtocolError):
        f.feed(b"x" * 9000)


def _reply(cmd: str, fixed: str, seq: int, *fields: tuple[str, str]) -> bytes:
    return encode(Message(cmd, fixed, tuple(fields)), UTF8, seq)


def test_session_resends_on_96_and_asks_97_on_a_garbled_reply() -> None:
    s = Session(UTF8)
    sent = s.send(m.login("sc", "pw"))
    assert s.receive(encode(Message("96"), UTF8)) == [Write(sent)]  # the ACS got it garbled
    garbled = bytearray(_reply("94", "1", 0))
    garbled[2] ^= 1
    (ask,) = s.receive(bytes(garbled))
    assert isinstance(ask, Write) and ask.data.startswith(b"97AZ")
    (ok,) = s.receive(_reply("94", "1", 0) + b"\n")
    assert isinstance(ok, Reply) and m.login_ok(ok.message)
    s.send(m.sc_status())  # sequence 1 now
    with pytest.raises(Sip2ProtocolError) as err:
        s.receive(_reply("98", "Y" * 6 + "030003" + m.sip_date(NOW) + "2.00", 7))
    assert err.value.field == "AY"


def test_session_gives_up_after_repeated_garbling() -> None:
    s = Session(UTF8)
    s.send(m.sc_status())
    for _ in range(3):
        s.receive(encode(Message("96"), UTF8))
    with pytest.raises(Sip2ProtocolError):
        s.receive(encode(Message("96"), UTF8))


@pytest.mark.parametrize(("url", "field"), [
    ("http://h:1?institution=x", "scheme"),
    ("sip2://h?institution=x", "HOST:PORT"),
    ("sip2://h:1", "institution"),
    ("sip2://h:1?institution=x&encoding=utf-16", "encoding"),
    ("sip2://h:1?institution=x&encoding=klingon", "encoding"),
    ("sip2://u:pa#ss@h:1?institution=x", "%23"),
    ("sip2://u:pa/ss@h:1?institution=x", "percent-encoded"),
    ("sip2://h:1?institution=x&language=vi", "language"),
    ("sip2://h:1?institution=x&timeout=abc", "timeout"),
    ("sip2://h:1?institution=x&colour=red", "colour"),
])
def test_config_url_errors_name_the_part(url: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Sip2Config.parse(url)


def test_config_url() -> None:
    cfg = Sip2Config.parse("sip2://sc:p%40ss@koha.local:6001?institution=VN-HN01&location=tang-1"
                           "&encoding=ascii&timeout=2.5&pool=2")
    assert (cfg.user, cfg.password, cfg.host, cfg.port) == ("sc", "p@ss", "koha.local", 6001)
    assert (cfg.institution, cfg.location, cfg.profile.name) == ("VN-HN01", "tang-1", "ascii")
    assert (cfg.timeout_s, cfg.pool_size) == (2.5, 2)
    assert "p@ss" not in str(cfg)

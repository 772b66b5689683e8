"""SIP2 renew all (65/66), end session (35/36) and fee paid (37/38) against the real pysip2
ACS server (lab/standins/sip2_server.py): pysip2 parses and validates our requests with its own
codec (fixed-field widths, digit and currency patterns, AY/AZ), and we read its replies with
ours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.client import Sip2Config, Sip2Pool
from selfcheck.central.backends.sip2.codec import Message, Profile, Sip2ProtocolError, encode
from selfcheck.lab.standins.sip2_server import Item, Library, Patron, running

INST = "tv-test"


def library() -> Library:
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An"), "DG0004": Patron("Phạm Thu Hằng",
                                                                       blocked=True)},
        items={"39000001": Item("Truyện Kiều"), "39000002": Item("Số đỏ"),
               "39000003": Item("Tắt đèn")})


def pool_for(port: int, encoding: str = "utf-8") -> Sip2Pool:
    return Sip2Pool(Sip2Config.parse(
        f"sip2://sc:secret@127.0.0.1:{port}?institution={INST}&location=tang-1&timeout=2"
        f"&pool=1&encoding={encoding}"))


@pytest.fixture
def acs() -> Iterator[tuple[Sip2Pool, Library]]:
    lib = library()
    with running(lib) as (server, _proxy):
        pool = pool_for(server.port)
        yield pool, lib
        pool.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_renew_all_renews_every_charged_item(acs: tuple[Sip2Pool, Library]) -> None:
    pool, lib = acs
    for item in ("39000001", "39000002"):
        out = m.circulation(pool.call(m.checkout(INST, "DG0001", item, now())))
        assert out.ok
    before = {k: lib.items[k].due for k in ("39000001", "39000002")}

    result = m.renew_all_result(pool.call(m.renew_all(INST, "DG0001", now())))
    assert result.ok
    assert sorted(result.renewed) == ["39000001", "39000002"] and result.unrenewed == ()
    assert result.text.screen == ("Đã gia hạn 2 cuốn",)
    assert lib.count("65", "39000001") == lib.count("65", "39000002") == 1
    for k, due in before.items():
        assert due is not None and lib.items[k].due is not None and lib.items[k].due > due
    (req,) = lib.requests  # as pysip2 read our frame
    assert (req.patron_identifier, req.institution_id) == ("DG0001", INST)


def test_renew_all_refused(acs: tuple[Sip2Pool, Library]) -> None:
    pool, lib = acs
    lib.items["39000003"].charged_to = "DG0004"  # charged before the card was blocked
    result = m.renew_all_result(pool.call(m.renew_all(INST, "DG0004", now())))
    assert not result.ok
    assert result.renewed == () and result.unrenewed == ("39000003",)
    assert result.text.screen == ("Không gia hạn được",)
    assert lib.count("65", "39000003") == 0


def test_end_session(acs: tuple[Sip2Pool, Library]) -> None:
    pool, lib = acs
    result = m.end_session_result(pool.call(m.end_session(INST, "DG0001", now())))
    assert result.ended and result.patron_id == "DG0001"
    assert result.text.screen == ("Tạm biệt, hẹn gặp lại",)
    (req,) = lib.requests
    assert (req.patron_identifier, req.institution_id) == ("DG0001", INST)


def test_fee_paid_accepted_and_refused(acs: tuple[Sip2Pool, Library]) -> None:
    pool, lib = acs
    paid = m.fee_paid_result(pool.call(m.fee_paid(
        INST, "DG0001", "20000", now(), fee_type="01", payment_type="02", fee_id="F-17",
        transaction_id="tx-0001")))
    assert paid.accepted and paid.patron_id == "DG0001" and paid.transaction_id == "tx-0001"
    assert paid.text.screen == ("Đã nhận tiền phạt",)
    req = lib.requests[-1]  # every fixed field and the optional ones, as pysip2 parsed them
    assert (req.fee_type, req.payment_type, req.currency_type) == ("01", "02", "VND")
    assert (req.fee_amount, req.fee_identifier, req.transaction_id) == ("20000", "F-17",
                                                                        "tx-0001")

    refused = m.fee_paid_result(pool.call(m.fee_paid(INST, "DG9999", "5000", now())))
    assert not refused.accepted and refused.transaction_id is None
    assert refused.text.screen == ("Không tìm thấy bạn đọc",)


def test_fee_paid_on_an_ascii_server() -> None:
    lib = library()
    with running(lib, encoding="cp850") as (server, _proxy):
        pool = pool_for(server.port, encoding="ascii")
        try:
            paid = m.fee_paid_result(pool.call(m.fee_paid(INST, "DG0001", "20000", now())))
            ended = m.end_session_result(pool.call(m.end_session(INST, "DG0001", now())))
        finally:
            pool.close()
    assert paid.accepted and paid.text.screen == ("Da nhan tien phat",)
    assert ended.ended and ended.text.screen == ("Tam biet, hen gap lai",)


def test_fee_paid_frame_against_the_spec() -> None:
    """37: transaction date (18), fee type (2), payment type (2), currency (3), then BV AO AA
    AC [CG] [BK], AY AZ; checked byte by byte against SIP2 2.00, section "Fee Paid"."""
    when = dt.datetime(2026, 11, 22, 3, 4, 5, tzinfo=dt.UTC)
    frame = encode(m.fee_paid(INST, "DG0001", "20000", when, transaction_id="tx-1"),
                   Profile(), sequence=3)
    body = b"3720261122   Z030405" + b"0100VND" + b"BV20000|AOtv-test|AADG0001|AC|BKtx-1|AY3AZ"
    assert frame == body + f"{(-sum(body)) & 0xFFFF:04X}".encode() + b"\r"
    with pytest.raises(Sip2ProtocolError, match="fee"):
        m.fee_paid(INST, "DG0001", "1", when, currency="VN")


def test_replies_out_of_spec_are_refused() -> None:
    with pytest.raises(Sip2ProtocolError, match="end session"):
        m.end_session_result(Message("36", "X20261122    030405", (("AA", "DG0001"),)))
    with pytest.raises(Sip2ProtocolError, match="payment accepted"):
        m.fee_paid_result(Message("38", " 20261122    030405"))
    with pytest.raises(Sip2ProtocolError, match="renewed count"):
        m.renew_all_result(Message("66", "1 2  000020261122    030405"))
    with pytest.raises(Sip2ProtocolError, match="command"):
        m.fee_paid_result(Message("36", "Y20261122    030405"))

"""The e-mail receipt, sent to a real SMTP server (aiosmtpd) on a free local port."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from selfcheck.drivers.printer.config import PrinterConfigError
from selfcheck.drivers.printer.mail import MailError, build_message, load_mail_config, send_receipt
from selfcheck.kiosk.receipt import ReceiptItem, SessionSummary, build_receipt

SUMMARY = SessionSummary(
    "Thư viện tỉnh Thừa Thiên Huế", "hue-01", dt.datetime(2025, 3, 5, 14, 7),
    "Nguyễn Thị Ánh 9704000012345678",
    (ReceiptItem("30001", "Truyện Kiều", "borrowed", due=dt.date(2025, 3, 19)),))


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        yield ctl, inbox
    finally:
        ctl.stop()


def test_receipt_mail_arrives_in_utf8(smtp: tuple[Controller, Inbox]) -> None:
    ctl, inbox = smtp
    cfg = load_mail_config({"host": "127.0.0.1", "port": ctl.port, "security": "none",
                            "sender": "thuvien@hue.example"})
    send_receipt(build_receipt(SUMMARY, "vi"), "ban.doc@example.org", cfg)
    assert len(inbox.messages) == 1
    sender, rcpts, raw = inbox.messages[0]
    assert (sender, rcpts) == ("thuvien@hue.example", ["ban.doc@example.org"])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Thư viện tỉnh Thừa Thiên Huế: phiếu giao dịch ngày 05/03/2025"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Language"] == "vi"
    body = msg.get_content()
    assert "1. Truyện Kiều" in body
    assert "Đã mượn, hạn trả 19/03/2025" in body
    assert "9704000012345678" not in body
    assert max(len(line) for line in raw.splitlines()) <= 78  # quoted-printable, 7-bit safe
    assert all(b < 128 for b in raw)


def test_message_is_plain_text_only() -> None:
    msg = build_message(build_receipt(SUMMARY, "en"), "a@b.example", "c@d.example")
    assert not msg.is_multipart()
    assert "Borrowed until 19 Mar 2025" in msg.get_content()


def test_unreachable_server_raises_mail_error() -> None:
    cfg = load_mail_config({"host": "127.0.0.1", "port": free_port(), "security": "none",
                            "sender": "a@b.example", "timeout_s": 2})
    with pytest.raises(MailError, match=r"SMTP 127\.0\.0\.1"):
        send_receipt(build_receipt(SUMMARY, "en"), "c@d.example", cfg)


def test_bad_address_is_refused_without_sending() -> None:
    cfg = load_mail_config({"host": "127.0.0.1", "sender": "a@b.example"})
    with pytest.raises(MailError, match="not an e-mail address"):
        send_receipt(build_receipt(SUMMARY, "en"), "no address", cfg)


@pytest.mark.parametrize(("raw", "key"), [
    ({"sender": "a@b.example"}, "receipt_mail.host"),
    ({"host": "h", "sender": "nobody"}, "receipt_mail.sender"),
    ({"host": "h", "sender": "a@b.example", "port": 0}, "receipt_mail.port"),
    ({"host": "h", "sender": "a@b.example", "security": "ssl3"}, "receipt_mail.security"),
])
def test_bad_mail_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(PrinterConfigError, match=key.replace(".", r"\.")):
        load_mail_config(raw)

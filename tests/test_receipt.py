"""The receipt's content: words in both languages, privacy, totals."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest

from selfcheck.kiosk import receipt as rc
from selfcheck.kiosk.receipt import ReceiptItem, SessionSummary, build_receipt, display_name

SUMMARY = SessionSummary(
    library="Thư viện tỉnh Thừa Thiên Huế",
    station="hue-01",
    when=dt.datetime(2025, 3, 5, 14, 7),
    patron_name="Nguyễn Thị Ánh",
    items=(
        ReceiptItem("30001", "Truyện Kiều", "borrowed", due=dt.date(2025, 3, 19)),
        ReceiptItem("30002", "Số đỏ", "refused", reason="on_loan_to_other"),
        ReceiptItem("30003", None, "returned"),
    ),
)


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    vi, en = rc.catalog("vi"), rc.catalog("en")
    assert vi.keys() == en.keys()
    assert len(vi) >= 20
    for key in vi:
        assert set(re.findall(r"{(\w+)}", vi[key])) == set(re.findall(r"{(\w+)}", en[key])), key


def test_vietnamese_receipt_words() -> None:
    lines = [line.text for line in build_receipt(SUMMARY, "vi").lines]
    assert lines[:2] == ["Thư viện tỉnh Thừa Thiên Huế", "PHIẾU MƯỢN SÁCH"]
    for expected in ["Máy: hue-01", "Thời gian: 05/03/2025 14:07", "Bạn đọc: Ánh",
                     "1. Truyện Kiều", "Mã sách: 30001", "Đã mượn, hạn trả 19/03/2025",
                     "Không thực hiện được: sách đang được người khác mượn",
                     "3. (không rõ nhan đề)", "Đã trả", "Số sách đã mượn: 1",
                     "Số sách đã trả: 1", "Vui lòng giữ phiếu này. Xin cảm ơn!"]:
        assert expected in lines


def test_english_receipt_words() -> None:
    r = build_receipt(SUMMARY, "en")
    lines = [line.text for line in r.lines]
    for expected in ["LOAN RECEIPT", "Station: hue-01", "Date: 5 Mar 2025 14:07", "Reader: Ánh",
                     "Borrowed until 19 Mar 2025", "Refused: on loan to another reader",
                     "Returned", "Books borrowed: 1", "Books returned: 1", "Refused: 1"]:
        assert expected in lines
    assert r.subject == "Thư viện tỉnh Thừa Thiên Huế: receipt of 5 Mar 2025"


def test_return_only_session_has_return_title_and_no_due_footer() -> None:
    s = SessionSummary("Lib", "st-1", dt.datetime(2025, 1, 1, 9, 0), None,
                       (ReceiptItem("1", "A", "returned"),
                        ReceiptItem("2", "B", "returned_offline")))
    r = build_receipt(s, "vi")
    texts = [line.text for line in r.lines]
    assert "PHIẾU TRẢ SÁCH" in texts
    assert "Số sách đã trả: 2" in texts
    assert "Đã nhận trả, chờ hệ thống xác nhận" in texts
    assert not any(t.startswith("Bạn đọc") for t in texts)
    assert not any("đúng hạn" in t for t in texts)


@pytest.mark.parametrize(("full", "style", "order", "shown"), [
    ("Nguyễn Văn An", "given", "family-first", "An"),
    ("John Smith", "given", "given-first", "John"),
    ("Nguyễn Văn An", "masked", "family-first", "A***"),
    ("Nguyễn Văn An", "none", "family-first", None),
    ("Trần Bình 0123456789", "given", "family-first", "Bình"),  # a card number never shows
    ("04123456", "given", "family-first", None),
    (None, "given", "family-first", None),
])
def test_display_name(full: str | None, style: rc.NameStyle, order: rc.NameOrder,
                      shown: str | None) -> None:
    assert display_name(full, style, order) == shown


def test_no_full_name_or_card_number_on_the_receipt() -> None:
    s = SessionSummary("Lib", "st-1", dt.datetime(2025, 1, 1), "Lê Văn Tám 9704000012345678",
                       SUMMARY.items)
    for lang in ("vi", "en"):
        text = build_receipt(s, lang).as_text()
        assert "9704000012345678" not in text
        assert "Lê Văn" not in text
        assert "Tám" in text


def test_plain_text_wraps_and_draws_rules() -> None:
    text = build_receipt(SUMMARY, "vi").as_text(width=32)
    assert all(len(line) <= 32 for line in text.splitlines())
    assert "-" * 32 in text.splitlines()


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language 'fr'"):
        build_receipt(SUMMARY, "fr")


def test_items_from_core_lines() -> None:
    def line(**kw: object) -> SimpleNamespace:
        base = dict(uid="u", kind="loan", status="done", item_id="1", title="T", due=None,
                    reason=None)
        return SimpleNamespace(**{**base, **kw})

    items = rc.items_from_lines([
        line(due=dt.date(2025, 1, 2)),
        line(kind="return", item_id="2"),
        line(status="refused", item_id="3", reason="not_for_loan"),
        line(status="unconfirmed", item_id="4", reason="no_answer"),
        line(kind="return", status="offline", item_id="5"),
        line(status="unreadable", item_id=None),
        line(status="waiting", item_id="6"),
    ])
    assert [(i.item_id, i.outcome) for i in items] == [
        ("1", "borrowed"), ("2", "returned"), ("3", "refused"), ("4", "not_borrowed"),
        ("5", "returned_offline"), ("6", "pending")]
    assert items[0].due == dt.date(2025, 1, 2)
    assert items[2].reason == "not_for_loan"

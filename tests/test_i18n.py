"""Every word a reader sees exists in Vietnamese and English."""

from __future__ import annotations

import datetime as dt
import logging
import re
import typing
from pathlib import Path

import pytest

from selfcheck.kiosk.i18n import LANGS, catalog, date, reason_text, t
from selfcheck.mqtt import messages

ROOT = Path(__file__).resolve().parent.parent


def test_both_catalogs_have_the_same_keys_and_no_empty_text() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert set(vi) == set(en)
    assert all(vi.values()) and all(en.values())
    for key in vi:  # placeholders match, so a format never fails in one language only
        assert set(re.findall(r"{(\w+)}", vi[key])) == set(re.findall(r"{(\w+)}", en[key])), key


def test_vietnamese_has_diacritics_and_differs_from_english() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert t("idle.place_card", "vi") == "Đặt thẻ bạn đọc lên đầu đọc thẻ để mượn sách"
    same = [k for k in vi if vi[k] == en[k]]
    assert same == [], same
    assert sum(bool(re.search("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]",
                              text)) for text in vi.values()) > len(vi) * 0.8


def test_every_key_used_in_the_ui_exists() -> None:
    used: set[str] = set()
    for path in [*ROOT.glob("kiosk/**/*.py")]:
        used |= set(re.findall(r"""\bt\(\s*f?["']([a-z_.]+)["']""", path.read_text()))
    known = set(catalog("vi")) | set(catalog("vi", "receipt")) | set(catalog("vi", "stocktake"))
    missing = {k for k in used if not k.endswith(".") and k not in known}
    assert missing == set()
    # every refusal the central can send, and the station's own two
    reasons = {*typing.get_args(messages.Reason), "offline", "no_answer"}
    for lang in LANGS:
        assert {f"reason.{r}" for r in reasons} <= set(catalog(lang))


def test_dates_per_language() -> None:
    d = dt.date(2026, 12, 6)
    assert (date(d, "vi"), date(d, "en")) == ("06/12/2026", "6 Dec 2026")


def test_vietnamese_follows_the_glossary() -> None:
    """One word per thing and one tone-mark style (docs: DESIGN.md, the glossary)."""
    vi = catalog("vi")
    for key, text in vi.items():
        # old-style tone marks: khoá, huỷ, xoá, hoà
        assert not re.search(r"(?i)\b(khoá|huỷ|xoá|hoà)\b", text), (key, text)
        assert "bàn đọc" not in text, (key, text)  # the pad is "khay đặt sách"
        assert not re.search(r"đầu đọc(?! thẻ)", text), (key, text)  # only the card reader
        assert "Từ chối" not in text, (key, text)  # a refusal says what was not done
    assert t("status.refused", "vi", reason="x") == "Không mượn được: x"
    assert t("button.finish", "vi") == "Hoàn tất" and t("button.done", "vi") == "Kết thúc"
    assert t("help.call", "vi") == "Gọi thủ thư" and t("count.ok", "vi") == "Xác nhận"
    assert t("more_time.question", "vi") == "Bạn cần thêm thời gian?"
    assert t("more_time.question", "en") == "Need more time?"
    assert (t("item.unknown_title", "vi", item="39000008"),
            t("item.unknown_title", "en", item="39000008")) == ("Mã sách 39000008",
                                                                 "Item 39000008")


def test_one_loader_one_missing_key_behaviour(caplog: pytest.LogCaptureFixture) -> None:
    # Screens, receipts, the operators' page and the CLI share system.i18n: a missing key
    # shows as itself and is logged once; an unknown language is refused.
    from selfcheck.central.fleet import i18n as fleet_i18n
    from selfcheck.cli import errors
    from selfcheck.kiosk import receipt

    for tr in (t, receipt.t, fleet_i18n.t, errors.t):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="selfcheck.system.i18n"):
            assert tr("no.such.key", "vi") == "no.such.key"
            assert tr("no.such.key", "vi", x=1) == "no.such.key"
        assert len(caplog.records) == 1
        with pytest.raises(ValueError, match="language 'fr'"):
            tr("no.such.key", "fr")


def test_cli_catalogs_have_the_same_keys() -> None:
    from selfcheck.cli.errors import catalog as cli_catalog

    vi, en = cli_catalog("vi"), cli_catalog("en")
    assert set(vi) == set(en)
    for key in vi:
        assert set(re.findall(r"{(\w+)}", vi[key])) == set(re.findall(r"{(\w+)}", en[key])), key


def test_reason_text_has_one_fallback() -> None:
    assert reason_text(None, "en") == "?" and reason_text("", "vi") == "?"
    assert reason_text("no_such_code", "en") == "no_such_code"
    assert reason_text("on_hold_for_other", "en") == t("reason.on_hold_for_other", "en")


def test_the_loan_question_and_its_answers() -> None:
    assert t("confirm.rental_charge", "vi", amount="5.000 ₫") == ("Sách này có phí thuê "
                                                                  "5.000 ₫.\nBạn vẫn mượn?")
    assert t("confirm.rental_charge", "en", amount="₫5,000") == (
        "This book has a rental charge of ₫5,000.\nBorrow it anyway?")
    assert (t("confirm.yes", "vi"), t("confirm.no", "vi")) == ("Mượn", "Không mượn")
    assert (t("confirm.yes", "en"), t("confirm.no", "en")) == ("Borrow", "Don't borrow")
    # a "no" is a refusal like any other; staff checks send the reader to the desk
    assert t("status.refused", "vi", reason=reason_text("needs_confirmation", "vi")) == (
        "Không mượn được: cần bạn xác nhận trước khi mượn")
    assert "gặp thủ thư" in reason_text("needs_staff", "vi")
    assert "staff" in reason_text("needs_staff", "en")

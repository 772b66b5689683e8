"""What the reader reads, on the real screens offscreen: libraries by their names (never a
code), one verb for a transfer, a security write said the way it is (a loan's tag unlocked, a
return's locked) without hiding that the book was lent, the glossary's words, plain reasons,
buttons named by what they do, the library's own note marked when it is not in the screen's
language, and an offline loan's due date."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from selfcheck.kiosk.i18n import catalog, date, t

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, SDL_VIDEODRIVER="offscreen")

# Renders the audit's sample screens (whose station has `places` and a 14-day offline loan
# period) and a few more, in both languages; prints what each showed as one JSON line.
SHOW = textwrap.dedent("""
    import json
    from dataclasses import replace
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(1280, 800))
    from selfcheck.drivers.seen import TagUid
    from selfcheck.kiosk import core
    from selfcheck.kiosk.ui import audit
    from selfcheck.kiosk.ui.theme import theme

    h = audit.Harness()
    ids = h.station.ids
    seen = {}

    def texts(widget):
        return [w.text for w in widget.walk(restrict=True) if getattr(w, "text", "").strip()]

    def lines(box):
        return [{"title": row.title, "status": row.status_text, "note": row.note}
                for row in reversed(box.children) if hasattr(row, "status_text")]

    for lang in ("vi", "en"):
        views = dict(audit.sample_views(lang))
        got = seen[lang] = {}
        h.show((1280, 800), lang, "normal", views["return-station-transit"])
        got["rs"] = {k: ids[k].text for k in ("rs_bin", "rs_title", "rs_status", "rs_alert")}
        got["rs_all"] = texts(ids.screens.current_screen)
        h.show((1280, 800), lang, "normal", views["account"])
        got["account"] = texts(ids.account_lines)
        h.show((1280, 800), lang, "normal", views["borrow"])
        got["borrow"] = lines(ids.lines)
        got["banner"] = ids.pending_banner.text
        got["a11y"] = [ids.a11y.text]
        for _ in range(3):  # the button cycles: its label names what the next touch does
            h.station.toggle_a11y()
            h.settle()
            got["a11y"].append(ids.a11y.text)
        theme.level = "normal"
        h.show((1280, 800), lang, "normal", views["borrow-offline"])
        got["offline"] = lines(ids.lines)
        # a return whose tag could not be locked again
        ret = audit._line(50, kind="return", due=None, security="failed", title="Tắt đèn")
        pend = (core.PendingWrite(TagUid(ret.uid), "39000050", "Tắt đèn", "in_library"),)
        h.show((1280, 800), lang, "normal", replace(views["return"], lines=(ret,),
                                                    pending=pend))
        got["return"] = lines(ids.lines)
        got["return_banner"] = ids.pending_banner.text
        h.show((1280, 800), lang, "normal", views["pin"])
        got["pin"] = {k: b.text for k, b in h.station.pin_buttons.items()
                      if k in ("clear", "back")}
        got["email_back"] = h.station.email_buttons["back"].text
    print("SEEN " + json.dumps(seen, ensure_ascii=False))
""")


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SEEN "))
    result: dict[str, Any] = json.loads(line[5:])
    return result


def test_a_transfer_names_the_library_with_one_verb(seen: dict[str, Any]) -> None:
    for lang, big, note in (("vi", "CHUYỂN ĐẾN Thư viện quận Hoàn Kiếm",
                             "Chuyển đến Thư viện quận Hoàn Kiếm"),
                            ("en", "TRANSIT TO Thư viện quận Hoàn Kiếm",
                             "Transit to Thư viện quận Hoàn Kiếm")):
        rs = seen[lang]["rs"]
        assert rs["rs_bin"] == big
        assert rs["rs_alert"].startswith(note)
        # the big label and the note use the same verb: the note is the label, said calmly
        assert big.split(" Thư")[0].lower() == note.split(" Thư")[0].lower()
        assert not any("VN-HN" in text for text in seen[lang]["rs_all"]), seen[lang]["rs_all"]


def test_a_hold_ready_names_the_pickup_library(seen: dict[str, Any]) -> None:
    for lang, words in (("vi", "Nhận sách tại: Thư viện Hà Nội"),
                        ("en", "Pick up at: Thư viện Hà Nội")):
        account = "\n".join(seen[lang]["account"])
        assert words in account
        assert "VN-HN" not in account


def test_an_unknown_library_code_still_shows() -> None:
    """A code the station's `places` does not list is shown as it came, never dropped."""
    assert t("rs.transit", "vi", place="VN-HN-09") == "CHUYỂN ĐẾN VN-HN-09"


def test_a_loan_whose_tag_is_still_locked_says_lent_and_unlock(seen: dict[str, Any]) -> None:
    for lang, lent, unlock in (("vi", "Đã mượn, hạn trả 12/12/2026", "mở khóa an ninh"),
                               ("en", "Borrowed until 12 Dec 2026", "unlock")):
        row = next(r for r in seen[lang]["borrow"] if r["title"] == "Chí Phèo")
        assert row["status"] == lent  # the loan is made: the line says so
        assert unlock in row["note"]
        assert unlock in seen[lang]["banner"] and "Chí Phèo" in seen[lang]["banner"]
    assert "chưa xong" not in seen["vi"]["banner"]


def test_a_return_whose_tag_is_still_unlocked_says_returned_and_lock(
        seen: dict[str, Any]) -> None:
    for lang, done, lock, unlock in (("vi", "Đã trả", "khóa an ninh", "mở khóa"),
                                     ("en", "Returned", "lock the security", "unlock")):
        row = seen[lang]["return"][0]
        assert row["status"].startswith(done)
        assert lock.split()[0] in row["note"].lower() and unlock not in row["note"].lower()
        banner = seen[lang]["return_banner"]
        assert lock in banner and unlock not in banner and "Tắt đèn" in banner
        # one book waiting is "this book", not "1 book(s)"
        assert {"vi": "cuốn sách này", "en": "this book"}[lang] in banner
        assert "(s)" not in banner and "1 cuốn" not in banner


def test_the_library_systems_note_is_marked_when_in_another_language(
        seen: dict[str, Any]) -> None:
    vi = next(r for r in seen["vi"]["borrow"] if r["title"] == "Dế Mèn phiêu lưu ký")
    en = next(r for r in seen["en"]["borrow"] if r["title"] == "Dế Mèn phiêu lưu ký")
    assert vi["note"] == "Thư viện nhắn: Sách mới, hạn 7 ngày"
    assert en["note"] == "Library note (in Vietnamese): Sách mới, hạn 7 ngày"
    assert t("note.library", "en", text="New book, 7 days") == "Library note: New book, 7 days"


def test_an_offline_loan_shows_the_due_date_of_the_offline_loan_period(
        seen: dict[str, Any]) -> None:
    due = dt.date.today() + dt.timedelta(days=14)  # the sample station's offline_loan_days
    for lang, words in (("vi", "Đã mượn khi mất kết nối, hạn trả "),
                        ("en", "Borrowed offline, until ")):
        statuses = [r["status"] for r in seen[lang]["offline"]]
        assert statuses == [words + date(due, lang)] * 2, statuses


def test_the_display_button_names_the_action(seen: dict[str, Any]) -> None:
    assert seen["vi"]["a11y"] == ["Aa+\nChữ to hơn", "Aa\nTương phản cao",
                                  "Aa\nMặc định", "Aa+\nChữ to hơn"]
    assert seen["en"]["a11y"] == ["Aa+\nLarger text", "Aa\nHigh contrast",
                                  "Aa\nStandard", "Aa+\nLarger text"]


def test_delete_keys_use_one_word(seen: dict[str, Any]) -> None:
    for lang, one, every in (("vi", "Xóa", "Xóa hết"), ("en", "Delete", "Clear")):
        assert seen[lang]["pin"] == {"back": one, "clear": every}
        assert seen[lang]["email_back"] == one


def test_the_glossary_words_and_plain_reasons() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert "giá đặt trước" in vi["alert.hold"] and "giá sách đặt trước" not in vi["alert.hold"]
    # "not borrowed" whether refused or never confirmed: both end in no loan
    assert vi["status.unconfirmed"].startswith("Không mượn được")
    assert en["status.unconfirmed"].startswith("Not borrowed")
    jargon = re.compile(r"không đang|quá muộn|dữ liệu|hợp lệ|invalid|confirmation")
    for key in ("reason.not_on_loan", "reason.late", "reason.invalid"):
        assert not jargon.search(vi[key]) and not jargon.search(en[key]), key
    for text in vi.values():
        assert "giá sách đặt trước" not in text and "Chưa mượn được" not in text

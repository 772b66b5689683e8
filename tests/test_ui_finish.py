"""Finish pressed while a book is still processed, on the real screens offscreen: the session
screen says to wait, and the summary comes with every outcome, counted as it ended (never
"not done", nor "take your books", while a loan may still end unconfirmed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent

# argv: WxH, the folder for the PNGs, the language, "ok" or "late" (the answer comes, or the
# time-out). Prints one JSON line of what it saw.
DRIVE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from selfcheck.kiosk.ui.boot import configure
    w, h = (int(n) for n in sys.argv[1].split("x"))
    out, lang, answer = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    configure(headless=True, size=(w, h))
    from kivy.base import EventLoop
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.lang import Builder
    from kivy.tests.common import UnitTestTouch
    from selfcheck.drivers.seen import SeenTag
    from selfcheck.drivers.tags import TagInfo
    from selfcheck.kiosk import core
    from selfcheck.kiosk.runtime.edge import ack_received, patron_checked
    from selfcheck.kiosk.ui.audit import audit_tree
    from selfcheck.kiosk.ui.screens import StationRoot
    from selfcheck.kiosk.ui.theme import panel_ppi, panel_px_mm, theme
    from selfcheck.mqtt.ids import uuid7
    from selfcheck.mqtt.messages import AckTx, PatronCheckRes

    EventLoop.ensure_window()
    sc = core.SelfCheck(core.CoreConfig(default_lang=lang, ack_timeout_s=5), uuid7)
    clock = [0.0]
    sent = []

    def feed(event, step=0.5):
        clock[0] += step
        sent.extend(a for a in sc.handle(event, clock[0]) if isinstance(a, core.RecordTx))
        station.render(sc.view(clock[0]))

    station = StationRoot(on_button=lambda b: feed(core.Touch(b)))
    Window.add_widget(station)
    Window.size = (w, h)
    station.size = (w, h)
    theme.set_panel(panel_ppi((w, h)), panel_px_mm((w, h)))
    names = {id(v.__self__): k for k, v in station.ids.items()}

    def settle():
        for _ in range(40):
            Clock.tick()
            Builder.sync()

    def press(name):
        settle()
        x, y = station.ids[name].to_window(*station.ids[name].center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()
        settle()

    seen = {"audit": []}

    def look(name):
        settle()
        ids = station.ids
        roots = [ids.bar, ids.screens.current_screen, ids.pending_banner]
        seen["audit"] += [str(v) for v in audit_tree(roots, names, name, (w, h), lang,
                                                     theme.level, theme.px_mm, theme.ppi)]
        EventLoop.idle()
        station.export_to_png(str(out / f"{name}-{w}x{h}-{lang}.png"))

    def ack(rec):
        feed(ack_received(AckTx(msg_id=rec.msg_id, ok=True, item_id=rec.item_id,
                                due="2026-12-21")))

    feed(core.Connectivity(True))
    feed(core.CardRead("DG0001"))
    feed(patron_checked(PatronCheckRes(ok=True, patron_ref="p-1",
                                       display_name="Nguyễn Văn An", max_loans=5)))
    books = {"E001": ("39000001", "Số đỏ"), "E002": ("39000002", "Truyện Kiều")}
    feed(core.TagsPresent(tuple(SeenTag(u, TagInfo(model="28560-3", primary_item_id=i,
                                                   title=t))
                                for u, (i, t) in books.items())))
    first, second = sent
    for rec in sent:
        feed(core.Recorded(rec.msg_id))
    ack(first)
    press("finish_button")
    seen["waiting"] = [station.ids.screens.current, station.ids.session_hint.text]
    look("finishing")
    if answer == "ok":
        ack(second)
    else:
        feed(core.Tick(), 5)
    seen["summary"] = [station.ids.screens.current, station.ids.summary_counts.text,
                       station.ids.summary_thanks.text]
    look("summary")
    print("SEEN " + json.dumps(seen, ensure_ascii=False))
""")

CASES = {
    ("800x480", "vi", "ok"): (
        "Xin chờ một chút: các cuốn sách còn lại đang được xử lý",
        "Đã mượn: 2 · Đã trả: 0 · Không thành công: 0", "Cảm ơn bạn! Nhớ mang theo sách và thẻ."),
    ("720x1280", "en", "late"): (
        "One moment: the remaining books are still being processed",
        "Borrowed: 1 · Returned: 0 · Not done: 1",
        "Books not borrowed: please leave them at the staff desk."),
}


@pytest.mark.parametrize(("size", "lang", "answer"), list(CASES))
def test_finish_waits_for_the_books_still_processed(tmp_path: Path, size: str, lang: str,
                                                     answer: str) -> None:
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.run([sys.executable, "-c", DRIVE, size, str(tmp_path), lang, answer],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SEEN "))
    seen = json.loads(line[5:])
    hint, counts, advice = CASES[(size, lang, answer)]
    assert seen["waiting"] == ["session", hint]
    assert seen["summary"] == ["summary", counts, advice]
    assert seen["audit"] == []

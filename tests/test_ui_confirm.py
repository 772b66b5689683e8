"""The question before a loan with a rental charge, on the real screens offscreen: the core
and the Kivy station wired together, driven by touches on the dialog's buttons, audited (text
cut off, small or overlapping targets, contrast) and photographed, on both 7" panels."""

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

# argv: WxH, the folder for the PNGs. Prints one JSON line of what it saw.
DRIVE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from selfcheck.kiosk.ui.boot import configure
    w, h = (int(n) for n in sys.argv[1].split("x"))
    out = Path(sys.argv[2])
    configure(headless=True, size=(w, h))
    from kivy.base import EventLoop
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.lang import Builder
    from kivy.tests.common import UnitTestTouch
    from selfcheck.drivers.seen import SeenTag
    from selfcheck.drivers.tags import TagInfo
    from selfcheck.kiosk import core
    from selfcheck.kiosk.runtime.edge import ack_received
    from selfcheck.kiosk.ui.audit import audit_tree
    from selfcheck.kiosk.ui.screens import StationRoot
    from selfcheck.kiosk.ui.theme import panel_ppi, panel_px_mm, theme
    from selfcheck.mqtt.ids import uuid7
    from selfcheck.mqtt.messages import AckTx, LoanConfirm, PatronCheckRes
    from selfcheck.kiosk.runtime.edge import patron_checked

    EventLoop.ensure_window()
    sc = core.SelfCheck(core.CoreConfig(), uuid7)
    clock = [0.0]
    sent = []

    def feed(event):
        clock[0] += 0.5
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

    seen = {"audit": [], "shots": []}

    def look(name):
        settle()
        ids = station.ids
        roots = [ids.bar, ids.screens.current_screen, ids.pending_banner]
        lang = sc.lang
        seen["audit"] += [str(v) for v in audit_tree(roots, names, name, (w, h), lang,
                                                     theme.level, theme.px_mm, theme.ppi)]
        EventLoop.idle()
        file = out / f"{name}-{w}x{h}-{lang}.png"
        station.export_to_png(str(file))
        seen["shots"].append(str(file))
        for key in ("confirm_no", "confirm_yes"):
            b = ids[key]
            seen.setdefault("targets", []).append([round(b.width), round(b.height)])
        seen.setdefault("fonts", []).extend(round(ids[k].font_size, 1) for k in (
            "confirm_title", "confirm_question", "confirm_no", "confirm_yes"))

    feed(core.Connectivity(True))
    feed(core.CardRead("DG0001"))
    feed(patron_checked(PatronCheckRes(ok=True, patron_ref="p-1",
                                       display_name="Nguyễn Văn An", max_loans=5)))
    books = {"E001": ("39000001", "Số đỏ"), "E002": ("39000002", "Truyện Kiều")}
    feed(core.TagsPresent(tuple(SeenTag(u, TagInfo(model="28560-3", primary_item_id=i,
                                                   title=t))
                                for u, (i, t) in books.items())))
    first = list(sent)
    sent.clear()
    for rec in first:
        feed(core.Recorded(rec.msg_id))
    charge = LoanConfirm(code="rental_charge", amount=5000, currency="VND")
    for rec in first:
        feed(ack_received(AckTx(msg_id=rec.msg_id, ok=False, item_id=rec.item_id,
                                reason="needs_confirmation", confirm=charge)))
    seen["screen"] = station.ids.screens.current
    seen["question_vi"] = station.ids.confirm_question.text
    seen["title_vi"] = station.ids.confirm_title.text
    seen["more_vi"] = station.ids.confirm_more.text
    look("confirm")
    press("lang")
    seen["question_en"] = station.ids.confirm_question.text
    seen["buttons_en"] = [station.ids.confirm_no.text, station.ids.confirm_yes.text]
    look("confirm")
    press("lang")
    seen["buttons_vi"] = [station.ids.confirm_no.text, station.ids.confirm_yes.text]
    press("confirm_yes")
    seen["yes"] = [[r.item_id, list(r.confirmed), r.msg_id not in {f.msg_id for f in first}]
                   for r in sent]
    seen["title_second"] = station.ids.confirm_title.text
    seen["screen_second"] = station.ids.screens.current
    look("confirm-second")
    press("confirm_no")
    seen["screen_after"] = station.ids.screens.current
    seen["lines"] = [[c.children[-1].text, c.status_text]
                     for c in reversed(station.ids.lines.children)]
    look("after")
    seen["sent_after_no"] = len(sent)
    print("SEEN " + json.dumps(seen, ensure_ascii=False))
""")


@pytest.mark.parametrize("size", ["800x480", "720x1280"])
def test_the_question_is_driven_by_touches_and_passes_the_audit(tmp_path: Path,
                                                                size: str) -> None:
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.run([sys.executable, "-c", DRIVE, size, str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SEEN "))
    seen = json.loads(line[5:])
    assert seen["audit"] == []
    assert seen["screen"] == seen["screen_second"] == "confirm_loan"
    assert seen["title_vi"] == "Số đỏ" and seen["title_second"] == "Truyện Kiều"
    assert seen["question_vi"] == "Sách này có phí thuê 5.000\xa0₫.\nBạn vẫn mượn?"
    assert seen["more_vi"] == "Sau sách này còn 1 cuốn cần bạn trả lời."
    assert seen["question_en"] == "This book has a rental charge of ₫5,000.\nBorrow it anyway?"
    assert seen["buttons_vi"] == ["Không mượn", "Mượn"]
    assert seen["buttons_en"] == ["Don't borrow", "Borrow"]
    # yes: one new loan of the first book, with the charge accepted; no: nothing more
    assert seen["yes"] == [["39000001", ["rental_charge"], True]]
    assert seen["sent_after_no"] == 1
    assert seen["screen_after"] == "session"
    assert seen["lines"][1][1] == "Không mượn được: cần bạn xác nhận trước khi mượn"
    w, h = (int(n) for n in size.split("x"))
    if (w, h) == (800, 480):  # the 7" panel: 9 mm targets, 3.5 mm text
        assert all(tw >= 47 and th >= 51 for tw, th in seen["targets"])
        assert min(seen["fonts"]) >= 20
    assert len(seen["shots"]) == 4 and all(Path(p).stat().st_size > 1000
                                           for p in seen["shots"])

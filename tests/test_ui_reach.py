"""The station as a grandmother with reading glasses, a child and a wheelchair user meet it, on
the real screens offscreen: the time-out question where a reader looks and reaches, the "N
more" under a list counting books only, a QWERTY keyboard in its rows, an idle screen that
shows where the card goes and what to do when it is refused, and every control on a portrait
station within a seated reader's reach. One process draws every case (Kivy has one window per
process) and prints what it saw; the tests judge it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from selfcheck.kiosk.timeouts import MORE_TIME_WARN_S, SUMMARY_S, StationTimeouts
from selfcheck.kiosk.ui.reach import REACH_MM, height_mm, out_of_reach_px

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent
# The floor kiosk is assumed a 21.5" panel, 268 x 476 mm in portrait.
FLOOR_KIOSK_PPI = 1080 / 268 * 25.4

DRIVE = textwrap.dedent("""
    import json, sys
    from dataclasses import replace
    from pathlib import Path
    from selfcheck.kiosk.ui.boot import configure
    out = Path(sys.argv[1])
    floor_ppi = float(sys.argv[2])
    configure(headless=True, size=(800, 480))
    from kivy.base import EventLoop
    from kivy.tests.common import UnitTestTouch
    from kivy.uix.button import Button
    from kivy.uix.scrollview import ScrollView
    from selfcheck.drivers.seen import SeenTag
    from selfcheck.drivers.tags import TagInfo
    from selfcheck.kiosk import core
    from selfcheck.kiosk.runtime.edge import ack_received, patron_checked
    from selfcheck.kiosk.ui.audit import Harness, sample_views
    from selfcheck.kiosk.ui import screens
    from selfcheck.kiosk.ui.theme import theme
    from selfcheck.mqtt.ids import uuid7
    from selfcheck.mqtt.messages import AckTx, PatronCheckRes

    h = Harness()
    st = h.station
    seen = {}

    class Ids:
        # a widget the screens lack reads as not shown, so that each test fails on its own
        # point (not all on one missing name)
        def __getattr__(self, name):
            return st.ids.get(name)

    ids = Ids()

    def text(w):
        return w.text if w is not None else ""

    def rect(w):
        if w is None:
            return [0, 0, 0, 0]
        x, y = w.to_window(w.x, w.y)
        return [x, y, x + w.width, y + w.height]

    def shown(w):
        if w is None:
            return False
        while w is not None and w is not w.parent:
            if w.opacity <= 0 or w.width <= 0 or w.height <= 0:
                return False
            w = w.parent
        return True

    def scroll_of(w):
        p = w.parent
        while p is not None and p is not p.parent:
            if isinstance(p, ScrollView):
                return p
            p = p.parent
        return None

    def controls(root):
        # every button a reader can touch, clipped to the window of its list
        found = []
        for w in root.walk(restrict=True):
            if not isinstance(w, Button) or w.disabled or not shown(w):
                continue
            r = rect(w)
            sv = scroll_of(w)
            if sv is not None:
                v = rect(sv)
                r = [max(r[0], v[0]), max(r[1], v[1]), min(r[2], v[2]), min(r[3], v[3])]
                if r[2] - r[0] < 1 or r[3] - r[1] < 1:
                    continue
            found.append({"text": w.text, "rect": r})
        return found

    def shot(name, size, lang):
        EventLoop.idle()
        st.export_to_png(str(out / f"{name}-{size[0]}x{size[1]}-{lang}.png"))

    def press(widget):
        if widget is None:
            return
        h.settle()
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()
        h.settle()

    views = {lang: dict(sample_views(lang)) for lang in ("vi", "en")}

    # portrait: every control on every screen, and the PIN field over its keys
    for size, ppi in (((720, 1280), None), ((1080, 1920), floor_ppi)):
        for name, view in views["en"].items():
            h.show(size, "en", "normal", view, ppi=ppi)
            seen.setdefault("portrait", []).append({
                "size": size, "screen": name, "px_mm": list(theme.px_mm),
                "controls": controls(st)})
            if name == "pin":
                seen.setdefault("pin", []).append({
                    "size": size, "px_mm": list(theme.px_mm), "dots": rect(ids.pin_dots),
                    "keys": rect(ids.pin_keys), "message": rect(ids.pin_message)})
                shot("pin", size, "en")

    # the lists' "N more": the account (headings, fines) and the borrowed books
    for lang in ("vi", "en"):
        for name, view_id, more_id in (("account", "account_view", "account_more"),
                                       ("borrow", "lines_view", "lines_more")):
            h.show((800, 480), lang, "normal", views[lang][name])
            sv = st.ids[view_id]
            v = rect(sv)
            rows = []
            for row in reversed(sv.children[0].children):
                r = rect(row)
                rows.append({"kind": type(row).__name__, "title": getattr(row, "title", ""),
                             "shown": v[1] <= (r[1] + r[3]) / 2 <= v[3]})
            seen.setdefault("more", []).append({"lang": lang, "screen": name, "rows": rows,
                                                "more": st.ids[more_id].text})
            shot(name, (800, 480), lang)

    # the e-mail keyboard
    for size, lang in (((800, 480), "vi"), ((720, 1280), "en")):
        h.show(size, lang, "normal", views[lang]["email"])
        keys = [{"text": w.text, "rect": rect(w)} for w in st.email_buttons.values()
                if len(w.text) == 1]
        seen.setdefault("email", []).append({"size": size, "keys": keys,
                                             "px_mm": list(theme.px_mm)})
        shot("email", size, lang)

    # the idle screen, as it waits
    for size, lang in (((800, 480), "vi"), ((720, 1280), "en"), ((1080, 1920), "vi")):
        h.show(size, lang, "normal", views[lang]["idle"])
        pics = [w for w in st.walk(restrict=True)
                if type(w).__name__ == "CardPicture" and shown(w)]
        seen.setdefault("idle", []).append({
            "size": size, "px_mm": list(theme.px_mm),
            "pictures": [{"rect": rect(p), "drawn": len(p.canvas.children)} for p in pics],
            "prompt": text(ids.idle_text) if shown(ids.idle_text) else None,
            "borrow": text(ids.idle_borrow_title) if shown(ids.idle_borrow_title) else None,
            "return": text(ids.return_button) if shown(ids.return_button) else None})
        shot("idle", size, lang)

    # a real session: a refused card, then the time-out question on the summary
    for size, lang in (((800, 480), "vi"), ((720, 1280), "en")):
        h.show(size, lang, "normal", views[lang]["idle"])
        sc = core.SelfCheck(core.CoreConfig(default_lang=lang, ack_timeout_s=5), uuid7)
        clock = [0.0]
        acts = []

        def feed(event, at=None):
            clock[0] = clock[0] + 0.5 if at is None else at
            acts.extend(sc.handle(event, clock[0]))
            st.render(sc.view(clock[0]))
            h.settle()

        st._on_button = lambda b: feed(core.Touch(b))
        feed(core.Connectivity(True))
        feed(core.CardRead("DG0009"))
        feed(patron_checked(PatronCheckRes(ok=False, reason="patron_blocked")))
        start = clock[0]
        feed(core.Tick(), start + 9)  # past the 8 s other notes stay
        refused = {"prompt_shown": shown(ids.idle_text), "why": text(ids.idle_message),
                   "why_shown": shown(ids.idle_message), "todo": text(ids.idle_todo),
                   "call": text(ids.idle_call), "call_shown": shown(ids.idle_call),
                   "call_rect": rect(ids.idle_call), "px_mm": list(theme.px_mm)}
        shot("idle-refused", size, lang)
        press(ids.idle_call)
        refused["after_call"] = [sc.mode.value, sc.view(clock[0]).help_reason,
                                 [a.kind for a in acts if isinstance(a, core.Notify)]]
        seen.setdefault("refused", []).append(refused)
        feed(core.Touch("cancel"))
        feed(core.CardRead("DG0001"))
        feed(patron_checked(PatronCheckRes(ok=True, patron_ref="p-1",
                                           display_name="Nguyễn Văn An", max_loans=5)))
        feed(core.TagsPresent((SeenTag("E001", TagInfo(model="28560-3",
                                                       primary_item_id="39000001",
                                                       title="Số đỏ")),)))
        rec = next(a for a in acts if isinstance(a, core.RecordTx))
        feed(core.Recorded(rec.msg_id))
        feed(ack_received(AckTx(msg_id=rec.msg_id, ok=True, item_id=rec.item_id,
                                due="2026-12-21")))
        press(ids.finish_button)
        opened = clock[0]
        summary = {"mode": sc.mode.value, "countdown_at_open": sc.view(opened).countdown,
                   "asked_at_open": st.more_time_shown}
        feed(core.Tick(), opened + sc.config.summary_s - 15)
        bar_buttons = {n: [rect(st.ids[n]), shown(st.ids[n]), st.ids[n].disabled]
                       for n in ("help", "lang", "a11y")}
        summary.update(asked=st.more_time_shown, text=ids.more_time_text.text,
                       banner=rect(ids.more_time_bar), button=rect(ids.more_time_button),
                       button_font=ids.more_time_button.font_size,
                       text_font=ids.more_time_text.font_size, read=theme.read,
                       touch=theme.touch, bar_buttons=bar_buttons, px_mm=list(theme.px_mm),
                       window=list(size))
        shot("summary-more-time", size, lang)
        pressed_at = clock[0] + 0.5
        press(ids.more_time_button)
        summary["after"] = [sc.mode.value, sc.view(pressed_at).countdown, st.more_time_shown,
                            sc.config.summary_s]
        seen.setdefault("summary", []).append(summary)

    print("SEEN " + json.dumps(seen, ensure_ascii=False))
""")


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # REACH_SHOTS=folder keeps the PNGs drawn, to look at
    kept = os.environ.get("REACH_SHOTS")
    out = Path(kept) if kept else tmp_path_factory.mktemp("reach")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.run([sys.executable, "-c", DRIVE, str(out), str(FLOOR_KIOSK_PPI)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SEEN "))
    result: dict[str, Any] = json.loads(line[5:])
    return result


def _mm(r: list[float], px_mm: list[float]) -> tuple[float, float]:
    return (r[2] - r[0]) / px_mm[0], (r[3] - r[1]) / px_mm[1]


# -- the time-out question ------------------------------------------------------------------
def test_the_summary_is_read_before_it_asks_and_more_time_is_a_full_period() -> None:
    assert SUMMARY_S > MORE_TIME_WARN_S
    # a station configured with the old 12 s still shows its summary long enough
    old = StationTimeouts(inactivity_s=45, summary_s=12, telemetry_s=60)
    assert old.summary_screen_s >= SUMMARY_S
    assert StationTimeouts(inactivity_s=45, summary_s=90, telemetry_s=60).summary_screen_s == 90


def test_the_time_out_question_is_where_the_reader_looks_and_reaches(
        seen: dict[str, Any]) -> None:
    for s in seen["summary"]:
        where = f"{s['window']}"
        assert s["mode"] == "summary", where
        assert s["countdown_at_open"] > MORE_TIME_WARN_S and not s["asked_at_open"], where
        assert s["asked"], where
        _, h = s["window"]
        banner, button = s["banner"], s["button"]
        # in the bottom half, above nothing but the bar's own row
        assert banner[3] <= h / 2 + 1, (where, banner)
        assert button[3] - button[1] >= s["touch"] - 0.5, where
        assert min(s["button_font"], s["text_font"]) >= s["read"], where
        # Help, the language and the text size stay shown and untouched by it
        for name, (r, shown, disabled) in s["bar_buttons"].items():
            assert shown and not disabled, (where, name)
            assert r[3] <= banner[1] + 1 or r[1] >= banner[3] - 1, (where, name)
        # "more time" gives the whole period again, and the question goes
        mode, countdown, asked, period = s["after"]
        assert (mode, asked) == ("summary", False), where
        assert countdown >= period - 1, where


# -- "N more" under a list ------------------------------------------------------------------
def test_the_count_under_a_list_is_the_books_not_shown(seen: dict[str, Any]) -> None:
    counts: dict[str, dict[str, int]] = {}
    for m in seen["more"]:
        books = [r for r in m["rows"] if r["kind"] in ("ItemLine", "AccountLine")
                 and r["title"] and "Trả sách quá hạn" not in r["title"]]
        hidden = sum(not r["shown"] for r in books)
        assert hidden > 0, m  # the sample lists are longer than the 800x480 screen
        digits = [int(w) for w in m["more"].replace(",", " ").split() if w.isdigit()]
        assert digits == [hidden], (m["lang"], m["screen"], m["more"], hidden)
        counts.setdefault(m["screen"], {})[m["lang"]] = hidden
    for screen, by_lang in counts.items():
        assert by_lang["vi"] == by_lang["en"], screen


# -- the e-mail keyboard --------------------------------------------------------------------
QWERTY = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm@._-"]


def test_the_email_keyboard_is_qwerty_in_rows(seen: dict[str, Any]) -> None:
    for kb in seen["email"]:
        w, _ = kb["size"]
        rows: dict[int, list[dict[str, Any]]] = {}
        for key in kb["keys"]:
            rows.setdefault(round(key["rect"][1]), []).append(key)
            across, down = _mm(key["rect"], kb["px_mm"])
            assert min(across, down) >= 9 - 0.05, (kb["size"], key)
            assert key["rect"][0] >= 0 and key["rect"][2] <= w, (kb["size"], key)
        lines = ["".join(k["text"] for k in sorted(r, key=lambda k: k["rect"][0]))
                 for _, r in sorted(rows.items(), reverse=True)]
        if len(lines) == len(QWERTY):
            assert lines == QWERTY, kb["size"]
        else:  # a narrow panel: each row's left half above its right half
            assert [a + b for a, b in zip(lines[::2], lines[1::2], strict=True)] == QWERTY
        assert kb["size"] != [800, 480] or len(lines) == len(QWERTY)


# -- the idle screen --------------------------------------------------------------------------
def test_the_idle_screen_shows_where_the_card_goes_and_both_tasks(seen: dict[str, Any]) -> None:
    for idle in seen["idle"]:
        assert len(idle["pictures"]) == 1, idle["size"]
        pic = idle["pictures"][0]
        across, down = _mm(pic["rect"], idle["px_mm"])
        assert min(across, down) >= 15 and pic["drawn"] >= 8, idle
        assert idle["borrow"] and idle["prompt"] and idle["return"], idle


def test_a_refused_card_says_why_what_to_do_and_calls_staff(seen: dict[str, Any]) -> None:
    for r in seen["refused"]:
        assert not r["prompt_shown"], r  # "put your card on the reader" no longer above it
        assert r["why_shown"] and r["why"] and r["todo"] and r["call_shown"], r
        assert min(_mm(r["call_rect"], r["px_mm"])) >= 9 - 0.05, r
        assert r["after_call"] == ["help", "called", ["staff_needed"]], r
    assert {r["call"] for r in seen["refused"]} == {"Gọi thủ thư", "Call staff"}


# -- a portrait station, seated ---------------------------------------------------------------
def test_every_portrait_control_is_within_a_seated_readers_reach(seen: dict[str, Any]) -> None:
    low, high = REACH_MM
    out = []
    screens = {tuple(p["size"]) for p in seen["portrait"]}
    assert screens == {(720, 1280), (1080, 1920)}
    for p in seen["portrait"]:
        down = p["px_mm"][1]
        assert p["controls"], p["screen"]
        for c in p["controls"]:
            bottom, top = height_mm(c["rect"][1], down), height_mm(c["rect"][3], down)
            if bottom < low - 0.5 or top > high + 0.5:
                out.append(f"{p['screen']} {p['size']}: {c['text']!r} {bottom:.0f}-{top:.0f} mm")
    assert out == []
    # the floor kiosk is taller than the reach: the check had something to find
    assert out_of_reach_px(1920, 1920 / 476) > 0


def test_the_pin_field_is_right_over_its_keypad(seen: dict[str, Any]) -> None:
    for p in seen["pin"]:
        down = p["px_mm"][1]
        dots, keys, message = p["dots"], p["keys"], p["message"]
        assert keys[3] <= dots[1], p  # the keys under the field
        between = (dots[1] - keys[3]) / down
        # only the error message between them, and a finger's width of space (it was 36 mm
        # at 720x1280)
        assert between <= (message[3] - message[1]) / down + 8, (p["size"], between)

"""The layout audit: it finds what it should on a broken layout, and finds nothing on any
station screen at any supported size, language and theme. Kivy offscreen, one window per
process (resized between sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from selfcheck.kiosk.ui.audit import contrast
from selfcheck.kiosk.ui.theme import palette, panel_ppi, panel_px_mm

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, SDL_VIDEODRIVER="offscreen")


def test_contrast_is_computed_as_wcag_does() -> None:
    assert round(contrast((1, 1, 1), (0, 0, 0)), 1) == 21.0
    assert round(contrast((1, 1, 1), (0.85, 0.45, 0.10)), 2) == 3.28  # the old orange


@pytest.mark.parametrize("level", ["normal", "large", "contrast"])
def test_theme_pairs_meet_aa(level: str) -> None:
    p = palette(level)
    pairs = [("text", "bg"), ("text", "band_b"), ("text", "alert_bg"), ("accent_text", "accent"),
             ("bar_text", "bar"), ("bar_text", "bar_button"), ("online", "bar"),
             ("offline", "bar"), ("key_text", "key"), ("warn_text", "warn_bg"),
             *((c, b) for c in ("green", "red", "grey", "amber")
               for b in ("bg", "band_a", "band_b"))]
    low = {f"{a} on {b}": round(contrast(p[a], p[b]), 2) for a, b in pairs
           if contrast(p[a], p[b]) < 4.5}
    assert low == {}


def test_nine_millimetres_on_the_usual_panels() -> None:
    assert round(panel_ppi((800, 480))) == 133  # the Pi 7" display: 9 mm is 48 px
    assert round(panel_ppi((720, 1280))) == 210
    assert panel_ppi((800, 480), dpi=200) == 200


def test_millimetres_across_and_down_on_a_panel_of_non_square_pixels() -> None:
    """The Pi 7" panel is 154 x 86 mm: 5.19 px/mm across, 5.58 down; 9 mm is 47 x 51 px."""
    from selfcheck.kiosk.ui.theme import Theme

    across, down = panel_px_mm((800, 480))
    assert (round(across, 2), round(down, 2)) == (5.19, 5.58)
    assert panel_px_mm((480, 800)) == (down, across)  # mounted the other way
    assert panel_px_mm((800, 480), dpi=254) == (10.0, 10.0)  # a given density: square
    theme = Theme()
    theme.set_panel(panel_ppi((800, 480)), (across, down))
    assert (theme.touch, theme.gap) == (51, 12)  # 9 mm and 2 mm along the denser axis


BROKEN = textwrap.dedent("""
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(400, 300))
    from kivy.base import EventLoop
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.uix.button import Button
    from kivy.uix.floatlayout import FloatLayout
    from kivy.graphics import Color, Rectangle
    from kivy.uix.label import Label
    from selfcheck.kiosk.ui.audit import audit_tree
    EventLoop.ensure_window()
    root = FloatLayout()
    clipped = Label(text="Không mượn được: sách chỉ đọc tại chỗ " * 4, font_size=20,
                    size_hint=(None, None), size=(200, 30), pos=(0, 0), text_size=(200, None))
    short = Label(text="Đặt sách lên khay đặt sách, từng cuốn", font_size=20, shorten=True,
                  size_hint=(None, None), size=(120, 30), pos=(0, 100), text_size=(120, 30))
    a = Button(text="A", size_hint=(None, None), size=(40, 40), pos=(200, 200))
    # 9 mm from the diagonal's 133 ppi, not down the Pi panel's 5.58 px/mm
    c = Button(text="C", size_hint=(None, None), size=(60, 48), pos=(0, 200))
    d = Button(text="D", size_hint=(None, None), size=(60, 60), pos=(65, 200))
    b = Button(text="B", size_hint=(None, None), size=(80, 80), pos=(220, 180),
               background_normal="", background_color=(0.85, 0.45, 0.10, 1),
               color=(1, 1, 1, 1))
    # yellow on yellow (the contrast theme's "more time" on its warning bar), and the same
    # with an edge drawn in black
    warn = FloatLayout(size_hint=(None, None), size=(400, 90), pos=(0, 0))
    with warn.canvas.before:
        Color(1, 0.9, 0, 1)
        Rectangle(pos=(0, 0), size=(400, 90))
    flat = Button(text="Thêm", size_hint=(None, None), size=(60, 60), pos=(120, 10),
                  background_normal="", background_color=(1, 0.9, 0, 1), color=(0, 0, 0, 1))
    edged = Button(text="Thêm", size_hint=(None, None), size=(60, 60), pos=(260, 10),
                   background_normal="", background_color=(1, 0.9, 0, 1), color=(0, 0, 0, 1))
    edged.edge_color = (0, 0, 0, 1)
    warn.add_widget(flat)
    warn.add_widget(edged)
    small = Label(text="Đang xử lý…", font_size=13, color=(0, 0, 0, 1),
                  size_hint=(None, None), size=(150, 30), pos=(0, 140))
    for w in (clipped, short, a, b, c, d, small):
        root.add_widget(w)
    # the top bar: 3 mm is enough there (17 px down the Pi panel), not 16 px
    bar = FloatLayout(size_hint=(None, None), size=(400, 60), pos=(0, 240))
    bar_ok = Label(text="Trợ giúp", font_size=17, size_hint=(None, None), size=(120, 40),
                   pos=(0, 250), color=(0, 0, 0, 1))
    bar_small = Label(text="Trực tuyến", font_size=16, size_hint=(None, None),
                      size=(120, 40), pos=(200, 250))
    bar.add_widget(bar_ok)
    bar.add_widget(bar_small)
    Window.add_widget(root)
    Window.add_widget(bar)
    Window.add_widget(warn)
    for _ in range(5):
        Clock.tick()
    ids = {id(clipped): "clipped", id(short): "short", id(a): "a", id(b): "b", id(c): "c",
           id(d): "d", id(small): "small", id(bar): "bar", id(bar_ok): "bar_ok",
           id(bar_small): "bar_small", id(flat): "flat", id(edged): "edged"}
    for v in audit_tree([root, bar, warn], ids, "broken", (400, 300), "vi", "normal",
                        (5.19, 5.58), 133):
        print(v)
""")


def test_the_audit_finds_clipping_ellipsis_overlap_small_targets_and_low_contrast() -> None:
    proc = subprocess.run([sys.executable, "-c", BROKEN], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [line for line in proc.stdout.splitlines() if line.startswith("broken")]
    text = "\n".join(out)
    assert "clipped: text" in text and "px high in 30 px" in text
    assert "short: text ellipsised" in text
    assert "a: touch target 40x40 px, 7.7x7.2 mm, under 9 mm" in text
    assert "c: touch target 60x48 px, 11.6x8.6 mm, under 9 mm" in text
    assert {"c: 1.0 mm from d, under 2 mm", "d: 1.0 mm from c, under 2 mm"} & set(
        ln.split(": ", 1)[1] for ln in out)
    assert "d: touch target" not in text
    assert "small: text 13.0 px, 2.3 mm high, under 3.5 mm" in text
    assert "bar_small: text 16.0 px, 2.9 mm high, under 3.0 mm" in text
    assert "bar_ok: text" not in text
    assert "flat: edge 1.00:1 under 3.0:1 (#ffe600 on #ffe600)" in text  # WCAG 1.4.11
    assert "edged: edge" not in text
    assert "b: overlaps a by 20x40 px" in text
    assert "b: contrast 3.28:1 under 4.5:1" in text  # white on the old orange


SMALL = ("800x480", "720x1280")  # the Pi 7" displays: the tightest screens
OTHERS = ("1024x600", "1280x800", "1920x1080", "1080x1920")


@pytest.mark.parametrize(("sizes", "themes"), [
    (SMALL, ("normal", "large", "contrast")),
    (OTHERS, ("normal", "large", "contrast")),
], ids=["small-screens", "other-screens"])
def test_every_screen_passes_the_audit(sizes: tuple[str, ...], themes: tuple[str, ...]) -> None:
    """Every sample screen x these sizes x vi/en x these themes, one window per process."""
    args = [a for s in sizes for a in ("--size", s)] + [a for t in themes
                                                        for a in ("--theme", t)]
    proc = subprocess.run([sys.executable, "-m", "selfcheck.cli", "ui", "audit", *args],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 violations" in proc.stdout


def test_screen_settings() -> None:
    from pydantic import ValidationError

    from selfcheck.kiosk.settings import StationSettings

    s = StationSettings(screen="800x480", rotation=90, screen_inches=7.0)
    assert (s.screen_size, s.rotation) == ((800, 480), 90)
    assert StationSettings().screen_size is None  # the display's own size
    for bad in ("800", "800x", "wide", "10x10"):
        with pytest.raises(ValidationError):
            StationSettings(screen=bad)


def test_the_panel_in_millimetres_from_the_settings() -> None:
    """`screen_mm` (the active area) or a known panel's name gives mm across and down; a bad
    one stops the station naming the key."""
    from pydantic import ValidationError

    from selfcheck.kiosk.settings import StationSettings

    named = StationSettings(screen="rpi-7")
    assert (named.screen_size, named.screen_area_mm) == ((800, 480), (154.0, 86.0))
    given = StationSettings(screen="1024x600", screen_mm="154x86")
    assert given.screen_area_mm == (154.0, 86.0)
    across, down = panel_px_mm((1024, 600), mm=given.screen_area_mm)
    assert (round(across, 2), round(down, 2)) == (6.65, 6.98)
    # the area wins over a diagonal, which cannot tell non-square pixels
    assert panel_px_mm((800, 480), inches=7.0, mm=(154.0, 86.0)) == panel_px_mm((800, 480))
    assert StationSettings().screen_area_mm is None
    for bad in ("154", "154x", "154by86", "5x5", "x86"):
        with pytest.raises(ValidationError, match="screen_mm"):
            StationSettings(screen_mm=bad)
    with pytest.raises(ValidationError, match="screen"):
        StationSettings(screen="rpi-9")


IDLE_THEMES = textwrap.dedent("""
    import json
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(800, 480))
    from selfcheck.kiosk.ui import audit
    from selfcheck.kiosk.ui.theme import theme
    h = audit.Harness()
    views = dict(audit.sample_views("vi"))
    seen = {}
    for level in ("normal", "large", "contrast"):
        # as the audit and the gallery go: a session screen, then the idle screen, which
        # puts the usual theme back for the next reader
        h.show((800, 480), "vi", level, views["borrow"])
        h.show((800, 480), "vi", level, views["idle"])
        seen[level] = [theme.level, h.station.ids.idle_text.font_size, list(theme.bg)]
    print("SEEN " + json.dumps(seen))
""")


def test_the_audit_draws_the_idle_screen_in_every_theme() -> None:
    """The idle screen resets the theme for the next reader; the audit sets its theme after
    that, so that the large and contrast idle screens are drawn and checked."""
    import json

    proc = subprocess.run([sys.executable, "-c", IDLE_THEMES], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(next(ln for ln in proc.stdout.splitlines()
                           if ln.startswith("SEEN "))[5:])
    assert [seen[k][0] for k in ("normal", "large", "contrast")] == ["normal", "large",
                                                                     "contrast"]
    assert seen["large"][1] >= 1.4 * seen["normal"][1]
    assert seen["contrast"][2][:3] == [0, 0, 0]  # the contrast theme's black


MEASURE = textwrap.dedent("""
    import json
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(800, 480))
    from selfcheck.kiosk.ui import audit
    h = audit.Harness()
    views = dict(audit.sample_views("vi"))
    ids = h.station.ids
    seen, fonts = {}, {}

    def box(w):
        x, y = w.to_window(w.x, w.y)
        return [round(x), round(y), round(x + w.width), round(y + w.height)]

    for level in ("normal", "large"):
        h.show((800, 480), "vi", level, views["pin"])
        seen[f"pin {level}"] = [box(b) for b in h.station.pin_buttons.values()]
        seen[f"bar {level}"] = [box(ids[k]) for k in ("a11y", "help", "lang")]
        h.show((800, 480), "vi", level, views["account"])
        seen[f"renew {level}"] = [box(w) for w in ids.account_lines.walk(restrict=True)
                                  if getattr(w, "text", "") == "Gia hạn"]
        h.show((800, 480), "vi", level, views["borrow"])
        fonts[f"bar {level}"] = min(ids[k].font_size for k in ("title", "net", "a11y", "help",
                                                               "lang"))
        fonts[f"reader {level}"] = min(w.font_size
                                       for w in ids.screens.current_screen.walk()
                                       if getattr(w, "text", "").strip())
    print("SEEN " + json.dumps(seen))
    print("FONTS " + json.dumps(fonts))
""")


def test_pin_keys_bar_and_renew_buttons_are_9_mm_and_2_mm_apart_on_the_pi_panel() -> None:
    """At 800x480 (5.19 px/mm across, 5.58 down): 47 x 51 px each, 11 x 12 px between; and
    text 3.5 mm high, the bar's 3 mm."""
    import json

    proc = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(next(ln for ln in proc.stdout.splitlines()
                           if ln.startswith("SEEN "))[5:])
    for group, boxes in seen.items():
        assert boxes, group
        for x0, y0, x1, y1 in boxes:
            assert x1 - x0 >= 47 and y1 - y0 >= 51, (group, x1 - x0, y1 - y0)
        for i, (ax0, ay0, ax1, ay1) in enumerate(boxes):
            for bx0, by0, bx1, by1 in boxes[i + 1:]:
                across = max(bx0 - ax1, ax0 - bx1)
                down = max(by0 - ay1, ay0 - by1)
                assert across >= 11 or down >= 12, (group, across, down)
    fonts = json.loads(next(ln for ln in proc.stdout.splitlines()
                            if ln.startswith("FONTS "))[6:])
    # text 3.5 mm high (20 px down the panel), the top bar's 3 mm (17 px)
    assert fonts["bar normal"] >= 17 and fonts["reader normal"] >= 20, fonts
    assert fonts["reader large"] >= 30, fonts  # large text grows it

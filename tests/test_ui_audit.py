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
from selfcheck.kiosk.ui.theme import palette, panel_ppi

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


BROKEN = textwrap.dedent("""
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(400, 300))
    from kivy.base import EventLoop
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.uix.button import Button
    from kivy.uix.floatlayout import FloatLayout
    from kivy.uix.label import Label
    from selfcheck.kiosk.ui.audit import audit_tree
    EventLoop.ensure_window()
    root = FloatLayout()
    clipped = Label(text="Không mượn được: sách chỉ đọc tại chỗ " * 4, font_size=20,
                    size_hint=(None, None), size=(200, 30), pos=(0, 0), text_size=(200, None))
    short = Label(text="Đặt sách lên khay đặt sách, từng cuốn", font_size=20, shorten=True,
                  size_hint=(None, None), size=(120, 30), pos=(0, 100), text_size=(120, 30))
    a = Button(text="A", size_hint=(None, None), size=(40, 40), pos=(200, 200))
    b = Button(text="B", size_hint=(None, None), size=(80, 80), pos=(220, 180),
               background_normal="", background_color=(0.85, 0.45, 0.10, 1),
               color=(1, 1, 1, 1))
    for w in (clipped, short, a, b):
        root.add_widget(w)
    Window.add_widget(root)
    for _ in range(5):
        Clock.tick()
    ids = {id(clipped): "clipped", id(short): "short", id(a): "a", id(b): "b"}
    for v in audit_tree([root], ids, "broken", (400, 300), "vi", "normal", 48, 133):
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
    assert "a: touch target 40x40 px, under 9 mm" in text
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

"""The audit's sizes, measured on the drawn picture instead of the widgets: the station is
rendered offscreen at 800x480 as on the Raspberry Pi 7" panel (154 x 86 mm: 5.19 px/mm
across, 5.58 down), exported to PNG, and a touch target's drawn extent, a letter's height and a
control's boundary contrast are found in its pixels. A widget's rectangle only says where to
look; what is measured is what a reader would see (a button drawn smaller than its widget, a
theme that never reached the screen, an edge painted in the bar's own colour all fail here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from selfcheck.kiosk.ui.audit import contrast

pytestmark = pytest.mark.ui
ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, SDL_VIDEODRIVER="offscreen")
ACROSS, DOWN = 800 / 154.0, 480 / 86.0  # px per mm on the Pi 7" panel
# Roboto (Kivy's font): a capital's height is 1456/2048 of the font size, the size the
# design's "text 3.5 mm high" speaks of
CAP = 1456 / 2048

# argv: the folder for the PNGs. Draws each scene as the audit does and prints, per scene,
# its PNG and the window rectangles of the widgets to look at.
DRAW = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from selfcheck.kiosk.ui.boot import configure
    configure(headless=True, size=(800, 480))
    from kivy.base import EventLoop
    from selfcheck.kiosk.ui import audit
    out = Path(sys.argv[1])
    h = audit.Harness()
    ids = h.station.ids
    views = dict(audit.sample_views("en"))
    scenes = {}

    def rect(w):
        x, y = w.to_window(w.x, w.y)
        return [x, y, x + w.width, y + w.height]

    for level in ("normal", "large", "contrast"):
        for name in ("borrow", "idle"):
            h.show((800, 480), "en", level, views[name])
            EventLoop.idle()
            png = out / f"{name}-{level}.png"
            h.station.export_to_png(str(png))
            scenes[f"{name}-{level}"] = {
                "png": str(png), "size": list(h.station.size),
                "rects": {k: rect(ids[k]) for k in ("session_hint", "idle_text", "return_button",
                                                    "a11y", "help", "finish_button")}}
    print("SCENES " + json.dumps(scenes))
""")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pixels")
    proc = subprocess.run([sys.executable, "-c", DRAW, str(out)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SCENES "))
    result: dict[str, Any] = json.loads(line[7:])
    return result


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in PNG pixels (top row 0), inclusive
Rgb = tuple[int, int, int]


class Picture:
    def __init__(self, scene: dict[str, Any]) -> None:
        self.image = Image.open(scene["png"]).convert("RGB")
        self.px = self.image.load()
        self.w, self.h = self.image.size
        assert (self.w, self.h) == tuple(scene["size"])

    def window(self, rect: list[float], margin: int = 0) -> Box:
        """A widget's window rectangle (y up) as PNG pixels (y down), widened by margin."""
        x0, y0, x1, y1 = rect
        return (max(0, int(x0) - margin), max(0, self.h - int(y1) - margin),
                min(self.w - 1, int(x1) + margin), min(self.h - 1, self.h - int(y0) + margin))

    def at(self, x: int, y: int) -> Rgb:
        r, g, b = self.px[x, y]  # type: ignore[index, misc]
        return r, g, b

    def region(self, seed: tuple[int, int], limit: Box, tol: int = 6) -> Box:
        """The extent of the area of the seed's colour around it (a button's fill: letters
        on it are holes, its edge or the background stops it)."""
        colour = self.at(*seed)
        seen = {seed}
        todo = deque([seed])
        x0 = x1 = seed[0]
        y0 = y1 = seed[1]
        while todo:
            x, y = todo.popleft()
            x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
            for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if (n not in seen and limit[0] <= n[0] <= limit[2]
                        and limit[1] <= n[1] <= limit[3]
                        and max(abs(a - b) for a, b in zip(self.at(*n), colour,
                                                           strict=True)) <= tol):
                    seen.add(n)
                    todo.append(n)
        return x0, y0, x1, y1

    def ring(self, box: Box, inner: int, outer: int) -> list[Rgb]:
        """The pixels between `inner` and `outer` pixels outside the box (negative: inside)."""
        x0, y0, x1, y1 = box
        out = []
        for y in range(max(0, y0 - outer), min(self.h, y1 + outer + 1)):
            for x in range(max(0, x0 - outer), min(self.w, x1 + outer + 1)):
                d = max(x0 - x, x - x1, y0 - y, y - y1)
                if inner <= d <= outer:
                    out.append(self.at(x, y))
        return out

    def boundary_contrast(self, box: Box) -> float:
        """How much the control's boundary (its fill's edge, or an edge drawn around it)
        stands out from what surrounds it: the strongest colour in a band across the edge
        against the commonest colour a few pixels outside."""
        around = Counter(self.ring(box, 6, 9)).most_common(1)[0][0]
        rgb = [tuple(c / 255 for c in p) for p in set(self.ring(box, -2, 3))]
        return max(contrast(c, [c / 255 for c in around]) for c in rgb)

    def drawn(self, fill: Box) -> Box:
        """A control's whole drawn extent: its fill, grown over an edge drawn around it
        (rows and columns that mostly differ from what surrounds the control)."""
        around = [c / 255 for c in Counter(self.ring(fill, 6, 9)).most_common(1)[0][0]]

        def differs(points: list[tuple[int, int]]) -> bool:
            inside = [p for p in points if 0 <= p[0] < self.w and 0 <= p[1] < self.h]
            odd = sum(contrast([c / 255 for c in self.at(*p)], around) > 1.2 for p in inside)
            return bool(inside) and odd > len(inside) / 2

        x0, y0, x1, y1 = fill
        for _ in range(4):  # an edge is a few pixels at most
            if differs([(x0 - 1, y) for y in range(y0, y1 + 1)]):
                x0 -= 1
            if differs([(x1 + 1, y) for y in range(y0, y1 + 1)]):
                x1 += 1
            if differs([(x, y0 - 1) for x in range(x0, x1 + 1)]):
                y0 -= 1
            if differs([(x, y1 + 1) for x in range(x0, x1 + 1)]):
                y1 += 1
        return x0, y0, x1, y1

    def first_letter(self, box: Box) -> Box:
        """The ink of the first letter of a label's first line."""
        x0, y0, x1, y1 = box
        bg = Counter(self.at(x, y) for y in range(y0, y1 + 1)
                     for x in range(x0, x1 + 1)).most_common(1)[0][0]
        bgf = [c / 255 for c in bg]

        def ink(x: int, y: int) -> bool:
            return contrast([c / 255 for c in self.at(x, y)], bgf) > 2.0

        rows = [y for y in range(y0, y1 + 1) if any(ink(x, y) for x in range(x0, x1 + 1))]
        assert rows, "no text drawn"
        top = bottom = rows[0]
        while bottom + 1 in rows:
            bottom += 1
        cols = [x for x in range(x0, x1 + 1) if any(ink(x, y) for y in range(top, bottom + 1))]
        left = right = cols[0]
        while right + 1 in cols:
            right += 1
        ys = [y for y in range(top, bottom + 1) if any(ink(x, y) for x in range(left, right + 1))]
        return left, ys[0], right, ys[-1]


def _button(pic: Picture, rect: list[float]) -> Box:
    # a seed inside the fill, away from the centred label and the edge line
    x0, _y0, _x1, bottom = pic.window(rect)
    return pic.region((x0 + 6, bottom - 6), pic.window(rect, margin=30))


@pytest.mark.parametrize("level", ["normal", "large", "contrast"])
def test_touch_targets_are_drawn_9_mm_each_way(scenes: dict[str, Any], level: str) -> None:
    for scene, name in ((f"idle-{level}", "return_button"), (f"borrow-{level}", "a11y"),
                        (f"borrow-{level}", "finish_button")):
        pic = Picture(scenes[scene])
        x0, y0, x1, y1 = pic.drawn(_button(pic, scenes[scene]["rects"][name]))
        across = (x1 - x0 + 1) / ACROSS
        down = (y1 - y0 + 1) / DOWN
        assert across >= 9.0 - 0.1 and down >= 9.0 - 0.1, (scene, name, across, down)


@pytest.mark.parametrize("level", ["normal", "large", "contrast"])
def test_control_boundaries_stand_out_3_to_1(scenes: dict[str, Any], level: str) -> None:
    for scene, name in ((f"idle-{level}", "return_button"), (f"borrow-{level}", "a11y"),
                        (f"borrow-{level}", "help"), (f"borrow-{level}", "finish_button")):
        pic = Picture(scenes[scene])
        ratio = pic.boundary_contrast(_button(pic, scenes[scene]["rects"][name]))
        assert ratio >= 3.0, (scene, name, round(ratio, 2))


@pytest.mark.parametrize(("scene", "label", "least_mm"), [
    ("borrow-normal", "session_hint", 3.5),  # at the reading floor on this panel
    ("idle-normal", "idle_text", 3.5),
    # large text, on the idle screen too (which puts the usual theme back for the next
    # reader, after which the audit sets it again)
    ("idle-large", "idle_text", 3.5 * 1.5),
    ("borrow-large", "session_hint", 3.5 * 1.5),
])
def test_text_is_drawn_high_enough(scenes: dict[str, Any], scene: str, label: str,
                                   least_mm: float) -> None:
    pic = Picture(scenes[scene])
    x0, y0, x1, y1 = pic.first_letter(pic.window(scenes[scene]["rects"][label]))
    width, cap = x1 - x0 + 1, y1 - y0 + 1
    assert width < cap, (scene, width, cap)  # one letter ("P" of "Place"), not a word
    size_mm = cap / CAP / DOWN
    assert size_mm >= least_mm - 0.15, (scene, label, cap, round(size_mm, 2))


def test_the_pixel_measure_sees_a_small_or_edgeless_control(tmp_path: Path) -> None:
    """The measures above fail where they should: a 40 px button, and a button the colour of
    what is around it, drawn into a picture of their own."""
    image = Image.new("RGB", (200, 120), (247, 245, 237))
    for x in range(20, 60):
        for y in range(20, 60):
            image.putpixel((x, y), (179, 82, 0))  # 40 x 40 px: 7.7 x 7.2 mm
    for x in range(100, 180):
        for y in range(20, 90):
            image.putpixel((x, y), (240, 240, 232))  # barely differs from the screen
    image.save(tmp_path / "bad.png")
    pic = Picture({"png": str(tmp_path / "bad.png"), "size": [200, 120]})
    small = pic.region((25, 25), (0, 0, 199, 119))
    assert (small[2] - small[0] + 1) / ACROSS < 9.0 and (small[3] - small[1] + 1) / DOWN < 9.0
    assert pic.boundary_contrast(pic.region((105, 25), (0, 0, 199, 119))) < 3.0

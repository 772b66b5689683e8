"""The station's panel: its size in pixels and in millimetres across and down. Sizes a reader
meets (9 mm touch targets, 3.5 mm text) are millimetres on the real glass, and a panel's
pixels need not be square, which neither a diagonal nor one DPI can tell: the settings give
the active area (`screen_mm = "154x86"`) or name a known panel (`screen = "rpi-7"`).

No Kivy here: the settings read it, and the theme (kiosk/ui/theme.py) turns it into pixels."""

from __future__ import annotations

# Known panels by name: (pixels across x down, active area in mm across x down), from the
# makers' data sheets.
PANELS: dict[str, tuple[tuple[int, int], tuple[float, float]]] = {
    # Raspberry Pi 7" Touch Display: 800x480 on 154.08 x 85.92 mm
    "rpi-7": ((800, 480), (154.0, 86.0)),
    # Raspberry Pi Touch Display 2, 7" portrait: 720x1280 on 88 x 155 mm
    "rpi-touch-2": ((720, 1280), (88.0, 155.0)),
}


def parse_mm(text: str) -> tuple[float, float]:
    """'154x86' -> (154.0, 86.0): a panel's active area in mm, across x down."""
    w, sep, h = text.lower().replace(" ", "").partition("x")
    try:
        size = float(w), float(h)
    except ValueError:
        size = (0.0, 0.0)
    if not sep or not (20 <= min(size) and max(size) <= 3000):
        raise ValueError(f"{text!r}: write the panel's active area in mm as WIDTHxHEIGHT, "
                         "e.g. 154x86, each between 20 and 3000")
    return size

"""The screens' palette, text scale and layout unit.

The accessibility button switches the level: normal, large text, large text on a
high-contrast palette. The station's size sets `u`, the pixels of one layout unit (the .kv
rules write `72 * theme.u` where a fixed layout would write dp(72)), so that one layout
reflows from the 7" 800x480 panel to a 1080x1920 floor kiosk. `touch` is the smallest touch
target in pixels, 9 mm both ways on the panel's real size (its pixels need not be square),
`gap` the 2 mm between targets. The .kv rules bind to these properties, so one assignment
restyles and resizes every screen."""

from __future__ import annotations

import math
from typing import Any

from kivy.event import EventDispatcher
from kivy.properties import ColorProperty, NumericProperty, OptionProperty

from selfcheck.kiosk.panels import PANELS

LARGE = 1.5
TOUCH_MM = 9.0
GAP_MM = 2.0  # between two touch targets
READ_MM, BAR_READ_MM = 3.5, 3.0  # the least text height a reader reads at arm's length
# The design size of one layout: a layout unit is 1 px on a 1000x760 landscape station.
DESIGN = (1000.0, 760.0)
# Usual panels for each resolution, when the settings give neither DPI nor diagonal: the
# Raspberry Pi 7" displays, a 10.1" tablet panel, a 15.6" kiosk, a 32" floor kiosk.
PANEL_INCHES = {(800, 480): 7.0, (1024, 600): 7.0, (1280, 800): 10.1, (1920, 1080): 15.6,
                (720, 1280): 7.0, (1080, 1920): 32.0}
# Panels whose active area is known, in mm across and down: their pixels are not square,
# which a diagonal cannot tell (the Raspberry Pi 7": 5.19 px/mm across, 5.59 down).
PANEL_MM = {size: mm for size, mm in PANELS.values()}

# Every pair of text and background colour the screens use meets WCAG AA (4.5:1); the layout
# audit computes it from these values.
_PALETTES: dict[str, dict[str, tuple[float, ...]]] = {
    "normal": {
        "bg": (0.97, 0.96, 0.93, 1), "bar": (0.05, 0.22, 0.32, 1),
        "bar_text": (1, 1, 1, 1), "bar_button": (0.22, 0.36, 0.44, 1),
        "online": (0.60, 1.0, 0.60, 1), "offline": (1.0, 0.80, 0.45, 1),
        "text": (0.10, 0.12, 0.14, 1), "accent": (0.70, 0.32, 0.0, 1),
        "accent_text": (1, 1, 1, 1), "band_a": (1, 1, 1, 1), "band_b": (0.93, 0.93, 0.90, 1),
        "green": (0.08, 0.42, 0.16, 1), "red": (0.66, 0.10, 0.08, 1),
        "grey": (0.33, 0.36, 0.38, 1), "amber": (0.52, 0.30, 0.0, 1),
        "alert_bg": (1.0, 0.86, 0.55, 1), "key": (0.85, 0.85, 0.82, 1),
        "key_text": (0.10, 0.10, 0.10, 1), "warn_bg": (0.10, 0.12, 0.14, 1),
        "warn_text": (1, 1, 1, 1),
    },
    # White and yellow on black, no mid greys.
    "contrast": {
        "bg": (0, 0, 0, 1), "bar": (0, 0, 0, 1), "bar_text": (1, 1, 1, 1),
        "bar_button": (0.2, 0.2, 0.2, 1), "online": (0.4, 1, 0.4, 1),
        "offline": (1, 0.85, 0.2, 1), "text": (1, 1, 1, 1),
        "accent": (1, 0.9, 0, 1), "accent_text": (0, 0, 0, 1), "band_a": (0, 0, 0, 1),
        "band_b": (0.12, 0.12, 0.12, 1), "green": (0.4, 1, 0.4, 1), "red": (1, 0.45, 0.4, 1),
        "grey": (0.9, 0.9, 0.9, 1), "amber": (1, 0.85, 0.2, 1), "alert_bg": (0.35, 0.25, 0, 1),
        "key": (0.2, 0.2, 0.2, 1), "key_text": (1, 1, 1, 1), "warn_bg": (1, 0.9, 0, 1),
        "warn_text": (0, 0, 0, 1),
    },
}


def panel_ppi(size: tuple[int, int], dpi: float | None = None,
              inches: float | None = None) -> float:
    """Pixels per inch of the panel: given, from its diagonal, or from the usual panel of
    that resolution (96 when unknown, a desktop monitor)."""
    if dpi:
        return dpi
    w, h = size
    diag = inches or PANEL_INCHES.get((w, h)) or PANEL_INCHES.get((h, w))
    return math.hypot(w, h) / diag if diag else 96.0


def panel_px_mm(size: tuple[int, int], dpi: float | None = None,
                inches: float | None = None,
                mm: tuple[float, float] | None = None) -> tuple[float, float]:
    """Pixels per mm across and down: from the active area given (`screen_mm`, a named
    panel), else from the DPI or diagonal given (square pixels), else the known panel's
    active area (either way round), else as `panel_ppi`."""
    w, h = size
    if mm is not None:
        return w / mm[0], h / mm[1]
    known = PANEL_MM.get((w, h))
    if known is None and (h, w) in PANEL_MM:
        known = PANEL_MM[(h, w)][::-1]
    if dpi or inches or known is None:
        square = panel_ppi(size, dpi, inches) / 25.4
        return square, square
    return w / known[0], h / known[1]


class Theme(EventDispatcher):
    scale = NumericProperty(1.0)
    level = OptionProperty("normal", options=["normal", "large", "contrast"])
    u = NumericProperty(1.0)  # pixels per layout unit
    fs = NumericProperty(1.0)  # pixels per font unit: u x the text scale
    touch = NumericProperty(51.0)  # the smallest touch target, px, 9 mm along both axes
    gap = NumericProperty(12.0)  # the least space between two targets, px, 2 mm both ways
    read = NumericProperty(20.0)  # the least font size, px, 3.5 mm down the panel
    bar_read = NumericProperty(17.0)  # the same in the top bar, 3 mm
    ppi = NumericProperty(133.0)
    px_mm = (5.19, 5.59)  # pixels per mm across and down
    bg = ColorProperty(_PALETTES["normal"]["bg"])
    bar = ColorProperty(_PALETTES["normal"]["bar"])
    bar_text = ColorProperty(_PALETTES["normal"]["bar_text"])
    bar_button = ColorProperty(_PALETTES["normal"]["bar_button"])
    online = ColorProperty(_PALETTES["normal"]["online"])
    offline = ColorProperty(_PALETTES["normal"]["offline"])
    text = ColorProperty(_PALETTES["normal"]["text"])
    accent = ColorProperty(_PALETTES["normal"]["accent"])
    # Not "on_accent": Kivy would take that for the handler of `accent` changes.
    accent_text = ColorProperty(_PALETTES["normal"]["accent_text"])
    band_a = ColorProperty(_PALETTES["normal"]["band_a"])
    band_b = ColorProperty(_PALETTES["normal"]["band_b"])
    green = ColorProperty(_PALETTES["normal"]["green"])
    red = ColorProperty(_PALETTES["normal"]["red"])
    grey = ColorProperty(_PALETTES["normal"]["grey"])
    amber = ColorProperty(_PALETTES["normal"]["amber"])
    alert_bg = ColorProperty(_PALETTES["normal"]["alert_bg"])
    key = ColorProperty(_PALETTES["normal"]["key"])
    key_text = ColorProperty(_PALETTES["normal"]["key_text"])
    warn_bg = ColorProperty(_PALETTES["normal"]["warn_bg"])
    warn_text = ColorProperty(_PALETTES["normal"]["warn_text"])

    def on_level(self, _instance: Any, level: str) -> None:
        self.scale = 1.0 if level == "normal" else LARGE
        for name, rgba in _PALETTES["contrast" if level == "contrast" else "normal"].items():
            setattr(self, name, rgba)

    def on_scale(self, *_: Any) -> None:
        self.fs = self.u * self.scale

    def on_u(self, *_: Any) -> None:
        self.fs = self.u * self.scale

    def fit(self, width: float, height: float) -> None:
        """The layout unit for a station of this size: the design fills the short way; a
        portrait screen uses its width, with more rows below."""
        if width <= 0 or height <= 0:
            return
        if width >= height:
            u = min(width / DESIGN[0], height / DESIGN[1])
        else:
            u = min(width / 760.0, height / 1000.0)
        self.u = round(max(u, 0.4), 3)

    def set_panel(self, ppi: float, px_mm: tuple[float, float] | None = None) -> None:
        """The panel's pixel density; `px_mm` across and down when the pixels are not
        square (else from `ppi`). A target is square in the layout, so its side is the
        larger axis' 9 mm."""
        self.ppi = ppi
        self.px_mm = px_mm or (ppi / 25.4, ppi / 25.4)
        self.touch = math.ceil(TOUCH_MM * max(self.px_mm))
        self.gap = math.ceil(GAP_MM * max(self.px_mm))
        self.read = math.ceil(READ_MM * self.px_mm[1])
        self.bar_read = math.ceil(BAR_READ_MM * self.px_mm[1])

    def cycle(self) -> None:
        order = ["normal", "large", "contrast"]
        self.level = order[(order.index(self.level) + 1) % len(order)]

    def color(self, name: str) -> tuple[float, ...]:
        return tuple(getattr(self, name))


def palette(level: str) -> dict[str, tuple[float, ...]]:
    return _PALETTES["contrast" if level == "contrast" else "normal"]


theme = Theme()

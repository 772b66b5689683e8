"""The screens' palette and text scale, switched by the accessibility button: normal, large
text, large text on a high-contrast palette. The .kv rules bind to these properties, so one
assignment restyles every screen."""

from __future__ import annotations

from typing import Any

from kivy.event import EventDispatcher
from kivy.properties import ColorProperty, NumericProperty, OptionProperty

LARGE = 1.3

_PALETTES: dict[str, dict[str, tuple[float, ...]]] = {
    "normal": {
        "bg": (0.97, 0.96, 0.93, 1), "bar": (0.08, 0.30, 0.42, 1),
        "text": (0.10, 0.12, 0.14, 1), "accent": (0.85, 0.45, 0.10, 1),
        "accent_text": (1, 1, 1, 1), "band_a": (1, 1, 1, 1), "band_b": (0.93, 0.93, 0.90, 1),
        "green": (0.12, 0.50, 0.22, 1), "red": (0.75, 0.15, 0.12, 1),
        "grey": (0.35, 0.38, 0.40, 1), "amber": (0.70, 0.42, 0.02, 1),
        "alert_bg": (1.0, 0.86, 0.55, 1),
    },
    # WCAG-style contrast: white and yellow on black, no mid greys.
    "contrast": {
        "bg": (0, 0, 0, 1), "bar": (0, 0, 0, 1), "text": (1, 1, 1, 1),
        "accent": (1, 0.9, 0, 1), "accent_text": (0, 0, 0, 1), "band_a": (0, 0, 0, 1),
        "band_b": (0.12, 0.12, 0.12, 1), "green": (0.4, 1, 0.4, 1), "red": (1, 0.45, 0.4, 1),
        "grey": (0.9, 0.9, 0.9, 1), "amber": (1, 0.85, 0.2, 1), "alert_bg": (0.35, 0.25, 0, 1),
    },
}


class Theme(EventDispatcher):
    scale = NumericProperty(1.0)
    level = OptionProperty("normal", options=["normal", "large", "contrast"])
    bg = ColorProperty(_PALETTES["normal"]["bg"])
    bar = ColorProperty(_PALETTES["normal"]["bar"])
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

    def on_level(self, _instance: Any, level: str) -> None:
        self.scale = 1.0 if level == "normal" else LARGE
        for name, rgba in _PALETTES["contrast" if level == "contrast" else "normal"].items():
            setattr(self, name, rgba)

    def cycle(self) -> None:
        order = ["normal", "large", "contrast"]
        self.level = order[(order.index(self.level) + 1) % len(order)]

    def color(self, name: str) -> tuple[float, ...]:
        return tuple(getattr(self, name))


theme = Theme()

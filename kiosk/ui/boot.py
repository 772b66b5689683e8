"""Kivy set-up that must happen before any Kivy window import: size, fullscreen, rotation,
headless."""

from __future__ import annotations

import os

DEFAULT_SIZE = (1280, 800)
DEMO_PANEL_WIDTH = 300  # px: the demo's simulator beside the station


def configure(*, headless: bool = False, fullscreen: bool = False,
              size: tuple[int, int] | None = None, rotation: int = 0,
              max_fps: int | None = None) -> None:
    """Window set-up. `size` None: fullscreen takes the display's own size, a window opens
    at 1280x800. `rotation` turns the picture for a panel mounted the other way. `max_fps`
    caps the frames drawn a second (Kivy's default: 60)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    # one layout unit is one pixel: the screens scale themselves to the station's size
    os.environ.setdefault("KIVY_METRICS_DENSITY", "1")
    if headless:
        # Mesa llvmpipe behind SDL's offscreen driver; the 'dummy' driver has no GL.
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    from kivy.config import Config

    width, height = size or DEFAULT_SIZE
    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "rotation", str(rotation))
    if max_fps is not None:
        Config.set("graphics", "maxfps", str(max_fps))
    # "auto": the display's resolution; "1": the window's size, fullscreen
    Config.set("graphics", "fullscreen", ("1" if size else "auto") if fullscreen else "0")
    Config.set("graphics", "resizable", "0" if fullscreen else "1")
    Config.set("graphics", "show_cursor", "0" if fullscreen else "1")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0" if fullscreen else "1")

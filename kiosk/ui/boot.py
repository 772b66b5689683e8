"""Kivy set-up that must happen before any Kivy window import: size, fullscreen, headless."""

from __future__ import annotations

import os


def configure(*, headless: bool = False, fullscreen: bool = False,
              size: tuple[int, int] = (1280, 800)) -> None:
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    if headless:
        # Mesa llvmpipe behind SDL's offscreen driver; the 'dummy' driver has no GL.
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    from kivy.config import Config

    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if fullscreen else "1")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0" if fullscreen else "1")

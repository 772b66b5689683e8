"""Service supervision for the station app: READY=1 to systemd once the idle screen is on
the display, then WATCHDOG=1 from Kivy's Clock.

The Clock runs on the UI loop (which is also the asyncio loop of the runtime), so a frozen
screen or a blocked loop stops the pings and systemd restarts the app after WatchdogSec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selfcheck.system.sdnotify import notify, watchdog_interval_s


class UiWatchdog:
    def __init__(self, alive: Callable[[], bool] = lambda: True) -> None:
        self._alive = alive
        self._event: Any = None
        self.ready = False
        self.pings = 0

    def start(self) -> None:
        """Call from App.on_start (the UI loop)."""
        from kivy.clock import Clock
        from kivy.core.window import Window

        Window.bind(on_flip=self._flipped)
        interval = watchdog_interval_s()
        if interval is not None:
            self._event = Clock.schedule_interval(self._ping, interval)

    def _flipped(self, window: Any) -> None:
        # The first frame flipped to the display is the idle screen: now we are ready.
        window.unbind(on_flip=self._flipped)
        self.ready = True
        notify("READY=1\nSTATUS=idle screen shown")

    def _ping(self, dt: float) -> None:
        if self._alive():  # the runtime died: let systemd notice and restart us
            self.pings += 1
            notify("WATCHDOG=1")

    def stop(self) -> None:
        if self._event is not None:
            self._event.cancel()
            self._event = None
        notify("STOPPING=1")

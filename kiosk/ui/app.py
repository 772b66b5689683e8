"""The Kivy station app: one asyncio loop for the UI, the runtime and an optional script."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kivy.app import App
from kivy.core.window import Window
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.widget import Widget

from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.runtime.watchdog import UiWatchdog
from selfcheck.kiosk.ui import stocktake as stocktake_ui
from selfcheck.kiosk.ui import tagging as tagging_ui
from selfcheck.kiosk.ui.audio import Prompter
from selfcheck.kiosk.ui.demo_panel import DemoPanel
from selfcheck.kiosk.ui.screens import StationRoot
from selfcheck.kiosk.ui.theme import panel_ppi, panel_px_mm, theme

Script = Callable[["StationApp"], Awaitable[int]]


class StationApp(App):
    title = "Selfcheck"

    def __init__(self, runtime: StationRuntime,
                 demo: Callable[[], DemoPanel] | None = None, *,
                 panel: str = "beside", **kw: Any) -> None:
        """`panel`: the demo panel "beside" the station (the window is wider by the panel's
        width), or on a "toggle" (F2) over a fullscreen station."""
        super().__init__(**kw)
        self.runtime = runtime
        self._make_demo = demo
        self._panel = panel
        self.station: StationRoot | None = None
        self.demo: DemoPanel | None = None
        self.prompter: Prompter | None = None
        self.runtime_task: asyncio.Future[None] | None = None  # set by run_app
        # systemd watchdog fed from the UI loop while the runtime task lives
        # and its threads (MQTT loop, pad loop, card reader) run: one that died silently
        # would leave a screen that cannot lend, so systemd must restart us
        self.watchdog = UiWatchdog(
            lambda: (self.runtime_task is None or not self.runtime_task.done())
            and self.runtime.threads_ok())

    def build(self) -> Widget:
        s = self.runtime.config.screen
        # touch targets are sized in mm of the real panel
        panel = s.size or (Window.width - (DemoPanel.WIDTH if self._make_demo
                                           and self._panel == "beside" else 0),
                           Window.height)
        across, down = panel_px_mm(panel, s.dpi, s.inches, s.area_mm)
        if s.rotation in (90, 270):  # the picture's across is the panel's down
            across, down = down, across
        theme.set_panel(panel_ppi(panel, s.dpi, s.inches), (across, down))
        self.prompter = Prompter(s.audio, s.audio_cache)
        self.station = StationRoot(on_button=self._button, on_event=self.runtime.feed,
                                   say=self.prompter.say, desk_where=s.desk_where,
                                   places=s.places, offline_loan_days=s.offline_loan_days)
        # The station's screens, with the staff's stock-take screen over them when open.
        # (the tagging screen is over the station's own while staff tag books: ui/tagging.py)
        self.tagging_screen = tagging_ui.attach(self.station, self.station, self.runtime)
        self.screen = stocktake_ui.attach(self.tagging_screen, self.station, self.runtime)
        root: Widget = self.screen
        if self._make_demo is not None:
            self.demo = self._make_demo()
            if self._panel == "beside":
                root = BoxLayout(orientation="horizontal")
                root.add_widget(self.screen)
                root.add_widget(self.demo)
            else:
                root = FloatLayout()
                root.add_widget(self.screen)
                self.demo.pos_hint = {"right": 1, "top": 1}
                self.demo.size_hint_y = 1
                self._show_demo(False)
                root.add_widget(self.demo)
                Window.bind(on_key_down=self._demo_key)
        self.runtime.add_listener(self._render)
        self._render(self.runtime.view())
        return root

    def on_start(self) -> None:
        self.watchdog.start()

    def on_stop(self) -> None:
        self.watchdog.stop()

    def _show_demo(self, shown: bool) -> None:
        assert self.demo is not None
        self.demo.opacity, self.demo.disabled = (1, False) if shown else (0, True)

    def _demo_key(self, _window: Any, key: int, *_: Any) -> bool:
        if key == 283 and self.demo is not None:  # F2
            self._show_demo(self.demo.disabled)
            return True
        return False

    def _render(self, view: core.View) -> None:
        if self.station is not None:
            self.station.render(view)
        if self.demo is not None:
            self.demo.relabel()

    def _button(self, name: str) -> None:
        self.runtime.feed(core.Touch(name))  # type: ignore[arg-type]


async def run_app(app: StationApp, script: Script | None = None) -> int:
    """Run the UI and the runtime together; with a script, its result is the exit code."""
    runtime_task = asyncio.ensure_future(app.runtime.run())
    app.runtime_task = runtime_task
    result = 0

    async def scripted() -> None:
        nonlocal result
        try:
            assert script is not None
            result = await script(app)
        except Exception:
            import traceback

            traceback.print_exc()
            result = 1
        finally:
            app.stop()

    script_task = asyncio.ensure_future(scripted()) if script else None
    try:
        await app.async_run(async_lib="asyncio")
    finally:
        app.runtime.stop()
        await runtime_task
        if script_task is not None:
            await script_task
    return result

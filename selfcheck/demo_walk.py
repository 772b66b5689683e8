"""The scripted headless walk: a card, three books borrowed, the same three returned.
Driven by touches on the real widgets; a PNG of every screen it passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from kivy.core.window import Window
from kivy.tests.common import UnitTestTouch
from kivy.uix.widget import Widget

from kiosk import core
from kiosk.ui.app import StationApp

WALK_ITEMS = ("39000001", "39000002", "39000003")
WALK_CARD = "DG0001"


async def press(widget: Widget) -> None:
    """A finger on the widget's centre, after a frame so that the layout is current."""
    await asyncio.sleep(0.1)
    x, y = widget.to_window(*widget.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    touch.touch_up()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Shooter:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.count = 0
        self.files: list[Path] = []

    async def shot(self, name: str) -> None:
        if self.folder is None:
            return
        await asyncio.sleep(0.25)  # let Kivy draw the frame the change asked for
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{self.count:02d}-{name}.png"
        written = Window.screenshot(name=str(self.folder / "shot.png"))
        Path(written).replace(target)
        self.files.append(target)


def confirmed(view: Callable[[], core.View], count: int) -> Callable[[], bool]:
    return lambda: sum(ln.status is core.Status.DONE for ln in view().lines) == count


async def walk(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    rt, demo, station = app.runtime, app.demo, app.station
    assert demo is not None and station is not None
    shoot = Shooter(shots)
    view = rt.view
    await until(lambda: view().online, "the station to connect")
    if view().lang != lang:
        await press(station.ids.lang)
    await shoot.shot("idle")

    await press(demo.card_buttons[WALK_CARD])
    await until(lambda: view().mode is core.Mode.BORROW, "the patron screen")
    if view().lang != lang:
        await press(station.ids.lang)
    await shoot.shot("patron")
    for n, item in enumerate(WALK_ITEMS, start=1):
        await press(demo.book_buttons[item])
        await until(confirmed(view, n), f"loan {n} to be confirmed")
        await shoot.shot(f"borrowed-{n}")
    await until(lambda: all(ln.security == "done" for ln in view().lines), "security writes")
    await press(demo.lift_all)
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    await shoot.shot("borrow-summary")
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")

    await press(station.ids.return_button)
    await until(lambda: view().mode is core.Mode.RETURN, "the return screen")
    if view().lang != lang:
        await press(station.ids.lang)
    await shoot.shot("return")
    for n, item in enumerate(WALK_ITEMS, start=1):
        await press(demo.book_buttons[item])
        await until(confirmed(view, n), f"return {n} to be confirmed")
        await shoot.shot(f"returned-{n}")
    await until(lambda: all(ln.security == "done" for ln in view().lines), "security writes")
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    await shoot.shot("return-summary")
    await press(demo.lift_all)
    # Left alone, the countdown brings the station back to idle.
    await until(lambda: view().mode is core.Mode.IDLE, "the countdown to reach idle",
                timeout_s=rt.settings.summary_s + 5)
    await shoot.shot("idle-again")
    return 0


async def refusals(app: StationApp, shots: Path | None, lang: str = "vi") -> int:
    """A blocked card, then a reference-only book: both refused with their reasons."""
    rt, demo, station = app.runtime, app.demo, app.station
    assert demo is not None and station is not None
    shoot = Shooter(shots)
    view = rt.view
    await until(lambda: view().online, "the station to connect")
    if view().lang != lang:
        await press(station.ids.lang)
    await press(demo.card_buttons["DG0004"])
    await until(lambda: view().message == "patron_refused", "the refusal")
    await shoot.shot("blocked-card")
    await press(demo.card_buttons[WALK_CARD])
    await until(lambda: view().mode is core.Mode.BORROW, "the patron screen")
    if view().lang != lang:
        await press(station.ids.lang)
    await press(demo.book_buttons["39000007"])
    await until(lambda: any(ln.status is core.Status.REFUSED for ln in view().lines),
                "the refusal of a reference book")
    await shoot.shot("not-for-loan")
    await press(demo.lift_all)
    await press(station.ids.finish_button)
    await until(lambda: view().mode is core.Mode.SUMMARY, "the summary")
    await shoot.shot("refusal-summary")
    await press(station.ids.done_button)
    await until(lambda: view().mode is core.Mode.IDLE, "idle")
    return 0


SCENARIOS = {"walk": walk, "refusals": refusals}

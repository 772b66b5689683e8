"""A finger on the window: a touch down and up at a point, through Kivy's input queue as the
touch screen's would go (kivy.tests.common has one too, but importing it loads pytest)."""

from __future__ import annotations

from typing import Any

from kivy.base import EventLoop
from kivy.input.motionevent import MotionEvent


class Finger(MotionEvent):
    def __init__(self, x: float, y: float) -> None:
        win = EventLoop.window
        # positions in a motion event are fractions of the window, 0 to 1
        super().__init__("Finger", 99, {"x": x / (win.width - 1.0),
                                         "y": y / (win.height - 1.0)},
                         is_touch=True, type_id="touch")
        self.profile = ["pos"]

    def depack(self, args: Any) -> None:
        self.sx, self.sy = args["x"], args["y"]
        super().depack(args)

    def tap(self) -> None:
        EventLoop.post_dispatch_input("begin", self)
        EventLoop.post_dispatch_input("end", self)

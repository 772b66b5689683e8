"""The stock-take screen, for staff standing at the station: reached from the staff screen's
"Kiểm kê / Stock-take" button; choose a shelf (or take up a paused stock-take), put the books
on the pad a stack at a time, see each book and its verdict, pause or finish.

It lies over the station's screens while it is open (the self-check core goes on beneath,
and gets no tags: kiosk/runtime/stocktake.py takes them). Text is larger than the readers'
(a staff member reads it standing, from further away); sizes, colours and touch targets come
from the same theme (9 mm targets, 2 mm apart, contrast of the theme's palettes). The
central's requests block, so they run on a worker thread and come back on Kivy's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from selfcheck.kiosk.i18n import STOCKTAKE
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.stocktake import place_label
from selfcheck.kiosk.ui.theme import theme
from selfcheck.mqtt import messages

TEXTS = STOCKTAKE
STANDING = 1.3  # text this much larger than the readers' least size: read from further away
SHOWN = 12


def _label(**kw: Any) -> Label:
    lb = Label(color=theme.text, halign="left", valign="middle", size_hint_y=None, **kw)
    lb.bind(width=lambda w, v: setattr(w, "text_size", (v, None)),
            texture_size=lambda w, v: setattr(w, "height", v[1] + 10 * theme.u))
    return lb


def _font(size: float) -> float:
    return float(max(theme.read * theme.scale * STANDING, size * theme.fs))


class StocktakePanel(BoxLayout):
    """The stock-take screen; `shown` while staff work with it."""

    def __init__(self, runtime: StationRuntime, **kw: Any) -> None:
        super().__init__(orientation="vertical", padding=16 * theme.u, spacing=8 * theme.u,
                         **kw)
        self.runtime = runtime
        self.st = runtime.stocktake
        self.stage = "choose"  # choose, running, confirm, message
        self.message = ""
        self.options: list[tuple[str, Callable[[], None]]] = []
        self.busy = False
        with self.canvas.before:
            self._bg_color = Color(*theme.bg)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=self._paint, size=self._paint)
        self.title = _label(font_size=_font(34), bold=True)
        self.status = _label(font_size=_font(26))
        self.counts = _label(font_size=_font(26))
        self.rows = BoxLayout(orientation="vertical", size_hint_y=None,
                              spacing=max(theme.gap, 4 * theme.u))
        self.rows.bind(minimum_height=self.rows.setter("height"))
        self.scroll = ScrollView(do_scroll_x=False)
        self.scroll.add_widget(self.rows)
        self.buttons = Factory.ButtonRow()
        self.b_left = Factory.TouchButton()
        self.b_right = Factory.TouchButton()
        self.b_left.bind(on_release=lambda _b: self._press("left"))
        self.b_right.bind(on_release=lambda _b: self._press("right"))
        self.buttons.add_widget(self.b_left)
        self.buttons.add_widget(Widget())
        self.buttons.add_widget(self.b_right)
        for w in (self.title, self.status, self.counts, self.scroll, self.buttons):
            self.add_widget(w)
        self._refresh = Clock.create_trigger(lambda _dt: self.render())
        self.st.listeners.append(lambda: self._refresh())

    def _paint(self, *_: Any) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        self._bg_color.rgba = theme.bg

    @property
    def lang(self) -> str:
        return self.runtime.view().lang

    def t(self, key: str, **args: object) -> str:
        return TEXTS.t(key, self.lang, **args)

    def where(self, place: messages.Place) -> str:
        """The place as the sentences put it: "kệ A", "cả kho của điểm …"."""
        return self.t(f"where.{place.kind}", place=place_label(place))

    # -- what staff press
    def open(self) -> None:
        """From the staff screen: the shelves, or straight on with a running stock-take."""
        self.stage = "running" if self.st.active else "choose"
        self.options = []
        if self.stage == "choose":
            self._ask(self.st.places, self._places)
        self.render()

    def _press(self, which: str) -> None:
        if self.busy:
            return
        if self.stage == "choose" or self.stage == "message":
            if which == "left":
                self._leave()
            elif self.stage == "message":
                self.open()
        elif self.stage == "running":
            if which == "left":
                self._ask(self.st.pause, lambda _ok: self._say(self.t("paused")))
            else:
                self.stage = "confirm"
                self.render()
        elif self.stage == "confirm":
            if which == "left":
                self.stage = "running"
                self.render()
            else:
                self._ask(self.st.close, self._closed)

    def _leave(self) -> None:
        self.stage = "choose"
        leave = getattr(self.parent, "hide_stocktake", None)
        if leave is not None:
            leave()

    def _ask(self, call: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """The central's request on a worker thread; `then` on Kivy's clock."""
        self.busy = True
        self.status.text = self.t("asking")

        def work() -> None:
            result = call()
            Clock.schedule_once(lambda _dt: self._answered(then, result))

        threading.Thread(target=work, name="stocktake-ui", daemon=True).start()

    def _answered(self, then: Callable[[Any], None], result: Any) -> None:
        self.busy = False
        then(result)
        self.render()

    def _say(self, text: str) -> None:
        self.stage, self.message = "message", text

    # -- answers
    def _places(self, res: messages.StocktakeRes | None) -> None:
        self.options = []
        if res is None:
            self.message = self.t("no_answer")
            if self.st.info is not None and self.st.info.status != "closed":
                self.options.append((self.t("go_on", where=self.where(self.st.info.place)),
                                     self._go_on))
            return
        self.message = ""
        for g in res.going:
            self.options.append((self.t("resume", where=self.where(g.place), seen=g.seen,
                                        expected=g.expected),
                                 partial(self._begin, None, g.stocktake_id)))
        for p in res.places:
            kind = "collection" if p.place.kind == "collection" else "shelf"
            self.options.append((self.t(kind, place=place_label(p.place), items=p.items),
                                 partial(self._begin, p.place, None)))

    def _go_on(self) -> None:
        if self.st.go_on():
            self.stage = "running"
        self.render()

    def _begin(self, place: messages.Place | None, sid: str | None) -> None:
        def started(res: messages.StocktakeRes | None) -> None:
            if res is None:
                self._say(self.t("no_answer"))
            elif not res.ok:
                self._say(self.t("empty_place" if res.reason == "empty_place"
                                 else "closed_already"))
            else:
                self.stage = "running"

        self._ask(lambda: self.st.begin(place, sid), started)

    def _closed(self, res: messages.StocktakeRes | None) -> None:
        if res is None and self.st.unsent:
            self._say(self.t("not_sent", n=self.st.unsent))
        elif res is None or not res.ok or res.stocktake is None:
            self._say(self.t("no_answer") if res is None else self.t("closed_already"))
        else:
            s = res.stocktake
            self._say(self.t("done", where=self.where(s.place), missing=s.missing,
                             misplaced=s.misplaced, on_loan=s.on_loan, unknown=s.unknown))

    # -- drawing
    def render(self) -> None:
        self._paint()
        for w in (self.title, self.status, self.counts):
            w.color = theme.text
        self.rows.clear_widgets()
        run = self.st.run
        if self.stage == "choose":
            self.title.text = self.t("choose")
            self.status.text = self.message or ("" if not self.busy else self.t("asking"))
            self.counts.text = ""
            for text, action in self.options:
                b = Factory.TouchButton(text=text, font_size=_font(26))
                b.size_hint_x = 1
                b.bind(on_release=lambda _b, a=action: None if self.busy else a())
                self.rows.add_widget(b)
            self.b_left.text, self.b_right.text = self.t("back"), ""
        elif self.stage in ("running", "confirm"):
            info = self.st.info
            self.title.text = (self.t("title", where=self.where(info.place))
                               if info is not None else self.t("open"))
            c = run.counts
            self.status.text = (self.t("confirm_close") if self.stage == "confirm"
                                else self.t("hint") + "\n" + self.t("on_pad", n=run.on_pad))
            waiting = run.waiting
            self.counts.text = self.t("counts", seen=c.seen, expected=c.expected,
                                      found=c.found, misplaced=c.misplaced,
                                      on_loan=c.on_loan, unknown=c.unknown) + (
                "\n" + self.t("waiting", n=waiting) if waiting else "")
            for book in run.newest(SHOWN):
                verdict = self.t(f"verdict.{book.verdict or 'none'}")
                name = book.item_id or self.t("no_id")
                line = _label(text=f"{name}  {book.title or ''}\n{verdict}",
                              font_size=_font(24))
                if book.verdict in ("misplaced", "on_loan", "unknown"):
                    line.bold = True
                self.rows.add_widget(line)
            if self.stage == "confirm":
                self.b_left.text, self.b_right.text = self.t("back"), self.t("confirm")
            else:
                self.b_left.text, self.b_right.text = self.t("pause"), self.t("close")
        else:
            self.title.text = self.t("open")
            self.status.text = self.message
            self.counts.text = ""
            self.b_left.text, self.b_right.text = self.t("back"), self.t("list")
        for b in (self.b_left, self.b_right):
            b.opacity, b.disabled = (1, False) if b.text else (0, True)


class WithStocktake(FloatLayout):
    """The station's screens with the stock-take screen over them while it is open."""

    def __init__(self, content: Widget, station: Any, runtime: StationRuntime,
                 **kw: Any) -> None:
        super().__init__(**kw)
        content.pos_hint = {"x": 0, "y": 0}
        self.add_widget(content)
        self.panel = StocktakePanel(runtime, pos_hint={"x": 0, "y": 0})
        self.runtime = runtime
        # The way in: beside the other staff task (tagging) in the row over the staff
        # screen's own buttons (service on/off, exit), which hold only two on the smallest
        # panel; a row of its own when there is no such task.
        self.entry = Factory.TouchButton()
        self.entry.bind(on_release=lambda _b: self.show_stocktake())
        row = station.ids.staff_service.parent
        box = row.parent
        at = box.children.index(row) + 1  # children run bottom up: the widget above
        above = box.children[at] if at < len(box.children) else None
        tasks: Widget = above if type(above).__name__ == "ButtonRow" else Factory.ButtonRow()
        if tasks is not above:
            box.add_widget(tasks, index=at)
        tasks.add_widget(self.entry)
        runtime.add_listener(lambda view: setattr(
            self.entry, "text", TEXTS.t("open", view.lang)))
        self.entry.text = TEXTS.t("open", runtime.view().lang)

    def show_stocktake(self) -> None:
        if self.panel.parent is None:
            self.add_widget(self.panel)
        self.panel.open()

    def hide_stocktake(self) -> None:
        if self.panel.parent is not None:
            self.remove_widget(self.panel)


def attach(content: Widget, station: Any, runtime: StationRuntime) -> Widget:
    """`content` (the station's screens, and the demo panel beside them) with the stock-take
    screen; what the app shows."""
    return WithStocktake(content, station, runtime)

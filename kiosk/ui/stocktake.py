"""The stock-take screen, for staff standing at the station: reached from the staff screen's
"Kiểm kê / Stock-take" button; choose a shelf, a call-number range typed on the e-mail
screen's keyboard, or a paused stock-take to take up; put the books on the pad a stack at a
time, see each book and its verdict, pause or finish.

It lies over the station's screens while it is open (the self-check core goes on beneath,
and gets no tags: kiosk/runtime/stocktake.py takes them). Text is larger than the readers'
(a staff member reads it standing, from further away); sizes, colours and touch targets come
from the same theme (9 mm targets, 2 mm apart, contrast of the theme's palettes). The
central's requests block, so they run on a worker thread and come back on Kivy's clock.

A staff screen left open is a staff screen at a public station: the panel lies over the
core's staff mode and lives by its idle time-out (`inactivity_s`). A touch on the panel or a
change on the pad counts as activity (the core's "more time" touch); when the staff screen
times out beneath, the stock-take is paused at the central (to be taken up here or at another
station) and the panel goes with it.
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
from kivy.uix.button import Button
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from selfcheck.kiosk import core, present
from selfcheck.kiosk.i18n import STOCKTAKE
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.stocktake import CALL_CHARS, call_key, call_range, place_label
from selfcheck.kiosk.ui.screens import EMAIL_ROWS
from selfcheck.kiosk.ui.theme import theme
from selfcheck.mqtt import messages

TEXTS = STOCKTAKE
STANDING = 1.3  # text this much larger than the readers' least size: read from further away
SHOWN = 12
# The e-mail screen's QWERTY, keeping the keys a call number is typed with (upper case, as
# call numbers are written); space and delete sit in the row of Back and Start.
CALL_ROWS = tuple(k for k in ("".join(c for c in row.upper() if c in CALL_CHARS)
                              for row in EMAIL_ROWS) if k)


# One line of the list: its text, bold, and what a touch on it does (None: a plain line).
Row = tuple[str, bool, Callable[[], None] | None]


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
        self.stage = "choose"  # choose, calls, running, confirm, message
        self.message = ""
        self.options: list[tuple[str, Callable[[], None]]] = []
        self.ranges = False  # the central answered: a range may be opened (right button)
        self.busy = False
        self.calls = {"from": "", "to": ""}  # the call-number range being typed
        self.typing = "from"  # the field the keys type into
        self.warning = ""  # the idle time-out's last seconds
        self._pad_seen = 0  # runtime.stocktake.pad_changes as last counted as activity
        self._rows_shown: object = None  # what the list was last built from
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
        self._build_calls()
        self._refresh = Clock.create_trigger(lambda _dt: self.render())
        self.st.listeners.append(lambda: self._refresh())

    def _paint(self, *_: Any) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        self._bg_color.rgba = theme.bg

    def _build_calls(self) -> None:
        """The range entry: From and To (a touch chooses the one typed into) over the keys;
        shown in the list's place."""
        self.calls_box = BoxLayout(orientation="vertical", spacing=theme.gap)
        self.fields_row = fields = BoxLayout(size_hint_y=None,
                                             spacing=max(theme.gap, 20 * theme.u))
        fields.bind(minimum_height=fields.setter("height"))
        self.fields: dict[str, Button] = {}
        for name in ("from", "to"):
            f = Factory.KeyButton(size_hint_y=None, font_size=_font(26), bold=True,
                                  halign="left", valign="middle", shorten=True)
            f.bind(width=lambda w, v: setattr(w, "text_size", (v - 20 * theme.u, None)),
                   texture_size=lambda w, v: setattr(
                       w, "height", max(theme.touch, v[1] + 16 * theme.u)))
            f.bind(on_release=lambda _b, n=name: self._choose_field(n))
            self.fields[name] = f
            fields.add_widget(f)
        self.keys = BoxLayout(orientation="vertical", spacing=theme.gap, size_hint_y=None)
        self.keys.bind(minimum_height=self.keys.setter("height"))
        self.call_keys: dict[str, Button] = {}
        for ch in "".join(CALL_ROWS):
            key = Factory.EmailKey(text=ch)
            key.bind(on_release=lambda _b, c=ch: self._type(c))
            self.call_keys[ch] = key
        self.calls_buttons = Factory.ButtonRow()
        self.c_back, self.c_start = Factory.ShortButton(), Factory.ShortButton()
        self.c_back.bind(on_release=lambda _b: self._press("left"))
        self.c_start.bind(on_release=lambda _b: self._press("right"))
        self.calls_buttons.add_widget(self.c_back)
        words: tuple[tuple[str, str | None], ...] = (("space", " "), ("delete", None))
        for word, sign in words:
            key = Factory.WordKey(size_hint_y=None, height=theme.touch)
            key.bind(on_release=lambda _b, c=sign: self._type(c))
            self.call_keys[word] = key
            self.calls_buttons.add_widget(key)
        self.calls_buttons.add_widget(Widget())
        self.calls_buttons.add_widget(self.c_start)
        self.calls_box.add_widget(fields)
        self.calls_box.add_widget(self.keys)
        self.calls_box.add_widget(Widget())
        self.bind(width=self._fit_keys, height=self._fit_keys)
        theme.bind(touch=self._fit_keys, gap=self._fit_keys, u=self._fit_keys)

    def _fit_keys(self, *_: Any) -> None:
        """The keys as the e-mail screen fits them: a whole row at 9 mm a key and 2 mm apart
        where it fits (up to a third larger), else each row as two halves."""
        usable = self.width - 2 * 16 * theme.u
        longest = max(len(row) for row in CALL_ROWS)
        split = longest * theme.touch + (longest - 1) * theme.gap > usable
        n = (longest + 1) // 2 if split else longest
        key_w = max(theme.touch, min((usable - (n - 1) * theme.gap) / n, 1.35 * theme.touch))
        wide = self.width > self.height
        key_h = theme.touch if wide else min(key_w, 1.25 * theme.touch)
        # side by side on a wide panel; one above the other where half the width would cut
        # "To: (same as From)" short
        self.fields_row.orientation = "horizontal" if wide else "vertical"
        for row in list(self.keys.children):
            row.clear_widgets()
        self.keys.clear_widgets()
        for keys in CALL_ROWS:
            half = (len(keys) + 1) // 2
            for part in ((keys[:half], keys[half:]) if split else (keys,)):
                row = Factory.KeyRow(size_hint_y=None, height=key_h)
                row.width = len(part) * key_w + (len(part) - 1) * theme.gap
                for ch in part:
                    row.add_widget(self.call_keys[ch])
                self.keys.add_widget(row)

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
        self.options, self.warning = [], ""
        if self.stage == "choose":
            self._ask(self.st.places, self._places)
        self.render()

    def _press(self, which: str) -> None:
        if self.busy:
            return
        if self.stage == "calls":
            if which == "left":
                self.stage, self.message = "choose", ""
                self.render()
            else:
                self._begin_calls()
        elif self.stage == "choose" or self.stage == "message":
            if which == "left":
                self._leave()
            elif self.stage == "message":
                self.open()
            elif self.ranges:
                self._calls_open()
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

    def _calls_open(self) -> None:
        self.stage, self.message, self.typing = "calls", "", "from"
        self.calls = {"from": "", "to": ""}
        self.render()

    def _choose_field(self, name: str) -> None:
        self.typing = name
        self.render()

    def _type(self, ch: str | None) -> None:
        if self.busy:
            return
        self.calls[self.typing] = call_key(self.calls[self.typing], ch)
        self.message = ""  # a refusal was of the range before this key
        self.render()

    def _begin_calls(self) -> None:
        """Start: the range checked here first (the central says the same), then opened;
        refused, the entry stays as typed with the reason over it."""
        rng = call_range(self.calls["from"], self.calls["to"])
        if isinstance(rng, str):
            self.message = self.t(f"calls.{rng}")
            self.render()
            return
        place = messages.Place(kind="calls", value=rng[0], upto=rng[1])

        def started(res: messages.StocktakeRes | None) -> None:
            if res is not None and res.ok:
                self.stage, self.message = "running", ""
            elif res is None:
                self.message = self.t("no_answer")
            else:
                self.message = self.t({"empty_place": "calls.empty",
                                       "bad_request": "calls.order"}.get(
                                           res.reason or "", "closed_already"))

        self.message = ""
        self._ask(lambda: self.st.begin(place, None), started)
        self.render()

    # -- the idle time-out
    def stir(self) -> None:
        """Staff are here: the staff screen's idle time-out starts again (the core's "more
        time" touch, which does nothing else)."""
        self.runtime.feed(core.Touch("more_time"))

    def on_touch_down(self, touch: Any) -> bool:
        if self.parent is None or not self.collide_point(*touch.pos):
            return bool(super().on_touch_down(touch))
        self.stir()
        super().on_touch_down(touch)
        return True  # the panel covers the staff screen: nothing beneath takes a touch

    def timed_out(self) -> None:
        """The staff screen timed out beneath: pause a running stock-take, then go."""
        self._pause_behind()
        self.stage, self.message, self.warning = "choose", "", ""
        self._leave()

    def _pause_behind(self) -> None:
        if self.st.active:  # pausing waits for the central: not on Kivy's thread
            threading.Thread(target=self.st.pause, name="stocktake-pause",
                             daemon=True).start()

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
        if self.parent is None:  # timed out while asking: nothing runs behind the screens
            self._pause_behind()
            self.stage = "choose"
        self.render()

    def _say(self, text: str) -> None:
        self.stage, self.message = "message", text

    # -- answers
    def _places(self, res: messages.StocktakeRes | None) -> None:
        self.options, self.ranges = [], False
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
        self.ranges = True

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
        if self.st.pad_changes != self._pad_seen:  # a stack put on or lifted off
            self._pad_seen = self.st.pad_changes
            if self.parent is not None:
                self.stir()
        for w in (self.title, self.status, self.counts):
            w.color = theme.text
        rows: list[Row] = []
        self._show_entry(self.stage == "calls")
        run = self.st.run
        if self.stage == "calls":
            self._render_calls()
        elif self.stage == "choose":
            self.title.text = self.t("choose")
            self.status.text = self.message or ("" if not self.busy else self.t("asking"))
            self.counts.text = ""
            rows = [(text, False, action) for text, action in self.options]
            self.b_left.text = self.t("back")
            self.b_right.text = self.t("calls.button") if self.ranges and not self.busy else ""
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
                rows.append((f"{name}  {book.title or ''}\n{verdict}",
                             book.verdict in ("misplaced", "on_loan", "unknown"), None))
            if self.stage == "confirm":
                self.b_left.text, self.b_right.text = self.t("back"), self.t("confirm")
            else:
                self.b_left.text, self.b_right.text = self.t("pause"), self.t("close")
        else:
            self.title.text = self.t("open")
            self.status.text = self.message
            self.counts.text = ""
            self.b_left.text, self.b_right.text = self.t("back"), self.t("list")
        if self.warning and self.stage != "calls":
            self.status.text = (self.status.text + "\n" if self.status.text else "") \
                + self.warning
        for b in (self.b_left, self.b_right):
            b.opacity, b.disabled = (1, False) if b.text else (0, True)
        self._show_rows(rows)

    def _show_rows(self, rows: list[Row]) -> None:
        """The list, rebuilt only when what it shows changed: a rebuild moves the scroll
        view, whose bar then fades over half a second of frames, and the panel is rendered
        again every second of the time-out's warning."""
        shown = (theme.level, theme.fs, rows)
        if shown == self._rows_shown:
            return
        self._rows_shown = shown
        self.rows.clear_widgets()
        for text, bold, action in rows:
            if action is not None:  # a place to choose: a button
                b = Factory.TouchButton(text=text, font_size=_font(26))
                b.size_hint_x = 1
                b.bind(on_release=lambda _b, a=action: None if self.busy else a())
                self.rows.add_widget(b)
            else:
                self.rows.add_widget(_label(text=text, font_size=_font(24), bold=bold))

    def _show_entry(self, on: bool) -> None:
        """The range entry in the place of the status, counts and list, with its own row of
        short buttons (Back, space, delete, Start): the keys need the height."""
        want = ([self.title, self.calls_box, self.calls_buttons] if on else
                [self.title, self.status, self.counts, self.scroll, self.buttons])
        if self.children[::-1] != want:
            self.clear_widgets()
            for w in want:
                self.add_widget(w)

    def _render_calls(self) -> None:
        # a refusal, or the time-out's warning, in the title's place: one line more would
        # push the keys off the smallest panel
        self.title.text = (self.t("asking") if self.busy
                           else self.message or self.warning or self.t("calls.title"))
        if self.message:
            self.title.color = theme.accent if theme.level == "contrast" else theme.red
        for name, f in self.fields.items():
            typing = name == self.typing
            shown = self.calls[name] + ("_" if typing else "")
            if name == "to" and not self.calls[name] and not typing:
                shown = self.t("calls.same")
            f.text = self.t(f"calls.{name}", value=shown)
            f.background_color = theme.accent if typing else theme.key
            f.color = theme.accent_text if typing else theme.key_text
        self.call_keys["space"].text = self.t("calls.space")
        self.call_keys["delete"].text = self.t("calls.delete")
        self.c_back.text, self.c_start.text = self.t("back"), self.t("calls.start")


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
        runtime.add_listener(self._on_view)
        self.entry.text = TEXTS.t("open", runtime.view().lang)

    def _on_view(self, view: core.View) -> None:
        self.entry.text = TEXTS.t("open", view.lang)
        if self.panel.parent is None:
            return
        if view.mode is not core.Mode.STAFF:  # the staff screen timed out beneath
            self.panel.timed_out()
            return
        key = "idle_warning.running" if self.panel.st.active else "idle_warning"
        warning = (TEXTS.t(key, view.lang, seconds=view.countdown)
                   if present.time_out_warned(view) else "")
        if warning != self.panel.warning:
            self.panel.warning = warning
            self.panel.render()

    def show_stocktake(self) -> None:
        if self.panel.parent is None:
            self.add_widget(self.panel)
        self.panel.stir()  # the staff screen's time-out starts again with the stock-take
        self.panel.open()

    def hide_stocktake(self) -> None:
        if self.panel.parent is not None:
            self.remove_widget(self.panel)


def attach(content: Widget, station: Any, runtime: StationRuntime) -> Widget:
    """`content` (the station's screens, and the demo panel beside them) with the stock-take
    screen; what the app shows."""
    return WithStocktake(content, station, runtime)

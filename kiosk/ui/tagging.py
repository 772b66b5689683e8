"""The tagging screen, for staff converting the collection to RFID: reached from the staff
screen's "Gắn thẻ RFID / Tag books" button. Scan a book's barcode, put the book on the pad,
hear and read "done" (or why not); a running count and the last books tagged.

It lies over the station's screens while the core is in its tagging mode (the desk's logic is
kiosk/staff_tagging.py, its wiring kiosk/runtime/tagging.py). Text is larger than the
readers' (staff read it standing); sizes and colours come from the theme. The sound is a
short tone, rising for done and falling for a refusal, made once into the audio cache.
"""

from __future__ import annotations

import logging
import math
import struct
import wave
from pathlib import Path
from typing import Any

from kivy.factory import Factory
from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from selfcheck.kiosk import core
from selfcheck.kiosk import staff_tagging as st
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.ui.theme import theme

log = logging.getLogger(__name__)

STANDING = 1.3  # text this much larger than the readers' least size: read from further away
RATE = 16_000


def tone(path: Path, ok: bool) -> Path:
    """A 0.25 s two-note WAV: up a fifth for done, down for a refusal."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = (660.0, 990.0) if ok else (440.0, 294.0)
    frames = bytearray()
    for k, freq in enumerate(notes):
        n = RATE // 8
        for i in range(n):
            fade = min(1.0, i / 200, (n - i) / 200)
            sample = 0.4 * fade * math.sin(2 * math.pi * freq * (i + k * n) / RATE)
            frames += struct.pack("<h", int(sample * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    return path


def _font(size: float) -> float:
    return float(max(theme.read * theme.scale * STANDING, size * theme.fs))


def _label(**kw: Any) -> Label:
    lb = Label(color=theme.text, halign="left", valign="middle", size_hint_y=None, height=0,
               **kw)

    def fit(w: Label, *_: Any) -> None:
        # an empty label takes no room (the queue line, the list's title before a book)
        w.height = w.texture_size[1] + 10 * theme.u if w.text else 0

    lb.bind(width=lambda w, v: setattr(w, "text_size", (v, None)), texture_size=fit, text=fit)
    return lb


class TaggingPanel(BoxLayout):
    """The tagging screen: what to do now, the book, the counts, the last books, buttons."""

    def __init__(self, runtime: StationRuntime, **kw: Any) -> None:
        super().__init__(orientation="vertical", padding=16 * theme.u, spacing=8 * theme.u,
                         **kw)
        self.runtime = runtime
        with self.canvas.before:
            Color(*theme.bg)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=lambda w, v: setattr(self._bg, "pos", v),
                  size=lambda w, v: setattr(self._bg, "size", v))
        self.title = _label(font_size=_font(30), bold=True)
        self.message = _label(font_size=_font(26), bold=True)
        self.item = _label(font_size=_font(20))
        self.counts = _label(font_size=_font(20))
        self.queued = _label(font_size=_font(16))
        self.last_title = _label(font_size=_font(18), bold=True)
        # the last books scroll (clipped) in whatever room the rest leaves
        self.last = BoxLayout(orientation="vertical", spacing=2 * theme.u, size_hint_y=None)
        self.last.bind(minimum_height=self.last.setter("height"))
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(self.last)
        for w in (self.title, self.message, self.item, self.counts, self.queued,
                  self.last_title, scroll):
            self.add_widget(w)
        self.row = Factory.ButtonRow()
        self.buttons: dict[str, Any] = {}
        for name in ("overwrite", "retry", "cancel", "back"):
            b = Factory.TouchButton()
            b.bind(on_release=lambda _b, name=name: self.press(name))
            self.buttons[name] = b
        self.add_widget(self.row)

    def press(self, name: str) -> None:
        if name == "back":
            self.runtime.feed(core.Touch("staff_exit"))
        else:
            self.runtime.tagging.press(name)  # type: ignore[arg-type]

    def render(self, view: st.TaggingView, lang: str) -> None:
        tx = st.text
        self.title.text = tx("tagging.title", lang)
        self.message.text = st.message_text(view, lang)
        self.message.color = (theme.green if view.tone == "ok" else theme.red
                              if view.tone == "error" else theme.text)
        item = view.item
        self.item.text = "" if item is None else " · ".join(
            p for p in (item.item_id, item.title or "",
                        tx("tagging.parts", lang, n=item.parts_in_item)
                        if item.parts_in_item > 1 else "") if p)
        self.counts.text = "   ".join((tx("tagging.count_session", lang, n=view.session),
                                       tx("tagging.count_hour", lang, n=view.hour),
                                       tx("tagging.count_today", lang, n=view.today)))
        self.queued.text = tx("tagging.queued", lang, n=view.queued) if view.queued else ""
        self.last_title.text = tx("tagging.last", lang) if view.last else ""
        self.last.clear_widgets()
        for done in view.last[:6]:
            state = tx("tagging.recorded" if done.recorded else "tagging.waiting", lang)
            self.last.add_widget(_label(
                font_size=_font(16),
                text=f"{done.at:%H:%M}  {done.item_id}  {done.title or ''}  ({state})"))
        # two at most, so that they keep their size on the smallest panel: with a book in
        # hand, cancel (and the question's answer); between books, back to the staff screen
        failed = (view.message or "").startswith("tagging.failed_")
        shown = {"overwrite": view.phase == "confirm",
                 "retry": view.phase == "place" and failed and view.on_pad > 0,
                 "cancel": view.phase in ("place", "confirm"),
                 "back": view.phase in ("scan", "lookup")}
        # only the buttons that apply are in the row: a hidden one would still take room
        self.row.clear_widgets()
        for name, button in self.buttons.items():
            button.text = tx(f"tagging.{name}", lang)
            if shown[name]:
                self.row.add_widget(button)


class WithTagging(FloatLayout):
    """The station's screens with the tagging screen over them while the core is tagging."""

    def __init__(self, content: Widget, station: Any, runtime: StationRuntime,
                 **kw: Any) -> None:
        super().__init__(**kw)
        content.pos_hint = {"x": 0, "y": 0}
        self.add_widget(content)
        self.runtime = runtime
        self.panel = TaggingPanel(runtime, pos_hint={"x": 0, "y": 0})
        # The way in: a row of its own over the staff screen's buttons (service on/off,
        # exit), which hold two to a row on the smallest panel
        self.entry = Factory.TouchButton()
        self.entry.bind(on_release=lambda _b: runtime.feed(core.Touch("staff_tagging")))
        row = station.ids.staff_service.parent
        mine = Factory.ButtonRow()
        mine.add_widget(self.entry)
        row.parent.add_widget(mine, index=row.parent.children.index(row) + 1)
        self._lang = runtime.view().lang
        self.entry.text = st.text("tagging.button", self._lang)
        self._folder = runtime.config.screen.audio_cache / "tagging"
        runtime.add_listener(self._on_view)
        runtime.tagging.listeners.append(lambda v: self.panel.render(v, self._lang))
        runtime.tagging.sound = self._sound

    def _on_view(self, view: core.View) -> None:
        self._lang = view.lang
        self.entry.text = st.text("tagging.button", view.lang)
        tagging = view.mode is core.Mode.TAGGING
        if tagging and self.panel.parent is None:
            self.add_widget(self.panel)
            self.panel.render(self.runtime.tagging.view(), view.lang)
        elif not tagging and self.panel.parent is not None:
            self.remove_widget(self.panel)

    def _sound(self, ok: bool) -> None:
        try:
            from kivy.core.audio import SoundLoader

            sound = SoundLoader.load(str(tone(self._folder / f"{'ok' if ok else 'no'}.wav",
                                              ok)))
            if sound is not None:
                sound.play()
        except Exception as exc:  # no audio device: the screen still says it
            log.debug("tagging sound not played: %s", exc)


def attach(content: Widget, station: Any, runtime: StationRuntime) -> Widget:
    """`content` with the tagging screen over it when open; what the app shows."""
    return WithTagging(content, station, runtime)

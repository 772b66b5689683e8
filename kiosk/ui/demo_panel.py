"""The demo's side panel: place and lift simulated books, tap simulated cards (or keys 1-9
for books, c for the first card), so the station can be tried with no hardware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.core.window import Window
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.togglebutton import ToggleButton

from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk.demo_kit import DemoBook, DemoCard
from selfcheck.kiosk.i18n import t
from selfcheck.kiosk.ui.boot import DEMO_PANEL_WIDTH


class DemoPanel(BoxLayout):
    WIDTH = DEMO_PANEL_WIDTH  # beside the station: the station keeps its whole screen

    def __init__(self, pad: SimulatedPad, cards: SimulatedCardReader, books: list[DemoBook],
                 people: list[DemoCard], lang: Callable[[], str], **kw: Any) -> None:
        super().__init__(orientation="vertical", size_hint_x=None, width=self.WIDTH,
                         padding=6, spacing=4, **kw)
        self.pad, self.cards, self._lang = pad, cards, lang
        self.header = Label(font_size=15, size_hint_y=None, bold=True)
        self.add_widget(self.header)
        self.card_buttons: dict[str, Button] = {}
        # Cards and books in two columns, rows sized to the window (see on_size): every
        # card and book fits a 480 px high window.
        people_grid = GridLayout(cols=2, spacing=4, size_hint_y=None)
        for person in people:
            btn = Button(font_size=13, shorten=True, halign="center")
            btn.bind(size=lambda b, size: setattr(b, "text_size", (size[0] - 8, None)))
            btn.bind(on_release=lambda _b, c=person.card_id: self.cards.present(c))
            self.card_buttons[person.card_id] = btn
            people_grid.add_widget(btn)
        self._people = people
        self.add_widget(people_grid)
        shelf = GridLayout(cols=2, spacing=4, size_hint_y=None)
        self.book_buttons: dict[str, ToggleButton] = {}
        for book in books:
            tb = ToggleButton(text=book.title, font_size=12, shorten=True, halign="center")
            tb.bind(size=lambda b, size: setattr(b, "text_size", (size[0] - 8, None)))
            tb.bind(state=lambda w, state, b=book: self._toggle(b, state))
            self.book_buttons[book.key] = tb
            shelf.add_widget(tb)
        self.add_widget(shelf)
        self._grids = [people_grid, shelf]
        self.lift_all = Button(font_size=14, size_hint_y=None)
        self.lift_all.bind(on_release=lambda _b: self._lift_all())
        self.add_widget(self.lift_all)
        self.add_widget(Label())
        self._books = books
        self.on_size()
        Window.bind(on_key_down=self._key)
        self.relabel()

    def on_size(self, *_: Any) -> None:
        if not hasattr(self, "_grids"):
            return  # still in __init__
        rows = 2 + sum((len(g.children) + 1) // 2 for g in self._grids)
        row = max(22.0, min(40.0, (self.height - 12) / rows - 4))
        self.header.height = self.lift_all.height = row
        for grid in self._grids:
            grid.row_force_default, grid.row_default_height = True, row
            grid.height = ((len(grid.children) + 1) // 2) * (row + 4)

    def relabel(self) -> None:
        lang = self._lang()
        self.header.text = t("demo.title", lang)
        for person in self._people:
            self.card_buttons[person.card_id].text = t("demo.card", lang, name=person.name)
        self.lift_all.text = t("demo.lift_all", lang)

    def _toggle(self, book: DemoBook, state: str) -> None:
        if state == "down":
            self.pad.place(book.uid, book.memory)
        else:
            self.pad.lift(book.uid)

    def _lift_all(self) -> None:
        for tb in self.book_buttons.values():
            tb.state = "normal"

    def _key(self, _window: Any, _key: int, _scancode: int, text: str | None,
             _mods: Any) -> bool:
        if text and text.isdigit() and 0 < int(text) <= len(self._books):
            tb = self.book_buttons[self._books[int(text) - 1].key]
            tb.state = "normal" if tb.state == "down" else "down"
            return True
        if text == "c" and self._people:
            self.cards.present(self._people[0].card_id)
            return True
        return False

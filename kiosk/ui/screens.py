"""The station screens: they render the core's View and turn touches into core events."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from babel.numbers import format_currency
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.widget import Widget
from kivy.utils import escape_markup, get_hex_from_color

from selfcheck.kiosk import core, present
from selfcheck.kiosk.i18n import date, reason_text, t
from selfcheck.kiosk.ui.reach import out_of_reach_px
from selfcheck.kiosk.ui.theme import theme

Builder.load_file(str(Path(__file__).with_name("screens.kv")))

_SCREEN = {core.Mode.IDLE: "idle", core.Mode.CHECKING: "checking", core.Mode.BORROW: "session",
           core.Mode.RETURN: "session", core.Mode.SUMMARY: "summary",
           core.Mode.OUT_OF_SERVICE: "out_of_service", core.Mode.CONFIRM_COUNT: "confirm_count",
           core.Mode.RECEIPT: "receipt", core.Mode.EMAIL: "email", core.Mode.HELP: "help",
           core.Mode.STAFF: "staff", core.Mode.RETURN_STATION: "return_station",
           core.Mode.PIN: "pin", core.Mode.ACCOUNT: "account",
           core.Mode.CONFIRM_LOAN: "confirm_loan",
           core.Mode.TAGGING: "staff"}  # the tagging screen lies over it (ui/tagging.py)
# What is said aloud when a screen opens (kiosk.po: audio.<prompt>).
_PROMPT = {core.Mode.IDLE: "idle", core.Mode.BORROW: "borrow", core.Mode.RETURN: "return",
           core.Mode.RETURN_STATION: "return", core.Mode.SUMMARY: "summary",
           core.Mode.HELP: "help", core.Mode.CONFIRM_COUNT: "count",
           core.Mode.RECEIPT: "receipt", core.Mode.CONFIRM_LOAN: "confirm_loan"}
# The keyboard a reader knows from a phone or a computer, row by row; the signs an address
# needs end the last row.
EMAIL_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm@._-")
EMAIL_KEYS = "".join(EMAIL_ROWS)
# Whole pieces of an address, one touch each: most readers' mail is at gmail or a .vn domain.
EMAIL_WORDS = ("@gmail.com", ".vn", ".com")
PIN_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "back")
PIN_MAX = 12
Say = Callable[[str, str], None]


def place_name(code: str | None, places: Mapping[str, str] | None = None) -> str:
    """A library's name for its code (the station's `places` setting): a reader knows "Thư
    viện quận Hoàn Kiếm", not "VN-HN-02". An unknown code shows as itself."""
    if not code:
        return "?"
    return (places or {}).get(code, code)


# Letters only Vietnamese writes: a library note with one is in Vietnamese.
_VI_LETTERS = re.compile("[ăâđêôơưĂÂĐÊÔƠƯàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụ"
                         "ừứửữựỳýỷỹỵ]")


def library_note(text: str, lang: str) -> str:
    """The library system's own words (SIP2 AF), which come in the library's language, not
    the screen's: shown as they are (free text cannot be translated here) and marked as the
    library's, with the language named when it is not the screen's, so that an English
    reader knows why a line is in Vietnamese."""
    other = lang != "vi" and _VI_LETTERS.search(text) is not None
    return t("note.library.vi" if other else "note.library", lang, text=text)


def line_status(line: core.Line, lang: str,
                offline_due: dt.date | None = None) -> tuple[str, str]:
    """The status text of one book line, and the name of its theme colour. A security write
    still to do is said in the note (`line_note`): the loan or return is done all the same.
    `offline_due`: the due date an offline loan gets (the station's offline loan period)."""
    s = core.Status
    if line.status is s.DONE:
        if line.kind == "loan":
            due = date(line.due, lang) if line.due else "?"
            return t("status.done.loan", lang, date=due), "green"
        if line.sort_bin and not line.alert:  # a hold or transit goes elsewhere: the note
            return t("status.done.return_bin", lang, bin=line.sort_bin), "green"
        return t("status.done.return", lang), "green"
    if line.status is s.REFUSED:
        key = "status.refused" if line.kind == "loan" else f"status.refused.{line.kind}"
        return t(key, lang, reason=reason_text(line.reason, lang)), "red"
    if line.status is s.UNCONFIRMED:
        return t("status.unconfirmed", lang, reason=reason_text(line.reason, lang)), "red"
    if line.status is s.OFFLINE:
        if line.kind == "loan" and (line.due or offline_due):
            due = date(line.due or offline_due, lang)  # type: ignore[arg-type]
            return t("status.offline.loan_due", lang, date=due), "amber"
        return t("status.offline.loan" if line.kind == "loan" else "status.offline", lang), "amber"
    if line.status is s.UNREADABLE:
        return t("status.unreadable", lang), "red"
    if line.status is s.PARTS:
        return t("status.parts", lang, n=line.parts_in_item), "red"
    return t(f"status.{line.status.value}", lang), "grey"


def line_note(line: core.Line, lang: str,
              places: Mapping[str, str] | None = None) -> tuple[str, str]:
    """A second line under the title: a security write to do again, where the book goes,
    what is missing, the library system's own words. Most pressing first."""
    notes: list[str] = []
    color = "amber"
    if line.security == "failed":
        # a loan's tag must be unlocked to leave, a return's locked again
        notes.append(t("security.failed.loan" if line.kind == "loan"
                       else "security.failed.return", lang))
        color = "red"
    if line.alert == "hold":
        notes.append(t("alert.hold", lang))
        color = "red"
    elif line.alert == "hold_transit":
        notes.append(t("alert.hold_transit", lang))
        color = "red"
    elif line.alert == "transit":
        notes.append(t("alert.transit", lang, place=place_name(line.transit_to, places)))
        color = "red"
    if line.warning == "parts_missing":
        notes.append(t("warning.parts_missing", lang, n=line.parts_in_item))
    if line.security == "kept":
        notes.append(t("security.kept", lang))
    if line.screen_message:
        notes.append(library_note(line.screen_message, lang))
    return "  ·  ".join(notes), color


def line_title(line: core.Line, lang: str) -> str:
    if line.title:
        return line.title
    return t("item.unknown_title", lang, item=line.item_id or line.uid)


def rs_decision(line: core.Line, lang: str, places: Mapping[str, str] | None = None) -> str:
    """The return station's big label: where this book goes now."""
    if line.alert == "hold":
        return t("rs.hold_shelf", lang)
    if line.alert == "hold_transit":
        return t("rs.hold_transit", lang)
    if line.alert == "transit":
        return t("rs.transit", lang, place=place_name(line.transit_to, places))
    if line.status in (core.Status.DONE, core.Status.OFFLINE) and line.sort_bin:
        return t("rs.bin", lang, bin=line.sort_bin)
    return ""


def summary_advice(view: core.View) -> tuple[str, bool]:
    """The summary's last words, matching what happened: leave a refused book, take the card
    only if there was one. True when it asks the reader to do something."""
    lang, bad = view.lang, (core.Status.REFUSED, core.Status.UNCONFIRMED,
                            core.Status.UNREADABLE, core.Status.PARTS)
    if any(ln.status in bad and ln.kind == "loan" for ln in view.lines):
        return t("summary.leave_refused", lang), True
    if any(ln.status in bad for ln in view.lines):
        return t("summary.return_refused", lang), True
    if view.patron_name is not None:
        return t("summary.thanks", lang), False
    return t("summary.thanks_return", lang), False


class _TitledRow(BoxLayout):
    """A row whose first label shows the title in bold and a coloured note under it (no kv
    rule of its own: Kivy applies a base class's rule to subclasses too)."""

    title = StringProperty("")
    markup_text = StringProperty("")
    status_text = StringProperty("")
    status_color = ColorProperty((0.35, 0.38, 0.40, 1))
    note = StringProperty("")
    note_color = ColorProperty((0.70, 0.42, 0.02, 1))
    band = ColorProperty((1, 1, 1, 1))
    is_book = True  # counted in "3 more" below its list: a note or a fine is not

    def on_kv_post(self, _base: Any) -> None:
        self.bind(title=self._compose, note=self._compose, note_color=self._compose)
        self._compose()

    def _compose(self, *_: Any) -> None:
        text = f"[b]{escape_markup(self.title)}[/b]"
        if self.note:
            rgb = get_hex_from_color(self.note_color)
            # a note is read too (a hold, a missing part): never under the reading floor,
            # which the audit cannot see inside markup
            size = int(max(theme.read * theme.scale, 18 * theme.fs))
            text += f"\n[size={size}][color={rgb}]{escape_markup(self.note)}[/color][/size]"
        self.markup_text = text


class ItemLine(_TitledRow):
    pass


class CardPicture(Widget):
    """The idle screen's picture of a card going onto the reader (drawn in screens.kv)."""

    side = NumericProperty(0.0)  # the picture's square, px
    x0 = NumericProperty(0.0)
    y0 = NumericProperty(0.0)


def money(amount: int, currency: str, exponent: int, lang: str) -> str:
    """An amount in minor units as the reader's locale writes it (vi: "37.000 ₫")."""
    value = amount if exponent == 0 else amount / 10**exponent
    return format_currency(value, currency, locale=lang)


def confirm_question(confirm: core.Confirmation, lang: str) -> str:
    """What the library system asks the reader to accept, as a yes/no question."""
    if confirm.amount is None or confirm.currency is None:
        return t(f"confirm.{confirm.code}.no_amount", lang)
    amount = money(confirm.amount, confirm.currency, confirm.currency_exponent, lang)
    return t(f"confirm.{confirm.code}", lang, amount=amount)


def local_time(iso: str | None) -> str:
    """A UTC instant (ISO text) as the station's local HH:MM."""
    if not iso:
        return "?"
    return dt.datetime.fromisoformat(iso).astimezone().strftime("%H:%M")


class AccountLine(_TitledRow):
    button_text = StringProperty("")
    action = ObjectProperty(lambda: None)


class ExceptionLine(BoxLayout):
    is_book = True
    text = StringProperty("")
    button_text = StringProperty("")
    action = ObjectProperty(lambda: None)


class StationRoot(BoxLayout):
    """Renders a core.View; `on_button` receives the buttons' names, `on_event` other core
    events (staff skips, the typed e-mail address); `say` speaks a prompt."""

    staff_action = StringProperty("staff_oos")
    rs_band = ColorProperty((1, 1, 1, 1))
    rs_alert = BooleanProperty(False)
    account_shown = BooleanProperty(False)
    renew_all_shown = BooleanProperty(False)
    more_time_shown = BooleanProperty(False)
    call_shown = BooleanProperty(False)
    idle_refused = BooleanProperty(False)  # a card was refused: why, in the prompt's place
    summary_warn = BooleanProperty(False)
    email_split = BooleanProperty(False)  # each keyboard row as two halves, one above the other
    email_key_w = NumericProperty(51.0)
    email_typed = BooleanProperty(False)
    wide = BooleanProperty(True)  # landscape enough to put things side by side
    question_in_row = BooleanProperty(False)  # the time-out question between two buttons
    reach_pad = NumericProperty(0.0)  # px at a tall panel's top, above a seated reader's reach

    def __init__(self, on_button: Callable[[str], None],
                 on_event: Callable[[core.Event], None] | None = None,
                 say: Say | None = None, desk_where: Mapping[str, str] | None = None,
                 places: Mapping[str, str] | None = None,
                 offline_loan_days: int | None = None, **kw: Any) -> None:
        """`places`: library codes to the names readers know; `offline_loan_days`: the loan
        period the library gives an offline loan, whose due date the line then shows."""
        # the e-mail words move after the layout pass that changed a width, never during it
        self._place_words = Clock.create_trigger(self._move_words)
        self._refit = Clock.create_trigger(self._fit)
        super().__init__(**kw)
        self._on_button = on_button
        self._desk_where = desk_where or {}  # by language: where the librarian's desk is
        self._places = dict(places or {})
        self._offline_loan_days = offline_loan_days
        self._on_event = on_event or (lambda e: None)
        self._say = say or (lambda prompt, lang: None)
        self._last: core.View | None = None
        self._question_text = ("", "")  # the time-out question: under the screen, in a row
        self._built: dict[str, object] = {}  # what each list was last built from
        self._lang = "vi"
        self.email = ""
        self.email_buttons: dict[str, Button] = {}
        for ch in (*EMAIL_KEYS, *EMAIL_WORDS):
            btn = Factory.WordKey(text=ch) if len(ch) > 1 else Factory.EmailKey(text=ch)
            btn.bind(on_release=lambda _b, c=ch: self.type_key(c))
            self.email_buttons[ch] = btn
            if len(ch) > 1:
                self.ids.email_words.add_widget(btn)
        self._build_keyboard()
        back = Factory.WordKey(text="")
        back.bind(on_release=lambda _b: self.type_key(None))
        self.email_buttons["back"] = back
        self.ids.email_words.add_widget(back)
        # The PIN being typed lives in this widget only, until OK or cancel.
        self._pin = ""
        self.pin_buttons: dict[str, Button] = {}
        for key in PIN_KEYS:
            btn = Factory.PinKey(text=key)
            btn.bind(on_release=lambda _b, k=key: self.pin_key(k))
            self.pin_buttons[key] = btn
            self.ids.pin_keys.add_widget(btn)
        theme.bind(level=lambda *_: self._rerender())
        theme.bind(touch=self._fit, gap=self._fit, u=self._fit)
        for name in ("email_row", "email_cancel", "email_send"):
            self.ids[name].bind(width=self._place_words)
        self.ids.email_words.bind(minimum_width=self._place_words)
        # "3 more" under each list that scrolls: what is below the visible rows
        self._lists = [("lines_view", "lines_more"), ("summary_view", "summary_more"),
                       ("account_view", "account_more"), ("staff_view", "staff_more"),
                       ("rs_view", "rs_more"), ("help_view", "help_more")]
        for view_id, more_id in self._lists:
            sv = self.ids[view_id]
            # once a frame, after the rows changed: a count made while rows are still being
            # added or sized said "2 more" where there were 7
            update = Clock.create_trigger(partial(self._count_more, sv, self.ids[more_id]))
            sv.bind(scroll_y=update, height=update, width=update)
            sv.children[0].bind(height=update, children=partial(self._watch_rows, update))

    def on_size(self, *_: Any) -> None:
        theme.fit(self.width, self.height)
        self.wide = self.width > 1.2 * self.height
        self._fit()
        # again once the panel's density for this size is set too (a resize comes first)
        self._refit()

    def _fit(self, *_: Any) -> None:
        # a portrait floor kiosk: the top keeps the library's name, the bar (Help, language)
        # goes to the bottom, every control within a seated reader's reach
        over = 0.0 if self.wide else out_of_reach_px(self.height, theme.px_mm[1])
        self.reach_pad = math.ceil(over + theme.gap) if over else 0.0
        main, bar = self.ids.main, self.ids.bar.__self__  # ids hold weak proxies
        at_bottom = main.children[0] is bar
        if bool(over) != at_bottom:
            main.remove_widget(bar)
            main.add_widget(bar, index=0 if over else len(main.children) - 1)
        # a whole QWERTY row where it fits at 9 mm a key, 2 mm apart (a 7" portrait panel is
        # 86 mm across: 7 keys); the keys grow with the width, up to a third larger
        usable = self.width - 12 * theme.u
        longest = max(len(row) for row in EMAIL_ROWS)
        split = longest * theme.touch + (longest - 1) * theme.gap > usable
        n = (longest + 1) // 2 if split else longest
        fit = (usable - (n - 1) * theme.gap) / n
        self.email_key_w = max(theme.touch, min(fit, 1.35 * theme.touch))
        if split != self.email_split:
            self.email_split = split
            self._build_keyboard()
        for row in self.ids.email_keys.children:
            n = len(row.children)
            row.width = n * self.email_key_w + (n - 1) * theme.gap
        self._place_words()

    def _build_keyboard(self) -> None:
        box = self.ids.email_keys
        for row in list(box.children):
            row.clear_widgets()
        box.clear_widgets()
        for keys in EMAIL_ROWS:
            half = (len(keys) + 1) // 2
            for part in ((keys[:half], keys[half:]) if self.email_split else (keys,)):
                row = Factory.KeyRow()
                row.width = len(part) * self.email_key_w + (len(part) - 1) * theme.gap
                for ch in part:
                    row.add_widget(self.email_buttons[ch])
                box.add_widget(row)

    def _place_question(self) -> None:
        """The time-out question under the screen; on a screen whose keys fill it (the PIN,
        the e-mail on a wide, short one), between that screen's Cancel and OK: the keys keep
        their 9 mm."""
        ids = self.ids
        question, main = ids.more_time_bar.__self__, ids.main.__self__
        # a portrait e-mail row is too narrow for it: there it stays under the screen, where
        # the words' row was
        rows = {"email": ids.email_row, "pin": ids.pin_row}
        row = rows.get(ids.screens.current) if self.more_time_shown and self.wide else None
        home = row.__self__ if row is not None else main
        self.question_in_row = row is not None
        # one line where it can: between two buttons, or across a narrow portrait screen
        ids.more_time_text.text = self._question_text[self.question_in_row or not self.wide]
        if question.parent is not home:
            question.parent.remove_widget(question)
            if row is not None:
                home.add_widget(question, index=1)  # before the right-hand button
            else:  # just above the pending books' banner
                main.add_widget(question,
                                index=main.children.index(ids.pending_banner.__self__) + 1)
        self._move_words()

    def _move_words(self, *_: Any) -> None:
        # the words go between Cancel and Send where they fit (a short screen has no height
        # for their own row), else in a row above; while the time-out question asks, they make
        # room for it (20 s at most)
        ids = self.ids
        words, row = ids.email_words, ids.email_row
        if self.more_time_shown and ids.screens.current == "email":
            if words.parent is not None:
                words.parent.remove_widget(words)
            return
        free = (row.width - row.padding[0] - row.padding[2] - ids.email_cancel.width
                - ids.email_send.width - 3 * row.spacing)
        home = (row if self.wide and free >= words.minimum_width else ids.email_column).__self__
        if words.parent is not home:
            if words.parent is not None:
                words.parent.remove_widget(words)
            home.add_widget(words, index=1)  # before Send, or above the buttons' row

    @staticmethod
    def _watch_rows(update: Callable[..., None], box: Any, rows: list[Any]) -> None:
        for row in rows:
            row.funbind("height", update)  # once each, however often the list is rebuilt
            row.fbind("height", update)
        update()

    def _count_more(self, sv: Any, more: Any, *_: Any) -> None:
        """How many books are below the visible part of a list, said in words: only rows that
        are books count (not a heading, a fine or a note), each by where the rows' own heights
        put it, so that the count does not wait for the list's layout."""
        box = sv.children[0] if sv.children else None
        if box is None:
            more.text = ""
            return
        rows = list(reversed(box.children))  # top to bottom
        if not rows:  # one long text (help)
            hidden = box.height > sv.height + 1 and sv.scroll_y > 0.001
            more.text = t("list.more_text", self._lang) if hidden else ""
            return
        spacing = box.spacing if isinstance(box.spacing, int | float) else box.spacing[0]
        content = sum(r.height for r in rows) + spacing * (len(rows) - 1)
        n = 0
        if content > sv.height + 1:
            # how far down from the content's top the window's bottom edge is
            bottom = (content - sv.height) * (1 - sv.scroll_y) + sv.height
            top = 0.0
            for row in rows:
                if getattr(row, "is_book", False) and top + row.height / 2 > bottom:
                    n += 1
                top += row.height + spacing
        more.text = t("list.more", self._lang, n=n) if n else ""

    def touch(self, button: str) -> None:
        self._on_button(button)

    def toggle_a11y(self) -> None:
        theme.cycle()

    def type_key(self, ch: str | None) -> None:
        self.email = self.email[:-1] if ch is None else (self.email + ch)[:80]
        self._show_email()
        self._on_event(core.Typed())  # typing is activity: the screen does not time out

    def _show_email(self) -> None:
        self.email_typed = bool(self.email)
        self.ids.email_text.text = self.email or t("email.title", self._lang)

    def email_done(self, send: bool) -> None:
        # The address stays after a wrong one, to be corrected; it goes with the screen.
        address = self.email if send else None
        if not send:
            self.email = ""
            self._show_email()
        self._on_event(core.EmailEntered(address))

    def pin_key(self, key: str) -> None:
        if key == "clear":
            self._pin = ""
        elif key == "back":
            self._pin = self._pin[:-1]
        elif len(self._pin) < PIN_MAX:
            self._pin += key
        self.ids.pin_dots.text = "•" * len(self._pin)  # never the digits
        self._on_event(core.Typed())

    def pin_done(self, send: bool) -> None:
        pin, self._pin = (self._pin if send else None), ""
        self.ids.pin_dots.text = ""
        if send and not pin:
            return  # OK on an empty pad does nothing
        self._on_event(core.PinEntered(pin))

    def _fill(self, name: str, shown: bool, key: object, build: Callable[[], None]) -> None:
        if shown and self._built.get(name) != key:
            build()
            self._built[name] = key

    def _rerender(self) -> None:
        self._built.clear()
        view, self._last = self._last, None
        if view is not None:
            self.render(view)

    def render(self, view: core.View) -> None:
        if view == self._last:
            return
        last, self._last = self._last, view
        ids, lang = self.ids, view.lang
        self._lang = lang
        if view.mode is core.Mode.IDLE and last is not None and last.mode is not view.mode:
            theme.level = "normal"  # the next reader starts with the usual screen
        if view.mode is not core.Mode.EMAIL and self.email:
            self.email = ""
        ids.title.text = ids.head.text = t("app.title", lang)
        ids.lang.text = t("lang.switch", lang)
        ids.help.text = t("button.help", lang)
        # what the button changes, and the state it is in now
        ids.a11y.text = t(f"a11y.next.{theme.level}", lang)
        reachable = view.online and view.central_ok
        ids.net.text = t("net.online" if reachable else "net.offline", lang)
        ids.net.color = theme.color("online" if reachable else "offline")
        ids.idle_borrow_title.text = t("idle.borrow_title", lang)
        ids.idle_text.text = t("idle.place_card", lang)
        ids.idle_then.text = t("idle.borrow_then", lang)
        ids.idle_return_title.text = t("idle.return_title", lang)
        ids.return_button.text = t("idle.return_button", lang)
        ids.return_hint.text = t("idle.return_hint", lang)
        ids.idle_todo.text = t("idle.refused_todo", lang)
        ids.idle_call.text = t("help.call", lang)
        self.idle_refused = view.mode is core.Mode.IDLE and bool(view.message)
        ids.idle_message.text = (t(f"idle.{view.message}", lang,
                                   reason=reason_text(view.message_arg, lang),
                                   time=local_time(view.message_arg)
                                   if view.message == "pin_locked" else "")
                                 if view.message else "")
        ids.checking_text.text = t("checking.title", lang)
        ids.oos_title.text = t("oos.title", lang)
        ids.oos_message.text = view.service_message or ""
        ids.oos_hint.text = t("oos.hint", lang)
        if view.mode is core.Mode.RETURN:
            ids.session_title.text = t("return.title", lang)
            ids.session_hint.text = t("return.place_books", lang)
        else:
            ids.session_title.text = t("borrow.hello", lang, name=view.patron_name or "")
            ids.session_hint.text = (t("borrow.offline_hint", lang, n=view.offline_left)
                                     if view.offline_session
                                     else t("borrow.place_books", lang))
        if view.finishing:  # Finish pressed: the summary waits for the last outcomes
            ids.session_hint.text = t("session.finishing", lang)
        self.account_shown = view.mode is core.Mode.BORROW and not view.offline_session
        ids.account_button.text = t("button.account", lang)
        ids.finish_button.text = t("button.finish", lang)
        ids.done_button.text = t("button.done", lang)
        self._render_count(view)
        self._render_confirm(view)
        self._render_receipt(view)
        self._render_help(view)
        self._render_pin(view)
        # Lists are built for the screen that shows them, when what they show changed: a
        # row costs a few widgets and textures, too many to build for hidden screens.
        mode = view.mode
        if mode is not core.Mode.ACCOUNT:
            self.renew_all_shown = False
        self._fill("account", mode is core.Mode.ACCOUNT,
                   (view.account, view.account_failed, view.renewals, lang),
                   lambda: self._render_account(view))
        ids.summary_title.text = t("summary.title", lang)
        ids.summary_thanks.text, self.summary_warn = summary_advice(view)
        ids.summary_receipt.text = (t(f"slip.{view.receipt_state}", lang)
                                    if view.receipt_state else "")
        loans, returns, failed = present.summary_counts(view)
        ids.summary_counts.text = t("summary.counts", lang, loans=loans, returns=returns,
                                    failed=failed)
        warn = present.time_out_warned(view)
        # between two buttons (`_place_question`) it has the room of one line or two
        self._question_text = ((t("more_time.question", lang) + "\n"
                                + t("countdown", lang, seconds=view.countdown),
                                t("more_time.short", lang, seconds=view.countdown))
                               if warn else ("", ""))
        ids.more_time_button.text = t("more_time.button", lang)
        if warn and not self.more_time_shown:
            self._say("more_time", lang)
        self.more_time_shown = warn
        ids.screens.current = _SCREEN[view.mode]
        self._place_question()
        self._fill("lines", mode in (core.Mode.BORROW, core.Mode.RETURN), (view.lines, lang),
                   lambda: self._render_lines(ids.lines, view.lines, lang))
        # the books to leave behind first, where a small screen shows them unscrolled
        ok = (core.Status.DONE, core.Status.OFFLINE)
        problems_first = tuple(sorted(view.lines, key=lambda ln: ln.status in ok))
        self._fill("summary", mode is core.Mode.SUMMARY, (view.lines, lang),
                   lambda: self._render_lines(ids.summary_lines, problems_first, lang))
        self._fill("rs", mode is core.Mode.RETURN_STATION, (view.lines, lang),
                   lambda: self._render_return_station(view))
        ids.rs_hint.text = (t(f"idle.{view.message}", lang) if view.message
                            else t("rs.hint", lang))
        self._fill("staff", mode is core.Mode.STAFF,
                   (view.pending, view.exceptions, lang, view.out_of_service),
                   lambda: self._render_staff(view))
        ids.pending_banner.text = present.pending_text(view)
        if last is None or last.mode is not view.mode or last.lang != view.lang:
            prompt = _PROMPT.get(view.mode)
            if prompt:
                self._say(prompt, lang)
        elif len(view.pending) > len(last.pending):
            self._say("security_pending", lang)

    def _render_count(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        ids.count_title.text = t("count.title", lang)
        ids.count_value.text = str(view.count)
        ids.count_message.text = (t("count.mismatch", lang, read=view.count_read,
                                    said=view.count)
                                  if view.count_read is not None else "")
        ids.count_back.text = t("count.back", lang)
        ids.count_ok.text = t("count.ok", lang)

    def _render_confirm(self, view: core.View) -> None:
        """The first book waiting for the reader's yes; the others are asked after it."""
        ids, lang = self.ids, view.lang
        asking = [ln for ln in view.lines if ln.status is core.Status.ASKING and ln.confirm]
        first = asking[0] if asking else None
        ids.confirm_title.text = line_title(first, lang) if first else ""
        ids.confirm_question.text = (confirm_question(first.confirm, lang)
                                     if first and first.confirm else "")
        ids.confirm_more.text = (t("confirm.more", lang, n=len(asking) - 1)
                                 if len(asking) > 1 else "")
        ids.confirm_no.text = t("confirm.no", lang)
        ids.confirm_yes.text = t("confirm.yes", lang)

    def _render_receipt(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        ids.receipt_title.text = t("slip.question", lang)
        for via in ("print", "email"):
            btn = ids[f"receipt_{via}"]
            btn.text = t(f"slip.choice.{via}", lang)
            offered = via in view.receipt_options
            btn.disabled, btn.opacity = not offered, 1 if offered else 0
        ids.receipt_none.text = t("slip.choice.none", lang)
        self._show_email()
        ids.email_message.text = (t("email.bad_address", lang)
                                  if view.receipt_state == "bad_address" else "")
        ids.email_cancel.text = t("email.cancel", lang)
        ids.email_send.text = t("email.send", lang)

    def _render_pin(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        if view.mode is not core.Mode.PIN and self._pin:
            self._pin = ""  # the screen went away (timeout, help): forget the digits
            ids.pin_dots.text = ""
        ids.pin_title.text = t("pin.title", lang)
        ids.pin_hint.text = t("pin.hint", lang)
        if view.pin_error == "wrong_pin":
            ids.pin_message.text = (t("pin.wrong", lang, n=view.pin_tries_left)
                                    if view.pin_tries_left is not None
                                    else t("pin.wrong_no_count", lang))
        elif view.pin_error == "pin_required":
            ids.pin_message.text = t("pin.required", lang)
        else:
            ids.pin_message.text = ""
        self.pin_buttons["clear"].text = t("pin.clear", lang)
        self.pin_buttons["back"].text = t("pin.back", lang)
        self.email_buttons["back"].text = t("email.back", lang)  # Roboto has no ⌫ glyph
        ids.pin_cancel.text = t("pin.cancel", lang)
        ids.pin_ok.text = t("pin.ok", lang)

    def _render_account(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        ids.account_title.text = t("account.title", lang, name=view.patron_name or "")
        ids.account_back.text = t("account.back", lang)
        ids.renew_all.text = t("account.renew_all", lang)
        box = ids.account_lines
        box.clear_widgets()
        acc = view.account
        renewals = {r.item_id: r for r in view.renewals}
        left = present.renewable_left(view)
        self.renew_all_shown = view.mode is core.Mode.ACCOUNT and bool(left)
        ids.account_fines.text = ""
        if acc is None:
            box.add_widget(_note_line(t("account.failed" if view.account_failed
                                        else "account.loading", lang)))
            return
        if not acc.ok:
            box.add_widget(_note_line(t("account.failed", lang)))
            return
        # The total goes at the top, where it is seen without scrolling; the items at the end.
        total = money(acc.fines_total, acc.currency, acc.currency_exponent, lang)
        ids.account_fines.text = (t("account.fines", lang, amount=total) if acc.fines_total
                                  else t("account.no_fines", lang))
        ids.account_fines.color = theme.color("red" if acc.fines_total else "green")
        box.add_widget(_section(t("account.loans", lang, n=len(acc.loans))))
        if not acc.loans:
            box.add_widget(_note_line(t("account.no_loans", lang)))
        for i, loan in enumerate(acc.loans):
            box.add_widget(self._loan_line(loan, renewals.get(loan.item_id), lang, i))
        if acc.holds_ready:
            box.add_widget(_section(t("account.holds_ready", lang, n=len(acc.holds_ready))))
            for i, ready in enumerate(acc.holds_ready):
                notes = [t("account.pickup_by", lang, date=date(ready.pickup_by, lang))
                         if ready.pickup_by else "",
                         t("account.pickup_at", lang,
                           place=place_name(ready.pickup_at, self._places))
                         if ready.pickup_at else ""]
                box.add_widget(AccountLine(
                    title=ready.title or ready.item_id, note="  ·  ".join(n for n in notes if n),
                    note_color=theme.color("green"), band=_band(i)))
        if acc.holds_waiting:
            box.add_widget(_section(t("account.holds_waiting", lang,
                                      n=len(acc.holds_waiting))))
            for i, waiting in enumerate(acc.holds_waiting):
                box.add_widget(AccountLine(
                    title=waiting.title,
                    status_text=(t("account.position", lang, n=waiting.position)
                                 if waiting.position else t("account.position_unknown", lang)),
                    status_color=theme.color("grey"), band=_band(i)))
        if acc.fines:
            box.add_widget(_section(t("account.fines", lang, amount=total)))
        for i, fine in enumerate(acc.fines):
            fine_line = AccountLine(
                title=fine.description,
                status_text=(money(fine.amount, acc.currency, acc.currency_exponent, lang)
                             if fine.amount is not None else ""),
                status_color=theme.color("red"), band=_band(i))
            fine_line.is_book = False
            box.add_widget(fine_line)

    def _loan_line(self, loan: Any, renewal: core.Line | None, lang: str,
                   i: int) -> AccountLine:
        due = date(loan.due, lang) if loan.due else "?"
        note = t("account.overdue" if loan.overdue else "account.due", lang, date=due)
        status, color, button = "", "grey", ""
        s = core.Status
        if renewal is not None and renewal.status is s.DONE:
            status, color = t("account.renewed", lang,
                              date=date(renewal.due, lang) if renewal.due else "?"), "green"
            note = ""
        elif renewal is not None and renewal.status in (s.REFUSED, s.UNCONFIRMED):
            status, color = t("account.renew_refused", lang,
                              reason=reason_text(renewal.reason, lang)), "red"
        elif renewal is not None:
            status = t("account.renewing", lang)
        elif not loan.renewable:
            # In a session the patron passed the check (not blocked, card valid): what is
            # left of the central's "not renewable" is a hold for another reader.
            status, color = t("account.not_renewable", lang,
                              reason=reason_text("on_hold_for_other", lang)), "red"
        else:
            button = t("account.renew", lang)
        return AccountLine(
            title=loan.title or t("item.unknown_title", lang, item=loan.item_id), note=note,
            note_color=theme.color("red" if loan.overdue and note else "grey"),
            status_text=status, status_color=theme.color(color), band=_band(i),
            button_text=button,
            action=lambda item=loan.item_id: self._on_event(core.Renew(item)))

    def _render_help(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        reason = view.help_reason or "button"
        ids.help_title.text = t(f"help.title.{reason}", lang)
        where = self._desk_where.get(lang, "")
        ids.help_text.text = t(f"help.{reason}", lang) + (
            "\n" + t("help.desk", lang, where=where) if where and reason == "button" else "")
        ids.help_back.text = t("help.back", lang)
        ids.help_call.text = t("help.call", lang)
        self.call_shown = reason == "button"

    def _render_staff(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        ids.staff_title.text = t("staff.title", lang)
        ids.staff_state.text = t("staff.closed" if view.out_of_service else "staff.open", lang)
        self.staff_action = "staff_in_service" if view.out_of_service else "staff_oos"
        ids.staff_service.text = t(f"staff.{self.staff_action}", lang)
        ids.staff_exit.text = t("staff.exit", lang)
        box = ids.staff_lines
        box.clear_widgets()
        for p in view.pending:
            box.add_widget(ExceptionLine(
                text=t(f"staff.pending.{p.state}", lang,
                       title=p.title or p.item_id or p.uid),
                button_text=t("staff.skip", lang),
                action=lambda uid=p.uid: self._on_event(core.StaffSkip(uid))))
        for e in view.exceptions:
            box.add_widget(ExceptionLine(
                text=t("staff.undone" if e.reason == "compensated" else "staff.late", lang,
                       title=e.title or e.item_id,
                       reason=reason_text(e.reason, lang)),
                button_text=t("staff.dismiss", lang),
                action=lambda m=e.msg_id: self._on_event(core.StaffDismiss(m))))
        if not view.pending and not view.exceptions:
            box.add_widget(_note_line(t("staff.nothing", lang)))

    def _render_return_station(self, view: core.View) -> None:
        ids, lang = self.ids, view.lang
        latest = view.lines[-1] if view.lines else None
        if latest is None:
            ids.rs_title.text = ids.rs_status.text = ids.rs_alert.text = ids.rs_bin.text = ""
            self.rs_band = theme.color("band_a")
            self.rs_alert = False
        else:
            ids.rs_bin.text = rs_decision(latest, lang, self._places)
            ids.rs_title.text = line_title(latest, lang)
            text, color = line_status(latest, lang, self._offline_due())
            ids.rs_status.text = text
            ids.rs_status.color = theme.color(color)
            note, _ = line_note(latest, lang, self._places)
            ids.rs_alert.text = note
            self.rs_alert = latest.alert is not None
            self.rs_band = theme.color("alert_bg" if latest.alert else "band_a")
        self._render_lines(ids.rs_lines, tuple(reversed(view.lines[:-1])), lang)

    def _offline_due(self) -> dt.date | None:
        """The due date an offline loan made today gets, when the station knows the period."""
        if self._offline_loan_days is None:
            return None
        return dt.date.today() + dt.timedelta(days=self._offline_loan_days)

    def _render_lines(self, box: BoxLayout, lines: tuple[core.Line, ...], lang: str) -> None:
        box.clear_widgets()
        offline_due = self._offline_due()
        for i, line in enumerate(lines):
            text, color = line_status(line, lang, offline_due)
            note, note_color = line_note(line, lang, self._places)
            box.add_widget(ItemLine(title=line_title(line, lang), status_text=text,
                                    status_color=theme.color(color), note=note,
                                    note_color=theme.color(note_color),
                                    band=theme.color("band_a" if i % 2 == 0 else "band_b")))


def _note_line(text: str) -> BoxLayout:
    line = ItemLine(title=text, band=theme.color("band_a"))
    line.is_book = False
    return line


def _band(i: int) -> tuple[float, ...]:
    return theme.color("band_a" if i % 2 == 0 else "band_b")


def _section(text: str) -> Label:
    label: Label = Factory.SectionLabel(text=text)
    return label

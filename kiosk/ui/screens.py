"""The station screens: they render the core's View and turn touches into core events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import ColorProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from kiosk import core
from kiosk.i18n import date, t

Builder.load_file(str(Path(__file__).with_name("screens.kv")))

GREEN = (0.12, 0.50, 0.22, 1)
RED = (0.75, 0.15, 0.12, 1)
GREY = (0.35, 0.38, 0.40, 1)
AMBER = (0.70, 0.42, 0.02, 1)

_SCREEN = {core.Mode.IDLE: "idle", core.Mode.CHECKING: "checking", core.Mode.BORROW: "session",
           core.Mode.RETURN: "session", core.Mode.SUMMARY: "summary",
           core.Mode.OUT_OF_SERVICE: "out_of_service"}


def reason_text(reason: str | None, lang: str) -> str:
    return t(f"reason.{reason}", lang) if reason else ""


def line_status(line: core.Line, lang: str) -> tuple[str, tuple[float, ...]]:
    """The status text of one book line, and its colour."""
    s = core.Status
    if line.security == "failed":
        return t("security.failed", lang), RED
    if line.status is s.DONE:
        if line.kind == "loan":
            due = date(line.due, lang) if line.due else "?"
            return t("status.done.loan", lang, date=due), GREEN
        if line.sort_bin:
            return t("status.done.return_bin", lang, bin=line.sort_bin), GREEN
        return t("status.done.return", lang), GREEN
    if line.status is s.REFUSED:
        return t("status.refused", lang, reason=reason_text(line.reason, lang)), RED
    if line.status is s.UNCONFIRMED:
        return t("status.unconfirmed", lang, reason=reason_text(line.reason, lang)), RED
    if line.status is s.OFFLINE:
        return t("status.offline", lang), AMBER
    if line.status is s.UNREADABLE:
        return t("status.unreadable", lang), RED
    return t(f"status.{line.status.value}", lang), GREY


def line_title(line: core.Line, lang: str) -> str:
    if line.title:
        return line.title
    return t("item.unknown_title", lang, item=line.item_id or line.uid)


class ItemLine(BoxLayout):
    title = StringProperty("")
    status_text = StringProperty("")
    status_color = ColorProperty(GREY)
    band = ColorProperty((1, 1, 1, 1))


class StationRoot(BoxLayout):
    """Renders a core.View; `on_touch_button` receives the buttons' names."""

    def __init__(self, on_button: Callable[[str], None], **kw: Any) -> None:
        super().__init__(**kw)
        self._on_button = on_button
        self._last: core.View | None = None

    def touch(self, button: str) -> None:
        self._on_button(button)

    def render(self, view: core.View) -> None:
        if view == self._last:
            return
        last, self._last = self._last, view
        ids, lang = self.ids, view.lang
        ids.title.text = t("app.title", lang)
        ids.lang.text = t("lang.switch", lang)
        ids.net.text = t("net.online" if view.online else "net.offline", lang)
        ids.net.color = (0.6, 1, 0.6, 1) if view.online else (1, 0.75, 0.4, 1)
        ids.idle_text.text = t("idle.place_card", lang)
        ids.return_button.text = t("idle.return_button", lang)
        ids.return_hint.text = t("idle.return_hint", lang)
        ids.idle_message.text = (t(f"idle.{view.message}", lang,
                                   reason=reason_text(view.message_arg, lang))
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
            ids.session_hint.text = t("borrow.place_books", lang)
        ids.finish_button.text = t("button.finish", lang)
        ids.done_button.text = t("button.done", lang)
        ids.summary_title.text = t("summary.title", lang)
        ids.summary_thanks.text = t("summary.thanks", lang)
        done = [ln for ln in view.lines if ln.status in (core.Status.DONE, core.Status.OFFLINE)]
        ids.summary_counts.text = t(
            "summary.counts", lang, loans=sum(ln.kind == "loan" for ln in done),
            returns=sum(ln.kind == "return" for ln in done),
            failed=len(view.lines) - len(done))
        countdown = t("countdown", lang, seconds=view.countdown) if view.countdown else ""
        ids.countdown.text = ids.summary_countdown.text = countdown
        if last is None or (last.lines, last.lang) != (view.lines, view.lang):
            self._render_lines(ids.lines, view)
            self._render_lines(ids.summary_lines, view)
        ids.screens.current = _SCREEN[view.mode]

    @staticmethod
    def _render_lines(box: BoxLayout, view: core.View) -> None:
        box.clear_widgets()
        for i, line in enumerate(view.lines):
            text, color = line_status(line, view.lang)
            box.add_widget(ItemLine(title=line_title(line, view.lang), status_text=text,
                                    status_color=color,
                                    band=(1, 1, 1, 1) if i % 2 == 0 else (0.93, 0.93, 0.90, 1)))

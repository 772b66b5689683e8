"""The self-check core: a state machine with no I/O, no clock and no Kivy.

Events in (card read, tags on the pad, ack, touch, tick), actions out (check a patron, record a
transaction, write a tag's security state). The station runtime performs the actions and feeds
back what happened; the UI renders `view()`. Shaped like h11: everything testable without
hardware, broker or screen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from drivers.pad.watcher import SeenTag
from mqtt.messages import AckTx, PatronCheckRes


class Mode(StrEnum):
    IDLE = "idle"
    CHECKING = "checking"  # waiting for the central's patron check
    BORROW = "borrow"
    RETURN = "return"
    SUMMARY = "summary"
    OUT_OF_SERVICE = "out_of_service"  # an operator closed the station; shows their message


class Status(StrEnum):
    RECORDING = "recording"  # being written to the journal
    WAITING = "waiting"  # in the journal, waiting for the central's answer
    DONE = "done"  # the library system said yes
    REFUSED = "refused"  # the library system said no
    OFFLINE = "offline"  # a return accepted under the offline policy; sent when online
    UNCONFIRMED = "unconfirmed"  # a loan with no answer in time: not borrowed
    UNREADABLE = "unreadable"  # the tag's data fits no model


Kind = Literal["loan", "return"]
Security = Literal["none", "pending", "done", "failed"]


# -- events
@dataclass(frozen=True)
class CardRead:
    card_id: str


@dataclass(frozen=True)
class PatronChecked:
    result: PatronCheckRes | None  # None: no answer (offline or timed out)


@dataclass(frozen=True)
class TagsPresent:
    tags: tuple[SeenTag, ...]


@dataclass(frozen=True)
class Recorded:
    msg_id: str


@dataclass(frozen=True)
class AckReceived:
    ack: AckTx


@dataclass(frozen=True)
class SecurityWritten:
    uid: str
    ok: bool


@dataclass(frozen=True)
class Touch:
    button: Literal["return", "finish", "lang", "cancel", "done"]


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Connectivity:
    online: bool


@dataclass(frozen=True)
class SetService:
    """An operator's out of service (with a message per language) or back in service."""

    in_service: bool
    message_vi: str | None = None
    message_en: str | None = None


Event = (CardRead | PatronChecked | TagsPresent | Recorded | AckReceived | SecurityWritten
         | Touch | Tick | Connectivity | SetService)


# -- actions
@dataclass(frozen=True)
class CheckPatron:
    card_id: str


@dataclass(frozen=True)
class RecordTx:
    msg_id: str
    kind: Kind
    item_id: str
    patron_ref: str | None


@dataclass(frozen=True)
class WriteSecurity:
    uid: str
    state: Literal["on_loan", "in_library"]


Action = CheckPatron | RecordTx | WriteSecurity


# -- what the screen shows
@dataclass(frozen=True)
class Line:
    uid: str
    kind: Kind
    status: Status
    item_id: str | None = None
    msg_id: str | None = None
    title: str | None = None
    due: dt.date | None = None
    reason: str | None = None
    sort_bin: str | None = None
    security: Security = "none"
    sent_at: float = 0.0


@dataclass(frozen=True)
class View:
    mode: Mode
    lang: str
    online: bool
    patron_name: str | None
    lines: tuple[Line, ...]
    countdown: int | None  # whole seconds left before the station goes back to idle
    message: str | None  # a message key for the idle screen (a refusal, being offline)
    message_arg: str | None = None
    service_message: str | None = None  # the operator's words while out of service


@dataclass
class CoreConfig:
    default_lang: str = "vi"
    langs: tuple[str, ...] = ("vi", "en")
    ack_timeout_s: float = 5.0
    inactivity_s: float = 45.0
    summary_s: float = 12.0
    message_s: float = 8.0
    offline_returns: bool = True  # offline policy: returns only (the default) or nothing


@dataclass
class _Session:
    patron_ref: str | None = None
    patron_name: str | None = None
    lines: list[Line] = field(default_factory=list)


class SelfCheck:
    """Feed events with `handle(event, now)`; read `view(now)`."""

    def __init__(self, config: CoreConfig, new_id: Callable[[], str]) -> None:
        self.config = config
        self._new_id = new_id
        self.mode = Mode.IDLE
        self.lang = config.default_lang
        self.online = False
        self._session = _Session()
        self._present: dict[str, SeenTag] = {}
        self._last_activity = 0.0
        self._message: tuple[str, str | None, float] | None = None  # key, arg, until
        # Out of service asked for while a reader is busy: applied when their session ends.
        self._closing: SetService | None = None
        self._closed: SetService | None = None

    # -- reading
    def view(self, now: float) -> View:
        countdown = None
        limit = self._limit()
        if limit is not None:
            countdown = max(0, int(self._last_activity + limit - now + 0.999))
        message, arg = None, None
        if self._message and self._message[2] > now:
            message, arg = self._message[0], self._message[1]
        return View(self.mode, self.lang, self.online, self._session.patron_name,
                    tuple(self._session.lines), countdown, message, arg,
                    self._service_message())

    @property
    def busy(self) -> bool:
        """A reader is in the middle of something (a session or its summary)."""
        return self.mode in (Mode.CHECKING, Mode.BORROW, Mode.RETURN, Mode.SUMMARY)

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def _service_message(self) -> str | None:
        if self.mode is not Mode.OUT_OF_SERVICE or self._closed is None:
            return None
        own = self._closed.message_vi if self.lang == "vi" else self._closed.message_en
        return own or self._closed.message_en or self._closed.message_vi

    def line(self, msg_id: str) -> Line | None:
        return next((ln for ln in self._session.lines if ln.msg_id == msg_id), None)

    def _limit(self) -> float | None:
        if self.mode in (Mode.BORROW, Mode.RETURN):
            return self.config.inactivity_s
        if self.mode is Mode.SUMMARY:
            return self.config.summary_s
        return None

    # -- writing
    def handle(self, event: Event, now: float) -> list[Action]:
        if not isinstance(event, Tick | Connectivity | Recorded | AckReceived | SecurityWritten):
            self._last_activity = now
        match event:
            case CardRead(card_id):
                return self._card(card_id, now)
            case PatronChecked(result):
                return self._patron(result, now)
            case TagsPresent(tags):
                self._present = {t.uid: t for t in tags}
                return self._scan(now)
            case Recorded(msg_id):
                self._update(msg_id, status=Status.WAITING, sent_at=now)
                return []
            case AckReceived(ack):
                return self._ack(ack)
            case SecurityWritten(uid, ok):
                self._update_uid(uid, security="done" if ok else "failed")
                return []
            case Touch(button):
                return self._touch(button, now)
            case Tick():
                return self._tick(now)
            case Connectivity(online):
                self.online = online
                return []
            case SetService():
                self._set_service(event)
                return []
        return []

    def _set_service(self, event: SetService) -> None:
        if event.in_service:
            self._closing = None
            if self.mode is Mode.OUT_OF_SERVICE:
                self._closed = None
                self._to_idle()
        elif self.busy:
            self._closing = event  # never cut a reader off mid-session
        else:
            self._close(event)

    def _close(self, event: SetService) -> None:
        self._closing = None
        self._closed = event
        self._session = _Session()
        self.lang = self.config.default_lang
        self.mode = Mode.OUT_OF_SERVICE

    def _card(self, card_id: str, now: float) -> list[Action]:
        if self.mode in (Mode.IDLE, Mode.RETURN, Mode.SUMMARY):
            if not self.online:
                self._show("offline_no_loans", None, now)
                return []
            self._set_mode(Mode.CHECKING)
            return [CheckPatron(card_id)]
        return []  # a card during a borrowing session is ignored: finish first

    def _patron(self, result: PatronCheckRes | None, now: float) -> list[Action]:
        if self.mode is not Mode.CHECKING:
            return []
        if result is None:
            self._to_idle()
            self._show("offline_no_loans", None, now)
            return []
        if not result.ok:
            self._to_idle()
            self._show("patron_refused", result.reason, now)
            return []
        self._session = _Session(result.patron_ref, result.display_name)
        self._set_mode(Mode.BORROW)
        return self._scan(now)

    def _scan(self, now: float) -> list[Action]:
        """Start a transaction for every tag on the pad that this session has not seen."""
        if self.mode not in (Mode.BORROW, Mode.RETURN):
            return []
        kind: Kind = "loan" if self.mode is Mode.BORROW else "return"
        actions: list[Action] = []
        seen = {ln.uid: ln for ln in self._session.lines}
        for uid, tag in self._present.items():
            line = seen.get(uid)
            if line is not None:
                if line.security == "failed":  # the book is back: write it now
                    self._update_uid(uid, security="pending")
                    actions.append(self._security(line))
                continue
            if tag.item is None:
                self._session.lines.append(Line(uid, kind, Status.UNREADABLE, reason=tag.error))
                continue
            if kind == "loan" and not self.online:
                self._session.lines.append(Line(uid, kind, Status.UNCONFIRMED,
                                                item_id=tag.item.primary_item_id,
                                                title=tag.item.title, reason="offline"))
                continue
            msg_id = self._new_id()
            self._session.lines.append(Line(uid, kind, Status.RECORDING,
                                            item_id=tag.item.primary_item_id, msg_id=msg_id,
                                            title=tag.item.title))
            actions.append(RecordTx(msg_id, kind, tag.item.primary_item_id,
                                    self._session.patron_ref if kind == "loan" else None))
        return actions

    def _security(self, line: Line) -> WriteSecurity:
        return WriteSecurity(line.uid, "on_loan" if line.kind == "loan" else "in_library")

    def _ack(self, ack: AckTx) -> list[Action]:
        line = self.line(ack.msg_id)
        if line is None:
            return []  # from an earlier session: the outbox has dropped its row already
        if not ack.ok:
            if line.status is not Status.UNCONFIRMED:
                self._update(ack.msg_id, status=Status.REFUSED, reason=ack.reason,
                             title=ack.title or line.title)
            return []
        if line.status is Status.OFFLINE:  # already secured under the offline policy
            self._update(ack.msg_id, status=Status.DONE, title=ack.title or line.title,
                         sort_bin=ack.sort_bin)
            return []
        self._update(ack.msg_id, status=Status.DONE, title=ack.title or line.title,
                     due=ack.due, sort_bin=ack.sort_bin, security="pending")
        updated = self.line(ack.msg_id)
        assert updated is not None
        return [self._security(updated)]

    def _touch(self, button: str, now: float) -> list[Action]:
        if button == "lang":
            langs = self.config.langs
            self.lang = langs[(langs.index(self.lang) + 1) % len(langs)]
        elif button == "return" and self.mode in (Mode.IDLE, Mode.SUMMARY):
            self._session = _Session()
            self._set_mode(Mode.RETURN)
            return self._scan(now)
        elif button == "finish" and self.mode in (Mode.BORROW, Mode.RETURN):
            self._set_mode(Mode.SUMMARY)
        elif button in ("done", "cancel") and self.mode is not Mode.OUT_OF_SERVICE:
            self._to_idle()
        return []

    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for line in list(self._session.lines):
            if line.status is Status.WAITING and now - line.sent_at >= self.config.ack_timeout_s:
                if line.kind == "return" and self.config.offline_returns:
                    assert line.msg_id is not None
                    self._update(line.msg_id, status=Status.OFFLINE, security="pending")
                    actions.append(self._security(line))
                else:
                    assert line.msg_id is not None
                    self._update(line.msg_id, status=Status.UNCONFIRMED, reason="no_answer")
        limit = self._limit()
        if limit is not None and now - self._last_activity >= limit:
            self._to_idle()
        return actions

    # -- helpers
    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode

    def _to_idle(self) -> None:
        self.mode = Mode.IDLE
        self.lang = self.config.default_lang
        self._session = _Session()
        if self._closing is not None:
            self._close(self._closing)

    def _show(self, key: str, arg: str | None, now: float) -> None:
        self._message = (key, arg, now + self.config.message_s)

    def _update(self, msg_id: str, **changes: object) -> None:
        lines = self._session.lines
        for i, ln in enumerate(lines):
            if ln.msg_id == msg_id:
                lines[i] = replace(ln, **changes)  # type: ignore[arg-type]

    def _update_uid(self, uid: str, **changes: object) -> None:
        lines = self._session.lines
        for i, ln in enumerate(lines):
            if ln.uid == uid:
                lines[i] = replace(ln, **changes)  # type: ignore[arg-type]

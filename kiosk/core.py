"""The self-check core: a state machine with no I/O, no clock and no Kivy.

Events in (card read, tags on the pad, ack, touch, tick), actions out (check a patron, record a
transaction, write a tag's security state, keep a pending write, report to operators). The
station runtime performs the actions and feeds back what happened; the UI renders `view()`.
Shaped like h11: everything testable without hardware, broker or screen. The vocabulary
(modes, events, actions, View) lives in kiosk/core_model.py and is re-exported here.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from selfcheck.drivers.seen import SeenTag, TagUid
from selfcheck.kiosk.core_model import (  # noqa: F401 - the core's vocabulary, re-exported
    NOT_FOR_LOAN,
    Account,
    AccountLoaded,
    AccountLoan,
    AckReceived,
    Action,
    Alert,
    Button,
    CardRead,
    CheckOffline,
    CheckPatron,
    ClearPending,
    Confirmation,
    Connectivity,
    CoreConfig,
    DropException,
    EmailEntered,
    Event,
    Fine,
    HoldReady,
    HoldWaiting,
    KeepException,
    Kind,
    LateRefusal,
    Line,
    LoadAccount,
    LoanUndone,
    Mode,
    Notify,
    OfflineChecked,
    OfflinePatron,
    PatronAnswer,
    PatronChecked,
    PendingWrite,
    PinEntered,
    PinRule,
    ReceiptSent,
    ReceiptVia,
    Reconfigure,
    Recorded,
    RecordTx,
    Renew,
    Restored,
    Route,
    SavePending,
    SecState,
    Security,
    SecurityWritten,
    SendReceipt,
    SetService,
    StaffDismiss,
    StaffSkip,
    Status,
    TagsPresent,
    Tick,
    ToldNotLent,
    Touch,
    TxAnswer,
    Typed,
    View,
    WriteSecurity,
)
from selfcheck.kiosk.core_table import (
    FINISH_TO,
    FINISHING_MODES,
    INACTIVITY_MODES,
    MACHINE,
    NO_HELP_MODES,
    READER_MODES,
    SCAN_MODES,
    SESSION_MODES,
    UndeclaredStep,
)
from selfcheck.kiosk.timeouts import REFUSAL_S


@dataclass
class _Session:
    patron_ref: str | None = None
    patron_name: str | None = None
    lines: list[Line] = field(default_factory=list)
    offline: bool = False  # lent against the offline list: every loan goes as offline
    offline_left: int = 0
    account: Account | None = None
    account_failed: bool = False
    renewals: list[Line] = field(default_factory=list)
    # The card being checked: kept from the card read until the check ends (the PIN pad may
    # sit in between); never shown, and gone with the session.
    card_id: str | None = field(default=None, repr=False)
    pin_error: str | None = None
    pin_tries: int | None = None
    count: int = 0  # the reader's count of books (confirm_count)
    count_read: int | None = None
    help_from: Mode | None = None  # where the help screen goes back to
    # Finish was pressed: a loan the library system wants confirmed is then not borrowed
    # (no question after the reader has said they are done)
    finished: bool = False
    # The loans whose question the reader answered: a repeat of the question is not news
    # (after a yes their line carries the new loan's msg_id)
    answered: set[str] = field(default_factory=set)
    # Finish was pressed while books were still processed: the summary comes with their
    # outcomes (a loan is neither borrowed nor failed until its answer or its time-out)
    finishing: bool = False


def staff_ref(card_id: str) -> str:
    """A staff card as logged: a short hash, so that logs and events carry no card number."""
    return "staff-" + hashlib.sha256(card_id.encode()).hexdigest()[:10]


_PROCESSING = (Status.RECORDING, Status.WAITING)  # a line with no outcome yet


class SelfCheck:
    """Feed events with `handle(event, now)`; read `view(now)`."""

    # A step the table does not declare raises when strict (the tests), else it is counted
    # in `undeclared` and the actions still go out: a loan recorded is never dropped.
    strict = False

    def __init__(self, config: CoreConfig, new_id: Callable[[], str]) -> None:
        self.config = config
        self._new_id = new_id
        self.lang = config.default_lang
        self.online = False
        self._session = _Session()
        self._present: dict[TagUid, SeenTag] = {}
        self._last_activity = 0.0
        self._message: tuple[str, str | None, float] | None = None  # key, arg, until
        # Out of service asked for while a reader is busy: applied when their session ends.
        self._closing: SetService | None = None
        self._closed: SetService | None = None
        self._pending: dict[TagUid, PendingWrite] = {}
        self._writing: dict[TagUid, SecState] = {}  # writes in flight, by uid
        self._exceptions: list[LateRefusal] = []
        # Actions of a session's end, which any handler may cause (`_to_idle`)
        self._deferred: list[Action] = []
        self._failures = 0  # failed reads / refused cards in a row
        self._help_reason: str | None = None
        self._staff: str | None = None
        self._receipt_state: str | None = None
        # False after the central failed to answer while the broker was up: returns are then
        # accepted at once, marked offline. Any answer from the central sets it back.
        self._central_ok = True
        self._pad_changed = 0.0  # when the pad's set of tags last changed (return station)
        # Events that did not apply in the mode they came in: counted, and the latest kept,
        # so that tests and logs can tell a dropped event from a handled one.
        self.ignored: Counter[tuple[Mode, str]] = Counter()
        self.ignored_recent: deque[tuple[Mode, str]] = deque(maxlen=50)
        self.undeclared: Counter[tuple[Mode, str, Mode]] = Counter()
        self.undeclared_last = (Mode.IDLE, "", Mode.IDLE)  # the latest of them
        self.mode = self._home()

    # -- reading
    def view(self, now: float) -> View:
        countdown = None
        limit = self._limit()
        if limit is not None:
            countdown = max(0, int(self._last_activity + limit - now + 0.999))
        message, arg = None, None
        if self._message and self._message[2] > now:
            message, arg = self._message[0], self._message[1]
        s = self._session
        return View(mode=self.mode, lang=self.lang, online=self.online,
                    patron_name=s.patron_name, lines=tuple(s.lines), countdown=countdown,
                    message=message, message_arg=arg, service_message=self._service_message(),
                    pending=tuple(self._pending.values()), exceptions=tuple(self._exceptions),
                    count=self._session.count, count_read=self._session.count_read,
                    receipt_options=self._receipt_options(),
                    receipt_state=self._receipt_state, out_of_service=self._closed is not None,
                    help_reason=self._help_reason if self.mode is Mode.HELP else None,
                    pin_error=self._session.pin_error if self.mode is Mode.PIN else None,
                    pin_tries_left=self._session.pin_tries if self.mode is Mode.PIN else None,
                    offline_session=s.offline, offline_left=s.offline_left,
                    account=s.account, account_failed=s.account_failed,
                    renewals=tuple(s.renewals), central_ok=self._central_ok,
                    finishing=s.finishing)

    @property
    def busy(self) -> bool:
        """A reader (or staff member) is in the middle of something."""
        return self.mode in READER_MODES

    @property
    def closing(self) -> bool:
        return self._closing is not None

    @property
    def out_of_service(self) -> bool:
        return self._closed is not None

    @property
    def closed_by(self) -> SetService | None:
        """What put the station out of service (its messages), None in service."""
        return self._closed

    def _home(self) -> Mode:
        if self.config.station_mode == "return-station":
            return Mode.RETURN_STATION
        return Mode.IDLE

    def _service_message(self) -> str | None:
        if self._closed is None:
            return None
        own = self._closed.message_vi if self.lang == "vi" else self._closed.message_en
        return own or self._closed.message_en or self._closed.message_vi

    def line(self, msg_id: str) -> Line | None:
        s = self._session
        return next((ln for ln in (*s.lines, *s.renewals) if ln.msg_id == msg_id), None)

    def _limit(self) -> float | None:
        if self.mode in INACTIVITY_MODES:
            return self.config.inactivity_s
        if self.mode is Mode.SUMMARY:
            return self.config.summary_s
        if self.mode is Mode.HELP:
            return self.config.help_s
        return None

    # -- writing
    def _ignore(self, what: str) -> list[Action]:
        key = (self.mode, what)
        self.ignored[key] += 1
        self.ignored_recent.append(key)
        return []

    def _reconfigure(self, event: Reconfigure) -> None:
        old, self.config = self.config, event.config
        if event.config.default_lang != old.default_lang and not self.busy:
            self.lang = event.config.default_lang

    def _key(self, event: Event) -> str:
        """The event's name in the table: a touch by its button, a staff card apart."""
        if isinstance(event, Touch):
            return f"Touch {event.button}"
        if isinstance(event, CardRead) and event.card_id in self.config.staff_cards:
            return "StaffCard"
        return type(event).__name__

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, CardRead | TagsPresent | Touch | Typed | PatronChecked
                      | EmailEntered | StaffSkip | StaffDismiss | PinEntered | OfflineChecked
                      | Renew):
            self._last_activity = now  # the reader is there, even if the event is ignored
        start, key = self.mode, self._key(event)
        row = MACHINE.get((start, key))
        if row is None:
            return self._ignore(key)
        if row.press:
            press: Callable[[float], list[Action]] = getattr(self, row.method)
            actions = press(now)
        else:
            handler: Callable[[Event, float], list[Action]] = getattr(self, row.method)
            actions = handler(event, now)
        self._check_step(start, key, row.to)
        s = self._session
        if (s.finishing and self.mode in FINISHING_MODES
                and not any(ln.status in _PROCESSING for ln in s.lines)):
            before = self.mode
            actions += self._finish()  # the last outcome came: on to the summary
            self._check_step(before, "last outcome after Finish", FINISH_TO)
        if self._deferred:
            actions, self._deferred = actions + self._deferred, []
        return actions

    def _check_step(self, start: Mode, key: str, to: frozenset[Mode]) -> None:
        if self.mode is start or self.mode in to:
            return
        self.undeclared_last = (start, key, self.mode)
        self.undeclared[self.undeclared_last] += 1
        if self.strict:
            raise UndeclaredStep(f"{key} led from {start} to {self.mode}: not in its row")

    # -- the table's handlers: one per event type, called only in the modes it lists
    def _on_card(self, event: CardRead, now: float) -> list[Action]:
        return self._card(event.card_id, now)

    def _on_card_returning(self, event: CardRead, now: float) -> list[Action]:
        self._clear_returns()  # a new reader: the previous one's titles go
        self._show("return_station_no_card", None, now)
        return []

    def _on_staff_card(self, event: CardRead, now: float) -> list[Action]:
        self._staff = staff_ref(event.card_id)
        self._session = _Session()
        self._failures = 0
        self.mode = Mode.STAFF
        return []

    def _on_patron(self, event: PatronChecked, now: float) -> list[Action]:
        return self._patron(event.result, now)

    def _on_pin(self, event: PinEntered, now: float) -> list[Action]:
        return self._pin(event.pin, now)

    def _on_offline_patron(self, event: OfflineChecked, now: float) -> list[Action]:
        return self._offline_patron(event.patron, now)

    def _on_account(self, event: AccountLoaded, now: float) -> list[Action]:
        self._session.account = event.result
        self._session.account_failed = event.result is None
        return []

    def _on_renew(self, event: Renew, now: float) -> list[Action]:
        return self._renew([event.item_id])

    def _on_tags(self, event: TagsPresent, now: float) -> list[Action]:
        present = {t.uid: t for t in event.tags}
        if present.keys() != self._present.keys():
            self._pad_changed = now
        self._present = present
        return self._pending_writes() + self._scan(now)

    def _on_recorded(self, event: Recorded, now: float) -> list[Action]:
        return self._recorded(event.msg_id, now)

    def _on_ack(self, event: AckReceived, now: float) -> list[Action]:
        self._central_ok = True
        if event.ack.msg_id in self._session.answered:
            return []
        return self._ack(event.ack)

    def _on_ack_at_pad(self, event: AckReceived, now: float) -> list[Action]:
        actions = self._on_ack(event, now)
        self.mode = self._pad_mode()  # a question the answer asks comes first
        return actions

    def _on_undone(self, event: LoanUndone, now: float) -> list[Action]:
        """The line, if still on screen, keeps saying "not borrowed": that is now true."""
        self._central_ok = True
        if any(e.msg_id == event.msg_id for e in self._exceptions):
            return []
        undone = LateRefusal(event.msg_id, event.item_id, event.title, "compensated")
        self._exceptions.append(undone)
        self._session.answered.add(event.msg_id)  # a repeat of its ack is no news either
        return [KeepException(undone),
                Notify("loan_undone", "warning", "checked back in", event.item_id)]

    def _on_written(self, event: SecurityWritten, now: float) -> list[Action]:
        return self._written(event.uid, event.ok)

    def _press_more_time(self, now: float) -> list[Action]:
        return []  # the time-out starts again: the activity `handle` took, nothing else

    def _on_typed(self, event: Typed, now: float) -> list[Action]:
        return []  # only the activity it refreshes (in `handle`)

    def _on_tick(self, event: Tick, now: float) -> list[Action]:
        return self._tick(now)

    def _on_connectivity(self, event: Connectivity, now: float) -> list[Action]:
        self.online = event.online
        if event.online:
            self._central_ok = True  # a new connection: ask the central again
        return []

    def _on_service(self, event: SetService, now: float) -> list[Action]:
        self._set_service(event)
        return []

    def _on_restored(self, event: Restored, now: float) -> list[Action]:
        self._pending.update({p.uid: p for p in event.pending})
        known = {e.msg_id for e in self._exceptions}
        self._exceptions += [e for e in event.exceptions if e.msg_id not in known]
        return self._pending_writes()

    def _on_skip(self, event: StaffSkip, now: float) -> list[Action]:
        return self._skip(event.uid)

    def _on_dismiss(self, event: StaffDismiss, now: float) -> list[Action]:
        self._exceptions = [e for e in self._exceptions if e.msg_id != event.msg_id]
        return [DropException(event.msg_id)]

    def _on_email(self, event: EmailEntered, now: float) -> list[Action]:
        return self._email(event.address)

    def _on_receipt_sent(self, event: ReceiptSent, now: float) -> list[Action]:
        ok, via = event.ok, event.via
        self._receipt_state = ("printed" if via == "print" else "sent") if ok else "failed"
        return []

    def _on_reconfigure(self, event: Reconfigure, now: float) -> list[Action]:
        self._reconfigure(event)
        return []

    # -- service
    def _set_service(self, event: SetService) -> None:
        if event.in_service:
            self._closing = None
            self._closed = None
            if self.mode is Mode.OUT_OF_SERVICE:
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

    # -- cards
    def _card(self, card_id: str, now: float) -> list[Action]:
        """A reader's card where a session may start (elsewhere it is ignored: finish first)."""
        if not self.online:
            if self.config.offline_loans:
                self._session.card_id = card_id
                self.mode = Mode.CHECKING
                return [CheckOffline(card_id)]
            self._show("offline_no_loans", None, now)
            return []
        self._session.card_id = card_id
        s = self._session
        s.pin_error = s.pin_tries = None
        if self.config.pin == "always":
            self.mode = Mode.PIN
            return []
        self.mode = Mode.CHECKING
        return [CheckPatron(card_id)]

    def _pin(self, pin: str | None, now: float) -> list[Action]:
        if self._session.card_id is None:
            return []
        if not pin:
            self._to_idle()
            return []
        self.mode = Mode.CHECKING
        # The PIN lives in this action only: the runtime sends it and lets go of it.
        return [CheckPatron(self._session.card_id, pin)]

    def _patron(self, result: PatronAnswer | None, now: float) -> list[Action]:
        if result is None:
            self._central_ok = False
            if self.config.offline_loans and self._session.card_id is not None:
                return [CheckOffline(self._session.card_id)]  # stay in CHECKING for the answer
            self._to_idle()
            self._show("offline_no_loans", None, now)
            return []
        self._central_ok = True
        if (not result.ok and result.pin_required and self.config.pin != "never"
                and result.reason in ("wrong_pin", "pin_required")):
            self._session.pin_error = result.reason
            self._session.pin_tries = result.pin_tries_left
            self.mode = Mode.PIN
            return []
        if not result.ok:
            self._to_idle()
            # why, what to do and the staff button stay long enough to read and to reach
            hold = max(self.config.message_s, REFUSAL_S)
            if result.reason == "pin_locked":
                until = result.pin_locked_until
                self._show("pin_locked", until.isoformat() if until else None, now, hold)
            else:
                self._show("patron_refused", result.reason, now, hold)
            return self._failure("refused card")
        self._failures = 0
        self._message = None  # an earlier refusal is not this reader's
        self._session.card_id = None
        self._session = _Session(result.patron_ref, result.display_name)
        self.mode = Mode.BORROW
        return self._scan(now)

    def _offline_patron(self, patron: OfflinePatron | None, now: float) -> list[Action]:
        self._session.card_id = None
        if patron is None:
            self._to_idle()
            self._show("offline_no_loans", None, now)
            return []
        self._session = _Session(patron.patron_ref, patron.display_name, offline=True,
                                 offline_left=max(0, patron.loans_left))
        self.mode = Mode.BORROW
        return self._scan(now)

    # -- account
    def _open_account(self) -> list[Action]:
        s = self._session
        if s.offline or not s.patron_ref:
            return []  # an offline session has no account to show
        self.mode = Mode.ACCOUNT
        s.account, s.account_failed = None, False
        return [LoadAccount(s.patron_ref)]

    def _renewable(self) -> list[str]:
        account = self._session.account
        return [ln.item_id for ln in account.loans if ln.renewable] if account else []

    def _renew(self, item_ids: list[str]) -> list[Action]:
        s = self._session
        if s.account is None or not s.patron_ref:
            return []
        loans = {ln.item_id: ln for ln in s.account.loans}
        busy = {r.item_id for r in s.renewals if r.status in (Status.RECORDING,
                                                                Status.WAITING)}
        actions: list[Action] = []
        for item_id in item_ids:
            loan = loans.get(item_id)
            if loan is None or item_id in busy:
                continue
            msg_id = self._new_id()
            s.renewals = [r for r in s.renewals if r.item_id != item_id]
            s.renewals.append(Line(None, "renew", Status.RECORDING,
                                   item_id=item_id, msg_id=msg_id, title=loan.title,
                                   due=loan.due))
            actions.append(RecordTx(msg_id, "renew", item_id, s.patron_ref))
        return actions

    def _recorded(self, msg_id: str, now: float) -> list[Action]:
        line = self.line(msg_id)
        if line is None:
            return []
        # A return waits for its answer even when the central seems away (it may be back,
        # with a hold alert to show); the ack timeout then accepts it offline (`_tick`).
        if not (line.kind == "loan" and self._session.offline):
            self._update(msg_id, status=Status.WAITING, sent_at=now)
            return []
        # In the journal, so it will reach the central: the reader may take the book now.
        self._update(msg_id, status=Status.OFFLINE, security="pending", sent_at=now)
        updated = self.line(msg_id)
        assert updated is not None
        return self._secure(updated)

    # -- help
    def _failure(self, what: str) -> list[Action]:
        self._failures += 1
        if self._failures < self.config.help_after:
            return []
        self._failures = 0
        return self._call_help("failures", f"{self.config.help_after} in a row, last: {what}")

    def _call_help(self, reason: str, detail: str) -> list[Action]:
        if self.mode in NO_HELP_MODES:
            return []
        self._session.help_from = self.mode
        self._help_reason = reason
        self.mode = Mode.HELP
        if reason == "button":
            return []  # the help screen explains first; its own button calls staff
        return [Notify("staff_needed", "critical", detail)]

    # -- books
    def _scan(self, now: float) -> list[Action]:
        """Start a transaction for every item on the pad that this session has not seen."""
        if self.mode not in SCAN_MODES:
            return []
        kind: Kind = "loan" if self.mode is Mode.BORROW else "return"
        actions: list[Action] = []
        for uid, tag in self._present.items():
            seen = {u for ln in self._session.lines for u in ln.uids}
            if uid in seen:
                continue
            if tag.item is None:
                self._session.lines.append(Line(uid, kind, Status.UNREADABLE, reason=tag.error))
                actions += self._failure("unreadable tag")
                continue
            self._failures = 0
            item = tag.item
            same = next((ln for ln in self._session.lines
                         if ln.item_id == item.primary_item_id and ln.kind == kind), None)
            if same is not None:  # another part of an item already on screen
                actions += self._join(same, uid, tag, now)
                continue
            refusal = self._local_refusal(tag, kind)
            if refusal is not None:
                self._session.lines.append(Line(uid, kind, Status.REFUSED,
                                                item_id=item.primary_item_id, title=item.title,
                                                reason=refusal))
                continue
            line = Line(uid, kind, Status.RECORDING, item_id=item.primary_item_id,
                        title=item.title, parts_in_item=max(1, item.parts_in_item or 1),
                        part_numbers=frozenset({item.part_number or 1}))
            # the other parts read in the same poll join now, so one transaction covers all
            for other, otag in self._present.items():
                if (other != uid and otag.item is not None
                        and otag.item.primary_item_id == item.primary_item_id):
                    line = replace(line, parts=(*line.parts, other), part_numbers=line.part_numbers
                                   | {otag.item.part_number or len(line.part_numbers) + 1})
            self._session.lines.append(line)
            actions += self._start(line, now)
        self._trim()
        return actions

    def _local_refusal(self, tag: SeenTag, kind: Kind) -> str | None:
        """The station's own refusals, decided from the tag before anything is sent."""
        item = tag.item
        assert item is not None
        own = self.config.owner_isil
        if own and item.owner_isil and item.owner_isil.upper() != own.upper():
            return "other_library"
        if kind == "loan" and item.type_of_usage == NOT_FOR_LOAN:
            return "not_for_loan"
        return None

    def _complete(self, line: Line) -> bool:
        return (line.parts_in_item <= 1
                or line.part_numbers >= set(range(1, line.parts_in_item + 1)))

    def _start(self, line: Line, now: float) -> list[Action]:
        """A line whose parts rule allows it goes to the journal; else it waits for parts."""
        rule = self.config.multipart
        complete = self._complete(line)
        if not complete and rule == "refuse":
            self._replace(line, replace(line, status=Status.PARTS, reason="parts_missing"))
            return []
        warning = "parts_missing" if not complete and rule == "warn" else None
        s = self._session
        if line.kind == "loan" and s.offline:
            if s.offline_left <= 0:
                self._replace(line, replace(line, status=Status.REFUSED,
                                            reason="offline_limit", warning=warning))
                return []
            s.offline_left -= 1
        elif line.kind == "loan" and not self.online:
            self._replace(line, replace(line, status=Status.UNCONFIRMED, reason="offline",
                                        warning=warning))
            return []
        # Offline: a loan of an offline session, or a return while the central is known
        # to be unreachable. Both are accepted once in the journal (see `Recorded`).
        offline = (s.offline if line.kind == "loan"
                   else not self._reachable and self.config.offline_returns)
        msg_id = self._new_id()
        self._replace(line, replace(line, status=Status.RECORDING, msg_id=msg_id, reason=None,
                                    warning=warning))
        assert line.item_id is not None
        return [RecordTx(msg_id, line.kind, line.item_id,
                         s.patron_ref if line.kind == "loan" else None, offline,
                         confirmed=line.confirmed)]

    @property
    def _reachable(self) -> bool:
        return self.online and self._central_ok

    def _join(self, line: Line, uid: TagUid, tag: SeenTag, now: float) -> list[Action]:
        assert tag.item is not None
        number = tag.item.part_number or len(line.part_numbers) + 1
        joined = replace(line, parts=(*line.parts, uid),
                         part_numbers=line.part_numbers | {number})
        if self._complete(joined):
            joined = replace(joined, warning=None)
        self._replace(line, joined)
        if joined.status is Status.PARTS and self._complete(joined):
            return self._start(joined, now)
        if joined.security in ("pending", "done", "failed"):  # secure the late part too
            state = self._state(joined)
            self._writing[uid] = state
            return [WriteSecurity(uid, state)]
        return []

    def _trim(self) -> None:
        """A return station keeps only its latest lines on screen."""
        if self.mode is not Mode.RETURN_STATION:
            return
        lines = self._session.lines
        while len(lines) > self.config.return_station_lines:
            old = next((ln for ln in lines if ln.status not in (Status.RECORDING,
                                                                Status.WAITING)), None)
            if old is None or set(old.uids) & set(self._present):
                break  # never forget a book still on the pad: it would be returned again
            lines.remove(old)

    def _clear_returns(self) -> None:
        """A return station forgets the lines of books gone from the pad and settled: no
        session ends there, so this is when the previous reader's titles leave the screen.
        A book still on the pad stays (it would be returned again), and so does one still
        being processed (its outcome is yet to show)."""
        self._session.lines = [ln for ln in self._session.lines
                               if ln.status in (Status.RECORDING, Status.WAITING)
                               or set(ln.uids) & (self._present.keys() | self._writing.keys())]

    # -- security
    @staticmethod
    def _state(line: Line) -> SecState:
        return "on_loan" if line.kind == "loan" else "in_library"

    def _secure(self, line: Line) -> list[Action]:
        state = self._state(line)
        for uid in line.uids:
            self._writing[uid] = state
        return [WriteSecurity(uid, state) for uid in line.uids]

    def _pending_writes(self) -> list[Action]:
        """A pending write whose book is back on the pad is written now, in any mode."""
        actions: list[Action] = []
        for uid, pending in self._pending.items():
            if uid in self._present and uid not in self._writing:
                self._writing[uid] = pending.state
                self._set_security(uid, "pending")
                actions.append(WriteSecurity(uid, pending.state))
        return actions

    def _written(self, uid: TagUid, ok: bool) -> list[Action]:
        state = self._writing.pop(uid, None)
        line = next((ln for ln in self._session.lines if uid in ln.uids), None)
        if ok:
            self._set_security(uid, "done")
            if self._pending.pop(uid, None) is not None:
                return [ClearPending(uid, "written")]
            return []
        self._set_security(uid, "failed")
        if uid in self._pending or state is None:
            return []
        pending = PendingWrite(uid, line.item_id if line else None,
                               line.title if line else None, state)
        self._pending[uid] = pending
        return [SavePending(pending)]

    def _set_security(self, uid: TagUid, value: Security) -> None:
        """A line's security is the worst of its tags': failed, then pending, then done."""
        for ln in self._session.lines:
            if uid not in ln.uids:
                continue
            if value == "done":
                others = [u for u in ln.uids if u != uid]
                if any(u in self._writing for u in others):
                    value = "pending"
                elif any(u in self._pending for u in others):
                    value = "failed"
            self._replace(ln, replace(ln, security=value))

    def _skip(self, uid: TagUid) -> list[Action]:
        if uid not in self._pending:
            return []
        pending = self._pending.pop(uid)
        return [ClearPending(uid, "skipped", self._staff),
                Notify("security_write_skipped", "info",
                       f"skipped by {self._staff}", pending.item_id)]

    # -- answers
    def _ack(self, ack: TxAnswer) -> list[Action]:
        line = self.line(ack.msg_id)
        if line is None or (not ack.ok and line.status is Status.OFFLINE):
            # A refusal the reader can no longer see (or a return already accepted offline):
            # kept for staff as an exception. A repeat of one already kept adds nothing.
            if ack.ok or any(e.msg_id == ack.msg_id for e in self._exceptions):
                return []
            late = LateRefusal(ack.msg_id, ack.item_id,
                               ack.title or (line.title if line else None), ack.reason)
            if line is not None:
                self._update(ack.msg_id, status=Status.REFUSED, reason=ack.reason)
            self._exceptions.append(late)
            return [KeepException(late),
                    Notify("tx_refused_late", "warning", ack.reason, ack.item_id)]
        words = " ".join(ack.screen_message) if ack.screen_message else None
        if line.kind == "renew":  # no tag to write: the answer is the result
            self._update(ack.msg_id, status=Status.DONE if ack.ok else Status.REFUSED,
                         reason=None if ack.ok else ack.reason, due=ack.due or line.due,
                         screen_message=words)
            return []
        if not ack.ok:
            if line.status is Status.UNCONFIRMED:
                return []
            # What the reader may still accept is asked on screen, unless they have finished
            # (or already answered: a repeat of the question asks nothing)
            asks = (ack.confirm is not None and not self._session.finished
                    and line.status in (Status.WAITING, Status.ASKING))
            self._update(ack.msg_id, status=Status.ASKING if asks else Status.REFUSED,
                         reason=ack.reason, title=ack.title or line.title,
                         screen_message=words, confirm=ack.confirm if asks else None)
            return []
        alert = None if ack.route is Route.SHELF else ack.route.value
        common: dict[str, object] = dict(status=Status.DONE, title=ack.title or line.title,
                                         sort_bin=ack.sort_bin, screen_message=words,
                                         alert=alert, transit_to=ack.transit_to,
                                         print_lines=ack.print_lines)
        if line.status is Status.OFFLINE:  # already secured under the offline policy
            self._update(ack.msg_id, due=ack.due, **common)
            return []
        # SIP2 sites: the library system says whether the tag may change; else always.
        allowed = ack.desensitize if line.kind == "loan" else ack.resensitize
        if allowed is False:
            self._update(ack.msg_id, due=ack.due, security="kept", **common)
            return []
        self._update(ack.msg_id, due=ack.due, security="pending", **common)
        updated = self.line(ack.msg_id)
        assert updated is not None
        return self._secure(updated)

    # -- touches
    # -- buttons (TOUCHES says which one does what in which mode)
    def _press_lang(self, now: float) -> list[Action]:
        langs = self.config.langs
        self.lang = langs[(langs.index(self.lang) + 1) % len(langs)]
        return []

    def _press_help(self, now: float) -> list[Action]:
        return self._call_help("button", "the help button")

    def _press_call_staff(self, now: float) -> list[Action]:
        if self._help_reason != "button":
            return []  # already called
        self._help_reason = "called"
        return [Notify("staff_needed", "critical", "the reader asked for staff")]

    def _press_call_staff_idle(self, now: float) -> list[Action]:
        # a refused card's screen offers staff at once: the help screen says they are coming
        self._message = None
        return self._call_help("called", "a reader whose card was refused asked for staff")

    def _press_help_back(self, now: float) -> list[Action]:
        back = self._session.help_from
        if back in (Mode.BORROW, Mode.CONFIRM_LOAN):
            self.mode = self._pad_mode()
        elif back in SESSION_MODES:
            self.mode = back  # the reader's session goes on where it was
        else:
            self._to_idle()
        return []

    def _press_return(self, now: float) -> list[Action]:
        self._session = _Session()
        self.mode = Mode.RETURN
        return self._scan(now)

    def _press_account(self, now: float) -> list[Action]:
        return self._open_account()

    def _press_renew_all(self, now: float) -> list[Action]:
        return self._renew(self._renewable())

    def _press_back_to_pad(self, now: float) -> list[Action]:
        self.mode = self._pad_mode()  # back to the pad: the session goes on
        return self._scan(now)

    def _press_loan_yes(self, now: float) -> list[Action]:
        line = self._asked()
        actions: list[Action] = []
        if line is not None and line.confirm is not None and line.msg_id is not None:
            self._session.answered.add(line.msg_id)
            # a new loan (new msg_id, next seq): the refused one is settled by its ack
            yes = replace(line, confirm=None, confirmed=(*line.confirmed, line.confirm.code))
            actions = self._start(yes, now)
        return actions + self._press_back_to_pad(now)

    def _press_loan_no(self, now: float) -> list[Action]:
        line = self._asked()
        if line is not None and line.msg_id is not None:
            # nothing to send: the library system has not lent it
            self._session.answered.add(line.msg_id)
            self._replace(line, replace(line, status=Status.REFUSED, confirm=None))
        return self._press_back_to_pad(now)

    def _asked(self) -> Line | None:
        """The book the reader is asked about: the first one waiting for an answer."""
        return next((ln for ln in self._session.lines if ln.status is Status.ASKING), None)

    def _pad_mode(self) -> Mode:
        """Back to the pad of a borrowing session: a question waiting comes first."""
        return Mode.CONFIRM_LOAN if self._asked() is not None else Mode.BORROW

    def _press_finish(self, now: float) -> list[Action]:
        if self._session.finishing:
            return []  # already on its way to the summary
        if self.config.confirm_count and self._session.lines:
            self._session.count, self._session.count_read = 0, None
            self.mode = Mode.CONFIRM_COUNT
            return []
        return self._finish()

    def _press_count_plus(self, now: float) -> list[Action]:
        self._session.count = min(99, self._session.count + 1)
        return []

    def _press_count_minus(self, now: float) -> list[Action]:
        self._session.count = max(0, self._session.count - 1)
        return []

    def _press_count_back(self, now: float) -> list[Action]:
        self._session.count_read = None
        self.mode = self._pad_mode() if self._session.patron_ref else Mode.RETURN
        return []

    def _press_count_ok(self, now: float) -> list[Action]:
        read = len(self._session.lines)  # a set of parts is one item, as readers count
        if self._session.count == read:
            self._session.count_read = None
            return self._finish()
        self._session.count_read = read
        return []

    def _press_receipt_print(self, now: float) -> list[Action]:
        return self._send("print") if self.config.can_print else []

    def _press_receipt_email(self, now: float) -> list[Action]:
        if self.config.can_email:
            self.mode = Mode.EMAIL
        return []

    def _press_receipt_none(self, now: float) -> list[Action]:
        self.mode = Mode.SUMMARY
        return []

    def _press_staff_oos(self, now: float) -> list[Action]:
        self._closed = SetService(False)
        return []

    def _press_staff_in_service(self, now: float) -> list[Action]:
        self._closed = self._closing = None
        return []

    def _press_staff_exit(self, now: float) -> list[Action]:
        self._staff = None
        self._to_idle()
        return []

    def _press_staff_tagging(self, now: float) -> list[Action]:
        self.mode = Mode.TAGGING  # no inactivity limit: a tagging shift has long pauses
        return []

    def _press_tagging_back(self, now: float) -> list[Action]:
        self.mode = Mode.STAFF
        return []

    @property
    def staff(self) -> str | None:
        """The staff member in charge (a hash of their card), None when none is."""
        return self._staff

    def _press_idle(self, now: float) -> list[Action]:
        self._to_idle()
        return []

    def _finish(self) -> list[Action]:
        for ln in list(self._session.lines):
            if ln.status is Status.PARTS:  # the set never came together: not borrowed
                self._replace(ln, replace(ln, status=Status.REFUSED))
            elif ln.status is Status.ASKING:  # never answered: not borrowed
                self._replace(ln, replace(ln, status=Status.REFUSED, confirm=None))
        self._session.finished = True
        if any(ln.status in _PROCESSING for ln in self._session.lines):
            self._session.finishing = True  # `handle` goes on when the last outcome comes
            if self.mode is Mode.CONFIRM_COUNT:  # where the lines show
                self.mode = Mode.BORROW if self._session.patron_ref else Mode.RETURN
            return []
        self._session.finishing = False
        self._receipt_state = None
        options = self._receipt_options()
        has_items = any(ln.item_id for ln in (*self._session.lines, *self._session.renewals))
        if not has_items or not options:
            self.mode = Mode.SUMMARY
            return []
        if self.config.receipt == "print":
            return self._send("print")
        if self.config.receipt == "email":
            self.mode = Mode.EMAIL
            return []
        self.mode = Mode.RECEIPT
        return []

    def _receipt_options(self) -> tuple[str, ...]:
        cfg = self.config
        options = []
        if cfg.receipt in ("print", "ask") and cfg.can_print:
            options.append("print")
        if cfg.receipt in ("email", "ask") and cfg.can_email:
            options.append("email")
        return tuple(options)

    def _send(self, via: ReceiptVia, to: str | None = None) -> list[Action]:
        self.mode = Mode.SUMMARY
        self._receipt_state = "printing" if via == "print" else "sending"
        return [SendReceipt(via, self.lang, self._session.patron_name,
                            (*self._session.lines, *self._session.renewals), to)]

    def _email(self, address: str | None) -> list[Action]:
        address = (address or "").strip()
        if not address:
            self.mode = Mode.SUMMARY
            return []
        local, _, domain = address.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in address):
            self._receipt_state = "bad_address"
            return []
        return self._send("email", address)

    # -- time
    def _tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for line in [*self._session.lines, *self._session.renewals]:
            if line.status is Status.WAITING and now - line.sent_at >= self.config.ack_timeout_s:
                assert line.msg_id is not None
                self._central_ok = False
                if line.kind == "return" and self.config.offline_returns:
                    self._update(line.msg_id, status=Status.OFFLINE, security="pending")
                    actions += self._secure(line)
                else:
                    self._update(line.msg_id, status=Status.UNCONFIRMED, reason="no_answer")
                    if line.kind == "loan" and line.item_id is not None:
                        actions.append(ToldNotLent(line.msg_id, line.item_id, line.title))
        if (self.mode is Mode.RETURN_STATION
                and now - self._pad_changed >= self.config.return_station_clear_s):
            self._clear_returns()
        limit = self._limit()
        if limit is not None and now - self._last_activity >= limit:
            self._staff = None
            self._to_idle()
        return actions

    # -- helpers
    def _to_idle(self) -> None:
        # A loan still waiting when its reader goes was not borrowed for them (the summary
        # did not count it): should it be made after all, it is checked back in.
        self._deferred += [ToldNotLent(ln.msg_id, ln.item_id, ln.title)
                           for ln in self._session.lines
                           if ln.kind == "loan" and ln.status is Status.WAITING
                           and ln.msg_id is not None and ln.item_id is not None]
        self.mode = self._home()
        self.lang = self.config.default_lang
        self._session = _Session()
        self._receipt_state = None
        if self._closing is not None:
            self._close(self._closing)
        elif self._closed is not None:  # staff closed it, or it was closed before help
            self.mode = Mode.OUT_OF_SERVICE

    def _show(self, key: str, arg: str | None, now: float, hold: float | None = None) -> None:
        self._message = (key, arg, now + (hold or self.config.message_s))

    def _replace(self, old: Line, new: Line) -> None:
        lines = self._session.lines
        for i, ln in enumerate(lines):
            if ln is old or (ln.uid == old.uid and ln.kind == old.kind):
                lines[i] = new
                return

    def _update(self, msg_id: str, **changes: object) -> None:
        for lines in (self._session.lines, self._session.renewals):
            for i, ln in enumerate(lines):
                if ln.msg_id == msg_id:
                    lines[i] = replace(ln, **changes)  # type: ignore[arg-type]


"""The self-check core's vocabulary: modes, line states, the events it takes, the actions
it asks for, and the View the screens render. No I/O, no Kivy (the machine is kiosk/core.py)."""


from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from selfcheck.drivers.seen import SeenTag, TagUid
from selfcheck.kiosk.timeouts import ACK_TIMEOUT_S, SUMMARY_S


class Mode(StrEnum):
    IDLE = "idle"
    CHECKING = "checking"  # waiting for the central's patron check
    BORROW = "borrow"
    RETURN = "return"
    CONFIRM_COUNT = "confirm_count"  # the reader says how many books they placed
    RECEIPT = "receipt"  # print, e-mail or no receipt
    EMAIL = "email"  # typing the address for an e-mail receipt
    SUMMARY = "summary"
    HELP = "help"  # staff needed: the help button, or failures in a row
    STAFF = "staff"  # a staff card: exceptions, skip a pending write, service on/off
    RETURN_STATION = "return_station"  # no card, books keep coming (site mode)
    OUT_OF_SERVICE = "out_of_service"  # an operator closed the station; shows their message
    PIN = "pin"  # the PIN pad, before the patron check (site rule) or after pin_required
    ACCOUNT = "account"  # the reader's loans, holds and fines; renew from there
    # A loan the library system makes only if the reader accepts something (a rental
    # charge): the question on screen, one book at a time
    CONFIRM_LOAN = "confirm_loan"
    # Staff tag books (converting to RFID): the runtime's tagging desk (kiosk/staff_tagging.py)
    # takes the barcodes and the pad; the core only keeps the station busy and staff in charge
    TAGGING = "tagging"


class Status(StrEnum):
    RECORDING = "recording"  # being written to the journal
    WAITING = "waiting"  # in the journal, waiting for the central's answer
    DONE = "done"  # the library system said yes
    REFUSED = "refused"  # the library system (or the station's own rule) said no
    OFFLINE = "offline"  # accepted under the offline policy (a return, or a loan against
    # the offline list); in the journal, sent and confirmed when the central is back
    UNCONFIRMED = "unconfirmed"  # a loan with no answer in time: not borrowed
    UNREADABLE = "unreadable"  # the tag's data fits no model
    PARTS = "parts"  # a multi-part item waiting for its other parts (site rule: refuse)
    ASKING = "asking"  # not lent: waits for the reader's yes to its `confirm` (no is a refusal)


Kind = Literal["loan", "return", "renew"]
# kept: the library system said not to change the tag (SIP2 desensitize/resensitize N)
Security = Literal["none", "pending", "done", "failed", "kept"]
SecState = Literal["on_loan", "in_library"]
Alert = Literal["hold", "hold_transit", "transit"]
ReceiptVia = Literal["print", "email"]
Button = Literal["return", "finish", "lang", "cancel", "done", "help", "count_plus",
                 "count_minus", "count_ok", "count_back", "receipt_print", "receipt_email",
                 "receipt_none", "staff_oos", "staff_in_service", "staff_exit", "account",
                 "renew_all", "more_time", "call_staff", "loan_yes", "loan_no", "staff_tagging"]
PinRule = Literal["never", "always", "central"]
NOT_FOR_LOAN = 2  # ISO 28560 type of usage


class Route(StrEnum):
    """Where a returned book goes next. The runtime reads it from the answer's wire fields
    (SIP2 alert type, hold flags, transit); the core knows only this."""

    SHELF = "shelf"
    HOLD_HERE = "hold"
    HOLD_ELSEWHERE = "hold_transit"
    TRANSIT = "transit"


# -- persistent state the core shows (the runtime keeps it in the journal)
@dataclass(frozen=True)
class PendingWrite:
    """A security write the library system allowed but the pad could not do (book lifted
    too early): kept across sessions and restarts until written or skipped by staff."""

    uid: TagUid
    item_id: str | None
    title: str | None
    state: SecState


@dataclass(frozen=True)
class LateRefusal:
    """A refusal that came back when its line was no longer on screen (or after the book was
    accepted offline): an exception for staff."""

    msg_id: str
    item_id: str
    title: str | None
    reason: str | None


# -- events
@dataclass(frozen=True)
class CardRead:
    card_id: str


@dataclass(frozen=True, kw_only=True)
class PatronAnswer:
    """The central's answer to a patron check, in the core's words."""

    ok: bool
    reason: str | None = None
    patron_ref: str | None = None
    display_name: str | None = None
    pin_required: bool = False
    pin_tries_left: int | None = None
    pin_locked_until: dt.datetime | None = None


@dataclass(frozen=True)
class PatronChecked:
    result: PatronAnswer | None  # None: no answer (offline or timed out)


@dataclass(frozen=True)
class PinEntered:
    """The PIN pad's OK (the digits) or cancel (None). The digits go into one CheckPatron
    action and are not kept in the core's state."""

    pin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OfflinePatron:
    """A card found on the offline list (by its hash), with what it may still borrow."""

    patron_ref: str
    display_name: str
    loans_left: int


@dataclass(frozen=True)
class OfflineChecked:
    patron: OfflinePatron | None  # None: not on the list, or no valid list


# -- a reader's account, as the account screen shows it (the edge builds it from the answer)
@dataclass(frozen=True)
class AccountLoan:
    item_id: str
    title: str | None = None
    due: dt.date | None = None
    overdue: bool = False
    renewable: bool = True  # not refused for a known reason; the renewal's answer decides


@dataclass(frozen=True)
class HoldReady:
    """On the hold shelf, waiting for the reader."""

    item_id: str
    title: str | None = None
    pickup_by: dt.date | None = None
    pickup_at: str | None = None  # site code of the pickup branch


@dataclass(frozen=True)
class HoldWaiting:
    title: str
    position: int | None = None  # 1 = next; None when the library system does not say


@dataclass(frozen=True)
class Fine:
    description: str
    amount: int | None = None  # in minor units (see Account.currency_exponent)


@dataclass(frozen=True)
class Account:
    ok: bool  # False: the central does not know the reader; the lists are empty
    loans: tuple[AccountLoan, ...] = ()
    holds_ready: tuple[HoldReady, ...] = ()
    holds_waiting: tuple[HoldWaiting, ...] = ()
    fines_total: int = 0  # in minor units
    currency: str = "VND"
    currency_exponent: int = 0  # minor units per major unit as a power of ten
    fines: tuple[Fine, ...] = ()


@dataclass(frozen=True)
class AccountLoaded:
    result: Account | None  # None: no answer


@dataclass(frozen=True)
class Renew:
    """The per-row renew button of the account screen."""

    item_id: str


@dataclass(frozen=True)
class TagsPresent:
    tags: tuple[SeenTag, ...]


@dataclass(frozen=True)
class Recorded:
    msg_id: str


@dataclass(frozen=True)
class Confirmation:
    """What the library system asks the reader to accept before it lends (a rental charge).
    The loan was not made: on a yes the station sends a new one with `code` confirmed."""

    code: str
    amount: int | None = None  # in minor units of `currency`
    currency: str | None = None
    currency_exponent: int = 0


@dataclass(frozen=True, kw_only=True)
class TxAnswer:
    """The library system's answer to a transaction, in the core's words."""

    msg_id: str
    ok: bool
    item_id: str
    reason: str | None = None
    title: str | None = None
    due: dt.date | None = None
    sort_bin: str | None = None
    screen_message: tuple[str, ...] = ()  # SIP2 AF
    print_lines: tuple[str, ...] = ()  # SIP2 AG
    route: Route = Route.SHELF
    transit_to: str | None = None
    desensitize: bool | None = None  # None: not said (always write the tag)
    resensitize: bool | None = None
    confirm: Confirmation | None = None  # a refused loan the reader may still accept


@dataclass(frozen=True)
class AckReceived:
    ack: TxAnswer


@dataclass(frozen=True)
class LoanUndone:
    """A loan the reader was told they did not get came back as made (its answer lost or too
    late): the runtime has checked it back in (a return in the journal) and kept an
    exception for staff, in one journal transaction."""

    msg_id: str
    item_id: str
    title: str | None


@dataclass(frozen=True)
class SecurityWritten:
    uid: TagUid
    ok: bool


@dataclass(frozen=True)
class Touch:
    button: Button


@dataclass(frozen=True)
class Typed:
    """A key pressed on the on-screen keyboard (e-mail address, PIN): the reader is there.
    What was typed stays in the UI until it is sent."""


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


@dataclass(frozen=True)
class Restored:
    """What the journal kept from before a restart."""

    pending: tuple[PendingWrite, ...] = ()
    exceptions: tuple[LateRefusal, ...] = ()


@dataclass(frozen=True)
class StaffSkip:
    """Staff skip a pending security write (the book is gone, or they will fix it by hand)."""

    uid: TagUid


@dataclass(frozen=True)
class StaffDismiss:
    """Staff have dealt with a late refusal."""

    msg_id: str


@dataclass(frozen=True)
class EmailEntered:
    address: str | None  # None: the reader gave up typing


@dataclass(frozen=True)
class ReceiptSent:
    via: ReceiptVia
    ok: bool


@dataclass(frozen=True)
class Reconfigure:
    """The station's settings changed (an operator, a reloaded file): the whole config is
    replaced. A new default language shows at once unless a reader is busy; a session in
    progress keeps its own."""

    config: CoreConfig


Event = (CardRead | PatronChecked | TagsPresent | Recorded | AckReceived | LoanUndone
         | SecurityWritten
         | Touch | Typed | Tick | Connectivity | SetService | Restored | StaffSkip | StaffDismiss
         | EmailEntered | ReceiptSent | PinEntered | OfflineChecked | AccountLoaded | Renew
         | Reconfigure)


# -- actions
@dataclass(frozen=True)
class CheckPatron:
    card_id: str = field(repr=False)
    pin: str | None = field(default=None, repr=False)  # sent once, then dropped


@dataclass(frozen=True)
class CheckOffline:
    """The central did not answer: look the card up in the stored offline list."""

    card_id: str = field(repr=False)


@dataclass(frozen=True)
class LoadAccount:
    patron_ref: str


@dataclass(frozen=True)
class RecordTx:
    msg_id: str
    kind: Kind
    item_id: str
    patron_ref: str | None
    offline: bool = False  # done under the offline policy: the tx says so
    confirmed: tuple[str, ...] = ()  # a loan: what the reader accepted on screen


@dataclass(frozen=True)
class WriteSecurity:
    uid: TagUid
    state: SecState


@dataclass(frozen=True)
class SavePending:
    write: PendingWrite


@dataclass(frozen=True)
class ClearPending:
    uid: TagUid
    how: Literal["written", "skipped"]
    staff_ref: str | None = None  # who skipped it: a hash of the staff card, not the card


@dataclass(frozen=True)
class ToldNotLent:
    """The screen told the reader a loan did not go through: the journal remembers it until
    its answer comes, so that a loan made after all is checked back in (LoanUndone)."""

    msg_id: str
    item_id: str
    title: str | None


@dataclass(frozen=True)
class KeepException:
    refusal: LateRefusal


@dataclass(frozen=True)
class DropException:
    msg_id: str


@dataclass(frozen=True)
class Notify:
    """An operator event (evt/{kind})."""

    kind: str
    severity: Literal["info", "warning", "critical"]
    detail: str | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class SendReceipt:
    via: ReceiptVia
    lang: str
    patron_name: str | None
    lines: tuple[Line, ...]
    to: str | None = None  # the e-mail address: used for this message only, never kept


Action = (CheckPatron | RecordTx | WriteSecurity | SavePending | ClearPending | KeepException
          | ToldNotLent
          | DropException | Notify | SendReceipt | CheckOffline | LoadAccount)


# -- what the screen shows
@dataclass(frozen=True)
class Line:
    uid: TagUid | None  # None: a renewal, with no tag on the pad
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
    parts: tuple[TagUid, ...] = ()  # the other tags of a multi-part item (same item id)
    parts_in_item: int = 1
    part_numbers: frozenset[int] = frozenset()
    warning: str | None = None  # parts_missing under the 'warn' rule
    screen_message: str | None = None  # the library system's words (SIP2 AF)
    alert: Alert | None = None  # returns: hold here, hold elsewhere, transit
    transit_to: str | None = None
    print_lines: tuple[str, ...] = ()  # the library system's receipt text (SIP2 AG)
    confirm: Confirmation | None = None  # asking: what the reader is asked to accept
    confirmed: tuple[str, ...] = ()  # what the reader accepted: sent with the loan

    @property
    def uids(self) -> tuple[TagUid, ...]:
        return (self.uid, *self.parts) if self.uid is not None else self.parts


@dataclass(frozen=True, kw_only=True)  # by keyword: 26 fields are too many to place
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
    pending: tuple[PendingWrite, ...] = ()
    exceptions: tuple[LateRefusal, ...] = ()
    count: int = 0  # the reader's count of books (confirm_count)
    count_read: int | None = None  # set when the reader's count did not match
    receipt_options: tuple[str, ...] = ()
    receipt_state: str | None = None  # printing, printed, sending, sent, failed
    out_of_service: bool = False
    help_reason: str | None = None  # button (explain first), called (staff), failures
    pin_error: str | None = None  # wrong_pin (try again) or pin_required, on the PIN pad
    pin_tries_left: int | None = None
    offline_session: bool = False  # the patron came from the offline list
    offline_left: int = 0  # offline loans this patron may still make
    account: Account | None = None  # the account screen's data; None: loading
    account_failed: bool = False  # no answer to the account request
    renewals: tuple[Line, ...] = ()  # kind "renew", one per loan asked for
    central_ok: bool = True  # False: the broker is up but the central stopped answering
    finishing: bool = False  # Finish pressed: the summary waits for the books still processed


@dataclass(frozen=True)
class CoreConfig:
    default_lang: str = "vi"
    langs: tuple[str, ...] = ("vi", "en")
    ack_timeout_s: float = ACK_TIMEOUT_S
    inactivity_s: float = 45.0
    summary_s: float = SUMMARY_S  # read first, then asked "more time?"
    message_s: float = 8.0
    help_s: float = 180.0  # the staff-needed screen waits this long for someone
    offline_returns: bool = True  # offline policy: returns only (the default) or nothing
    station_mode: Literal["selfcheck", "return-station"] = "selfcheck"
    confirm_count: bool = False
    multipart: Literal["accept", "warn", "refuse"] = "warn"
    owner_isil: str | None = None  # tags of another owner are refused; None: not checked
    staff_cards: frozenset[str] = frozenset()
    help_after: int = 3  # failed reads or refused cards in a row before staff are called
    receipt: Literal["none", "print", "email", "ask"] = "none"
    can_print: bool = False  # the runtime has a printer
    can_email: bool = False  # the runtime has a mail relay
    return_station_lines: int = 12
    # A return station has no session to end: its lines leave the screen after this quiet
    # time since the pad last changed, so the next person does not see the last one's titles
    return_station_clear_s: float = 25.0
    pin: PinRule = "never"  # always: the pad before every check; central: when asked
    offline_loans: bool = False  # offline: loans against the offline list, and returns



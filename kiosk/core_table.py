"""The core's machine as data: for each (mode, event) the method that takes it and the modes
it may lead to. `SelfCheck.handle` looks the row up, calls the method and checks where it
ended; an event with no row in the mode it comes in is recorded as ignored. No I/O, no Kivy:
the tests, `selfcheck ui machine` and docs/core-machine.md read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfcheck.kiosk.core_model import Mode

# The mode groups, named once. A reader's session: help goes back to where it was.
SESSION_MODES = (Mode.BORROW, Mode.RETURN, Mode.CONFIRM_COUNT, Mode.RECEIPT, Mode.EMAIL,
                 Mode.SUMMARY, Mode.ACCOUNT, Mode.CONFIRM_LOAN)
# Someone is at the station: no closing under them.
READER_MODES = (*SESSION_MODES, Mode.CHECKING, Mode.HELP, Mode.STAFF, Mode.PIN, Mode.TAGGING)
# Back to idle after inactivity_s with no touch (the summary and help screens have their own).
INACTIVITY_MODES = (*(m for m in SESSION_MODES if m is not Mode.SUMMARY), Mode.STAFF,
                    Mode.PIN)
# The modes a time-out ends (the inactivity modes, the summary and help).
TIMED_MODES = frozenset({*INACTIVITY_MODES, Mode.SUMMARY, Mode.HELP})
# Where books on the pad are taken (and too many unreadable ones call staff).
SCAN_MODES = frozenset({Mode.BORROW, Mode.RETURN, Mode.RETURN_STATION})
# Where staff are never called over: they are there, or the station is closed.
NO_HELP_MODES = frozenset({Mode.HELP, Mode.STAFF, Mode.OUT_OF_SERVICE})
# Where a reader's card asks for a patron check.
CHECK_MODES = (Mode.IDLE, Mode.RETURN, Mode.SUMMARY)
# Where a staff card opens the staff screen (a reader's card starts a session in CHECK_MODES
# and is told off at a return station); elsewhere a card is ignored: finish first.
STAFF_CARD_MODES = (Mode.IDLE, Mode.SUMMARY, Mode.HELP, Mode.RETURN_STATION,
                    Mode.OUT_OF_SERVICE)
ALL = frozenset(Mode)

# Where a session's end lands: the station's home, or out of service when it was closed.
HOME = frozenset({Mode.IDLE, Mode.RETURN_STATION, Mode.OUT_OF_SERVICE})
# Where finishing a session leads: the summary, or first the receipt's question or address.
FINISH_TO = frozenset({Mode.SUMMARY, Mode.EMAIL, Mode.RECEIPT})
# The borrowing pad, with a library system's question first when one waits.
PAD = frozenset({Mode.BORROW, Mode.CONFIRM_LOAN})
# Where `handle` finishes a session whose last outcome came (after any row).
FINISHING_MODES = frozenset({Mode.BORROW, Mode.RETURN})

# The events other than touches: (event, modes it applies in, method). A staff card is its own
# event ("StaffCard"): it opens the staff screen where a reader's card would not.
EVENT_ROWS: tuple[tuple[str, frozenset[Mode], str], ...] = (
    ("CardRead", frozenset(CHECK_MODES), "_on_card"),
    ("CardRead", frozenset({Mode.RETURN_STATION}), "_on_card_returning"),
    ("StaffCard", frozenset(STAFF_CARD_MODES), "_on_staff_card"),
    ("PatronChecked", frozenset({Mode.CHECKING}), "_on_patron"),
    ("PinEntered", frozenset({Mode.PIN}), "_on_pin"),
    ("OfflineChecked", frozenset({Mode.CHECKING}), "_on_offline_patron"),
    ("AccountLoaded", frozenset({Mode.ACCOUNT}), "_on_account"),
    ("Renew", frozenset({Mode.ACCOUNT}), "_on_renew"),
    ("TagsPresent", ALL, "_on_tags"),
    ("Recorded", ALL, "_on_recorded"),
    # at the pad, an answer that asks the reader a question turns to the question
    ("AckReceived", frozenset({Mode.BORROW}), "_on_ack_at_pad"),
    ("AckReceived", ALL - {Mode.BORROW}, "_on_ack"),
    ("LoanUndone", ALL, "_on_undone"),
    ("SecurityWritten", ALL, "_on_written"),
    ("Typed", frozenset({Mode.EMAIL, Mode.PIN}), "_on_typed"),
    ("Tick", ALL, "_on_tick"),
    ("Connectivity", ALL, "_on_connectivity"),
    ("SetService", ALL, "_on_service"),
    ("Restored", ALL, "_on_restored"),
    ("StaffSkip", frozenset({Mode.STAFF}), "_on_skip"),
    ("StaffDismiss", frozenset({Mode.STAFF}), "_on_dismiss"),
    ("EmailEntered", frozenset({Mode.EMAIL}), "_on_email"),
    ("ReceiptSent", ALL, "_on_receipt_sent"),
    ("Reconfigure", ALL, "_on_reconfigure"),
)

# Which button does what in which mode: (mode, button) -> method; a None mode is every mode,
# and a mode's own row wins over it.
_DONE_GOES_IDLE = ALL - {Mode.OUT_OF_SERVICE, Mode.RETURN_STATION, Mode.STAFF, Mode.ACCOUNT,
                         Mode.CONFIRM_COUNT, Mode.CONFIRM_LOAN}
TOUCHES: dict[tuple[Mode | None, str], str] = {
    (None, "lang"): "_press_lang",
    (None, "help"): "_press_help",
    (None, "more_time"): "_press_more_time",
    **{(m, b): "_press_idle" for m in Mode if m in _DONE_GOES_IDLE for b in ("done", "cancel")},
    (Mode.HELP, "call_staff"): "_press_call_staff",
    (Mode.IDLE, "call_staff"): "_press_call_staff_idle",
    (Mode.HELP, "cancel"): "_press_help_back",
    (Mode.IDLE, "return"): "_press_return",
    (Mode.SUMMARY, "return"): "_press_return",
    (Mode.BORROW, "account"): "_press_account",
    (Mode.BORROW, "finish"): "_press_finish",
    (Mode.RETURN, "finish"): "_press_finish",
    (Mode.ACCOUNT, "renew_all"): "_press_renew_all",
    (Mode.ACCOUNT, "cancel"): "_press_back_to_pad",
    (Mode.ACCOUNT, "done"): "_press_back_to_pad",
    (Mode.CONFIRM_COUNT, "count_plus"): "_press_count_plus",
    (Mode.CONFIRM_COUNT, "count_minus"): "_press_count_minus",
    (Mode.CONFIRM_COUNT, "count_back"): "_press_count_back",
    (Mode.CONFIRM_COUNT, "count_ok"): "_press_count_ok",
    (Mode.CONFIRM_LOAN, "loan_yes"): "_press_loan_yes",
    **{(Mode.CONFIRM_LOAN, b): "_press_loan_no" for b in ("loan_no", "cancel")},
    (Mode.RECEIPT, "receipt_print"): "_press_receipt_print",
    (Mode.RECEIPT, "receipt_email"): "_press_receipt_email",
    (Mode.RECEIPT, "receipt_none"): "_press_receipt_none",
    (Mode.STAFF, "staff_oos"): "_press_staff_oos",
    (Mode.STAFF, "staff_in_service"): "_press_staff_in_service",
    **{(Mode.STAFF, b): "_press_staff_exit" for b in ("staff_exit", "cancel", "done")},
    (Mode.STAFF, "staff_tagging"): "_press_staff_tagging",
    **{(Mode.TAGGING, b): "_press_tagging_back" for b in ("staff_exit", "cancel", "done")},
}

_NOWHERE: frozenset[Mode] = frozenset()
# Where each method may lead besides staying. A scan of the pad may call staff after too many
# unreadable tags (HELP); a session's end goes HOME.
LEADS: dict[str, frozenset[Mode]] = {
    "_on_card": frozenset({Mode.CHECKING, Mode.PIN}),
    "_on_card_returning": _NOWHERE,
    "_on_staff_card": frozenset({Mode.STAFF}),
    "_on_patron": frozenset({Mode.PIN, Mode.BORROW, Mode.HELP}) | HOME,
    "_on_pin": frozenset({Mode.CHECKING}) | HOME,
    "_on_offline_patron": frozenset({Mode.BORROW, Mode.HELP}) | HOME,
    "_on_account": _NOWHERE,
    "_on_renew": _NOWHERE,
    "_on_tags": frozenset({Mode.HELP}),
    "_on_recorded": _NOWHERE,
    "_on_ack_at_pad": frozenset({Mode.CONFIRM_LOAN}),
    "_on_ack": _NOWHERE,
    "_on_undone": _NOWHERE,
    "_on_written": _NOWHERE,
    "_on_typed": _NOWHERE,
    "_on_tick": HOME,  # only from TIMED_MODES (see `targets`)
    "_on_connectivity": _NOWHERE,
    "_on_service": HOME,
    "_on_restored": _NOWHERE,
    "_on_skip": _NOWHERE,
    "_on_dismiss": _NOWHERE,
    "_on_email": frozenset({Mode.SUMMARY}),
    "_on_receipt_sent": _NOWHERE,
    "_on_reconfigure": _NOWHERE,
    "_press_lang": _NOWHERE,
    "_press_help": frozenset({Mode.HELP}),
    "_press_more_time": _NOWHERE,  # the time-out starts again: the activity `handle` took
    "_press_idle": HOME,
    "_press_call_staff": _NOWHERE,
    "_press_call_staff_idle": frozenset({Mode.HELP}),
    "_press_help_back": PAD | frozenset(SESSION_MODES) | HOME,
    "_press_return": frozenset({Mode.RETURN, Mode.HELP}),
    "_press_account": frozenset({Mode.ACCOUNT}),
    "_press_finish": frozenset({Mode.CONFIRM_COUNT}) | FINISH_TO,
    "_press_renew_all": _NOWHERE,
    "_press_back_to_pad": PAD | {Mode.HELP},
    "_press_count_plus": _NOWHERE,
    "_press_count_minus": _NOWHERE,
    "_press_count_back": PAD | {Mode.RETURN},
    "_press_count_ok": FINISH_TO | FINISHING_MODES,  # still processing: back to the lines
    "_press_loan_yes": PAD | {Mode.HELP},
    "_press_loan_no": PAD | {Mode.HELP},
    "_press_receipt_print": frozenset({Mode.SUMMARY}),
    "_press_receipt_email": frozenset({Mode.EMAIL}),
    "_press_receipt_none": frozenset({Mode.SUMMARY}),
    "_press_staff_oos": _NOWHERE,
    "_press_staff_in_service": _NOWHERE,
    "_press_staff_exit": HOME,
    "_press_staff_tagging": frozenset({Mode.TAGGING}),
    "_press_tagging_back": frozenset({Mode.STAFF}),
}


@dataclass(frozen=True)
class Row:
    """What the machine does with an event in a mode: the method, the modes it may lead to,
    and whether it is a button's (called with the time only)."""

    method: str
    to: frozenset[Mode]
    press: bool = False


# Methods that change the mode only from some modes: elsewhere they change lines, not modes.
_ONLY_FROM: dict[str, frozenset[Mode]] = {
    "_on_tick": TIMED_MODES,  # a time-out ends only these
    "_on_tags": SCAN_MODES,  # only a scan of the pad calls staff
    "_on_service": ALL - frozenset(READER_MODES),  # never closes under a reader
}


def _targets(mode: Mode, method: str) -> frozenset[Mode]:
    if mode not in _ONLY_FROM.get(method, ALL):
        return _NOWHERE
    leads = LEADS[method]
    if mode in NO_HELP_MODES:
        leads -= {Mode.HELP}
    return leads - {mode}


def _build() -> dict[tuple[Mode, str], Row]:
    rows: dict[tuple[Mode, str], Row] = {}
    for event, modes, method in EVENT_ROWS:
        for mode in sorted(modes, key=list(Mode).index):
            assert (mode, event) not in rows, (mode, event)
            rows[(mode, event)] = Row(method, _targets(mode, method))
    for (where, button), method in TOUCHES.items():
        for mode in Mode if where is None else (where,):
            if where is None and (mode, button) in TOUCHES:
                continue  # the mode's own row wins
            rows[(mode, f"Touch {button}")] = Row(method, _targets(mode, method), press=True)
    return rows


MACHINE: dict[tuple[Mode, str], Row] = _build()


def transitions() -> list[tuple[Mode, str, str]]:
    """(mode, event, method) for every pair the machine takes, in table order; a touch is
    one row per button ("Touch finish")."""
    return [(mode, event, row.method) for (mode, event), row in MACHINE.items()]


def edges() -> dict[tuple[Mode, Mode], list[str]]:
    """mode -> mode with the events that may make that step, the finishing step included."""
    found: dict[tuple[Mode, Mode], list[str]] = {}
    for (mode, event), row in MACHINE.items():
        for to in sorted(row.to, key=list(Mode).index):
            found.setdefault((mode, to), []).append(event)
    for mode in sorted(FINISHING_MODES, key=list(Mode).index):
        for to in sorted(FINISH_TO, key=list(Mode).index):
            found.setdefault((mode, to), []).append("last outcome after Finish")
    return found


def diagram() -> str:
    """The table as a Mermaid flowchart: each mode, and an arrow to each mode it may lead to,
    labelled with the events that take it there."""
    lines = ["flowchart LR"]
    for mode in Mode:
        lines.append(f'    {mode.value}(["{mode.value}"])')
    for (start, to), events in edges().items():
        lines.append(f'    {start.value} -- "{", ".join(events)}" --> {to.value}')
    return "\n".join(lines) + "\n"


class UndeclaredStep(AssertionError):
    """A method led to a mode its row does not declare: a fault in the core, not in the
    input. Tests run the core strict, so that it raises; a station counts it."""

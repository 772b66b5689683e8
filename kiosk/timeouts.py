"""How long the station waits, and every time-out that follows from it. The one place that
knows how the loan deadline, the request time-outs and the outbox's resend relate to
`ack_timeout_s`; kept free of I/O imports so that the core may use it too."""

from __future__ import annotations

from dataclasses import dataclass

ACK_TIMEOUT_S = 5.0  # the station's one default for how long it waits for the central
# ...and the longest it may wait, set in its file or steered by an operator (the contract's
# bound, mqtt/telemetry.py): a reader at the pad does not wait for an answer longer than this
ACK_TIMEOUT_MAX_S = 60.0
RESEND_AFTER_S = 10.0  # an unacknowledged transaction goes out again after this long
OFFLINE_LIST_FLOOR_S = 5.0  # a page of the offline list is large: never wait less for one
# A screen that ends by itself asks "more time?" in its last seconds: long enough to read the
# question and reach the button (WCAG 2.2.1 asks for at least 20 s).
MORE_TIME_WARN_S = 20.0
# What a screen shows before that question, so that the question never opens it: the summary
# is read first (its counts, the books to leave), then asked about.
READ_FIRST_S = 20.0
SUMMARY_S = MORE_TIME_WARN_S + READ_FIRST_S
# A refused card's why, what to do and its call-staff button stay this long on the idle
# screen (other notes there stay `message_s`): read slowly, then reached for.
REFUSAL_S = 30.0


def screen_s(configured: float) -> float:
    """How long a screen that ends by itself lasts: as configured, but never so short that the
    time-out question opens it (a 12 s summary asked at once, and "more time" gave 12 s)."""
    return max(configured, MORE_TIME_WARN_S + READ_FIRST_S)


@dataclass(frozen=True)
class StationTimeouts:
    inactivity_s: float  # an idle session ends after this long
    summary_s: float  # the end-of-session summary stays this long (`screen_s` at least)
    telemetry_s: float  # tele/health period
    ack_s: float = ACK_TIMEOUT_S  # a transaction's answer: after it, the offline policy
    resend_after_s: float = RESEND_AFTER_S

    @property
    def summary_screen_s(self) -> float:
        """How long the summary stays: long enough to read, then to be asked about."""
        return screen_s(self.summary_s)

    @property
    def ack_way_back_s(self) -> float:
        """How much earlier than the screen's own time-out a loan's deadline falls: a yes
        the central gives just before the deadline still has this long to come back before
        the screen tells the reader "not borrowed"."""
        return min(1.0, self.ack_s / 4)

    @property
    def loan_deadline_s(self) -> float:
        """From the moment a loan is recorded to the deadline it carries to the central."""
        return self.ack_s - self.ack_way_back_s

    @property
    def request_s(self) -> float:
        """How long a patron check or an account request waits for its answer: as long as
        the screen waits for a transaction's."""
        return self.ack_s

    @property
    def offline_list_request_s(self) -> float:
        """How long each page of the offline list may take."""
        return max(self.ack_s, OFFLINE_LIST_FLOOR_S)

"""How long the station waits, and every time-out that follows from it. The one place that
knows how the loan deadline, the request time-outs and the outbox's resend relate to
`ack_timeout_s`; kept free of I/O imports so that the core may use it too."""

from __future__ import annotations

from dataclasses import dataclass

ACK_TIMEOUT_S = 5.0  # the station's one default for how long it waits for the central
RESEND_AFTER_S = 10.0  # an unacknowledged transaction goes out again after this long
OFFLINE_LIST_FLOOR_S = 5.0  # a page of the offline list is large: never wait less for one


@dataclass(frozen=True)
class StationTimeouts:
    inactivity_s: float  # an idle session ends after this long
    summary_s: float  # the end-of-session summary stays this long
    telemetry_s: float  # tele/health period
    ack_s: float = ACK_TIMEOUT_S  # a transaction's answer: after it, the offline policy
    resend_after_s: float = RESEND_AFTER_S

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

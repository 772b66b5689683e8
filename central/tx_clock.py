"""A transaction's time (`at`) against the central's clock: the station's word, so bounded.

A station whose clock is wrong (a dead RTC battery after a long power cut, a bad NTP answer,
or stolen credentials) dates its loans years off: applied as is, due dates and the
circulation history would follow. Within the bounds the station's time stands (offline
transactions are applied late, by design); outside them the transaction is applied at the
central's time and recorded for reconciliation with the station's (`station_at`), and the
fleet is told that station's clock is wrong. No I/O: the clock is passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["clock_past", "clock_future"]


@dataclass(frozen=True)
class ClockBounds:
    # Older than this cannot be an offline transaction: a station holds an offline list for a
    # day and its outbox far less than a month.
    past: dt.timedelta = dt.timedelta(days=30)
    # Ahead of us by more than clock drift and the time on the wire.
    future: dt.timedelta = dt.timedelta(minutes=5)


def judge(at: dt.datetime, now: dt.datetime, bounds: ClockBounds) -> Verdict | None:
    """None when `at` may stand, else why it may not."""
    if at.tzinfo is None:  # the messages require an offset; a naive one is taken as UTC
        at = at.replace(tzinfo=dt.UTC)
    try:
        if at < now - bounds.past:
            return "clock_past"
        if at > now + bounds.future:
            return "clock_future"
    except OverflowError:  # near year 1 or 9999 the bound itself is out of range
        return "clock_past" if at.year < now.year else "clock_future"
    return None

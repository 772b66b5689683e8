"""Each station's share of a bridge: a token bucket per station.

A self-check station sends a few messages a minute, and a backlog of a few hundred after an
outage. A stolen or reflashed one can send thousands a second of perfectly valid loans, and the
bridge applies messages in the order they come: without a share per station, everybody else's
patron checks and loans wait behind the flood. Messages over a station's share are dropped
before they are decoded (the bridge PUBACKs them unanswered, so the station's outbox sends them
again later, when it is within its share).

Once a station's bucket is empty it stays refused until the bucket is back to a tenth of its
size, rather than letting one message through now and then: a station's outbox sends oldest
first, so a station that resumes mostly resumes in order. Where it does not (a flood long
enough to resume in its middle, or several bridges, each with its own buckets, taking turns
at one station's messages), the central's per-station order holds the later transactions
until the earlier ones come again (central/ledger/order.py). Transactions and requests have a bucket
each, so a station catching up on a backlog still gets its patron checks answered.

A message takes what it costs the bridge (central/costly.py), not one: a PIN check takes a
key derivation's worth, so a station sending them is held to its share long before a station
sending as many transactions would be. No I/O; time is passed in.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

# The default share, in cost (a transaction 1, a PIN check 50: central/costly.py): far above
# what a self-check sends, even catching up after a day offline or fetching a 20,000-reader
# offline list, and far below what a bridge can apply (about 1,600 transactions a second).
STATION_RATE_PER_S = 20.0
STATION_BURST = 2_000
RESUME_SHARE = 0.1  # a refused station is let through again once its bucket is this full
MAX_STATIONS = 10_000  # buckets kept; full ones (idle stations) are forgotten beyond it


class Verdict(enum.Enum):
    OK = "ok"
    STARTED = "started"  # the first refusal of a run: say it once
    REFUSED = "refused"


@dataclass
class _Bucket:
    tokens: float
    at: float
    refusing: bool = False


class StationThrottle:
    """`rate_per_s` cost a second per station (a transaction costs 1), `burst` at once; a
    rate of 0 lets all in."""

    def __init__(self, rate_per_s: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError("station share: rate must be >= 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self.refused: collections.Counter[str] = collections.Counter()  # by "site/station"
        self.runs: collections.Counter[str] = collections.Counter()  # of refusals, likewise

    def take(self, site: str, station: str, channel: str = "tx", cost: int = 1) -> Verdict:
        """Whether one more message of this station's `channel` (tx or req), costing `cost`,
        goes in."""
        if not self.rate:
            return Verdict.OK
        # Never more than the burst: a message no bucket can hold would never go in.
        need = float(min(max(cost, 1), self.burst))
        now = self._clock()
        key = (site, station, channel)
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= MAX_STATIONS:
                self._forget_full(now)
            b = self._buckets[key] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.refusing and b.tokens >= max(need, self.burst * RESUME_SHARE):
            b.refusing = False
        if not b.refusing and b.tokens >= need:
            b.tokens -= need
            return Verdict.OK
        started = not b.refusing
        b.refusing = True
        self.refused[f"{site}/{station}"] += 1
        if started:
            self.runs[f"{site}/{station}"] += 1
        return Verdict.STARTED if started else Verdict.REFUSED

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items()
                    if b.tokens + (now - b.at) * self.rate >= self.burst]:
            del self._buckets[key]

"""How many events one station may have taken and kept: a token bucket per station on
arrival and a bound in rows and in days on what is stored. A reflashed or broken station can
send thousands of perfectly valid events a second; without these it fills the disk and buries
every other station's events on the page. Pure: the clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass

# Far above what a healthy station raises (a few an hour, a burst around a fault), far below
# a flood: 20,000 in 13 s is cut to about a hundred.
EVENT_RATE_PER_S = 0.5
EVENT_BURST = 60
KEEP_EVENTS_ROWS = 5_000  # per station
KEEP_EVENTS_S = 90 * 86_400
PRUNE_EVERY_S = 60.0
MAX_STATIONS = 10_000  # buckets kept; full ones (quiet stations) are forgotten beyond it


@dataclass
class _Bucket:
    tokens: float
    at: float


class EventBucket:
    """`rate_per_s` events a second per station, `burst` at once."""

    def __init__(self, rate_per_s: float = EVENT_RATE_PER_S, burst: int = EVENT_BURST) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("event share: rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def take(self, site: str, station: str, now: float) -> bool:
        """Whether one more event of this station goes in."""
        key = (site, station)
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= MAX_STATIONS:
                self._forget_full(now)
            b = self._buckets[key] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at) * self.rate)
        b.at = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items()
                    if b.tokens + (now - b.at) * self.rate >= self.burst]:
            del self._buckets[key]


def prune_due(last: float | None, now: float, every_s: float = PRUNE_EVERY_S) -> bool:
    """Whether the stored events are due for pruning (the writer prunes while running)."""
    return last is None or now - last >= every_s

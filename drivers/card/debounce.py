"""Report a card once per presentation, however long it is held on the reader."""

from __future__ import annotations


class PresenceDebouncer:
    """A card is "still there" while it keeps being seen within `release_s` seconds.

    Time is passed in, so the rule is testable without sleeping. It tracks every
    UID separately: two cards lying on the reader are reported once each even if
    anticollision alternates between them.
    """

    def __init__(self, release_s: float) -> None:
        self.release_s = release_s
        self._last_seen: dict[bytes, float] = {}

    def seen(self, uid: bytes, now: float) -> bool:
        """Note `uid` in the field at `now`; True if this starts a new presentation."""
        self._forget_older_than(now - self.release_s)
        new = uid not in self._last_seen
        self._last_seen[uid] = now
        return new

    def _forget_older_than(self, limit: float) -> None:
        for uid in [u for u, t in self._last_seen.items() if t < limit]:
            del self._last_seen[uid]

"""Counters a card reader keeps for the station's state and health reports."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CardReaderStats:
    cards: int = 0  # cards delivered to on_card
    rejected: Counter[str] = field(default_factory=Counter)  # dropped input, by reason
    reconnects: int = 0  # times the device was (re)opened after a failure
    up: bool | None = None  # the device is open (None: not tried yet)
    # Told when the device goes away or comes back (the station's card_reader_lost/back).
    on_health: Callable[[bool], None] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def health(self, up: bool) -> None:
        with self._lock:
            changed, self.up = self.up != up, up
        if changed and self.on_health is not None:
            self.on_health(up)

    def count_card(self) -> None:
        with self._lock:
            self.cards += 1

    def count_reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def count_reconnect(self) -> None:
        with self._lock:
            self.reconnects += 1

    @property
    def rejected_total(self) -> int:
        with self._lock:
            return sum(self.rejected.values())

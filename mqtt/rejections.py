"""Logging rejected messages without letting a hostile sender flood the journal: the first
of each reason is logged in full, the next ones at most once a minute per reason with the
running count."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class OnceLog:
    def __init__(self, logger: logging.Logger, every_s: float = 60.0) -> None:
        self._log = logger
        self._every = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, reason: str, count: int, msg: str, *args: Any, trace: bool = False) -> bool:
        """Log one rejection of `reason` (the `count`th); False when it was held back."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._every:
                return False
            self._last[reason] = now
        self._log.warning(msg + " [%d so far for %s]", *args, count, reason,
                          exc_info=trace and last is None)
        return True

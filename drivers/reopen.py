"""The one reopen loop of every device that can be unplugged (book pads, card readers): open
it, and when that fails try again after a delay that doubles up to a ceiling.

`reopen()` is the loop itself; `keep_open()` is the card readers' whole life on top of it (open,
use until it fails or goes away, close, reopen, until told to stop), reporting lost and back.
The pad's serial link calls `reopen()` directly, with a time window instead of a stop event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
D = TypeVar("D")


class Reports(Protocol):
    """Where keep_open reports the device lost and back (a card reader's stats)."""

    def health(self, up: bool) -> None: ...

    def count_reconnect(self) -> None: ...


class Backoff:
    """A delay that starts at `first_s` and doubles, up to `max_s`, until reset."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.delay = first_s

    def next(self) -> float:
        """The delay to wait now; the following one is twice as long."""
        delay = self.delay
        self.delay = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.delay = self.first_s


def reopen(open_device: Callable[[], D], backoff: Backoff, wait: Callable[[float], bool], *,
           errors: tuple[type[BaseException], ...] = (OSError,),
           on_failure: Callable[[BaseException, float], None] | None = None) -> D | None:
    """Open the device, retrying after each of `errors` with the next delay of `backoff`.
    `wait(delay)` waits and returns True to give up (stop set, window spent): then None."""
    while True:
        try:
            return open_device()
        except errors as exc:
            delay = backoff.next()
            if on_failure is not None:
                on_failure(exc, delay)
            if wait(delay):
                return None


def keep_open(name: str, open_device: Callable[[], D], use: Callable[[D], None],
              close: Callable[[D], None], *, stats: Reports, stop: threading.Event,
              delay_s: float, max_delay_s: float,
              errors: tuple[type[BaseException], ...] = (OSError,), stable_s: float = 10.0,
              clock: Callable[[], float] = time.monotonic) -> None:
    """Open, use, close and reopen the device until `stop` is set. The delay restarts only
    once the device stayed open `stable_s`: one that fails right after every open backs off
    like a missing one, rather than flooding the log twice a second."""
    backoff = Backoff(delay_s, max_delay_s)
    lost = False

    def failed(exc: BaseException, delay: float) -> None:
        nonlocal lost
        log.warning("%s not available (%s); retry in %.1fs", name, exc, delay)
        lost = True
        stats.health(False)

    while not stop.is_set():
        device = reopen(open_device, backoff, stop.wait, errors=errors, on_failure=failed)
        if device is None:
            return
        if lost:
            stats.count_reconnect()
        stats.health(True)
        opened_at = clock()
        why = "gone"
        try:
            use(device)  # returns on stop, or when the device went away
        except errors as exc:
            why = str(exc)
        finally:
            close(device)
        if not stop.is_set():
            if clock() - opened_at >= stable_s:
                backoff.reset()
            delay = backoff.next()
            log.warning("%s lost (%s); reopening in %.1fs", name, why, delay)
            lost = True
            stats.health(False)
            stop.wait(delay)

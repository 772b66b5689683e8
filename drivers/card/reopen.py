"""Keep a card reader's device open: open it, use it until it fails or goes away, close it,
and open it again with a growing delay, until told to stop. Reports lost and back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from selfcheck.drivers.card.stats import CardReaderStats

log = logging.getLogger(__name__)
D = TypeVar("D")


def keep_open(name: str, open_device: Callable[[], D], use: Callable[[D], None],
              close: Callable[[D], None], *, stats: CardReaderStats, stop: threading.Event,
              delay_s: float, max_delay_s: float,
              errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
    delay = delay_s
    lost = False
    while not stop.is_set():
        try:
            device = open_device()
        except errors as exc:
            log.warning("%s not available (%s); retry in %.1fs", name, exc, delay)
            lost = True
            stats.health(False)
            stop.wait(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        if lost:
            stats.count_reconnect()
        stats.health(True)
        delay = delay_s
        why = "gone"
        try:
            use(device)  # returns on stop, or when the device went away
        except errors as exc:
            why = str(exc)
        finally:
            close(device)
        if not stop.is_set():
            log.warning("%s lost (%s); reopening", name, why)
            lost = True
            stats.health(False)
            stop.wait(delay)

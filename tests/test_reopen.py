"""The one reopen loop every device shares (selfcheck.drivers.reopen)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from selfcheck.drivers.card.stats import CardReaderStats
from selfcheck.drivers.reopen import Backoff, keep_open, reopen


def test_backoff_doubles_to_its_ceiling_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5


def test_reopen_retries_then_gives_up_when_told() -> None:
    tries: list[int] = []
    waited: list[float] = []

    def open_device() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OSError("not yet")
        return "dev"

    assert reopen(open_device, Backoff(0.1, 1.0), _record(waited)) == "dev"
    assert waited == [0.1, 0.2]
    assert reopen(_never, Backoff(0.1, 1.0), lambda d: True) is None  # window spent


def _record(waited: list[float]) -> Callable[[float], bool]:
    def wait(delay: float) -> bool:
        waited.append(delay)
        return False
    return wait


def _never() -> str:
    raise OSError("gone")


def test_keep_open_backs_off_a_device_that_fails_right_after_opening() -> None:
    stop = threading.Event()
    waits: list[float] = []
    uses = 0

    def use(_dev: str) -> None:
        nonlocal uses
        uses += 1
        if uses == 4:
            stop.set()

    real_wait = stop.wait

    def wait(delay: float | None = None) -> bool:
        waits.append(delay or 0.0)
        return real_wait(0)

    stop.wait = wait  # type: ignore[method-assign]
    stats = CardReaderStats()
    keep_open("dev", lambda: "dev", use, lambda _d: None, stats=stats, stop=stop,
              delay_s=0.01, max_delay_s=0.04)
    assert waits == [0.01, 0.02, 0.04]  # never reset: it never stayed open 10 s
    assert stats.reconnects == 3

"""Fixtures: a real Mosquitto with the project's config on a free port, and the central side."""

from __future__ import annotations

import datetime as dt
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

from selfcheck.central.backends.store import CirculationStore  # noqa: E402
from selfcheck.central.bridge import Bridge  # noqa: E402
from selfcheck.central.ledger import Ledger  # noqa: E402
from selfcheck.central.sample import load_sample  # noqa: E402
from selfcheck.kiosk.core import SelfCheck  # noqa: E402
from selfcheck.lab.broker import Broker  # noqa: E402

# Every core a test drives raises on a step its table row does not declare.
SelfCheck.strict = True


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CirculationStore]:
    s = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    load_sample(s, extra_items=50, extra_patrons=5)
    yield s
    s.close()


@pytest.fixture
def bridge(store: CirculationStore, broker: Broker) -> Iterator[Bridge]:
    b = Bridge(store, broker.address)
    b.start()
    assert b.connected.wait(10)
    yield b
    b.stop()


def applied(backend: Any, txs: Any, now: dt.datetime | None = None) -> list[Any]:
    """A batch through the ledger, as a bridge applies it: exactly once, repeats answered
    from the stored ack."""
    return Ledger(backend.engine, backend).apply(txs, now)


def wait_until(check: Callable[[], object], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


class RunningReader:
    """A card reader's run() on its own thread, as the station runs it; cards land in a queue."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.cards: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=reader.run, args=(self.cards.put, self.stop),
                                       daemon=True)
        self.thread.start()

    def take(self, n: int, timeout: float = 5.0) -> list[str]:
        return [self.cards.get(timeout=timeout) for _ in range(n)]

    def next_card(self, timeout: float = 10.0) -> str:
        return self.cards.get(timeout=timeout)

    def assert_no_card(self, within: float) -> None:
        with pytest.raises(queue.Empty):
            extra = self.cards.get(timeout=within)
            pytest.fail(f"unexpected card {extra!r}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "reader did not stop"


@pytest.fixture
def run_reader() -> Iterator[Callable[[Any], RunningReader]]:
    """Start card readers; each is stopped (and must stop) when the test ends."""
    started: list[RunningReader] = []

    def start(reader: Any) -> RunningReader:
        started.append(RunningReader(reader))
        return started[-1]

    yield start
    for r in started:
        r.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first (kills and reconnects, then rendered screens): the suite's
    workers take them while the short ones are still there to fill the gaps, rather than
    one worker ending the run alone with a long one."""
    def weight(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("ui") else 2

    items.sort(key=weight)

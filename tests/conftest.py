"""Fixtures: a real Mosquitto with the project's config on a free port, and the central side."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

from selfcheck.central.bridge import Bridge  # noqa: E402
from selfcheck.central.ledger import Ledger  # noqa: E402
from selfcheck.central.sample import load_sample  # noqa: E402
from selfcheck.central.store import CirculationStore  # noqa: E402
from selfcheck.lab.broker import Broker  # noqa: E402


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

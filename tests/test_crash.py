"""Nothing lost, nothing doubled: station and central processes killed with SIGKILL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from central.store import CirculationStore
from selfcheck.broker import Broker
from selfcheck.stack import CentralProcess
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
ITEMS = [f"49{n:06d}" for n in range(1, 41)]


class Station:
    """tests/station_process.py as a child process; collects the msg_ids it recorded."""

    def __init__(self, broker: Broker, journal: Path, *extra: str) -> None:
        self.recorded: list[str] = []
        self.drained = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "station_process.py"), "--broker",
             str(broker.address), "--journal", str(journal), *extra],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RECORDED "):
                self.recorded.append(line.split()[1])
            elif line.startswith("DRAINED"):
                self.drained.set()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def central_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'central.db'}"


def applied(db_url: str) -> Counter[str]:
    store = CirculationStore(db_url)
    try:
        return Counter(r["msg_id"] for r in store.history())
    finally:
        store.close()


def journal_rows(journal: Path) -> set[str]:
    with sqlite3.connect(journal) as db:
        return {row[0] for row in db.execute("SELECT msg_id FROM outbox")}


def _exactly_once(db_url: str, recorded: list[str], also_journaled: set[str] = frozenset()
                  ) -> None:
    """Every transaction the screen showed is applied once. A process killed between the
    journal's fsync and the screen may leave rows the screen never showed: they count too."""
    counts = applied(db_url)
    assert set(recorded) <= set(counts), "lost transactions"
    assert set(counts) <= set(recorded) | also_journaled, "transactions from nowhere"
    assert max(counts.values()) == 1, "a transaction was applied twice"


def test_station_killed_with_outbox_pending(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    # The central is down: the returns can only go to the journal.
    st = Station(broker, journal, "--returns", ",".join(ITEMS[:8]))
    wait_until(lambda: len(st.recorded) == 8, timeout_s=20, what="8 journal rows")
    st.kill()
    pending = journal_rows(journal)
    assert set(st.recorded) <= pending
    db = central_db(tmp_path)
    with CentralProcess(broker.address, db, sample_items=50):
        st2 = Station(broker, journal, "--drain")
        assert st2.drained.wait(30), "the restarted station did not drain its outbox"
        st2.proc.wait(10)
    _exactly_once(db, st.recorded, pending)


def test_station_killed_mid_stream_with_central_up(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    db = central_db(tmp_path)
    with CentralProcess(broker.address, db, sample_items=50):
        st = Station(broker, journal, "--returns", ",".join(ITEMS), "--gap", "0.01")
        wait_until(lambda: len(st.recorded) >= 15, timeout_s=20, what="15 recorded")
        st.kill()  # some acked, some in flight, some only in the journal
        pending = journal_rows(journal)
        st2 = Station(broker, journal, "--drain")
        assert st2.drained.wait(30)
        st2.proc.wait(10)
    _exactly_once(db, st.recorded, pending)


def test_central_killed_mid_stream(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    db = central_db(tmp_path)
    central = CentralProcess(broker.address, db, sample_items=50).start()
    st = Station(broker, journal, "--returns", ",".join(ITEMS), "--gap", "0.02")
    try:
        wait_until(lambda: len(applied(db)) >= 5, timeout_s=20, what="5 applied")
        central.kill()
        assert len(applied(db)) < len(ITEMS)  # killed mid-stream, not after
        time.sleep(0.5)
        central = CentralProcess(broker.address, db, sample_items=50).start()
        wait_until(lambda: len(st.recorded) == len(ITEMS), timeout_s=30, what="all recorded")
        wait_until(lambda: set(applied(db)) >= set(st.recorded), timeout_s=40,
                   what="every recorded return to be applied")
    finally:
        st.kill()
        central.stop()
    _exactly_once(db, st.recorded)

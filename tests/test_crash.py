"""Nothing lost, nothing doubled: station and central processes killed with SIGKILL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation
from tests.conftest import wait_until

pytestmark = pytest.mark.slow
ITEMS = [f"49{n:06d}" for n in range(1, 41)]


class Station(HeadlessStation):
    """The public headless station (`selfcheck station --headless --events`) on `journal`:
    returns the books it is given, one every `gap` seconds, and keeps running (to be killed);
    `recorded` are the transactions the screen showed, i.e. the ones in the journal."""

    def __init__(self, tmp_path: Path, broker: Broker, journal: Path, *,
                 returns: Sequence[str] = (), gap: float = 0.02) -> None:
        config = tmp_path / f"{journal.stem}.toml"
        config.write_text(
            f'site = "crash-lib"\nstation = "st-crash"\nbroker = "{broker.address}"\n'
            f'journal = "{journal}"\nresend_after_s = 1.0\ninactivity_s = 600\n')
        super().__init__(config, log=tmp_path / "station.log")
        self.start()
        if returns:
            # The books go on the pad at the given pace whatever the station is doing: it
            # may be killed in the middle.
            threading.Thread(target=self._feed, args=(list(returns), gap), daemon=True).start()

    def _feed(self, items: list[str], gap: float) -> None:
        try:
            self.send("touch return")
            for item in items:
                self.send(f"place {item}")
                time.sleep(gap)
        except (BrokenPipeError, ValueError):  # killed: the rest never reach the pad
            pass

    @property
    def recorded(self) -> list[str]:
        with self._lock:
            ids = [e["msg_id"] for e in self.events if e.get("event") == "tx"]
        return list(dict.fromkeys(ids))

    def drain(self, timeout_s: float = 30.0) -> None:
        """Until the outbox is empty (every transaction acked), then the process ends."""
        n = self.mark()
        self.send("drain")
        self.wait_for(lambda e: e.get("event") == "drained", timeout_s, after=n)
        assert self.proc is not None
        self.proc.wait(10)


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


def _exactly_once(db_url: str, recorded: list[str],
                  also_journaled: set[str] | frozenset[str] = frozenset()) -> None:
    """Every transaction the screen showed is applied once. A process killed between the
    journal's fsync and the screen may leave rows the screen never showed: they count too."""
    counts = applied(db_url)
    assert set(recorded) <= set(counts), "lost transactions"
    assert set(counts) <= set(recorded) | also_journaled, "transactions from nowhere"
    assert max(counts.values()) == 1, "a transaction was applied twice"


def test_station_killed_with_outbox_pending(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    # The central is down: the returns can only go to the journal.
    st = Station(tmp_path, broker, journal, returns=ITEMS[:8])
    wait_until(lambda: len(st.recorded) == 8, timeout_s=20, what="8 journal rows")
    st.kill()
    pending = journal_rows(journal)
    assert set(st.recorded) <= pending
    db = central_db(tmp_path)
    with CentralProcess(broker.address, db, sample_items=50):
        st2 = Station(tmp_path, broker, journal)
        st2.drain(30)  # TimeoutError: the restarted station did not drain its outbox
    _exactly_once(db, st.recorded, pending)


def test_station_killed_mid_stream_with_central_up(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    db = central_db(tmp_path)
    with CentralProcess(broker.address, db, sample_items=50):
        st = Station(tmp_path, broker, journal, returns=ITEMS, gap=0.01)
        wait_until(lambda: len(st.recorded) >= 15, timeout_s=20, what="15 recorded")
        st.kill()  # some acked, some in flight, some only in the journal
        pending = journal_rows(journal)
        st2 = Station(tmp_path, broker, journal)
        st2.drain(30)
    _exactly_once(db, st.recorded, pending)


def test_central_killed_mid_stream(tmp_path: Path, broker: Broker) -> None:
    journal = tmp_path / "station.db"
    db = central_db(tmp_path)
    central = CentralProcess(broker.address, db, sample_items=50).start()
    st = Station(tmp_path, broker, journal, returns=ITEMS, gap=0.02)
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

"""What the reader was last shown is what the library holds, when a loan's answer is lost: the
real headless station, Mosquitto and the central on its embedded store, with the station's
link to the broker held and cut by a TCP relay between them."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.ledger import refused_offline
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation


class Relay:
    """A TCP relay from a local port to the broker. `hold()` keeps what the broker sends back
    (the station's answers) instead of passing it on; `cut()` closes every connection,
    dropping what was held, as a dead Wi-Fi link would."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.holding = threading.Event()
        self.held = 0  # bytes kept back
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            with self._lock:
                self._conns += [down, up]
            threading.Thread(target=self._pipe, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, to_station: bool) -> None:
        try:
            while data := src.recv(65536):
                if to_station and self.holding.is_set():
                    self.held += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            s.close()

    def hold(self) -> None:
        self.holding.set()

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.holding.clear()

    def close(self) -> None:
        self.server.close()
        self.cut()


def wait_until(check, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_loan_whose_answer_is_lost_after_the_reader_left_is_checked_back_in(
        tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    journal = tmp_path / "journal.db"
    with Broker(tmp_path / "broker") as broker, \
            CentralProcess(broker.address, f"sqlite:///{db}", sample_items=5, sample_patrons=2,
                           log=tmp_path / "central.log"):
        relay = Relay(broker.port)
        cfg = tmp_path / "station.toml"
        cfg.write_text(f'site = "lib"\nstation = "st-1"\nbroker = "127.0.0.1:{relay.port}"\n'
                       f'journal = "{journal}"\nack_timeout_s = 2\nresend_after_s = 3\n'
                       'inactivity_s = 600\n')
        store = CirculationStore(f"sqlite:///{db}")
        st = HeadlessStation(cfg, log=tmp_path / "station.log").start(60)
        try:
            st.wait_for(lambda e: e.get("event") == "screen" and e.get("online") is True)
            st.send("card TN00001")
            st.wait_for(lambda e: e.get("mode") == "borrow")
            book = "49000001"
            relay.hold()  # from now on nothing reaches the station
            st.send(f"place {book}")
            waiting = st.tx(book, "waiting")
            # The central lends it, and its answer is held on the way.
            wait_until(lambda: book in store.on_loan())
            told = st.tx(book, "unconfirmed")
            assert told["msg_id"] == waiting["msg_id"]
            st.send(f"lift {book}", "touch done", "touch finish")
            st.wait_for(lambda e: e.get("mode") == "idle")
            assert relay.held > 0
            relay.cut()  # the answer is lost with the link; the station reconnects
            # Told "not borrowed", so not borrowed: the station checks it back in.
            wait_until(lambda: book not in store.on_loan())
            rows = [r for r in refused_offline(store.engine) if r["compensates"]]
            assert [(r["compensates"], r["reason"], r["item_id"], r["kind"]) for r in rows] \
                == [(waiting["msg_id"], "compensated", book, "return")]
            wait_until(lambda: Journal(journal).depth()[0] == 0)
            st.send("quit")
            assert st.proc is not None and st.proc.wait(30) == 0
        finally:
            st.stop()
            relay.close()
            store.close()
        kept = Journal(journal)
        try:
            # staff see it on the station too, and the screen's "not borrowed" stands
            assert [(m, r) for m, _, _, r in kept.open_exceptions()] == [
                (waiting["msg_id"], "compensated")]
            assert kept.told_not_lent(waiting["msg_id"]) is None
        finally:
            kept.close()
        assert not [e for e in st.events if e.get("event") == "tx" and e.get("item") == book
                    and e.get("status") == "done"]

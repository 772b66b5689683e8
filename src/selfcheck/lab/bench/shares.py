"""The stations of the costly floods (bench flood, tests/test_cost_shares.py), and the bridge
they flood, as a child process: `python -m selfcheck.lab.bench.shares --broker H:P --db URL`.

The bridge's store checks every wrong PIN (guessable_store): a thief holding stations'
credentials goes from card to card and station to station, each good for a few key
derivations before its lock, so one flood of wrong PINs to one card with the locks off costs
the bridge what the real one does (a key derivation each).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

from selfcheck.central.pin import PinPolicy
from selfcheck.mqtt import topics
from selfcheck.mqtt.connection import BrokerAddress, make_client, publish_properties
from selfcheck.mqtt.ids import uuid7

if TYPE_CHECKING:
    from selfcheck.central.backends.store import CirculationStore

SITE = "thu-vien-hn"
HONEST_CARD = "DG0006"  # no PIN of its own: a plain patron check (central/sample.py)
PIN_CARD, PIN = "DG0002", "2468"  # the honest station's reader with a PIN
ATTACKED_CARD = "DG0001"  # the thief's guesses; its PIN is 1234
BODIES: dict[str, dict[str, Any]] = {
    "plain": {"schema": "req.patron/1", "card_id": HONEST_CARD},
    "pin": {"schema": "req.patron/1", "card_id": PIN_CARD, "pin": PIN},
    "guess": {"schema": "req.patron/1", "card_id": ATTACKED_CARD, "pin": "0000"},
    "list": {"schema": "req.offline-list/1", "page": 1},
}
TOPIC = {"plain": "patron", "pin": "patron", "guess": "patron", "list": "offline-list"}


def no_lockout() -> PinPolicy:
    """Every wrong PIN is checked, none locks (whatever counts the policy keeps)."""
    counts: dict[str, Any] = {f.name: 10**9 for f in dataclasses.fields(PinPolicy)
                              if f.type in ("int", int)}
    return PinPolicy(**counts)


def guessable_store(url: str) -> CirculationStore:
    """The embedded store with every wrong PIN checked (a key derivation each): no card
    lockout, and no station budget where the store keeps one. These measure the bridge's
    scheduling under the derivations' load, not the lockouts that limit it."""
    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.central.pin_guard import StationBudget

    return CirculationStore(url, pin_policy=no_lockout(), pin_budget=StationBudget(budget=0))


def percentile(xs: list[float], p: float) -> float:
    """The p-th of `xs` (0..1), nearest rank; nan for none."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


class Station:
    """One station's requests: each sent with its own CorrelationData and the station's own
    ResponseTopic; answers kept with their round trip."""

    def __init__(self, broker: BrokerAddress, name: str, *, site: str = SITE) -> None:
        self.site, self.name = site, name
        self._lock = threading.Lock()
        self._sent: dict[bytes, tuple[str, float]] = {}
        self._answered = threading.Condition(self._lock)
        self.rtts: dict[str, list[tuple[float, float]]] = {k: [] for k in BODIES}  # (at, s)
        self._asked: set[bytes] = set()  # ask() waits for these...
        self._rtt_of: dict[bytes, float] = {}  # ...and takes their round trip here
        self._n = 0
        self.client = make_client(f"{name}-{uuid7()[-8:]}", max_inflight=65_535)
        self.client.on_message = self._on_answer
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.res(site, name, "+"), qos=1)
        if not ready.wait(10):
            raise TimeoutError(f"{name}: not subscribed")

    def send(self, kind: str, *, asked: bool = False) -> bytes:
        with self._lock:
            self._n += 1
            cid = f"{kind}-{self._n}".encode()
            self._sent[cid] = (kind, time.monotonic())
            if asked:
                self._asked.add(cid)
        name = TOPIC[kind]
        self.client.publish(topics.req(self.site, self.name, name),
                            json.dumps(BODIES[kind]).encode(), qos=1,
                            properties=publish_properties(
                                ResponseTopic=topics.res(self.site, self.name, name),
                                CorrelationData=cid))
        return cid

    def ask(self, kind: str, timeout_s: float) -> float | None:
        """Send one and wait for its answer: the round trip in seconds, None if none came."""
        cid = self.send(kind, asked=True)
        deadline = time.monotonic() + timeout_s
        with self._answered:
            while cid in self._sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._asked.discard(cid)
                    return None
                self._answered.wait(left)
            return self._rtt_of.pop(cid)

    def between(self, kind: str, start: float, end: float) -> list[float]:
        with self._lock:
            return [rtt for at, rtt in self.rtts[kind] if start <= at < end]

    def unanswered(self, kind: str, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for k, at in self._sent.values() if k == kind and start <= at < end)

    def oldest_waiting(self, kind: str) -> float:
        """Seconds the oldest unanswered request of `kind` has waited (0: none waits)."""
        now = time.monotonic()
        with self._lock:
            return max((now - at for k, at in self._sent.values() if k == kind), default=0.0)

    def _on_answer(self, client: Any, userdata: Any, m: paho.MQTTMessage) -> None:
        with self._answered:
            cid = getattr(m.properties, "CorrelationData", b"")
            sent = self._sent.pop(cid, None)
            if sent is not None:
                kind, at = sent
                rtt = time.monotonic() - at
                if cid in self._asked:
                    self._asked.discard(cid)
                    self._rtt_of[cid] = rtt
                self.rtts[kind].append((at, rtt))
            self._answered.notify_all()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Trickle:
    """`per_s` requests of `kind` a second from `station`, in a thread, until stopped."""

    def __init__(self, station: Station, kind: str, per_s: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(station, kind, 1.0 / per_s),
                                        daemon=True)

    def _run(self, station: Station, kind: str, every_s: float) -> None:
        while not self._stop.wait(every_s):
            station.send(kind)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def serve(argv: list[str] | None = None) -> None:
    """The flooded bridge: the sample store (no PIN lockout) and a Bridge, until SIGTERM."""
    from selfcheck.central.bridge import Bridge
    from selfcheck.central.sample import load_sample

    p = argparse.ArgumentParser()
    p.add_argument("--broker", type=BrokerAddress.parse, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--patrons", type=int, default=2_000)
    p.add_argument("--no-shares", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    store = guessable_store(args.db)
    load_sample(store, extra_patrons=args.patrons)
    bridge = Bridge(store, args.broker, cost_shares=not args.no_shares)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bridge.start()
    if not bridge.connected.wait(10):
        raise SystemExit("broker not reached")
    print("central ready", flush=True)
    stop.wait()
    logging.getLogger(__name__).warning("counters: %s", bridge.counters.summary())
    bridge.stop()
    store.close()


if __name__ == "__main__":
    serve()

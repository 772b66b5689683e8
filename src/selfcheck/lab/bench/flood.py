"""Bench: one station floods valid loans; how long do the others wait? (And first the floods
of costly requests, PIN checks and offline-list pages: bench/costly_flood.py.)

A real Mosquitto and `selfcheck central` (embedded store on SQLite). An honest station asks a
patron check every 50 ms throughout; a hostile one publishes N loans (QoS 1) as fast as the
broker takes them. Measured twice in the same run: with each station's share off
(`--station-rate 0`, the baseline: the bridge applies the whole flood, and the time it takes
is the window measured), then with the default share. The figure is the honest station's
patron-check round trip during that window, beside its round trip with no flood at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import BrokerAddress, make_client, publish_properties
from selfcheck.mqtt.ids import uuid7

SITE = "bench"
ASK_EVERY_S = 0.05


class Asker:
    """The honest station: a patron check every ASK_EVERY_S, round trips kept by time sent."""

    def __init__(self, broker: BrokerAddress) -> None:
        self.rtts: list[tuple[float, float]] = []  # (sent at, seconds)
        self._sent: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._res = topics.res(SITE, "st-honest", "patron")
        self.client = make_client("bench-honest")
        self.client.on_message = self._answered
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(self._res, qos=1)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._ask, daemon=True)

    def _answered(self, client: Any, userdata: Any, m: Any) -> None:
        at = self._sent.pop(getattr(m.properties, "CorrelationData", b""), None)
        if at is not None:
            self.rtts.append((at, time.monotonic() - at))

    def _ask(self) -> None:
        body = json.dumps({"schema": "req.patron/1", "card_id": "0000000001"}).encode()
        n = 0
        while not self._stop.wait(ASK_EVERY_S):
            n += 1
            cid = str(n).encode()
            self._sent[cid] = time.monotonic()
            self.client.publish(topics.req(SITE, "st-honest", "patron"), body, qos=1,
                                properties=publish_properties(ResponseTopic=self._res,
                                                              CorrelationData=cid))

    def between(self, start: float, end: float) -> list[float]:
        return sorted(rtt for at, rtt in self.rtts if start <= at <= end)

    def __enter__(self) -> Asker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _flood(broker: BrokerAddress, count: int) -> tuple[float, threading.Event, Any]:
    """Publish `count` loans from st-evil; returns (start, all acked, client)."""
    acked = threading.Event()
    got = 0

    def on_ack(client: Any, userdata: Any, m: Any) -> None:
        nonlocal got
        got += 1
        if got >= count:
            acked.set()

    c = make_client("bench-evil", max_inflight=1000)
    c.on_message = on_ack
    c.connect(broker.host, broker.port)
    c.subscribe(topics.ack_tx(SITE, "st-evil"), qos=1)
    c.loop_start()
    time.sleep(0.3)  # the subscription in place
    now = dt.datetime.now(dt.UTC)
    payloads = [messages.encode(messages.TxLoan(
        msg_id=uuid7(), seq=n + 1, site=SITE, station="st-evil", at=now,
        item_id=f"49{n + 1:06d}", patron_ref="p-flood", deadline=now + dt.timedelta(days=1)))
        for n in range(count)]
    start = time.monotonic()
    for p in payloads:
        c.publish(topics.tx(SITE, "st-evil", "loan"), p, qos=1)
    return start, acked, c


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def _round(root: Path, count: int, share: list[str], window_s: float | None
           ) -> tuple[float, list[float], list[float]]:
    """One run: (seconds the flood took or the given window, RTTs before, RTTs during)."""
    broker = Broker(root / "broker").start()
    central = CentralProcess(broker.address, f"sqlite:///{root / 'central.db'}",
                             log=root / "central.log")
    central.args += share
    central.start()
    try:
        with Asker(broker.address) as asker:
            time.sleep(2.0)
            idle_from = time.monotonic() - 1.5
            start, acked, evil = _flood(broker.address, count)
            if window_s is None:
                if not acked.wait(120):
                    raise TimeoutError("the flood was not applied in 120 s")
                window_s = time.monotonic() - start
            else:
                time.sleep(window_s)
            time.sleep(0.5)  # the last answers of the window
            evil.disconnect()
            evil.loop_stop()
            return (window_s, asker.between(idle_from, start),
                    asker.between(start, start + window_s))
    finally:
        central.stop()
        broker.stop()


def run(args: argparse.Namespace) -> Iterator[Figure]:
    from selfcheck.lab.bench import costly_flood

    yield from costly_flood.run(args)
    count = 5_000 if args.quick else 30_000
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        root = Path(tmp)
        window, idle, open_door = _round(root / "no-share", count, ["--station-rate", "0"],
                                         None)
        _, _, shared = _round(root / "share", count, [], window)
        for name, p in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            base = _pct(idle, p)
            yield figure(f"flood_honest_patron_rtt_{name}_no_share", _pct(open_door, p), "ms",
                         baseline=base, flood=count, window_s=round(window, 2))
            yield figure(f"flood_honest_patron_rtt_{name}_share", _pct(shared, p), "ms",
                         baseline=base, flood=count, window_s=round(window, 2))

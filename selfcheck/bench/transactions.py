"""Transaction round trip and bridge throughput, each beside raw Mosquitto in the same run.

- round trip: a station's journal write (fsync) -> publish -> bridge commit -> ack back;
  baseline: a raw paho QoS 1 echo (publish, a client republishes, receive) via the same broker.
- throughput: pre-built transactions from several station clients through one bridge process
  until every ack is back; baseline: the same clients' QoS 1 messages to one plain subscriber.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from kiosk.journal import Journal
from mqtt import messages, topics
from mqtt.connection import BrokerAddress, make_client
from mqtt.ids import uuid7
from mqtt.outbox import Outbox
from mqtt.station_link import StationLink
from selfcheck.bench.cmd import Figure, figure
from selfcheck.broker import Broker
from selfcheck.stack import CentralProcess

SITE = "bench-lib"
ITEMS = 2000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _return(n: int, station: str, seq: int) -> messages.TxReturn:
    return messages.TxReturn(msg_id=uuid7(), seq=seq, site=SITE, station=station,
                             at=dt.datetime.now(dt.UTC), item_id=f"49{n % ITEMS + 1:06d}")


OnMessage = Callable[[paho.Client, Any, paho.MQTTMessage], object]


def _connected(client_id: str, broker: BrokerAddress, subs: list[str],
               on_message: OnMessage) -> paho.Client:
    ready = threading.Event()
    client = make_client(client_id, max_inflight=1000)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe([(s, 1) for s in subs])
    client.on_subscribe = lambda *a: ready.set()

    def handle(c: paho.Client, u: Any, m: paho.MQTTMessage) -> None:
        on_message(c, u, m)

    client.on_message = handle
    client.connect(broker.host, broker.port)
    client.loop_start()
    if not ready.wait(10):
        raise TimeoutError(f"{client_id} did not subscribe")
    return client


def _close(*clients: paho.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def raw_round_trips(broker: BrokerAddress, count: int) -> list[float]:
    echo = _connected("bench-echo", broker, ["bench/ping"],
                      lambda c, u, m: c.publish("bench/pong", m.payload, qos=1))
    got = threading.Event()
    pinger = _connected("bench-pinger", broker, ["bench/pong"], lambda c, u, m: got.set())
    times = []
    for _ in range(count):
        got.clear()
        start = time.perf_counter()
        pinger.publish("bench/ping", b"x" * 250, qos=1)
        got.wait(5)
        times.append((time.perf_counter() - start) * 1000)
    _close(echo, pinger)
    return times


def station_round_trips(broker: BrokerAddress, workdir: Path, count: int) -> list[float]:
    journal = Journal(workdir / "rt-station.db")
    acked = threading.Event()
    outbox: Outbox

    def on_ack(ack: messages.AckTx) -> None:
        outbox.on_ack(ack.msg_id)
        acked.set()

    link = StationLink(SITE, "rt-1", broker, version="bench", next_session=journal.next_session,
                       on_ack=on_ack)
    outbox = Outbox(journal, link.send)
    link.start()
    link.connected.wait(10)
    topic = topics.tx(SITE, "rt-1", "return")
    times = []
    for n in range(count):
        acked.clear()
        start = time.perf_counter()
        msg = journal.add("return", topic, partial(_return, n, "rt-1"))
        outbox.submit(msg.msg_id, topic, messages.encode(msg))
        if not acked.wait(5):
            raise TimeoutError("no ack within 5 s")
        times.append((time.perf_counter() - start) * 1000)
    link.stop()
    journal.close()
    return times


def throughput(broker: BrokerAddress, count: int, stations: int, *, raw: bool) -> float:
    """Messages per second from `stations` clients until every answer is back."""
    done = threading.Event()
    lock = threading.Lock()
    received = 0

    def counted(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        nonlocal received
        with lock:
            received += 1
            if received == count:
                done.set()

    senders = []
    per = count // stations
    for s in range(stations):
        name = f"tp-{s + 1}"
        subs = [] if raw else [topics.ack_tx(SITE, name)]
        senders.append((name, _connected(f"bench-{name}-{raw}", broker, subs or ["bench/none"],
                                         counted)))
    sink = _connected("bench-sink", broker, ["bench/raw/#"], counted) if raw else None
    batches = []
    for s, (name, _) in enumerate(senders):
        msgs = [messages.encode(_return(s * per + i, name, i + 1)) for i in range(per)]
        batches.append(msgs)
    start = time.perf_counter()

    def send(client: paho.Client, name: str, msgs: list[bytes]) -> None:
        topic = f"bench/raw/{name}" if raw else topics.tx(SITE, name, "return")
        for payload in msgs:
            client.publish(topic, payload, qos=1)

    threads = [threading.Thread(target=send, args=(c, name, msgs))
               for (name, c), msgs in zip(senders, batches, strict=True)]
    for t in threads:
        t.start()
    if not done.wait(120):
        raise TimeoutError(f"only {received} of {count} answers")
    elapsed = time.perf_counter() - start
    _close(*(c for _, c in senders), *([sink] if sink else []))
    return count / elapsed


def run(args: argparse.Namespace) -> Iterator[Figure]:
    quick = getattr(args, "quick", False)
    rounds, volume = (100, 2000) if quick else (500, 8000)
    with tempfile.TemporaryDirectory(prefix="selfcheck-bench-") as tmp:
        work = Path(tmp)
        with Broker(work / "broker") as broker, CentralProcess(
                broker.address, f"sqlite:///{work / 'central.db'}", sample_items=ITEMS):
            raw = raw_round_trips(broker.address, rounds)
            ours = station_round_trips(broker.address, work, rounds)
            for q in (50, 99):
                yield figure(f"tx_round_trip_p{q}", pct(ours, q), "ms",
                             baseline=pct(raw, q), baseline_name="raw paho QoS1 echo",
                             samples=rounds)
            raw_tps = throughput(broker.address, volume, 4, raw=True)
            bridge_tps = throughput(broker.address, volume, 4, raw=False)
            yield figure("bridge_throughput", bridge_tps, "tx/s", baseline=raw_tps,
                         baseline_name="raw paho QoS1 publish->subscribe", messages=volume,
                         stations=4, store="sqlite")

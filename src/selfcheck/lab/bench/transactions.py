"""Transaction round trip and bridge throughput, each beside raw Mosquitto in the same run.

- round trip: a station's journal write (fsync) -> publish -> bridge commit -> ack back;
  baseline: a raw paho QoS 1 echo (publish, a client republishes, receive) via the same broker.
- throughput: pre-built transactions from several station clients through one bridge process
  until every ack is back; baseline: the same clients' QoS 1 messages to one plain subscriber.
- the cost of per-station order: the round trip and the throughput again, through a bridge
  that applies whatever arrives at once (`selfcheck central --no-order`, what the bridge did
  before it kept each station's seq order), on a fresh store in the same run.
- where the round trip's time goes: each hop of every sampled round trip (mqtt/hops.py), the
  bridge's times moved onto this process's clock by a ping exchange with it; p50/p99 of each
  hop (the time since the previous one) beside the whole (`tx_hop_*`, and a table on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.kiosk.timeouts import RESEND_AFTER_S
from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import hops, messages, topics
from selfcheck.mqtt.connection import BrokerAddress, make_client
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.outbox import Outbox
from selfcheck.mqtt.station_link import StationLink

SITE = "bench-lib"
ITEMS = 2000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _return(n: int, station: str, seq: int, journal: str | None = None) -> messages.TxReturn:
    return messages.TxReturn(msg_id=uuid7(), seq=seq, journal=journal, site=SITE,
                             station=station, at=dt.datetime.now(dt.UTC),
                             item_id=f"49{n % ITEMS + 1:06d}")


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


class Station:
    """A station's outbox path (journal with fsync, link, outbox) timing one return at a time
    from the journal write to its ack."""

    def __init__(self, broker: BrokerAddress, workdir: Path, name: str) -> None:
        self.name = name
        self.journal = Journal(workdir / f"{name}.db")
        self.acked = threading.Event()
        self.sent: list[str] = []  # msg_ids, for the breakdown
        self.link = StationLink(SITE, name, broker, version="bench",
                                next_session=self.journal.next_session, on_ack=self._on_ack)
        self.outbox = Outbox(self.journal, self.link.send, resend_after_s=RESEND_AFTER_S)
        self.topic = topics.tx(SITE, name, "return")
        self.link.start()
        self.link.connected.wait(10)

    def _on_ack(self, ack: messages.AckTx) -> None:
        # As the station runtime: the screen moves on, then the outbox row goes.
        if hops.HOOKS:
            hops.mark("station_done", ack.msg_id)
        self.acked.set()
        self.outbox.on_ack(ack.msg_id)

    def _build(self, n: int, seq: int) -> messages.TxReturn:
        return _return(n, self.name, seq, self.journal.journal_id)

    def round_trip(self, n: int) -> float:
        self.acked.clear()
        start = time.perf_counter()
        msg = self.journal.add("return", self.topic, partial(self._build, n))
        if hops.HOOKS:
            hops.mark("decided", msg.msg_id, start)
            hops.mark("journal_committed", msg.msg_id)
        self.outbox.submit(msg.msg_id, self.topic, messages.encode(msg))
        if hops.HOOKS:
            hops.mark("published", msg.msg_id)
        self.sent.append(msg.msg_id)
        if not self.acked.wait(5):
            raise TimeoutError("no ack within 5 s")
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.link.stop()
        self.journal.close()


def paired_round_trips(ordered: BrokerAddress, unordered: BrokerAddress, workdir: Path,
                       count: int, recorder: hops.Recorder | None = None
                       ) -> tuple[list[float], list[float], list[str], list[str]]:
    """Round trips through the two bridges taken in turn, so that both see the same load of
    the machine at the same moments; with the msg_ids sent to each (for the breakdown, whose
    marks go to `recorder` while these run)."""
    a, b = Station(ordered, workdir, "rt-1"), Station(unordered, workdir, "rt-2")
    if recorder is not None:
        recorder.install()
    try:
        times: tuple[list[float], list[float]] = ([], [])
        for n in range(count):
            times[0].append(a.round_trip(n))
            times[1].append(b.round_trip(n))
        return times[0], times[1], a.sent, b.sent
    finally:
        if recorder is not None:
            recorder.remove()
        a.close()
        b.close()


# A round trip's hops in their order; `order_admitted` only with per-station order on.
HOPS = ("decided", "journal_committed", "published", "bridge_received", "bridge_taken",
        "order_admitted", "ledger_committed", "ack_published", "station_received",
        "station_done")


def breakdown(sent: list[str], local: list[tuple[str, str, float]],
              remote: list[tuple[str, str, float]], offset: float) -> dict[str, list[float]]:
    """Per hop, the ms since the previous hop of each sampled round trip that has them all
    ("total": decided to station_done); `offset` is the bridge's clock minus ours."""
    at: dict[str, dict[str, float]] = {}
    for hop, msg_id, t in local:
        at.setdefault(msg_id, {})[hop] = t
    for hop, msg_id, t in remote:
        at.setdefault(msg_id, {})[hop] = t - offset
    out: dict[str, list[float]] = {}
    for msg_id in sent:
        times = at.get(msg_id, {})
        present = [h for h in HOPS if h in times]
        if len(present) < len(HOPS) - 1 or present[0] != HOPS[0] or present[-1] != HOPS[-1]:
            continue  # a mark missing (a resend, a recorder full): not a clean sample
        for before, hop in itertools.pairwise(present):
            out.setdefault(hop, []).append((times[hop] - times[before]) * 1000)
        out.setdefault("total", []).append((times[HOPS[-1]] - times[HOPS[0]]) * 1000)
    return out


def _hops_env(central: CentralProcess, path: Path, port: int, keep: int) -> CentralProcess:
    central.env = {hops.FILE_ENV: str(path), hops.CLOCK_ENV: str(port),
                   hops.KEEP_ENV: str(keep)}
    return central


def _print_hops(title: str, table: dict[str, list[float]], offset: tuple[float, float]) -> None:
    print(f"{title}: {len(table.get('total', []))} round trips, bridge clock offset "
          f"{offset[0] * 1000:+.3f} ms (+-{offset[1] * 1000:.3f})", file=sys.stderr)
    print(f"  {'hop (time since the previous one)':36} {'p50 ms':>8} {'p99 ms':>8}",
          file=sys.stderr)
    for hop in (*HOPS[1:], "total"):
        if hop in table:
            print(f"  {hop:36} {pct(table[hop], 50):8.3f} {pct(table[hop], 99):8.3f}",
                  file=sys.stderr)


def throughput(broker: BrokerAddress, count: int, stations: int, *, raw: bool,
               prefix: str = "tp") -> float:
    """Messages per second from `stations` clients until every answer is back (a new
    `prefix` for each run on one central: each station numbers its transactions from 1)."""
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
        name = f"{prefix}-{s + 1}"
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
        # Two brokers, each with its bridge: with per-station order (as shipped) and without
        # (`--no-order`, what the bridge did before it kept each station's seq order). Four
        # stations send the whole volume at once, far over a station's share of a bridge:
        # the share is off, so that this measures the bridge (bench flood measures the share).
        # Each bridge keeps the marks of the round trips only (len(HOPS) a transaction at
        # most), not the throughput runs'.
        ports = (free_port(), free_port())
        marks = (work / "hops-1.json", work / "hops-2.json")
        local = hops.Recorder()
        with Broker(work / "broker") as broker, Broker(work / "broker-2") as broker2, \
                _hops_env(CentralProcess(broker.address, f"sqlite:///{work / 'central.db'}",
                                         sample_items=ITEMS, station_share=False),
                          marks[0], ports[0], rounds * len(HOPS)), \
                _hops_env(CentralProcess(broker2.address, f"sqlite:///{work / 'central-2.db'}",
                                         sample_items=ITEMS, order=False, station_share=False),
                          marks[1], ports[1], rounds * len(HOPS)):
            raw = raw_round_trips(broker.address, rounds)
            ours, unordered, sent, sent2 = paired_round_trips(broker.address, broker2.address,
                                                              work, rounds, local)
            offsets = (hops.clock_offset(ports[0]), hops.clock_offset(ports[1]))
            raw_tps = throughput(broker.address, volume, 4, raw=True)
            tps: tuple[list[float], list[float]] = ([], [])
            for n in range(2):  # in turn, as the round trips
                tps[0].append(throughput(broker.address, volume, 4, raw=False, prefix=f"tp{n}"))
                tps[1].append(throughput(broker2.address, volume, 4, raw=False,
                                         prefix=f"tp{n}"))
        bridge_tps, unordered_tps = (sum(t) / len(t) for t in tps)
        tables = [breakdown(ids, local.marks, json.loads(path.read_text()), offset[0])
                  for ids, path, offset in zip((sent, sent2), marks, offsets, strict=True)]
        _print_hops("round trip hops, per-station order", tables[0], offsets[0])
        _print_hops("round trip hops, --no-order", tables[1], offsets[1])
        for hop in (*HOPS[1:], "total"):
            for q in (50, 99):
                if hop in tables[0]:
                    yield figure(f"tx_hop_{hop}_p{q}", pct(tables[0][hop], q), "ms",
                                 samples=len(tables[0][hop]),
                                 clock_offset_ms=round(offsets[0][0] * 1000, 3),
                                 clock_uncertainty_ms=round(offsets[0][1] * 1000, 3))
        for q in (50, 99):
            yield figure(f"tx_round_trip_p{q}", pct(ours, q), "ms",
                         baseline=pct(raw, q), baseline_name="raw paho QoS1 echo",
                         samples=rounds)
        yield figure("bridge_throughput", bridge_tps, "tx/s", baseline=raw_tps,
                     baseline_name="raw paho QoS1 publish->subscribe", messages=volume,
                     stations=4, store="sqlite", runs=2)
        no_order = "the same bridge without per-station order (--no-order), taken in turn"
        for q in (50, 99):
            yield figure(f"tx_round_trip_p{q}_ordered", pct(ours, q), "ms",
                         baseline=pct(unordered, q), baseline_name=no_order, samples=rounds)
        yield figure("bridge_throughput_ordered", bridge_tps, "tx/s", baseline=unordered_tps,
                     baseline_name=no_order, messages=volume, stations=4, store="sqlite",
                     runs=2)

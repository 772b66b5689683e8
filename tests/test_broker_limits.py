"""What a station (or a stolen station login) can make the broker store: retained messages only
where the contract keeps them, messages no larger than max_packet_size, and bounded queues for
clients that are away. Against a real Mosquitto with the production profile (secure.conf and
make-credentials) and the real fleet service, which deletes misplaced retained messages."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.broker import CONFIG, SECURE_CONFIG, Broker
from selfcheck.mqtt import messages, retained, topics
from selfcheck.mqtt.connection import connect_properties, make_client
from selfcheck.mqtt.security import ClientSecurity, apply
from tests.conftest import ROOT, wait_until

MAKE_CREDENTIALS = ROOT / "deploy" / "mosquitto" / "make-credentials"
ROLES = """\
station   st-a          site-1
station   st-b          site-1
bridge    central-bridge-1
fleet     central-fleet
operator  op-all
"""
A = "lib/v1/site-1/st-a"
B = "lib/v1/site-1/st-b"
BIG = 60 * 1024
MAX_QUEUED_BYTES = 32 * 1024 * 1024  # max_queued_bytes in both profiles


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("creds")
    (base / "roles").write_text(ROLES)
    subprocess.run([str(MAKE_CREDENTIALS), str(base / "roles"), str(base / "out")], check=True,
                   capture_output=True)
    return base / "out"


@pytest.fixture
def sbroker(creds: Path, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "sbroker", secure=creds).start()
    yield b
    b.stop()


class Peer:
    """A paho client that records what it receives, its PUBACKs and its disconnects."""

    def __init__(self, broker: Broker, creds: Path, name: str, *subscribe: str,
                 persistent: bool = False, rap: bool = False) -> None:
        self.name = name
        self.got: list[paho.MQTTMessage] = []
        self.pubacks: dict[int, paho.ReasonCode] = {}
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = make_client(name)
        pw = (creds / "secrets" / f"{name}.pass").read_text()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.client.on_disconnect = lambda *a: self.dropped.set()
        self._subscribe = [(t, SubscribeOptions(qos=1, retainAsPublished=rap))
                           for t in subscribe]
        apply(self.client, broker.address, ClientSecurity(name, pw, tls=True,
                                                          ca_file=creds / "ca.crt"))
        self.client.connect_async(broker.address.host, broker.address.port,
                                  clean_start=not persistent,
                                  properties=connect_properties(86400 if persistent else 0))
        self.client.loop_start()
        assert self.connected.wait(10), f"{name}: not connected"
        if subscribe:
            assert self._subscribed.wait(10), f"{name}: no SUBACK"

    def _on_connect(self, c: paho.Client, u: object, f: object, rc: paho.ReasonCode,
                    p: object = None) -> None:
        if rc.is_failure:
            return
        if self._subscribe:
            c.subscribe(self._subscribe)
        self.connected.set()

    def _on_message(self, c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        with self._lock:
            self.got.append(m)

    def received(self) -> list[paho.MQTTMessage]:
        with self._lock:
            return list(self.got)

    def publish_all(self, items: list[tuple[str, bytes]], *, retain: bool = False) -> None:
        """QoS 1, in rounds of 100, each waited for (PUBACK, or 0x87 where the ACL says no)."""
        for start in range(0, len(items), 100):
            mids = [self.client.publish(t, p, qos=1, retain=retain).mid
                    for t, p in items[start:start + 100]]
            self._wait_acked(mids, f"{self.name}: PUBACKs from {start}")

    def _wait_acked(self, mids: list[int], what: str) -> None:
        wait_until(lambda: all(m in self.pubacks for m in mids), 60, what)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def marker_arrived(peer: Peer, topic: str) -> bool:
    return any(m.topic == topic and m.payload == b"marker" for m in peer.received())


@pytest.fixture
def fleet(sbroker: Broker, creds: Path, tmp_path: Path) -> Iterator[FleetService]:
    pw = (creds / "secrets" / "central-fleet.pass").read_text()
    svc = FleetService(sbroker.plain_address, f"sqlite:///{tmp_path / 'fleet.db'}", http=None,
                       client_id="central-fleet", flush_s=0.2,
                       security=ClientSecurity("central-fleet", pw))
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


def status_payload() -> bytes:
    return messages.encode(messages.Status(online=True, session=1, version="test", mode="normal"))


def test_a_station_flooding_retained_messages_leaves_only_its_status(
        sbroker: Broker, creds: Path, fleet: FleetService) -> None:
    station = Peer(sbroker, creds, "st-a")
    station.publish_all([(f"{A}/status", status_payload())], retain=True)
    # 2,000 retained messages of 60 kB (120 MB) on every topic shape a station might try:
    # the channels it may publish (each topic new, so nothing is merely overwritten) and
    # deeper or foreign ones its rights do not name.
    shapes = ["tele/t-{i}", "evt/e-{i}", "cmd/res/c-{i}", "tx/loan/{i}", "req/patron/{i}",
              "junk/{i}", "state/{i}", "status/{i}"]
    flood = [(f"{A}/{shapes[i % len(shapes)].format(i=i)}", bytes([65 + i % 26]) * BIG)
             for i in range(2000)]
    station.publish_all(flood, retain=True)
    allowed = sum(1 for t, _ in flood if t.split("/")[4] in ("tele", "evt", "cmd"))
    assert allowed == 750  # the rest were refused by the rights (PUBACK 0x87)
    refused = [rc for rc in station.pubacks.values() if rc.is_failure]
    assert len(refused) == 2000 - allowed
    wait_until(lambda: fleet._retained.deleted >= allowed, 60, "the fleet deleting them")

    # A newcomer on every channel an operator may read gets the status and nothing else; the
    # live marker, sent after its SUBACK, comes after any retained message the broker holds.
    op = Peer(sbroker, creds, "op-all", *(f"lib/v1/+/+/{c}" for c in (
        "status", "state", "tele/#", "evt/#", "cmd/res/#", "config/reported")))
    bridge = Peer(sbroker, creds, "central-bridge-1", topics.BRIDGE_TX, topics.BRIDGE_REQ)
    station.publish_all([(f"{A}/evt/marker", b"marker"), (f"{A}/tx/loan", b"marker")])
    wait_until(lambda: marker_arrived(op, f"{A}/evt/marker"), 10, "the operator's marker")
    wait_until(lambda: marker_arrived(bridge, f"{A}/tx/loan"), 10, "the bridge's marker")
    kept = [m.topic for m in op.received() if m.retain and m.payload]
    assert kept == [f"{A}/status"]
    assert [m.topic for m in bridge.received()] == [f"{A}/tx/loan"]
    # And on disk: the broker saves its database every 5 s; once it no longer holds the
    # flood the file is a few kB (it was over 45 MB with the deleted messages in it).
    db = sbroker.datadir / "mosquitto.db"
    wait_until(lambda: db.exists() and db.stat().st_size < 1024 * 1024, 30,
               "a saved broker database without the flood")
    for p in (station, op, bridge):
        p.close()


def test_a_retained_message_left_while_the_fleet_was_away_is_deleted_on_its_return(
        sbroker: Broker, creds: Path, tmp_path: Path) -> None:
    station = Peer(sbroker, creds, "st-a")
    station.publish_all([(f"{A}/evt/left-{i}", b"x" * BIG) for i in range(20)], retain=True)
    pw = (creds / "secrets" / "central-fleet.pass").read_text()
    svc = FleetService(sbroker.plain_address, f"sqlite:///{tmp_path / 'fleet.db'}", http=None,
                       client_id="central-fleet", flush_s=0.2,
                       security=ClientSecurity("central-fleet", pw))
    svc.start()
    try:
        wait_until(lambda: svc._retained.deleted == 20, 20, "the replayed ones deleted")
        op = Peer(sbroker, creds, "op-all", "lib/v1/+/+/evt/#")
        station.publish_all([(f"{A}/evt/marker", b"marker")])
        wait_until(lambda: marker_arrived(op, f"{A}/evt/marker"), 10, "the marker")
        assert [m.topic for m in op.received() if m.retain and m.payload] == []
        op.close()
    finally:
        svc.stop()
        station.close()


def test_the_contract_retained_channels_are_left_alone(
        sbroker: Broker, creds: Path, fleet: FleetService) -> None:
    station = Peer(sbroker, creds, "st-a")
    station.publish_all([(f"{A}/status", status_payload()), (f"{A}/state", b"{}"),
                         (f"{A}/config/reported", b"{}")], retain=True)
    op = Peer(sbroker, creds, "op-all", "lib/v1/+/+/status", "lib/v1/+/+/state",
              "lib/v1/+/+/config/reported", "lib/v1/+/+/evt/#")
    station.publish_all([(f"{A}/evt/marker", b"marker")])
    wait_until(lambda: marker_arrived(op, f"{A}/evt/marker"), 10, "the marker")
    assert sorted(m.topic for m in op.received() if m.retain) == [
        f"{A}/config/reported", f"{A}/state", f"{A}/status"]
    assert fleet._retained.deleted == 0
    station.close()
    op.close()


def test_an_oversize_message_is_refused(sbroker: Broker, creds: Path) -> None:
    op = Peer(sbroker, creds, "op-all", "lib/v1/+/+/evt/#")
    station = Peer(sbroker, creds, "st-a")
    station.client.publish(f"{A}/evt/big", b"x" * (64 * 1024 + 1), qos=1)
    # Mosquitto answers a packet over max_packet_size by closing the connection.
    assert station.dropped.wait(10), "the broker kept a client that sent an oversize packet"
    other = Peer(sbroker, creds, "st-b")
    other.publish_all([(f"{B}/evt/marker", b"marker")])
    wait_until(lambda: marker_arrived(op, f"{B}/evt/marker"), 10, "the marker")
    assert [m.topic for m in op.received()] == [f"{B}/evt/marker"]
    for p in (station, other, op):
        p.close()


def test_an_offline_persistent_session_keeps_a_bounded_queue(sbroker: Broker,
                                                              creds: Path) -> None:
    # st-b subscribes with a persistent session, then goes away; the operator sends it 45 MB
    # of commands: the broker keeps at most max_queued_bytes (plus what it may have in flight).
    away = Peer(sbroker, creds, "st-b", f"{B}/cmd/req/#", persistent=True)
    away.close()
    op = Peer(sbroker, creds, "op-all")
    op.publish_all([(f"{B}/cmd/req/n-{i}", b"q" * BIG) for i in range(750)])
    back = Peer(sbroker, creds, "st-b", persistent=True)
    op.publish_all([(f"{B}/cmd/req/marker", b"marker")])
    wait_until(lambda: marker_arrived(back, f"{B}/cmd/req/marker"), 60, "the marker")
    queued = [m for m in back.received() if m.payload != b"marker"]
    total = sum(len(m.payload) for m in queued)
    assert queued, "a persistent session got nothing it missed: not the test's premise"
    assert total <= MAX_QUEUED_BYTES + BIG, f"{len(queued)} messages, {total} bytes kept"
    assert len(queued) < 750
    back.close()
    op.close()


def test_both_profiles_bound_sizes_and_queues() -> None:
    for conf in (CONFIG, SECURE_CONFIG):
        options = dict(line.split(None, 1) for line in conf.read_text().splitlines()
                       if line.strip() and not line.startswith("#") and " " in line)
        assert options["max_packet_size"] == "65536", conf
        assert int(options["max_queued_bytes"]) == MAX_QUEUED_BYTES, conf
        assert int(options["memory_limit"]) > 0, conf


def test_station_rights_name_the_contract_topics_exactly(creds: Path) -> None:
    """The bound on retained topics rests on these rules: each tx/ and req/ topic spelt out
    (the bridges' group never sees retained messages, so nobody would delete them), nothing
    multi-level; kept in step with the code's lists."""
    config = json.loads((creds / "dynamic-security.json").read_text())
    role = next(r for r in config["roles"] if r["rolename"] == "st-a")
    sends = {a["topic"] for a in role["acls"] if a["acltype"] == "publishClientSend"}
    assert not [t for t in sends if t.endswith("#")]
    assert {t.removeprefix(A + "/") for t in sends if "/tx/" in t} == {
        f"tx/{k}" for k in topics.STATION_TX}
    assert {t.removeprefix(A + "/") for t in sends if "/req/" in t} == {
        f"req/{n}" for n in messages.REQUESTS}
    cleaned = {f"{A}/{c}" for c in retained.CLEANED}
    assert cleaned <= sends
    # what a station may keep retained and the fleet leaves alone is all of the rest
    rest = {t.removeprefix(A + "/") for t in sends - cleaned if "/tx/" not in t
            and "/req/" not in t}
    assert rest <= retained.KEPT

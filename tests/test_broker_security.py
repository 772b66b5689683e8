"""The production broker profile (deploy/mosquitto/secure.conf + make-credentials) against a
real Mosquitto: who may log in, publish, read and command what."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker
from selfcheck.mqtt.connection import BrokerAddress, make_client
from selfcheck.mqtt.security import ClientSecurity, InsecureBroker, apply
from tests.conftest import ROOT, wait_until

MAKE_CREDENTIALS = ROOT / "deploy" / "mosquitto" / "make-credentials"
ROLES = """\
# test fleet: two sites
station   st-a          site-1
station   st-b          site-1
station   st-c          site-2
bridge    central-bridge-1
fleet     central-fleet
operator  op-all
operator  op-site2      site-2
"""
A = "lib/v1/site-1/st-a"
B = "lib/v1/site-1/st-b"
C = "lib/v1/site-2/st-c"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("creds")
    (base / "roles").write_text(ROLES)
    subprocess.run([str(MAKE_CREDENTIALS), str(base / "roles"), str(base / "out")], check=True,
                   capture_output=True)
    return base / "out"


@pytest.fixture(scope="module")
def sbroker(creds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("sbroker"), secure=creds).start()
    yield b
    b.stop()


def password(creds: Path, name: str) -> str:
    return (creds / "secrets" / f"{name}.pass").read_text()


@dataclass
class Peer:
    client: paho.Client
    connack: list[ReasonCode] = field(default_factory=list)
    got: list[paho.MQTTMessage] = field(default_factory=list)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    connected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        """QoS 1 publish; returns the PUBACK reason code (0x87 when the ACL denies it)."""
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, 5, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(broker: Broker, name: str | None, pw: str | None, *, subscribe: tuple[str, ...] = (),
            tls: bool = True, ca: Path | None = None, client_id: str | None = None,
            wait: bool = True) -> Peer:
    peer = Peer(make_client(client_id or name or "anon"))
    subscribed = threading.Event()

    def on_connect(c: paho.Client, u: object, f: object, rc: paho.ReasonCode,
                   p: object = None) -> None:
        peer.connack.append(rc)
        if not rc.is_failure:
            if subscribe:
                c.subscribe([(t, 1) for t in subscribe])
            else:
                subscribed.set()
            peer.connected.set()
        peer.answered.set()

    peer.client.on_connect = on_connect
    peer.client.on_subscribe = lambda *a: subscribed.set()
    peer.client.on_message = lambda c, u, m: peer.got.append(m)
    peer.client.on_publish = lambda c, u, mid, rc, p: peer.pubacks.__setitem__(mid, rc)
    address = broker.address if tls else broker.plain_address
    apply(peer.client, address, ClientSecurity(username=name, password=pw, tls=tls,
                                               ca_file=ca))
    peer.client.connect_async(address.host, address.port)
    peer.client.loop_start()
    if wait:
        assert peer.answered.wait(5), f"{name}: no CONNACK"
        if peer.connected.is_set():
            assert subscribed.wait(5), f"{name}: no SUBACK"
    return peer


Login = Callable[..., Peer]


@pytest.fixture
def login(sbroker: Broker, creds: Path) -> Iterator[Login]:
    peers: list[Peer] = []

    def make(name: str, *subscribe: str, tls: bool = True) -> Peer:
        peer = connect(sbroker, name, password(creds, name), subscribe=subscribe, tls=tls,
                       ca=creds / "ca.crt")
        assert peer.connected.is_set(), f"{name} refused: {peer.connack}"
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        p.close()


def settle(arrived: Callable[[], bool] = lambda: True) -> None:
    """What must arrive has arrived (however slow the machine), then a moment more for
    anything that must not: it would come in that moment, behind what did."""
    wait_until(arrived, 10, "the deliveries the test expects")
    time.sleep(0.3)


def topics_of(peer: Peer) -> list[str]:
    return [m.topic for m in peer.got]


# -- who may log in

def test_anonymous_and_wrong_passwords_are_refused(sbroker: Broker, creds: Path) -> None:
    ca = creds / "ca.crt"
    for name, pw, tls in [(None, None, True), (None, None, False),
                          ("st-a", "wrong", True), ("st-a", "wrong", False),
                          ("st-a", password(creds, "st-b"), True),
                          ("nobody", "x", True), ("st-a", None, True)]:
        peer = connect(sbroker, name, pw, tls=tls, ca=ca)
        try:
            assert not peer.connected.is_set()
            assert peer.connack and peer.connack[0].is_failure, (name, pw, peer.connack)
            assert str(peer.connack[0]) in ("Not authorized", "Bad user name or password")
        finally:
            peer.close()
    good = connect(sbroker, "st-a", password(creds, "st-a"), ca=ca)
    assert good.connected.is_set()  # the positive control: the right password works
    good.close()


def test_plaintext_to_the_tls_port_fails(sbroker: Broker, creds: Path) -> None:
    # An MQTT 3.1.1 CONNECT in clear: the TLS listener never answers it with a CONNACK (0x20).
    connect_packet = bytes([0x10, 14, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 2]) + b"xx"
    with socket.create_connection((sbroker.address.host, sbroker.address.port), 5) as s:
        s.sendall(connect_packet)
        s.settimeout(5)
        try:
            reply = s.recv(16)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"\x20")
    # paho without TLS, with the right password: no session either
    peer = connect(sbroker, "st-a", password(creds, "st-a"), tls=False, wait=False)
    peer.client.disconnect()
    peer.client.loop_stop()
    peer = Peer(make_client("st-a"))
    peer.client.on_connect = lambda *a: peer.connected.set()
    peer.client.username_pw_set("st-a", password(creds, "st-a"))
    peer.client.connect_async(sbroker.address.host, sbroker.address.port)
    peer.client.loop_start()
    assert not peer.connected.wait(3)
    peer.close()


def test_tls_checks_the_broker_certificate(sbroker: Broker, creds: Path) -> None:
    # Without our CA (system CAs only) the handshake fails: no man in the middle.
    client = make_client("st-a")
    apply(client, sbroker.address, ClientSecurity("st-a", password(creds, "st-a"), tls=True))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect(sbroker.address.host, sbroker.address.port)


# -- what a station may do

def test_station_cannot_publish_as_another_station(login: Login) -> None:
    bridge = login("central-bridge-1", "$share/bridge/lib/v1/+/+/tx/#",
                   "$share/bridge/lib/v1/+/+/req/#")
    fleet = login("central-fleet", "lib/v1/+/+/status", "lib/v1/+/+/evt/#",
                  "lib/v1/+/+/cmd/res/#")
    a = login("st-a")
    denied = [f"{B}/tx/loan", f"{C}/tx/loan", "lib/v1/site-2/st-a/tx/loan", f"{B}/status",
              f"{B}/evt/reader", f"{B}/req/patron", f"{B}/cmd/res/1", f"{B}/ack/tx",
              f"{A}/ack/tx", f"{A}/res/patron", "lib/v1/site-1/st-a", "other/topic"]
    for topic in denied:
        assert str(a.publish(topic)) == "Not authorized", topic
    for topic in (f"{A}/tx/loan", f"{A}/status", f"{A}/req/patron", f"{A}/cmd/res/1"):
        assert not a.publish(topic).is_failure, topic
    settle(lambda: len(bridge.got) >= 2 and len(fleet.got) >= 2)
    assert sorted(topics_of(bridge)) == [f"{A}/req/patron", f"{A}/tx/loan"]
    assert sorted(topics_of(fleet)) == [f"{A}/cmd/res/1", f"{A}/status"]


def test_station_cannot_take_over_another_stations_client_id(
        sbroker: Broker, creds: Path, login: Login) -> None:
    b = login("st-b")
    # st-a asks for client id st-b: the broker makes it st-a, so st-b stays connected
    a = connect(sbroker, "st-a", password(creds, "st-a"), ca=creds / "ca.crt",
                client_id="st-b")
    assert a.connected.is_set()
    # st-b still answered after the broker took st-a's CONNECT: not taken over
    assert not b.publish(f"{B}/status").is_failure
    assert b.client.is_connected()
    a.close()


def test_station_cannot_read_another_stations_acks_or_responses(
        login: Login) -> None:
    spy = login("st-a", f"{B}/ack/tx", f"{B}/res/#", f"{B}/cmd/req/#", "lib/v1/#", "#",
                "lib/v1/+/+/ack/tx", f"{A}/ack/tx")
    b = login("st-b", f"{B}/ack/tx", f"{B}/res/#")
    bridge = login("central-bridge-1")
    for topic in (f"{B}/ack/tx", f"{B}/res/patron", f"{A}/ack/tx"):
        assert not bridge.publish(topic, b"secret").is_failure
    settle(lambda: len(b.got) >= 2 and len(spy.got) >= 1)
    assert sorted(topics_of(b)) == [f"{B}/ack/tx", f"{B}/res/patron"]  # the control
    assert set(topics_of(spy)) == {f"{A}/ack/tx"}  # only its own (once per matching filter)
    # nor the other stations' transactions and requests
    b.publish(f"{B}/tx/loan")
    b.publish(f"{B}/req/patron")
    # Both were taken by the broker (acknowledged) before this one was sent: the spy's copy of
    # either would reach it before this one does.
    seen = len(spy.got)
    assert not bridge.publish(f"{A}/ack/tx", b"after").is_failure
    wait_until(lambda: len(spy.got) > seen and spy.got[-1].payload == b"after", 10,
               "the later message")
    assert set(topics_of(spy)) == {f"{A}/ack/tx"}


def test_station_cannot_send_commands(login: Login) -> None:
    b = login("st-b", f"{B}/cmd/req/#", f"{B}/config/desired")
    a = login("st-a", f"{A}/cmd/req/#")
    for topic in (f"{B}/cmd/req/out-of-service", f"{A}/cmd/req/out-of-service",
                  f"{B}/config/desired"):
        assert str(a.publish(topic)) == "Not authorized", topic
    op = login("op-all")
    fleet = login("central-fleet")
    assert not op.publish(f"{B}/cmd/req/out-of-service").is_failure
    assert not fleet.publish(f"{B}/config/desired").is_failure
    settle(lambda: len(b.got) >= 2)
    assert sorted(topics_of(b)) == [f"{B}/cmd/req/out-of-service", f"{B}/config/desired"]
    assert topics_of(a) == []


def test_operators_read_only_plus_commands(login: Login) -> None:
    # what they may watch, and (refused at SUBSCRIBE) what they may not
    watch = ("status", "evt/+", "cmd/req/+", "tx/#", "req/#", "res/#", "ack/tx")
    op = login("op-all", "lib/v1/#", *(f"lib/v1/+/+/{t}" for t in watch))
    op2 = login("op-site2", "lib/v1/#", "lib/v1/+/+/status",
                *(f"lib/v1/site-2/+/{t}" for t in watch))
    for topic in (f"{B}/tx/loan", f"{B}/ack/tx", f"{B}/status", f"{B}/config/desired",
                  f"{B}/res/patron"):
        assert str(op.publish(topic)) == "Not authorized", topic
    # an operator limited to site-2 cannot command site-1
    assert str(op2.publish(f"{B}/cmd/req/restart")) == "Not authorized"
    assert not op2.publish(f"{C}/cmd/req/restart").is_failure
    b = login("st-b")
    c = login("st-c")
    bridge = login("central-bridge-1")
    b.publish(f"{B}/status", b'{"online": true}')
    b.publish(f"{B}/tx/loan", b"patron-ref")
    b.publish(f"{B}/req/patron", b"card number")
    bridge.publish(f"{B}/res/patron", b"patron name")
    c.publish(f"{C}/evt/paper")
    settle(lambda: len(op.got) >= 3 and len(op2.got) >= 2)
    # operators see station state and events, never transactions or patron requests/answers
    assert sorted(topics_of(op)) == [f"{B}/status", f"{C}/cmd/req/restart", f"{C}/evt/paper"]
    assert sorted(topics_of(op2)) == sorted([f"{C}/cmd/req/restart", f"{C}/evt/paper"])


# -- persistence across a SIGKILL

@pytest.mark.slow
def test_retained_state_and_sessions_survive_a_broker_kill(
        creds: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", secure=creds).start()
    ca = creds / "ca.crt"
    try:
        # a persistent session for the bridge, then a retained status from a station
        bridge = Peer(make_client("central-bridge-1"))
        apply(bridge.client, broker.address,
              ClientSecurity("central-bridge-1", password(creds, "central-bridge-1"), tls=True,
                             ca_file=ca))
        from selfcheck.mqtt.connection import connect_properties
        bridge.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(
            "$share/bridge/lib/v1/+/+/tx/#", 1)
        subscribed = threading.Event()
        bridge.client.on_subscribe = lambda *a: subscribed.set()
        bridge.client.connect(broker.address.host, broker.address.port, clean_start=False,
                              properties=connect_properties())
        bridge.client.loop_start()
        assert subscribed.wait(5)
        bridge.client.disconnect()
        bridge.client.loop_stop()
        a = connect(broker, "st-a", password(creds, "st-a"), ca=ca)
        a.client.publish(f"{A}/status", b'{"online": true}', qos=1, retain=True).wait_for_publish(5)
        a.client.publish(f"{A}/tx/loan", b"queued", qos=1).wait_for_publish(5)
        a.close()
        # secure.conf saves every autosave_interval seconds; a SIGKILL keeps only what is saved
        saved = broker.datadir / "mosquitto.db"
        wait_until(lambda: saved.exists() and b"queued" in saved.read_bytes()
                   and f"{A}/status".encode() in saved.read_bytes(), 30,
                   "the broker's autosave")
        broker.kill()
        broker.start()
        fleet = connect(broker, "central-fleet", password(creds, "central-fleet"), ca=ca,
                        subscribe=("lib/v1/+/+/status",))
        wait_until(lambda: fleet.got, 5, "the retained status")
        assert fleet.got[0].payload == b'{"online": true}'
        fleet.close()
        # the bridge's session and its queued message came back too
        again = Peer(make_client("central-bridge-1"))
        again.client.on_message = lambda c, u, m: again.got.append(m)
        apply(again.client, broker.address,
              ClientSecurity("central-bridge-1", password(creds, "central-bridge-1"), tls=True,
                             ca_file=ca))
        again.client.connect(broker.address.host, broker.address.port, clean_start=False,
                             properties=connect_properties())
        again.client.loop_start()
        wait_until(lambda: again.got, 5, "the queued transaction")
        assert again.got[0].payload == b"queued"
        again.close()
    finally:
        broker.stop()


# -- clear text off this machine is refused unless the config says so

def test_station_config_refuses_clear_text_to_a_remote_broker(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        StationSettings(broker="10.1.2.3:1883", journal=tmp_path / "j.db")
    assert "broker: 10.1.2.3:1883 is not on this machine and TLS is off" in str(err.value)
    assert "allow_insecure" in str(err.value)
    StationSettings(broker="10.1.2.3:1883", allow_insecure=True)
    StationSettings(broker="broker.lib:8883", tls=True)
    StationSettings(broker="localhost:1883")
    StationSettings(broker="::1:1883")
    with pytest.raises(InsecureBroker):
        Bridge(None, BrokerAddress("broker.lib", 1883))  # type: ignore[arg-type]
    store = CirculationStore(f"sqlite:///{tmp_path / 'c.db'}")
    Bridge(store, BrokerAddress("broker.lib", 8883), security=ClientSecurity(tls=True))
    store.close()


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfcheck.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, env={**os.environ, **env})


def test_station_and_central_commands_refuse_to_start_insecure(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text('site = "site-1"\nstation = "st-a"\nbroker = "10.1.2.3:1883"\n')
    out = _run("station", "--config", str(cfg), "--offscreen")
    assert out.returncode == 2
    assert "broker: 10.1.2.3:1883 is not on this machine and TLS is off" in out.stderr
    out = _run("central", "--broker", "10.1.2.3:1883", "--db", f"sqlite:///{tmp_path}/c.db")
    assert out.returncode == 2
    assert "--broker: 10.1.2.3:1883 is not on this machine and TLS is off" in out.stderr
    assert not (tmp_path / "c.db").exists()  # refused before touching anything
    out = _run("central", "--broker", "10.1.2.3:8883", "--tls", "--ca-file",
               str(tmp_path / "missing.crt"))
    assert out.returncode == 2 and "--ca-file:" in out.stderr


# -- station and bridge work end to end through the secure broker

def test_station_and_bridge_over_tls_with_passwords(
        sbroker: Broker, creds: Path, tmp_path: Path) -> None:
    store = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    from selfcheck.central.sample import load_sample

    load_sample(store)
    # the bridge on the loopback listener (password, no TLS), as in the central unit
    bridge = Bridge(store, sbroker.plain_address, security=ClientSecurity(
        "central-bridge-1", password(creds, "central-bridge-1")))
    bridge.start()
    secret = tmp_path / "st-a.pass"
    secret.write_text(password(creds, "st-a") + "\n")
    secret.chmod(0o600)
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "site-1"\nstation = "st-a"\nbroker = "localhost:{sbroker.port}"\n'
                   f'journal = "{tmp_path / "st.db"}"\ntls = true\n'
                   f'ca_file = "{creds / "ca.crt"}"\npassword_file = "{secret}"\n')
    from selfcheck.kiosk.settings import load_settings

    settings = load_settings(cfg)
    pad, card = SimulatedPad(), SimulatedCardReader()

    async def scenario() -> None:
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        deadline = time.monotonic() + 15
        while not (rt.view().online and bridge.connected.is_set()):
            assert time.monotonic() < deadline, "station or bridge did not connect"
            await asyncio.sleep(0.05)
        card.present("DG0001")
        while rt.view().mode is not core.Mode.BORROW:
            assert time.monotonic() < deadline, "no patron answer"
            await asyncio.sleep(0.05)
        pad.place(bytes.fromhex("E004010000000001"), iso28560_3.encode("39000001"))
        while not any(ln.status is core.Status.DONE for ln in rt.view().lines):
            assert time.monotonic() < deadline, "no ack"
            await asyncio.sleep(0.05)
        rt.stop()
        await task

    try:
        asyncio.run(scenario())
        assert ("loan", "39000001") in [(r["kind"], r["item_id"]) for r in store.history()]
    finally:
        bridge.stop()
        store.close()

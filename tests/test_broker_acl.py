"""Broker access control of the production profile (secure.conf + make-credentials) against a
real Mosquitto: no station, operator or fleet login can join the bridges' shared group, read
another station's topics, or plant a will or retained message on them."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from selfcheck.lab.broker import Broker
from selfcheck.mqtt import topics
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.security import ClientSecurity, apply
from selfcheck.mqtt.telemetry import FLEET_SUBSCRIPTIONS
from tests.conftest import ROOT, wait_until
from tests.test_broker_security import Peer, connect, password

MAKE_CREDENTIALS = ROOT / "deploy" / "mosquitto" / "make-credentials"
ROLES = """\
station   st-a          site-1
station   st-b          site-1
station   st-c          site-2
bridge    central-bridge-1
bridge    central-bridge-2
fleet     central-fleet
operator  op-all
operator  op-site2      site-2
"""
A = "lib/v1/site-1/st-a"
B = "lib/v1/site-1/st-b"
C = "lib/v1/site-2/st-c"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("acl-creds")
    (base / "roles").write_text(ROLES)
    subprocess.run([str(MAKE_CREDENTIALS), str(base / "roles"), str(base / "out")], check=True,
                   capture_output=True)
    return base / "out"


@pytest.fixture(scope="module")
def sbroker(creds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("acl-broker"), secure=creds).start()
    yield b
    b.stop()


@pytest.fixture
def peers(sbroker: Broker, creds: Path) -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for p in made:
        p.close()


def login(sbroker: Broker, creds: Path, peers: list[Peer], name: str) -> Peer:
    peer = connect(sbroker, name, password(creds, name), ca=creds / "ca.crt")
    assert peer.connected.is_set(), f"{name} refused: {peer.connack}"
    peers.append(peer)
    return peer


def subscribe(peer: Peer, *filters: str) -> dict[str, ReasonCode]:
    """SUBSCRIBE and wait for the SUBACK: the broker's answer for each filter."""
    got: dict[int, list[ReasonCode]] = {}
    peer.client.on_subscribe = lambda c, u, mid, codes, p: got.__setitem__(mid, codes)
    _, mid = peer.client.subscribe([(f, 1) for f in filters])
    wait_until(lambda: mid in got, 5, f"SUBACK for {filters}")
    return dict(zip(filters, got[mid], strict=True))


def granted(answers: dict[str, ReasonCode]) -> list[str]:
    return [f for f, rc in answers.items() if not rc.is_failure]


def payloads(peer: Peer) -> list[bytes]:
    return [bytes(m.payload) for m in peer.got]


# -- the shared-group hijack

@pytest.mark.parametrize("hostile", ["st-c", "op-all", "central-fleet"])
def test_only_bridges_join_the_bridges_group(sbroker: Broker, creds: Path, peers: list[Peer],
                                             hostile: str) -> None:
    bridges = [login(sbroker, creds, peers, n) for n in ("central-bridge-1", "central-bridge-2")]
    for b in bridges:
        assert granted(subscribe(b, topics.BRIDGE_TX, topics.BRIDGE_REQ)) == [
            topics.BRIDGE_TX, topics.BRIDGE_REQ]
    thief = login(sbroker, creds, peers, hostile)
    answers = subscribe(thief, topics.BRIDGE_TX, topics.BRIDGE_REQ)
    a, b = login(sbroker, creds, peers, "st-a"), login(sbroker, creds, peers, "st-b")
    sent = set()
    for i in range(20):
        a.publish(f"{A}/tx/loan", f"tx-{i}".encode())
        b.publish(f"{B}/req/patron", f"req-{i}".encode())
        sent |= {f"tx-{i}".encode(), f"req-{i}".encode()}

    def delivered() -> list[bytes]:
        return payloads(bridges[0]) + payloads(bridges[1])

    try:
        wait_until(lambda: len(delivered()) >= 40, 10, "40 messages at the bridges")
    finally:
        print(f"bridges got {len(delivered())} of 40; {hostile} got {len(thief.got)}")
    assert sorted(delivered()) == sorted(sent)  # each once, none to the thief
    assert thief.got == []
    assert granted(answers) == [], f"{hostile} joined the bridges' group"


# -- no filter that reaches the bridges' group or another station

FORBIDDEN_EVERYWHERE = [
    topics.BRIDGE_TX, topics.BRIDGE_REQ,
    "$share/other/lib/v1/+/+/tx/#", "$share/x/lib/v1/+/+/req/#", "$share/bridge/#",
    "$share/bridge/lib/v1/site-1/st-b/tx/#", "$share/g/lib/v1/site-1/st-a/ack/tx",
    "#", "+/#", "+/+/#", "$SYS/#", "$SYS/broker/clients/connected", "$CONTROL/#",
    "$CONTROL/dynamic-security/v1", "lib/#", "lib/v1/#", "lib/+/#", "lib/v1/+/#",
    "lib/v1/+/+/tx/#", "lib/v1/+/+/req/#", "lib/v1/+/+/ack/tx", "lib/v1/+/+/res/#",
    f"{B}/ack/tx", f"{B}/res/+", f"{B}/tx/#", f"{C}/#", "lib/v1/site-1/+/ack/tx",
    "lib/v1/+/st-a/#", "lib/v1/site-1/#",
]


@pytest.mark.parametrize(("name", "allowed"), [
    ("st-a", [f"{A}/ack/tx", f"{A}/res/+", f"{A}/status", f"{A}/cmd/req/+",
              f"{A}/config/desired"]),
    ("central-fleet", FLEET_SUBSCRIPTIONS),
    ("op-all", [*FLEET_SUBSCRIPTIONS, f"{B}/cmd/res/123"]),
    ("op-site2", [f"{C}/status", "lib/v1/site-2/+/evt/+", f"{C}/cmd/res/9"]),
    ("central-bridge-1", [topics.BRIDGE_TX, topics.BRIDGE_REQ, "lib/v1/+/+/tx/#",
                          "lib/v1/+/+/req/#"]),
])
def test_subscribe_rules_per_role(sbroker: Broker, creds: Path, peers: list[Peer], name: str,
                                  allowed: list[str]) -> None:
    peer = login(sbroker, creds, peers, name)
    assert granted(subscribe(peer, *allowed)) == allowed  # the control: its own work goes on
    denied = [f for f in FORBIDDEN_EVERYWHERE if f not in allowed]
    if name != "op-all" and name != "central-fleet":
        denied += ["lib/v1/+/+/status", "lib/v1/+/+/evt/+"]
    if name == "op-site2":
        denied += [f"{B}/status", "lib/v1/site-1/+/evt/+"]
    if name == "central-bridge-1":  # its group spelt exactly (or the plain form)
        denied = [f for f in denied if not f.startswith("lib/v1/+/+/tx/")
                  and not f.startswith("lib/v1/+/+/req/")]
        denied += ["$share/bridge2/lib/v1/+/+/tx/#", "$share/bridge/lib/v1/+/+/tx/+",
                   f"{A}/ack/tx", f"{A}/tx/#"]
    assert granted(subscribe(peer, *denied)) == []


def test_denied_filters_deliver_nothing(sbroker: Broker, creds: Path, peers: list[Peer]) -> None:
    spy = login(sbroker, creds, peers, "st-a")
    subscribe(spy, *FORBIDDEN_EVERYWHERE)
    assert granted(subscribe(spy, f"{A}/ack/tx")) == [f"{A}/ack/tx"]
    b, c = login(sbroker, creds, peers, "st-b"), login(sbroker, creds, peers, "st-c")
    bridge = login(sbroker, creds, peers, "central-bridge-1")
    for peer, topic in ((b, f"{B}/tx/loan"), (b, f"{B}/req/patron"), (b, f"{B}/status"),
                        (c, f"{C}/evt/paper"), (bridge, f"{B}/ack/tx"),
                        (bridge, f"{C}/res/patron")):
        assert not peer.publish(topic, b"other").is_failure, topic
    bridge.publish(f"{A}/ack/tx", b"marker")  # routed after everything above
    wait_until(lambda: b"marker" in payloads(spy), 5, "the marker")
    assert payloads(spy) == [b"marker"]


# -- wills and retained messages aimed at another station

def _retained(sbroker: Broker, creds: Path, peers: list[Peer], topic: str) -> bytes:
    """The retained message a new subscriber of `topic` gets (fleet's view)."""
    watcher = login(sbroker, creds, peers, "central-fleet")
    watcher.got.clear()
    subscribe(watcher, topic)
    wait_until(lambda: watcher.got, 5, f"the retained message on {topic}")
    peers.remove(watcher)
    watcher.close()
    return bytes(watcher.got[0].payload)


def test_retained_message_on_another_station_is_refused(
        sbroker: Broker, creds: Path, peers: list[Peer]) -> None:
    b = login(sbroker, creds, peers, "st-b")
    fleet = login(sbroker, creds, peers, "central-fleet")
    b.client.publish(f"{B}/status", b"b-own", qos=1, retain=True).wait_for_publish(5)
    info = fleet.client.publish(f"{B}/config/desired", b"v1", qos=1, retain=True)
    info.wait_for_publish(5)
    a = login(sbroker, creds, peers, "st-a")
    for topic in (f"{B}/status", f"{B}/config/desired", f"{B}/state", f"{C}/status"):
        info = a.client.publish(topic, b"forged", qos=1, retain=True)
        wait_until(lambda mid=info.mid: mid in a.pubacks, 5, f"PUBACK for {topic}")
        assert str(a.pubacks[info.mid]) == "Not authorized", topic
    assert _retained(sbroker, creds, peers, f"{B}/status") == b"b-own"
    assert _retained(sbroker, creds, peers, f"{B}/config/desired") == b"v1"


def _with_will(sbroker: Broker, creds: Path, name: str, topic: str) -> paho.Client:
    client = make_client(name)
    client.reconnect_delay_set(60, 60)  # no reconnect (and take-back) within the test
    client.will_set(topic, b"forged-will", qos=1, retain=True)
    apply(client, sbroker.address, ClientSecurity(name, password(creds, name), tls=True,
                                                  ca_file=creds / "ca.crt"))
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p=None: connected.set()
    client.connect(sbroker.address.host, sbroker.address.port)
    client.loop_start()
    assert connected.wait(5)
    return client


@pytest.mark.parametrize("target", [f"{B}/status", f"{C}/status", f"{B}/tx/loan",
                                    f"{C}/config/reported"])
def test_will_aimed_at_another_station_is_never_published(
        sbroker: Broker, creds: Path, peers: list[Peer], target: str) -> None:
    b = login(sbroker, creds, peers, "st-b")
    b.client.publish(f"{B}/status", b"b-own", qos=1, retain=True).wait_for_publish(5)
    watch = login(sbroker, creds, peers, "central-bridge-1")
    subscribe(watch, topics.BRIDGE_TX)
    fleet = login(sbroker, creds, peers, "central-fleet")
    subscribe(fleet, "lib/v1/+/+/status", "lib/v1/+/+/config/reported")
    wait_until(lambda: b"b-own" in payloads(fleet), 5, "st-b's retained status")
    fleet.got.clear()
    # st-a connects with a will on someone else's topic, then loses its connection: a second
    # st-a login takes over the client id, and the broker sends the first one's will then.
    hostile = _with_will(sbroker, creds, "st-a", target)
    again = login(sbroker, creds, peers, "st-a")
    hostile.loop_stop()
    assert not again.publish(f"{A}/status", b"marker").is_failure
    wait_until(lambda: b"marker" in payloads(fleet), 5, "the marker")
    assert payloads(fleet) == [b"marker"]
    assert watch.got == []
    assert _retained(sbroker, creds, peers, f"{B}/status") == b"b-own"


def test_a_will_on_its_own_status_is_published(
        sbroker: Broker, creds: Path, peers: list[Peer]) -> None:
    # the control for the test above: the same steps deliver a will the rules allow
    fleet = login(sbroker, creds, peers, "central-fleet")
    subscribe(fleet, "lib/v1/+/+/status")
    first = _with_will(sbroker, creds, "st-a", f"{A}/status")
    login(sbroker, creds, peers, "st-a")
    first.loop_stop()
    wait_until(lambda: b"forged-will" in payloads(fleet), 5, "st-a's will")


# -- client ids

@pytest.mark.parametrize("tls", [True, False])
def test_station_cannot_take_over_the_bridges_client_id(
        sbroker: Broker, creds: Path, peers: list[Peer], tls: bool) -> None:
    bridge = login(sbroker, creds, peers, "central-bridge-1")
    dropped: list[object] = []
    bridge.client.on_disconnect = lambda *a: dropped.append(a)
    subscribe(bridge, topics.BRIDGE_TX)
    thief = connect(sbroker, "st-c", password(creds, "st-c"), ca=creds / "ca.crt",
                    client_id="central-bridge-1", tls=tls)
    peers.append(thief)
    assert thief.connected.is_set()  # connected, but as st-c
    thief_rc = subscribe(thief, topics.BRIDGE_TX)
    assert granted(thief_rc) == []  # and with st-c's rights
    a = login(sbroker, creds, peers, "st-a")
    a.publish(f"{A}/tx/loan", b"after")
    wait_until(lambda: b"after" in payloads(bridge), 5, "the transaction at the bridge")
    assert dropped == []  # the bridge kept its connection throughout


# -- names that would be wildcards or levels in the rules

@pytest.mark.parametrize("line", [
    "station st+a site-1", "station st-# site-1", "station a/b site-1", "station st-a site+",
    "station st-a site/x", "station st-a #", "bridge central+", "bridge cen/tral",
    "operator op# site-1", "operator op-1 site-1/+", "fleet $share", "station ST-A site-1",
    "station st-a", "bridge central-bridge-1 site-1",
])
def test_make_credentials_refuses_bad_names(tmp_path: Path, line: str) -> None:
    (tmp_path / "roles").write_text(f"station ok-1 site-1\n{line}\n")
    out = subprocess.run([str(MAKE_CREDENTIALS), str(tmp_path / "roles"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "line 2" in out.stderr
    assert not (tmp_path / "out" / "dynamic-security.json").exists()


def test_make_credentials_writes_the_one_rules_file(creds: Path) -> None:
    assert sorted(p.name for p in creds.iterdir() if p.is_file()) == [
        "ca.crt", "ca.key", "ca.srl", "dynamic-security.json", "server.crt", "server.key"]
    text = (creds / "dynamic-security.json").read_text()
    for name in ("st-a", "central-bridge-2", "op-site2"):
        assert password(creds, name) not in text  # hashes only
    assert (creds / "dynamic-security.json").stat().st_mode & 0o077 in (0, 0o040)


def test_a_removed_station_is_locked_out(tmp_path: Path) -> None:
    """What to do with a stolen station: take it out of the roles file, run make-credentials
    again, restart Mosquitto: its password no longer logs in, the others' still do."""
    roles = tmp_path / "roles"
    roles.write_text("station st-a site-1\nstation st-b site-1\n")
    out = tmp_path / "out"
    subprocess.run([str(MAKE_CREDENTIALS), str(roles), str(out)], check=True,
                   capture_output=True)
    stolen = password(out, "st-b")
    broker = Broker(tmp_path / "broker", secure=out).start()
    try:
        peer = connect(broker, "st-b", stolen, ca=out / "ca.crt")
        assert peer.connected.is_set()
        peer.close()
        roles.write_text("station st-a site-1\n")
        subprocess.run([str(MAKE_CREDENTIALS), str(roles), str(out)], check=True,
                       capture_output=True)
        broker.restart()
        peer = connect(broker, "st-b", stolen, ca=out / "ca.crt")
        assert not peer.connected.is_set()
        assert str(peer.connack[0]) in ("Not authorized", "Bad user name or password")
        peer.close()
        peer = connect(broker, "st-a", password(out, "st-a"), ca=out / "ca.crt")
        assert peer.connected.is_set()  # kept its password
        peer.close()
    finally:
        broker.stop()


# -- the bridges' verdict on the library system
def test_only_its_bridge_publishes_the_library_system_state(
        sbroker: Broker, creds: Path, peers: list[Peer]) -> None:
    own = topics.bridge_ils("central-bridge-1")
    bridge = login(sbroker, creds, peers, "central-bridge-1")
    bridge.client.publish(own, b"ils-ok", qos=1, retain=True).wait_for_publish(5)
    for name, topic in (("st-a", own), ("central-bridge-2", own),
                        ("op-all", own), ("central-fleet", own)):
        peer = login(sbroker, creds, peers, name)
        info = peer.client.publish(topic, b"forged", qos=1, retain=True)
        wait_until(lambda p=peer, mid=info.mid: mid in p.pubacks, 5, f"PUBACK for {name}")
        assert str(peer.pubacks[info.mid]) == "Not authorized", name
    # the fleet service and every operator, a site's operator too, see it (retained)
    assert _retained(sbroker, creds, peers, topics.FLEET_ILS) == b"ils-ok"
    for name in ("op-site2", "op-all"):
        op = login(sbroker, creds, peers, name)
        subscribe(op, topics.FLEET_ILS)
        wait_until(lambda o=op: b"ils-ok" in payloads(o), 5, f"the report at {name}")
    st = login(sbroker, creds, peers, "st-c")
    assert granted(subscribe(st, topics.FLEET_ILS)) == []  # not a station's business


def test_a_bridge_will_marks_its_report_gone(
        sbroker: Broker, creds: Path, peers: list[Peer]) -> None:
    fleet = login(sbroker, creds, peers, "central-fleet")
    subscribe(fleet, topics.FLEET_ILS)
    first = _with_will(sbroker, creds, "central-bridge-2", topics.bridge_ils("central-bridge-2"))
    login(sbroker, creds, peers, "central-bridge-2")
    first.loop_stop()
    wait_until(lambda: b"forged-will" in payloads(fleet), 5, "the bridge's will")

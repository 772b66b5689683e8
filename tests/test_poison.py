"""Poison messages through a real Mosquitto: one bad message never touches the others, is
acknowledged so it never comes back, is counted by reason, and never stops a service or a
station's thread."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from sqlalchemy.engine import Connection

from selfcheck.central.backend import Tx
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.fleet.service import FleetService
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk.runtime.watchdog import UiWatchdog
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.commands import req_topic
from selfcheck.mqtt.connection import make_client, publish_properties
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.telemetry import State
from tests.conftest import wait_until
from tests.test_fleet_integration import (
    SITE,
    Recorder,
    StationThread,
    command,
    row,
    settings,
)

NOW = dt.datetime.now(dt.UTC)
DEEP = b'{"schema": "evt/1", "detail": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def _tx(kind: str, station: str, item: str, seq: int = 1, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(schema=f"tx.{kind}/1", msg_id=uuid7(), seq=seq, site=SITE,
                                station=station, at=NOW.isoformat(), item_id=item)
    if kind in ("loan", "renew"):
        body["patron_ref"] = "p-unknown"
    if kind == "loan":
        body["deadline"] = (NOW + dt.timedelta(minutes=5)).isoformat()
    body.update(over)
    return body


class Client:
    """A plain MQTT client: publishes, and collects what arrives on its subscriptions."""

    def __init__(self, broker: Broker, *subscriptions: str) -> None:
        self.got: list[paho.MQTTMessage] = []
        self.client = make_client("poison-" + uuid7()[-8:])
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.got.append(m)
        self.client.connect(broker.address.host, broker.address.port)
        self.client.loop_start()
        if subscriptions:
            self.client.subscribe([(s, 1) for s in subscriptions])
            assert ready.wait(5)

    def send(self, topic: str, payload: bytes | dict[str, Any], **props: Any) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        properties = publish_properties(**props) if props else None
        self.client.publish(topic, data, qos=1, properties=properties).wait_for_publish(5)

    def acks(self) -> list[messages.AckTx]:
        out = []
        for m in self.got:
            if m.topic.endswith("/ack/tx"):
                ack = messages.decode(m.payload, messages.AckTx)
                assert isinstance(ack, messages.AckTx)
                out.append(ack)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def running_bridge(store: CirculationStore, broker: Broker, **options: Any) -> Iterator[Bridge]:
    b = Bridge(store, broker.address, **options)
    b.start()
    assert b.connected.wait(10)
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def small_bridge(store: CirculationStore, broker: Broker) -> Iterator[Bridge]:
    # A receive window of 4: a poison message left unacknowledged would soon close it.
    with running_bridge(store, broker, batch_max=2) as b:
        yield b


def test_poison_transactions_are_rejected_acknowledged_and_never_block_the_others(
        broker: Broker, small_bridge: Bridge, store: CirculationStore) -> None:
    bridge = small_bridge
    c = Client(broker, f"lib/v1/{SITE}/+/ack/tx")
    naive = NOW.replace(tzinfo=None).isoformat()
    poison: list[tuple[str, bytes | dict[str, Any]]] = [
        ("loan", _tx("loan", "st-bad", "39000001", deadline=naive)),
        ("return", _tx("return", "st-bad", "39000001", seq=2**70)),
        ("return", _tx("return", "st-bad", "39000001", seq=-(2**70))),
        ("return", _tx("return", "st-bad", "39000001", at=naive)),
        ("return", b"[" * 5000 + b"]" * 5000),
        ("return", b'{"schema": "tx.return/1", "x": ' + b'{"a":' * 3000 + b"1"
         + b"}" * 3001),
        ("return", b'{"schema": "tx.return/1", "seq": 1e999}'),
    ] * 3  # 21 of them: far more than the window of 4 the bridge allows in flight
    for kind, payload in poison:
        c.send(topics.tx(SITE, "st-bad", kind), payload)
    # A loan sent on tx/return: the topic's kind must match the message's.
    c.send(topics.tx(SITE, "st-bad", "return"), _tx("loan", "st-bad", "39000002"))
    good = _tx("return", "st-good", "39000003", seq=1)
    c.send(topics.tx(SITE, "st-good", "return"), good)
    wait_until(lambda: [a.msg_id for a in c.acks()] == [good["msg_id"]], 15,
               "the good station's ack, after 22 poison messages")
    wait_until(lambda: bridge.counters.rejected == 22, 10, "all counted")
    r = bridge.counters.rejections
    assert r["deadline"] == 3 and r["at"] == 3, r
    assert r["seq"] == 9, r  # 2**70, -2**70 and 1e999, three times
    assert r["payload"] == 6 and r["schema"] == 1, r  # too deep; the loan on tx/return
    assert store.history(["39000002"]) == []  # the loan on tx/return was not applied
    c.close()


def test_poison_requests_are_rejected_and_the_others_answered(
        broker: Broker, small_bridge: Bridge) -> None:
    bridge = small_bridge
    c = Client(broker, f"lib/v1/{SITE}/+/res/#")
    res = topics.res(SITE, "st-1", "offline-list")
    for page in (10**20, 2**62, 0, -1):
        c.send(topics.req(SITE, "st-1", "offline-list"),
               {"schema": "req.offline-list/1", "page": page},
               ResponseTopic=res, CorrelationData=b"bad")
    c.send(topics.req(SITE, "st-1", "patron"), b"{" * 6000, ResponseTopic=topics.res(
        SITE, "st-1", "patron"), CorrelationData=b"deep")
    c.send(topics.req(SITE, "st-1", "offline-list"), {"schema": "req.offline-list/1"},
           ResponseTopic=res, CorrelationData=b"good")
    def correlations() -> list[bytes]:
        return [getattr(m.properties, "CorrelationData", b"") for m in c.got]

    wait_until(lambda: b"good" in correlations(), 15, "the good request answered")
    assert correlations() == [b"good"]
    wait_until(lambda: bridge.counters.rejected == 5, 10, "counted")
    assert bridge.counters.rejections == {"page": 4, "payload": 1}
    c.close()


class FailsOn:
    """The real store, with a fault injected: any batch holding `item` raises. The first
    batch waits for `gate`, so that what is sent meanwhile makes one batch."""

    def __init__(self, store: CirculationStore, item: str) -> None:
        self.store, self.item = store, item
        self.entered, self.gate = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def apply_in(self, conn: Connection, txs: Sequence[Tx],
                 now: dt.datetime) -> list[messages.AckTx]:
        self.entered.set()
        assert self.gate.wait(10)
        self.sizes.append(len(txs))
        if any(tx.item_id == self.item for tx in txs):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return self.store.apply_in(conn, txs, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_batch_that_fails_is_applied_one_by_one(broker: Broker,
                                                  store: CirculationStore) -> None:
    backend = FailsOn(store, "39000004")
    bridge = Bridge(backend, broker.address, batch_max=50)  # type: ignore[arg-type]
    bridge.start()
    assert bridge.connected.wait(10)
    c = Client(broker, f"lib/v1/{SITE}/+/ack/tx")
    try:
        c.send(topics.tx(SITE, "st-0", "return"), _tx("return", "st-0", "39000010"))
        assert backend.entered.wait(10)
        txs = [_tx("return", f"st-{i}", f"3900000{i}") for i in range(1, 8)]
        for tx in txs:  # held up behind the first batch: they make the next one
            c.send(topics.tx(SITE, tx["station"], "return"), tx)
        wait_until(lambda: bridge._inbox.qsize() == 7, 10, "seven waiting")
        backend.gate.set()
        wait_until(lambda: len(c.acks()) == 7, 15, "seven acks")
        assert {a.item_id for a in c.acks()} == {t["item_id"] for t in txs} - {"39000004"} \
            | {"39000010"}
        assert backend.sizes == [1, 7, 1, 1, 1, 1, 1, 1, 1], backend.sizes
        assert bridge.counters.rejections == {"backend": 1}
    finally:
        bridge.stop()
        c.close()


def test_fleet_service_survives_a_deeply_nested_event(tmp_path: Path, broker: Broker) -> None:
    fleet = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.2)
    fleet.start()
    assert fleet.connected.wait(10)
    c = Client(broker)
    try:
        c.send(f"lib/v1/{SITE}/st-bad/evt/paper_low", DEEP)
        c.send(f"lib/v1/{SITE}/st-bad/tele/health", b'{"schema": "tele.health/1", "at": '
               b'"2026-01-01T00:00:00", "uptime_s": 1}')
        c.send(f"lib/v1/{SITE}/st-bad/state", b'{"schema": "state/1", "outbox_pending": '
               + str(2**64).encode() + b"}")
        state = State(at=NOW, version="t", pad_ok=True, outbox_pending=0,
                      offline_policy="returns", config_version=0)
        c.send(f"lib/v1/{SITE}/st-1/state", messages.encode(state))
        wait_until(lambda: row(fleet).get("pad_ok") is True, 10, "the good station seen")
        rejected = fleet.state.counters.rejected
        assert rejected["payload"] == 1 and rejected["at"] == 1, rejected
        assert rejected["outbox_pending"] == 1, rejected
        assert fleet._client._thread is not None and fleet._client._thread.is_alive()
    finally:
        c.close()
        fleet.stop()


def test_station_rejects_poison_commands_and_keeps_its_network_thread(
        tmp_path: Path, broker: Broker) -> None:
    rec = Recorder(broker)
    s = settings(tmp_path, broker, station="st-p")
    naive = json.loads(command("in_service", "cmd-naive"))
    naive["expires_at"] = "2099-01-01T00:00:00"
    deep = b'{"schema": "cmd.req/1", "cmd_id": "cmd-deep", "args": ' + b"[" * 5000 + \
        b"]" * 5000 + b"}"
    try:
        with StationThread(s) as st:
            rec.publish(req_topic(SITE, "st-p", "in_service"), json.dumps(naive).encode())
            rec.publish(req_topic(SITE, "st-p", "in_service"), deep)
            rec.publish(f"lib/v1/{SITE}/st-p/config/desired", b"{" * 9000)
            rec.publish(req_topic(SITE, "st-p", "in_service"), command("in_service", "cmd-ok"))
            wait_until(lambda: [r.state for r in rec.results("cmd-ok")][-1:] == ["succeeded"],
                       10, "the good command after the poison")
            (res,) = rec.results("cmd-naive")
            assert res.state == "rejected" and "expires_at" in (res.reason or ""), res
            assert "time zone" in (res.reason or "")
            assert rec.results("cmd-deep") == []  # too deep to read its id: counted only
            wait_until(lambda: st.rt.agent.config.rejected == 1, 10, "config counted")
            assert st.rt.agent.commands.rejected == 2
            assert st.rt.link.loop_alive() and st.rt.stopped_threads() == []
        # The persistent session does not bring the poison back at the next start.
        with StationThread(s) as st:
            rec.publish(req_topic(SITE, "st-p", "in_service"), command("in_service", "cmd-2"))
            wait_until(lambda: [r.state for r in rec.results("cmd-2")][-1:] == ["succeeded"],
                       10, "a command after the restart")
            assert st.rt.agent.commands.rejected == 0
            assert len(rec.results("cmd-naive")) == 1
    finally:
        rec.close()


class DyingPad(SimulatedPad):
    dead = False

    def inventory(self) -> list[bytes]:
        if self.dead:
            raise SystemExit  # ends a thread without a word: what the watchdog must catch
        return super().inventory()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return out


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("which", ["pad", "mqtt"])
def test_a_dead_thread_stops_the_watchdog_and_is_reported(
        tmp_path: Path, broker: Broker, notify_socket: socket.socket, which: str) -> None:
    pad = DyingPad()
    rec = Recorder(broker)
    try:
        with StationThread(settings(tmp_path, broker, station="st-w"), pad) as st:
            rt = st.rt
            dog = UiWatchdog(rt.threads_ok)
            dog._ping(0)
            assert dog.pings == 1 and _received(notify_socket) == ["WATCHDOG=1"]
            if which == "pad":
                pad.dead = True
            else:  # an exception paho does not catch: its network thread ends
                def die(channel: str, payload: bytes) -> None:
                    raise SystemExit

                rt.link._on_channel = die
                rec.publish(req_topic(SITE, "st-w", "in_service"), command("in_service", "c"))
            wait_until(lambda: rt.stopped_threads() == [which], 10, f"{which} thread ended")
            dog._ping(0)
            dog._ping(0)
            assert dog.pings == 1  # no more WATCHDOG=1: systemd restarts the station
            sent = _received(notify_socket)
            assert len(sent) == 1 and sent[0].startswith(f"STATUS=thread stopped: {which}")
            if which == "pad":  # the MQTT loop still runs: operators hear of it too
                wait_until(lambda: any(b"station thread stopped: pad" in p
                                       for p in rec.on("/st-w/evt/staff_needed")), 10, "event")
    finally:
        rec.close()


def test_fleet_sees_the_good_station_after_poison(tmp_path: Path, broker: Broker) -> None:
    """The whole chain with the bridge too: a hostile station's poison on every channel,
    and the fleet and the bridge still serve a good station."""
    fleet = FleetService(broker.address, f"sqlite:///{tmp_path / 'c.db'}", flush_s=0.2)
    fleet.start()
    assert fleet.connected.wait(10)
    c = Client(broker)
    try:
        for channel in ("status", "state", "tele/health", "evt/x", "cmd/res/x",
                        "config/reported"):
            c.send(f"lib/v1/{SITE}/st-bad/{channel}", DEEP)
        state = State(at=NOW, version="t", pad_ok=False, outbox_pending=0,
                      offline_policy="none", config_version=0)
        c.send(f"lib/v1/{SITE}/st-1/state", messages.encode(state))
        wait_until(lambda: row(fleet).get("pad_ok") is False, 10, "good station")
        assert fleet.state.counters.rejected["payload"] == 6
    finally:
        c.close()
        fleet.stop()


def _sqlite_error(sql: str, *setup: str) -> Exception:
    """A real SQLite error, as SQLAlchemy raises it."""
    from sqlalchemy import create_engine, text

    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            for step in setup:
                conn.execute(text(step))
            conn.execute(text(sql))
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} did not fail")


def _pg_error(sqlstate: str | None, text: str) -> Exception:
    """A psycopg error of that SQLSTATE (None: the client's own, no connection), as
    SQLAlchemy raises it."""
    import psycopg
    from sqlalchemy import exc as sa

    orig = psycopg.OperationalError(text) if sqlstate is None \
        else psycopg.errors.lookup(sqlstate)(text)
    return sa.OperationalError("INSERT INTO ledger ...", {}, orig)


def test_only_an_unusable_database_is_a_store_fault(tmp_path: Path) -> None:
    import sqlite3

    import psycopg
    from sqlalchemy import create_engine, text
    from sqlalchemy import exc as sa

    from selfcheck.central.bridge import store_fault

    # A statement's or a transaction's own trouble: split and rejected, not "store down".
    assert store_fault(_sqlite_error("SELECT * FROM nowhere")) is None  # no such table
    assert store_fault(_sqlite_error("INSERT INTO t VALUES (1)", "CREATE TABLE t (a INTEGER "
                                     "PRIMARY KEY)", "INSERT INTO t VALUES (1)")) is None
    for state in ("40P01", "40001", "55P03", "42P01", "23505", "57014"):
        assert store_fault(_pg_error(state, "deadlock detected")) is None, state
    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0})
    with pytest.raises(sa.OperationalError) as locked:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    assert "locked" in str(locked.value) and store_fault(locked.value) is None
    holder.close()
    engine.dispose()

    # The database itself: gone, full, not writable.
    for state in ("08006", "08001", "57P01", "57P03", "53300"):
        assert store_fault(_pg_error(state, "terminating connection")) == "store.down", state
    assert store_fault(_pg_error(None, "the connection is closed")) == "store.down"
    assert store_fault(_pg_error("53100", "could not extend file")) == "store.full"
    assert store_fault(_pg_error("25006", "cannot execute INSERT in a read-only "
                                          "transaction")) == "store.readonly"
    try:
        psycopg.connect("host=127.0.0.1 port=1 connect_timeout=2")
    except psycopg.OperationalError as refused:
        assert store_fault(sa.OperationalError("connect", {}, refused)) == "store.down"
    gone = sa.OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                               connection_invalidated=True)
    assert store_fault(gone) == "store.down"
    assert store_fault(_sqlite_error(
        "INSERT INTO t SELECT randomblob(100000) FROM (SELECT 1 UNION SELECT 2)",
        "PRAGMA max_page_count = 8", "CREATE TABLE t (b)")) == "store.full"
    ro = tmp_path / "ro.db"
    sqlite3.connect(ro).execute("CREATE TABLE t (a)").connection.close()
    engine = create_engine(f"sqlite:///file:{ro}?mode=ro&uri=true")
    with pytest.raises(sa.OperationalError) as readonly:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    assert "readonly" in str(readonly.value) and store_fault(readonly.value) == "store.readonly"
    engine.dispose()
    engine = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}")
    with pytest.raises(sa.OperationalError) as cannot:
        engine.connect()
    assert store_fault(cannot.value) == "store.readonly"  # says: give write access
    engine.dispose()


class RaisesOn(FailsOn):
    """Like FailsOn, with a database error of the statement's own (not the database's)."""

    error: Exception

    def apply_in(self, conn: Connection, txs: Sequence[Tx],
                 now: dt.datetime) -> list[messages.AckTx]:
        self.entered.set()
        assert self.gate.wait(10)
        self.sizes.append(len(txs))
        if any(tx.item_id == self.item for tx in txs):
            raise self.error
        return self.store.apply_in(conn, txs, now)


@pytest.mark.parametrize("error", [
    pytest.param(lambda: _sqlite_error("SELECT * FROM nowhere"), id="no-such-table"),
    pytest.param(lambda: _pg_error("40P01", "deadlock detected"), id="deadlock"),
    pytest.param(lambda: _pg_error("40001", "could not serialize access"), id="serialization"),
])
def test_a_transaction_failing_with_a_database_error_of_its_own_is_rejected_not_store_down(
        broker: Broker, store: CirculationStore, caplog: pytest.LogCaptureFixture,
        error: Any) -> None:
    import logging

    backend = RaisesOn(store, "39000004")
    backend.error = error()
    bridge = Bridge(backend, broker.address, batch_max=50)  # type: ignore[arg-type]
    bridge.start()
    assert bridge.connected.wait(10)
    c = Client(broker, f"lib/v1/{SITE}/+/ack/tx")
    try:
        with caplog.at_level(logging.INFO, logger="selfcheck.central"):
            c.send(topics.tx(SITE, "st-0", "return"), _tx("return", "st-0", "39000010"))
            assert backend.entered.wait(10)
            txs = [_tx("return", f"st-{i}", f"3900000{i}") for i in range(1, 8)]
            for tx in txs:
                c.send(topics.tx(SITE, tx["station"], "return"), tx)
            wait_until(lambda: bridge._inbox.qsize() == 7, 10, "seven waiting")
            backend.gate.set()
            wait_until(lambda: len(c.acks()) == 7, 15, "the six others and the first answered")
            wait_until(lambda: bridge.counters.rejections == {"backend": 1}, 10, "rejected")
        assert {a.item_id for a in c.acks()} == {t["item_id"] for t in txs} - {"39000004"} \
            | {"39000010"}
        assert bridge.counters.unanswered == 0  # not left for the station to send for ever
        assert bridge.store.is_up is not False and bridge.store.changes == 0
        said = " ".join(r.getMessage() for r in caplog.records)
        assert "cannot be used" not in said and "works again" not in said
    finally:
        bridge.stop()
        c.close()

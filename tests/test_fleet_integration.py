"""Telemetry, commands and the fleet-state service through a real Mosquitto."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.commands import CommandReq, CommandRes, req_topic
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.station_link import StationLink
from selfcheck.mqtt.telemetry import ConfigDesired, ConfigSettings
from tests.conftest import ROOT, wait_until

SITE = "tv-fleet"


class FlakyPad(SimulatedPad):
    broken = False

    def inventory(self) -> list[bytes]:
        if self.broken:
            raise OSError("no answer from the pad")
        return super().inventory()


class StationThread:
    """A StationRuntime on its own asyncio loop in a thread, so tests stay synchronous."""

    def __init__(self, settings: StationSettings, pad: SimulatedPad | None = None) -> None:
        self.pad = pad or FlakyPad()
        self.card = SimulatedCardReader()
        self.rt = StationRuntime(settings, self.pad, self.card)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.rt.run()), daemon=True)

    def __enter__(self) -> StationThread:
        self._thread.start()
        wait_until(lambda: self.rt.view().online, 15, "station online")
        return self

    def __exit__(self, *exc: object) -> None:
        self.rt.stop()
        self._thread.join(15)


class Recorder:
    """Every message under lib/v1/# (what an eavesdropper on the broker would see)."""

    def __init__(self, broker: Broker, pattern: str = "lib/v1/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = make_client(f"recorder-{time.monotonic_ns()}")
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(pattern, qos=1)
        self.client.connect(broker.address.host, broker.address.port)
        self.client.loop_start()
        assert ready.wait(10)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def on(self, suffix: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def results(self, cmd_id: str) -> list[CommandRes]:
        out = []
        for payload in self.on(f"/cmd/res/{cmd_id}"):
            res = messages.decode(payload, CommandRes)
            assert isinstance(res, CommandRes)
            out.append(res)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.2)
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Recorder]:
    r = Recorder(broker)
    yield r
    r.close()


def settings(tmp_path: Path, broker: Broker, station: str = "st-1", **kw: Any) -> StationSettings:
    return StationSettings(site=SITE, station=station, broker=str(broker.address),
                           journal=tmp_path / f"{station}.db", telemetry_s=1, **kw)


def command(name: str, cmd_id: str, *, expires_in: float = 60, **args: Any) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return messages.encode(CommandReq(cmd_id=cmd_id, issued_at=now,
                                      expires_at=now + dt.timedelta(seconds=expires_in),
                                      args=args))


def row(fleet: FleetService, station: str = "st-1") -> dict[str, Any]:
    return next((r for r in fleet.state.rows(SITE) if r["station"] == station), {})


# -- proof 1: a killed station shows offline within the keep-alive
STATION_SCRIPT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
s = StationSettings(site={site!r}, station="st-k", broker={broker!r}, journal={journal!r})
asyncio.run(StationRuntime(s, SimulatedPad(), SimulatedCardReader()).run())
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "hang"])
def test_killed_station_shows_offline_within_keepalive(tmp_path: Path, broker: Broker,
                                                       fleet: FleetService, how: str) -> None:
    script = STATION_SCRIPT.format(root=str(ROOT), site=SITE, broker=str(broker.address),
                                   journal=str(tmp_path / "st-k.db"))
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    try:
        wait_until(lambda: row(fleet, "st-k").get("online") is True, 30, "station online")
        wait_until(lambda: row(fleet, "st-k").get("service") == "in_service", 10, "state")
        start = time.monotonic()
        # kill: the socket closes at once; hang (SIGSTOP): the broker notices only when the
        # keep-alive (15 s, x1.5 by the spec) runs out.
        os.kill(proc.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        wait_until(lambda: row(fleet, "st-k").get("online") is False, 45, "station offline")
        took = time.monotonic() - start
        # hang: MQTT allows the broker 1.5 x keep-alive from the last packet; Mosquitto checks
        # that on its own timer, and a loaded 2-core machine adds seconds more (seen: 27.9 s).
        assert took < (15 if how == "kill" else 1.5 * 15 + 10), took
        assert "offline" in row(fleet, "st-k")["alerts"]
        print(f"offline after {took:.2f} s ({how})")
    finally:
        proc.kill()
        proc.wait()


# -- proof 2: a reconnect with a newer session is not overwritten by the old will
def test_newer_session_is_not_overwritten_by_old_will(tmp_path: Path, broker: Broker,
                                                      fleet: FleetService,
                                                      recorder: Recorder) -> None:
    journal = Journal(tmp_path / "st-w.db")
    old = StationLink(SITE, "st-w", broker.address, version="t", next_session=journal.next_session,
                      on_ack=lambda a: None)
    old.start()
    assert old.connected.wait(10)
    wait_until(lambda: row(fleet, "st-w").get("online") is True, 10, "first birth")
    first = old.session
    # The old process hangs: its socket stays open, nothing more from it.
    old._client.loop_stop()
    new = StationLink(SITE, "st-w", broker.address, version="t",
                      next_session=journal.next_session, on_ack=lambda a: None)
    new.start()  # takes the session over; the broker sends the old connection's will
    try:
        assert new.connected.wait(10)
        assert new.session > first
        wait_until(lambda: row(fleet, "st-w").get("session") == new.session, 10, "new birth")
        # The old will, delivered late (as it can be after a takeover), and retained:
        stale = messages.Status(online=False, session=first, version="t", mode="selfcheck")
        recorder.publish(f"lib/v1/{SITE}/st-w/status", messages.encode(stale), retain=True)
        wait_until(lambda: fleet.state.counters.stale_wills >= 1, 10, "stale will counted")
        time.sleep(0.3)
        r = row(fleet, "st-w")
        assert (r["online"], r["session"]) == (True, new.session)
        # The station saw its own old will retained and said "online" again, so a fleet
        # service started later reads the truth from the broker too.
        wait_until(lambda: any(
            json.loads(p)["online"] and json.loads(p)["session"] == new.session
            for p in recorder.on("/st-w/status")[-1:]), 10, "birth re-published")
        fleet.store.flush()
        again = FleetService(broker.address, fleet.store.engine.url.render_as_string(False),
                             http=None, client_id="central-fleet-2")
        assert again.state.stations[(SITE, "st-w")].session == new.session  # from the store
        again.start()
        try:
            assert again.connected.wait(10)
            # the broker's retained status of st-w, replayed to the new subscriber
            wait_until(lambda: again.state.counters.messages["status"] >= 1, 10, "replay")
            rec = again.state.stations[(SITE, "st-w")]
            assert (rec.online, rec.session) == (True, new.session)
        finally:
            again.stop()
    finally:
        new.stop()
        old._client.disconnect()
        journal.close()


# -- proof 3: a command sent twice runs once (also across a restart of the app)
def test_command_sent_twice_runs_once(tmp_path: Path, broker: Broker, fleet: FleetService,
                                      recorder: Recorder) -> None:
    s = settings(tmp_path, broker)
    topic = req_topic(SITE, "st-1", "out_of_service")
    payload = command("out_of_service", "cmd-oos-1", message_vi="Bảo trì máy",
                      message_en="Maintenance")
    with StationThread(s) as st:
        recorder.publish(topic, payload)
        recorder.publish(topic, payload)  # at once: answered with the state it has then
        wait_until(lambda: "succeeded" in [r.state for r in recorder.results("cmd-oos-1")],
                   10, "succeeded")
        recorder.publish(topic, payload)  # after it finished: answered with the final state
        wait_until(lambda: len(recorder.results("cmd-oos-1")) >= 5, 10, "five answers")
        states = [r.state for r in recorder.results("cmd-oos-1")]
        # queued, in_progress, succeeded from the run; the repeat sent at once is answered
        # with whatever state the job had when it arrived (queued, in_progress or already
        # succeeded: timing, not behaviour); the late one with succeeded. What matters: one
        # answer per repeat, the run's states in order, and it ran once.
        assert len(states) == 5 and states[-1] == "succeeded", states
        run = states[:4]
        assert any(run[:i] + run[i + 1:] == ["queued", "in_progress", "succeeded"]
                   for i in range(4)), states
        assert st.rt.agent.commands.ran == 1
        view = st.rt.view()
        assert view.mode is core.Mode.OUT_OF_SERVICE
        assert view.service_message == "Bảo trì máy"  # the station's language is vi
        wait_until(lambda: row(fleet).get("service") == "out_of_service", 10, "fleet sees it")
        assert "out_of_service" in row(fleet)["alerts"]
        # sent by this test, not by the service: its results are not operators' history
        assert "cmd-oos-1" not in fleet.state.commands
        assert fleet.state.counters.unknown_results >= 1
    with StationThread(s) as st:  # the app restarted: the id is remembered in the journal
        assert st.rt.view().mode is core.Mode.IDLE
        recorder.publish(topic, payload)
        wait_until(lambda: len(recorder.results("cmd-oos-1")) >= 6, 10, "answer after restart")
        assert recorder.results("cmd-oos-1")[-1].state == "succeeded"
        assert st.rt.agent.commands.ran == 0
        assert st.rt.view().mode is core.Mode.IDLE


# -- proof 4: an expired command does not run
def test_expired_command_does_not_run(tmp_path: Path, broker: Broker, fleet: FleetService,
                                      recorder: Recorder) -> None:
    s = settings(tmp_path, broker)
    with StationThread(s) as st:
        recorder.publish(req_topic(SITE, "st-1", "out_of_service"),
                         command("out_of_service", "cmd-late-1", expires_in=-1))
        wait_until(lambda: recorder.results("cmd-late-1"), 10, "answer")
        (res,) = recorder.results("cmd-late-1")
        assert res.state == "rejected" and res.reason and res.reason.startswith("expired")
        assert st.rt.view().mode is core.Mode.IDLE and st.rt.agent.commands.ran == 0
    # Sent while the station was away (kept by the broker in its persistent session) and
    # expired by the time it came back: refused, not run.
    recorder.publish(req_topic(SITE, "st-1", "out_of_service"),
                     command("out_of_service", "cmd-late-2", expires_in=1))
    time.sleep(1.5)
    with StationThread(s) as st:
        wait_until(lambda: recorder.results("cmd-late-2"), 10, "answer after reconnect")
        (res,) = recorder.results("cmd-late-2")
        assert res.state == "rejected" and "expired" in (res.reason or "")
        assert st.rt.view().mode is core.Mode.IDLE and st.rt.agent.commands.ran == 0


# -- the rest of the contract
def test_commands_refusals_and_results(tmp_path: Path, broker: Broker, fleet: FleetService,
                                       recorder: Recorder) -> None:
    with StationThread(settings(tmp_path, broker)) as st:
        rt = st.rt

        def send(name: str, cmd_id: str, **args: Any) -> CommandRes:
            recorder.publish(req_topic(SITE, "st-1", name), command(name, cmd_id, **args))
            wait_until(lambda: any(r.state in ("succeeded", "failed", "rejected")
                                   for r in recorder.results(cmd_id)), 10, cmd_id)
            return recorder.results(cmd_id)[-1]

        res = send("set_offline_policy", "c1", policy="none")
        assert res.state == "succeeded" and rt.core.config.offline_returns is False
        wait_until(lambda: row(fleet).get("policy") == "none", 10, "state republished")
        res = send("set_offline_policy", "c2", policy="sometimes")
        assert res.state == "rejected" and res.reason and res.reason.startswith("args.policy")
        res = send("reload_config", "c3")
        assert res.state == "rejected" and "config file" in (res.reason or "")
        res = send("send_diagnostics", "c4")
        assert res.state == "succeeded" and res.result is not None
        assert res.result["health"]["schema"] == "tele.health/1"
        # restart is refused while a reader is in a session, unless forced
        rt.feed_threadsafe(core.Touch("return"))
        wait_until(lambda: rt.core.busy, 5, "session")
        res = send("restart", "c5")
        assert res.state == "rejected" and "reader" in (res.reason or "")
        # out of service during a session waits for it to end
        recorder.publish(req_topic(SITE, "st-1", "out_of_service"),
                         command("out_of_service", "c6", message_en="Closed at noon"))
        wait_until(lambda: [r.reason for r in recorder.results("c6")][-1:] ==
                   ["waiting for the reader's session to end"], 10, "waiting")
        assert rt.view().mode is core.Mode.RETURN
        rt.feed_threadsafe(core.Touch("cancel"))
        wait_until(lambda: recorder.results("c6")[-1].state == "succeeded", 10, "closed")
        assert rt.view().mode is core.Mode.OUT_OF_SERVICE
        st.card.present("DG0001")  # ignored while out of service
        time.sleep(0.3)
        assert rt.view().mode is core.Mode.OUT_OF_SERVICE
        assert send("in_service", "c7").state == "succeeded"
        assert rt.view().mode is core.Mode.IDLE
        # malformed: counted, answered when it has an id, never a crash
        recorder.publish(req_topic(SITE, "st-1", "in_service"), b'{"schema": "cmd.req/1", '
                         b'"cmd_id": "c8", "issued_at": "yesterday"}')
        wait_until(lambda: recorder.results("c8"), 10, "malformed answer")
        assert recorder.results("c8")[0].state == "rejected"
        assert "issued_at" in (recorder.results("c8")[0].reason or "")
        recorder.publish(req_topic(SITE, "st-1", "in_service"), b"\xff not json")
        wait_until(lambda: rt.agent.commands.rejected == 2, 10, "counted")
        res = send("restart", "c9", force=True)
        assert res.state == "succeeded"
        wait_until(lambda: rt.exit_code == 75, 10, "restart exit code")


def test_telemetry_state_health_events_and_privacy(tmp_path: Path, broker: Broker,
                                                   fleet: FleetService, recorder: Recorder,
                                                   store: Any, bridge: Any) -> None:
    from selfcheck.drivers.tags import iso28560_3

    with StationThread(settings(tmp_path, broker)) as st:
        rt = st.rt
        wait_until(lambda: recorder.on("/st-1/tele/health"), 10, "health")
        wait_until(lambda: row(fleet).get("pad_ok") is True, 10, "state")
        # a borrowing session: the card number and the name must never show in telemetry
        st.card.present("DG0001")
        wait_until(lambda: rt.view().mode is core.Mode.BORROW, 10, "borrow")
        st.pad.place(bytes.fromhex("E004010000000001"), iso28560_3.encode("39000001"))
        wait_until(lambda: any(ln.status is core.Status.DONE for ln in rt.view().lines), 10)
        rt.feed_threadsafe(core.Touch("cancel"))
        # the reader drops out and comes back
        assert isinstance(st.pad, FlakyPad)
        st.pad.broken = True
        wait_until(lambda: "reader_fault" in row(fleet).get("alerts", []), 10, "reader fault")
        st.pad.broken = False
        wait_until(lambda: row(fleet).get("pad_ok") is True, 10, "reader back")
        rt.agent.set_printer("ok", "out")
        wait_until(lambda: "paper_out" in row(fleet).get("alerts", []), 10, "paper out")
        wait_until(lambda: any(json.loads(p)["tx"].get("loan.ok") == 1
                               for p in recorder.on("/st-1/tele/health")), 10, "tx counted")
    kinds = [json.loads(p)["kind"] for t, p, _ in recorder.messages if "/evt/" in t]
    assert kinds[:3] == ["reader_lost", "reader_back", "paper_out"], kinds
    health = json.loads(recorder.on("/st-1/tele/health")[-1])
    assert health["reader"]["inventories"] > 0 and health["uptime_s"] > 0
    assert health["disk_free_pct"] is not None and health["mem_available_pct"] is not None
    telemetry = [p for t, p, _ in recorder.messages
                 if any(f"/{c}" in t for c in ("state", "tele/", "evt/", "status", "cmd/res",
                                               "config/"))]
    assert telemetry
    for payload in telemetry:
        text = payload.decode()
        assert "DG0001" not in text and "Nguyễn" not in text and "Nguy\\u" not in text
    states = recorder.on("/st-1/state")
    late = Recorder(broker, f"lib/v1/{SITE}/st-1/state")  # a late subscriber gets it too
    try:
        wait_until(lambda: late.messages, 5, "retained state")
        assert late.messages[0][2] is True
    finally:
        late.close()
    assert len(states) < 20  # published on change, not on every tick
    from prometheus_client import generate_latest

    text = generate_latest(fleet.registry).decode()
    key = f'site="{SITE}",station="st-1"'
    assert f"selfcheck_station_up{{{key}}} 0.0" in text  # stopped: its last status said so
    # the exposition sorts labels by name
    assert ('selfcheck_station_transactions_total{kind="loan",outcome="ok",site="tv-fleet",'
            'station="st-1"} 1.0') in text
    assert f'selfcheck_station_paper{{{key},state="out"}} 1.0'.replace(
        f'{key},state="out"', f'site="{SITE}",state="out",station="st-1"') in text
    assert f"selfcheck_station_reader_ok{{{key}}} 1.0" in text
    assert f'selfcheck_station_info{{{key},version="0.1.0"}} 1.0' in text


def test_a_failed_security_write_reaches_staff_and_the_fleet_with_its_title(
        tmp_path: Path, broker: Broker, fleet: FleetService, store: Any, bridge: Any) -> None:
    from selfcheck.drivers.tags import iso28560_3

    uid = bytes.fromhex("E004010000000001")
    with StationThread(settings(tmp_path, broker)) as st:
        rt = st.rt
        st.pad.failing_writes.add(uid)
        st.card.present("DG0001")
        wait_until(lambda: rt.view().mode is core.Mode.BORROW, 10, "borrow")
        st.pad.place(uid, iso28560_3.encode("39000001"))
        wait_until(lambda: rt.view().pending, 15, "the pending write")
        (pending,) = rt.view().pending
        assert (pending.item_id, pending.title) == ("39000001", "Truyện Kiều")
        wait_until(lambda: "security_write_failed" in row(fleet).get("alerts", []), 10,
                   "the alert")
        # The reader leaves; the book comes back on the pad and the retried write fails
        # again: the event still names the book, now from the pending write.
        rt.feed_threadsafe(core.Touch("cancel"))
        wait_until(lambda: rt.view().mode is core.Mode.IDLE, 10, "idle")
        st.pad.lift(uid)
        seen = rt.reader_counters()["inventories"]
        wait_until(lambda: rt.reader_counters()["inventories"] >= seen + 2, 10,
                   "the watcher to see the pad empty")
        st.pad.place(uid, iso28560_3.encode("39000001"))

        def failed() -> list[dict[str, Any]]:
            return [e for e in fleet.store.details(SITE, "st-1")["events"]
                    if e["kind"] == "security_write_failed"]

        wait_until(lambda: len(failed()) == 2, 15, "both events stored")
    for event in failed():
        assert event["body"]["item_id"] == "39000001"
        assert event["body"]["title"] == "Truyện Kiều"
        assert "DG0001" not in json.dumps(event)


def test_config_desired_reconciled_on_connect(tmp_path: Path, broker: Broker,
                                              fleet: FleetService, recorder: Recorder) -> None:
    s = settings(tmp_path, broker)
    desired = f"lib/v1/{SITE}/st-1/config/desired"
    doc = ConfigDesired(version=3, settings=ConfigSettings(offline_returns=False, lang="en",
                                                           telemetry_s=5))
    recorder.publish(desired, messages.encode(doc), retain=True)  # while the station is away
    with StationThread(s) as st:
        wait_until(lambda: row(fleet).get("config_version") == 3, 10, "applied on connect")
        assert st.rt.core.config.offline_returns is False and st.rt.core.lang == "en"
        assert st.rt.agent.telemetry.period_s == 5
        reported = json.loads(recorder.on("/st-1/config/reported")[-1])
        assert reported["version"] == 3 and "error" not in reported
        # an invalid document is refused, naming the field; version 3 stays
        recorder.publish(desired, b'{"schema": "config.desired/1", "version": 4, '
                         b'"settings": {"inactivity_s": -5}}', retain=True)
        wait_until(lambda: "error" in json.loads(recorder.on("/st-1/config/reported")[-1]), 10)
        reported = json.loads(recorder.on("/st-1/config/reported")[-1])
        assert reported["version"] == 3 and "settings.inactivity_s" in reported["error"]
        assert fleet.state.stations[(SITE, "st-1")].config["version"] == 3  # type: ignore
    recorder.publish(desired, b"", retain=True)  # cleared: the station keeps version 3
    with StationThread(s) as st:  # and it survives a restart, from the journal
        assert st.rt.core.config.offline_returns is False
        wait_until(lambda: json.loads(recorder.on("/st-1/config/reported")[-1])["version"]
                   == 3, 10)


def test_fleet_rejects_malformed_messages(fleet: FleetService, recorder: Recorder) -> None:
    recorder.publish(f"lib/v1/{SITE}/st-x/state", b'{"schema": "state/1", "pad_ok": "maybe"}')
    recorder.publish(f"lib/v1/{SITE}/st-x/tele/health", b"[1, 2]")
    recorder.publish(f"lib/v1/{SITE}/st-x/evt/x", messages.encode(
        messages.Status(online=True, session=1, version="t", mode="m")))  # wrong channel
    wait_until(lambda: sum(fleet.state.counters.rejected.values()) == 3, 10, "counted")
    assert fleet.state.counters.rejected["schema"] == 1  # a status on an evt topic
    assert fleet.state.counters.rejected["payload"] == 1
    assert (SITE, "st-x") not in fleet.state.stations or \
        fleet.state.stations[(SITE, "st-x")].state is None


def test_fleet_send_cli_waits_for_the_final_state(tmp_path: Path, broker: Broker,
                                                  fleet: FleetService,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main

    with StationThread(settings(tmp_path, broker)) as st:
        code = main(["fleet", "send", f"{SITE}/st-1", "out_of_service",
                     "message_vi=Tạm nghỉ", "--url", fleet.url, "--timeout", "60"])
        out = capsys.readouterr().out
        assert code == 0, out
        # Polled from the service: the passing states may be too quick to see, the end is not.
        assert "sent out_of_service" in out and "succeeded" in out
        assert st.rt.view().mode is core.Mode.OUT_OF_SERVICE
        code = main(["fleet", "send", f"{SITE}/st-1", "set_offline_policy", "policy=maybe",
                     "--url", fleet.url])
        assert code == 2 and "args.policy" in capsys.readouterr().out
        wait_until(lambda: row(fleet).get("service") == "out_of_service", 10, "fleet sees it")
        code = main(["fleet", "--url", fleet.url, "--once", "--site", SITE])
        out = capsys.readouterr().out
        assert code == 0 and "st-1" in out and "ngừng" in out  # Vietnamese by default
        code = main(["fleet", "--url", fleet.url, "--once", "--site", SITE, "--lang", "en"])
        out = capsys.readouterr().out
        assert code == 0 and "st-1" in out and "service" in out and "ngừng" not in out


def test_a_central_store_apart_from_the_fleet_tables_feeds_the_guard_and_stock_takes(
        tmp_path: Path, broker: Broker) -> None:
    """`--stats-db`: the central's store is not the fleet database; the wrong-PIN and
    wrong-clock alerts, the order gaps and the stock-take pages read it, not the fleet's."""
    import requests

    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.central.schema import order_gaps, pin_stations, reconciliation, stocktakes
    from selfcheck.mqtt.ids import uuid7

    central = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    central.create()
    now = dt.datetime.now(dt.UTC)
    sid = str(uuid7())
    with central.engine.begin() as conn:
        conn.execute(pin_stations.insert(), [dict(
            site="tv-hn", station="quay-1", window_start=now, failures=9, total=9, pauses=1,
            paused_until=now + dt.timedelta(hours=1), last_at=now)])
        conn.execute(reconciliation.insert(), [dict(
            msg_id="m-1", site="tv-hn", station="quay-2", kind="checkout", item_id="I1",
            reason="clock", at=now, recorded_at=now, station_at=now - dt.timedelta(days=2))])
        conn.execute(order_gaps.insert(), [dict(
            site="tv-hn", station="quay-1", journal="j", kind="gap", first_seq=3, last_seq=4,
            recorded_at=now)])
        conn.execute(stocktakes.insert(), [dict(
            id=sid, site="tv-hn", kind="shelf", value="A1", status="open", station="quay-1",
            opened_at=now, updated_at=now)])
    central.engine.dispose()
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'fleet.db'}", flush_s=0.2,
                       stats_url=f"sqlite:///{tmp_path / 'central.db'}")
    svc.start()
    try:
        svc.refresh_order()
        rows = {(r["site"], r["station"]): r for r in svc.state.rows()}
        assert "pin_guessing" in rows[("tv-hn", "quay-1")]["alerts"]
        assert rows[("tv-hn", "quay-1")]["order_gaps"] == 1
        assert "tx_clock" in rows[("tv-hn", "quay-2")]["alerts"]
        got = requests.get(f"{svc.url}/api/stocktakes", timeout=10).json()
        assert [a["stocktake_id"] for a in got] == [sid]
    finally:
        svc.stop()


def test_the_audit_site_column_added_to_an_old_table_comes_with_its_index(
        tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    from selfcheck.central.engine import open_engine
    from selfcheck.central.fleet.schema import ensure

    engine = open_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    ensure(engine)
    with engine.begin() as conn:  # as a table made before the column was
        conn.execute(text("DROP INDEX ix_fleet_audit_site"))
        conn.execute(text("ALTER TABLE fleet_audit DROP COLUMN site"))
    ensure(engine)
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("fleet_audit")}
    assert indexes["ix_fleet_audit_site"] == ["site"]
    ensure(engine)  # and again: nothing to add
    engine.dispose()

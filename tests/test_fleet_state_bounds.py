"""What one station may put in the operators' history: results only for commands sent to it,
events within a share on arrival and a bound in storage (through a real Mosquitto), and the
Prometheus rules for the alerts that need someone now."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select

from selfcheck.central.fleet.db import FleetStore
from selfcheck.central.fleet.events_bound import EVENT_BURST, EventBucket
from selfcheck.central.fleet.schema import fleet_commands, fleet_events
from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.commands import CommandRes
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.telemetry import Event
from tests.conftest import ROOT, wait_until

SITE = "tv-bd"
PROM = ROOT / "deploy" / "prometheus"


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", http=None,
                       flush_s=0.1)
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


class Station:
    def __init__(self, broker: Broker) -> None:
        self.client = make_client(f"station-{time.monotonic_ns()}")
        self.client.connect(broker.address.host, broker.address.port)
        self.client.loop_start()

    def publish(self, station: str, suffix: str, msg: messages.Message, qos: int = 1) -> None:
        info = self.client.publish(f"lib/v1/{SITE}/{station}/{suffix}", messages.encode(msg),
                                   qos=qos)
        if qos:
            info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station(broker: Broker) -> Iterator[Station]:
    s = Station(broker)
    yield s
    s.close()


def _res(cmd_id: str, state: str = "succeeded") -> CommandRes:
    return CommandRes.model_validate(dict(cmd_id=cmd_id, name="reload_config", state=state,
                                          at=dt.datetime.now(dt.UTC)))


def _stored(svc: FleetService, table: Any) -> int:
    with svc.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def test_results_are_taken_only_for_commands_sent_to_that_station(
        fleet: FleetService, station: Station) -> None:
    cmd_id = fleet.send_command(SITE, "st-1", "reload_config", {}, by="binh")
    station.publish("st-2", f"cmd/res/{cmd_id}", _res(cmd_id, "failed"))  # another station
    for n in range(50):  # made up: no operator sent these
        station.publish("st-1", f"cmd/res/forged{n}", _res(f"forged{n}"))
    station.publish("st-1", f"cmd/res/{cmd_id}", _res(cmd_id))
    wait_until(lambda: fleet.state.commands[cmd_id]["state"] == "succeeded", what="result")
    wait_until(lambda: fleet.state.counters.unknown_results == 51, what="dropped")
    assert not any(c.startswith("forged") for c in fleet.state.commands)
    assert fleet.state.commands[cmd_id]["by"] == "binh"
    time.sleep(0.3)  # written behind
    assert _stored(fleet, fleet_commands) == 1
    text = generate_latest(fleet.registry).decode()
    assert "selfcheck_fleet_unknown_results_total 51.0" in text


def test_an_event_flood_from_one_station_is_neither_all_stored_nor_all_pushed(
        fleet: FleetService, station: Station, monkeypatch: pytest.MonkeyPatch) -> None:
    pushed: list[str] = []
    publish = fleet.hub.publish

    def counted(kind: str, data: Any) -> None:
        pushed.append(kind)
        publish(kind, data)

    monkeypatch.setattr(fleet.hub, "publish", counted)
    now = dt.datetime.now(dt.UTC)
    flood = 5_000
    for _ in range(flood):  # perfectly valid events, as fast as the client sends them
        station.publish("st-1", "evt/reader_lost", Event(kind="reader_lost", at=now), qos=0)
    station.publish("st-2", "evt/paper_low", Event(kind="paper_low", at=now))
    wait_until(lambda: fleet.state.stations.get((SITE, "st-2")) is not None, 60, "the flood")

    def taken() -> int:
        return fleet.state.counters.messages["evt"]

    seen = -1
    while taken() != seen:  # the broker may drop some of a QoS 0 flood: wait for the rest
        seen = taken()
        time.sleep(0.5)
    assert seen > 1_000
    time.sleep(0.3)  # written behind
    dropped = fleet.state.counters.events_dropped[f"{SITE}/st-1"]
    stored = _stored(fleet, fleet_events)
    assert dropped > (seen - 1) * 0.9
    assert stored == seen - dropped and stored < EVENT_BURST + 100
    assert len(pushed) < EVENT_BURST + 100
    # the other station's event went in
    assert fleet.store.details(SITE, "st-2")["events"][0]["kind"] == "paper_low"
    text = generate_latest(fleet.registry).decode()
    assert f'selfcheck_fleet_events_dropped_total{{site="{SITE}",station="st-1"}}' in text


def test_the_event_share_refills_with_time() -> None:
    bucket = EventBucket(rate_per_s=1.0, burst=3)
    assert [bucket.take("s", "a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take("s", "b", 0.0)  # each station its own share
    assert bucket.take("s", "a", 1.0) and not bucket.take("s", "a", 1.0)


def test_stored_events_are_bounded_in_rows_and_days_while_running(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.05, keep_rows=100,
                       keep_s=86_400, prune_s=0.1)
    store.start()
    try:
        old = time.time() - 2 * 86_400
        with store.engine.begin() as conn:  # two days old: past the bound in days
            conn.execute(fleet_events.insert(), [dict(
                site="s", station="b", kind="paper_low", at=old, received=old, body="{}")])
        for n in range(300):
            store.event("s", "a", "reader_fault", time.time(), {"n": n})
        store.event("s", "b", "paper_low", time.time(), {})

        def counts() -> dict[str, int]:
            with store.engine.connect() as conn:
                return dict(conn.execute(
                    select(fleet_events.c.station, func.count()).group_by(
                        fleet_events.c.station)).all())

        wait_until(lambda: counts() == {"a": 100, "b": 1}, 5, "pruned while running")
        with store.engine.connect() as conn:
            kept = conn.execute(select(fleet_events.c.body).where(
                fleet_events.c.station == "a").order_by(fleet_events.c.id)).scalars().all()
        assert kept[0] == '{"n": 200}' and kept[-1] == '{"n": 299}'  # the newest kept
    finally:
        store.stop()


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/bootstrap installs it")
def test_urgent_alert_rules_are_loaded_and_fire() -> None:
    assert PROMTOOL is not None

    def run(*args: str) -> str:
        out = subprocess.run([PROMTOOL, *args], cwd=PROM, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    assert "selfcheck-urgent.yml" in (PROM / "prometheus.yml").read_text()
    assert "SUCCESS" in run("check", "config", "prometheus.yml")
    assert "SUCCESS" in run("test", "rules", "selfcheck-alerts.test.yml")
    rules = (PROM / "selfcheck-urgent.yml").read_text()
    tests = (PROM / "selfcheck-alerts.test.yml").read_text()
    for alert in ("StationStaffNeeded", "StationSecurityWriteFailed", "LibrarySystemDown",
                  "BridgeDown"):
        assert f"alert: {alert}" in rules and f"alertname: {alert}" in tests

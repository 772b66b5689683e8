"""Fleet state across a restart of the service (through a real Mosquitto: the broker replays
the retained status and state on the new connection), and silence noticed."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from selfcheck.central.fleet.metrics import OpeningHours, registry
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import FleetState
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.telemetry import Health, State
from tests.conftest import wait_until

SITE, ST = "tv-rs", "st-1"
ROOT = f"lib/v1/{SITE}/{ST}"
NOW = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)


def _status(online: bool = True, session: int = 1) -> messages.Status:
    return messages.Status(online=online, session=session, version="1", mode="selfcheck")


def _state(at: dt.datetime, **kw: object) -> State:
    base: dict[str, object] = dict(at=at, version="1", pad_ok=True, outbox_pending=0,
                                   offline_policy="returns", config_version=0)
    return State.model_validate({**base, **kw})


class Station:
    """A station's MQTT client, publishing as the real one does (retained status and state)."""

    def __init__(self, broker: Broker) -> None:
        self.client = make_client(f"station-{time.monotonic_ns()}")
        self.client.connect(broker.address.host, broker.address.port)
        self.client.loop_start()

    def publish(self, suffix: str, msg: messages.Message, retain: bool = False) -> None:
        self.client.publish(f"{ROOT}/{suffix}", messages.encode(msg), qos=1,
                            retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station(broker: Broker) -> Iterator[Station]:
    s = Station(broker)
    yield s
    s.close()


def _service(broker: Broker, db: Path) -> FleetService:
    svc = FleetService(broker.address, f"sqlite:///{db}", http=None, flush_s=0.1, tick_s=0.1)
    svc.start()
    assert svc.connected.wait(10)
    return svc


def _row(svc: FleetService) -> dict[str, Any]:
    return next((r for r in svc.state.rows(SITE) if r["station"] == ST), {})


def test_a_restart_does_not_make_a_dead_station_just_heard_nor_lose_acknowledgements(
        tmp_path: Path, broker: Broker, station: Station) -> None:
    db = tmp_path / "central.db"
    svc = _service(broker, db)
    now = dt.datetime.now(dt.UTC)
    station.publish("status", _status(), retain=True)
    station.publish("state", _state(now, paper="low"), retain=True)
    # Its clock five minutes behind ours: an alert an operator acknowledges.
    station.publish("tele/health", Health(at=now - dt.timedelta(minutes=5), uptime_s=10))
    wait_until(lambda: "clock_skew" in (_row(svc).get("alerts") or []), what="clock skew")
    with svc.state.lock:
        rec = svc.state.ack(SITE, ST, "clock_skew", "binh")
        assert rec is not None
        svc.store.station(rec)  # what the page does on an acknowledgement
    svc.stop()
    # The station died eleven minutes ago, its retained status still saying online (a hung
    # station, or a broker that lost its will): what the store knew then is 660 s old.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE fleet_stations SET last_seen = last_seen - 660")
    conn.close()
    heard = time.time() - 660

    again = _service(broker, db)
    try:
        # the broker replays the retained status and state
        wait_until(lambda: again.state.counters.messages["state"] >= 1, what="state replay")
        row = _row(again)
        assert isinstance(row["last_seen"], float) and row["last_seen"] < heard + 5
        wait_until(lambda: "silent" in (_row(again).get("alerts") or []), what="silent")
        info = {a["kind"]: a for a in _row(again)["alert_info"]}
        assert info["clock_skew"]["acked_by"] == "binh"
        assert info["paper_low"]["acked_by"] is None
    finally:
        again.stop()


def test_the_retained_state_says_when_it_was_heard_not_our_connect() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(), t, retained=True)
    rec = fs.apply("s", "a", "state", "", _state(NOW - dt.timedelta(minutes=11)), t)
    assert rec is not None and rec.last_seen == t - 660
    # a state from a clock ahead of ours is not in the future
    rec = fs.apply("s", "a", "state", "", _state(NOW + dt.timedelta(minutes=1)), t + 1)
    assert rec is not None and rec.last_seen == t + 1


def test_a_station_not_heard_from_within_its_health_period_is_silent() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(), t)
    fs.apply("s", "a", "tele", "health", Health(at=NOW, uptime_s=1), t)
    fs.apply("s", "a", "tele", "health",
             Health(at=NOW + dt.timedelta(seconds=60), uptime_s=61), t + 60)
    rec = fs.stations[("s", "a")]
    assert fs.tick(t + 60 + 149) == []  # twice the period and a margin
    assert fs.tick(t + 60 + 460) == [rec]  # the issue: 460 s and counting shown online
    assert rec.row(t + 520)["alerts"] == ["silent"] and rec.row(t + 520)["silent"] is True
    assert rec.online is True  # its retained status still says so
    text = generate_latest(registry(fs, OpeningHours())).decode()
    assert 'selfcheck_station_alert{acked="0",kind="silent",site="s",station="a"} 1.0' in text
    fs.apply("s", "a", "tele", "health", Health(at=NOW + dt.timedelta(seconds=530), uptime_s=600),
             t + 530)
    assert rec.row(t + 530)["alerts"] == []
    # a will is offline, not silent
    fs.apply("s", "a", "status", "", _status(online=False), t + 600)
    assert rec.row(t + 2000)["alerts"] == ["offline"]

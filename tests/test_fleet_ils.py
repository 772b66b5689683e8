"""The library system's state reaches the operators' console: each bridge's retained report
(`lib/central/v1/{bridge}/ils`), the fleet service's alert, /api/ils, the metrics and the
page. The end-to-end test runs a real `selfcheck central` against the test SIP2 server, a real
Mosquitto and the real fleet service."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import FleetState
from selfcheck.lab.bench.browser import Browser
from selfcheck.lab.broker import Broker
from selfcheck.lab.standins.sip2_server import Library, running
from selfcheck.mqtt import topics
from selfcheck.mqtt.telemetry import BridgeIls
from tests.conftest import ROOT, wait_until
from tests.test_fleet_console import (
    PASSWORDS,
    SHOTS,
    Client,
    _publish_fleet,
    needs_chromium,
)
from tests.test_fleet_integration import Recorder

T0 = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)


def _report(state: str, since: dt.datetime | None = T0) -> BridgeIls:
    return BridgeIls.model_validate({"bridge": "b-1", "state": state, "since": since,
                                     "ils": "sip2://sc@acs:6001?institution=x"})


def test_alert_follows_the_report_and_is_acknowledged() -> None:
    fs, t = FleetState(), T0.timestamp()
    assert fs.apply_ils("b-1", _report("ok"), t)
    assert fs.ils_rows()[0]["alert"] is None
    later = T0 + dt.timedelta(minutes=5)
    assert fs.apply_ils("b-1", _report("down", later), t + 300)
    assert not fs.apply_ils("b-1", _report("down", later), t + 301)  # the same, replayed
    alert = fs.ils_rows()[0]["alert"]
    assert alert["kind"] == "ils_down" and alert["since"] == later.timestamp()
    assert alert["severity"] == 0
    assert not fs.ack_ils("b-1", "ils_login_refused", "binh", t + 310)  # not that one
    assert fs.ack_ils("b-1", "ils_down", "binh", t + 310)
    assert fs.ils_rows()[0]["alert"]["acked_by"] == "binh"  # shown until it is ok again
    fs.apply_ils("b-1", _report("login refused", later), t + 320)
    assert fs.ils_rows()[0]["alert"]["kind"] == "ils_login_refused"
    assert fs.ils_rows()[0]["alert"]["acked_at"] is None  # a new alert: not acknowledged
    fs.apply_ils("b-1", _report("ok", later), t + 400)
    assert fs.ils_rows()[0]["alert"] is None
    assert [a.kind for a in fs.bridges["b-1"].ended] == ["ils_down", "ils_login_refused"]
    fs.apply_ils("b-1", _report("down"), t + 500)
    fs.apply_ils("b-1", _report("gone", None), t + 600)  # the bridge's will: nothing known
    row = fs.ils_rows()[0]
    assert row["state"] == "gone" and row["alert"] is None and row["since"] == t + 600


def test_the_topic_is_not_a_station_topic() -> None:
    topic = topics.bridge_ils("central-bridge-1")
    with pytest.raises(topics.TopicError):
        topics.parse(topic)
    assert topics.parse_bridge_ils(topic) == "central-bridge-1"
    for bad in ("lib/central/v1/x/ils/more", "lib/v1/x/y/ils", "lib/central/v1/X/ils"):
        with pytest.raises(topics.TopicError):
            topics.parse_bridge_ils(bad)
    with pytest.raises(ValueError):
        BridgeIls.model_validate({"bridge": "b", "state": "ok", "ils": "x" * 501})


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _central(tmp_path: Path, broker: Broker, port: int, password: str) -> subprocess.Popen[str]:
    secret = tmp_path / "ils.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "selfcheck.cli", "central", "--broker", str(broker.address),
         "--db", f"sqlite:///{tmp_path / 'c.db'}", "--id", "central-bridge-1",
         "--ils", f"sip2://sc@127.0.0.1:{port}?institution=tv-test&timeout=1",
         "--ils-password-file", str(secret), "--ils-check", "0.3"],
        cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _alert(svc: FleetService) -> str | None:
    with svc.state.lock:
        rec = svc.state.bridges.get("central-bridge-1")
        return None if rec is None else (rec.alert.kind if rec.alert else rec.state)


def test_a_refused_login_and_a_dead_library_system_reach_the_console(
        tmp_path: Path, broker: Broker) -> None:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'fleet.db'}", login=True,
                       flush_s=0.2)
    svc.auth.add_user("binh", PASSWORDS["binh"], "operator", ["tv-hn"])
    svc.auth.add_user("an", PASSWORDS["an"], "operator")  # an operator of every site
    svc.start()
    lib = Library()
    try:
        assert svc.connected.wait(10)
        with running(lib) as (server, _proxy):
            central = _central(tmp_path, broker, server.port, "wrong")
            try:
                wait_until(lambda: _alert(svc) == "ils_login_refused", 20, "login refused")
                web = Client(svc.url)
                web.login("binh")
                status, rows = web.call("/api/ils")
                assert status == 200 and len(rows) == 1, rows
                row = rows[0]
                assert row["state"] == "login refused" and row["bridge"] == "central-bridge-1"
                assert row["ils"] == f"sip2://sc@127.0.0.1:{server.port}?institution=tv-test"
                assert "wrong" not in str(rows)  # never the password
                text = _metrics(svc.url)
                assert ('selfcheck_fleet_ils_alert{acked="0",bridge="central-bridge-1",'
                        'kind="ils_login_refused"} 1.0') in text, text
                # Every site's concern: one site's operator may not acknowledge it for all;
                # an operator of every site does, and it stays, marked, until it is ok again.
                ack = {"bridge": "central-bridge-1", "kind": "ils_login_refused"}
                assert web.call("/api/ack", ack)[0] == 403
                everywhere = Client(svc.url)
                everywhere.login("an")
                status, rows = everywhere.call("/api/ack", ack)
                assert status == 200 and rows[0]["alert"]["acked_by"] == "an"
                lib.password = "wrong"  # the library now takes the bridge's password
                wait_until(lambda: _alert(svc) == "ok", 20, "ok again: the alert cleared")
                assert "selfcheck_fleet_ils_alert{" not in _metrics(svc.url)
            except BaseException:
                central.kill()
                raise
        # The library system is gone now: down, with the time it went.
        wait_until(lambda: _alert(svc) == "ils_down", 20, "down")
        with svc.state.lock:
            since = svc.state.bridges["central-bridge-1"].since
        assert since is not None and abs(since - dt.datetime.now(dt.UTC).timestamp()) < 30
        # A bridge that stops says so: its report is gone, not left showing what it last saw.
        central.send_signal(signal.SIGTERM)
        assert central.wait(30) == 0
        wait_until(lambda: _alert(svc) == "gone", 10, "gone on a clean stop")
        # And one that dies leaves its Last Will.
        central = _central(tmp_path, broker, 1, "wrong")
        wait_until(lambda: _alert(svc) == "ils_down", 20, "down again")
        central.kill()
        central.wait(10)
        wait_until(lambda: _alert(svc) == "gone", 40, "gone by the will")
    finally:
        svc.stop()


@needs_chromium
def test_the_console_shows_the_library_system_down(tmp_path: Path, broker: Broker) -> None:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'fleet.db'}", login=True,
                       flush_s=0.2, names={"sites": {"tv-hn": "Thư viện Hà Nội"},
                                             "stations": {"tv-hn/quay-1": "Quầy 1 tầng trệt"}})
    # An operator of every site: only those acknowledge the library system (every site's).
    svc.auth.add_user("binh", PASSWORDS["binh"], "operator")
    svc.start()
    recorder = Recorder(broker, topics.FLEET_ILS)
    b: Browser | None = None
    try:
        assert svc.connected.wait(10)
        _publish_fleet(recorder)
        report = BridgeIls.model_validate({
            "bridge": "central-bridge-1", "state": "down",
            "since": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=12),
            "ils": "sip2://sc@acs.thuvien.local:6001?institution=tv-hn"})
        recorder.publish(topics.bridge_ils("central-bridge-1"),
                         report.model_dump_json(by_alias=True).encode(), retain=True)
        wait_until(lambda: _alert(svc) == "ils_down", 10, "the report at the service")
        b = Browser(tmp_path / "profile", 1366, 860)
        b.go(svc.url + "/")
        b.wait("!document.getElementById('login').hidden", what="the login form")
        b.type("#l-name", "binh")
        b.type("#l-pw", PASSWORDS["binh"])
        b.click("#l-go")
        b.wait("!document.getElementById('ils').hidden", what="the banner")
        banner = b.text("#ils")
        assert "Hệ thống thư viện không trả lời" in banner and "12 phút trước" in banner
        assert "central-bridge-1" in banner
        b.wait("document.querySelectorAll('#rows tr').length > 0", what="the stations")
        b.screenshot(SHOTS / "console-ils-down-vi-1366.png")
        b.size(390, 844)
        b.wait("window.innerWidth === 390")
        right = b.js("document.querySelector('#ils .ils-alert').getBoundingClientRect().right")
        assert right <= 390, right
        b.screenshot(SHOTS / "console-ils-down-vi-390.png")
        b.click("#lang")
        b.wait("document.getElementById('lang').textContent === 'Tiếng Việt'")
        assert "Library system not answering" in b.text("#ils")
        b.screenshot(SHOTS / "console-ils-down-en-390.png")
        b.size(1366, 860)
        b.wait("window.innerWidth === 1366")
        # Acknowledged from the page: it stays, marked, until the library system is back.
        b.click('[data-ack-ils="central-bridge-1"]')
        b.wait("document.querySelector('#ils .ils-alert.acked')", what="acknowledged")
        assert "binh" in b.text("#ils")
        b.screenshot(SHOTS / "console-ils-down-en-1366.png")
        ok = report.model_copy(update={"state": "ok", "since": dt.datetime.now(dt.UTC)})
        recorder.publish(topics.bridge_ils("central-bridge-1"),
                         ok.model_dump_json(by_alias=True).encode(), retain=True)
        b.wait("document.getElementById('ils').hidden", what="the banner gone")
    finally:
        if b is not None:
            b.close()
        recorder.close()
        svc.stop()

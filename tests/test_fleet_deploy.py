"""deploy/prometheus (checked and unit-tested by promtool), the live exposition of the fleet
service (promtool check metrics), the Grafana dashboard, and the operators' web page in
headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from tests.conftest import ROOT, wait_until
from tests.test_fleet_integration import Recorder


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

PROM = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/bootstrap installs Debian's prometheus")


def _promtool(*args: str, stdin: bytes | None = None) -> str:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, *args], cwd=PROM, input=stdin, capture_output=True,
                         timeout=60)
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 0, text
    return text


@needs_promtool
def test_prometheus_config_and_rules_check() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "8 rules found" in _promtool("check", "rules", "selfcheck-alerts.yml")


@needs_promtool
def test_alert_rules_fire_when_they_should() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "selfcheck-alerts.test.yml")


def _publish_fleet(recorder: Recorder, site: str = "tv-hn") -> None:
    import datetime as dt

    from selfcheck.mqtt.telemetry import Event, Health, State

    now = dt.datetime.now(dt.UTC)
    rows = [("quay-1", True, "ok", True, 0), ("quay-2", True, "out", True, 3),
            ("tang-2", False, "low", False, 1), ("tre-em", True, "none", True, 0)]
    for n, (station, online, paper, pad_ok, pending) in enumerate(rows, start=1):
        root = f"lib/v1/{site}/{station}"
        recorder.publish(f"{root}/status", messages.encode(messages.Status(
            online=online, session=n, version="0.1.0", mode="selfcheck")), retain=True)
        recorder.publish(f"{root}/state", messages.encode(State(
            at=now, version="0.1.0", pad_ok=pad_ok, paper=paper, outbox_pending=pending,
            outbox_oldest_at=now - dt.timedelta(minutes=12) if pending else None,
            offline_policy="returns", config_version=2,
            service="out_of_service" if station == "tre-em" else "in_service")), retain=True)
        recorder.publish(f"{root}/tele/health", messages.encode(Health(
            at=now, uptime_s=3600, cpu_temp_c=48.5 + n, tx={"loan.ok": 10 * n,
                                                            "return.ok": 7 * n})))
    recorder.publish(f"lib/v1/{site}/quay-2/evt/paper_out", messages.encode(Event(
        kind="paper_out", at=now, severity="critical")))


@needs_promtool
def test_live_metrics_pass_promtool(fleet: FleetService, recorder: Recorder) -> None:
    _publish_fleet(recorder)
    wait_until(lambda: len(fleet.state.stations) == 4, 10, "four stations")
    with urllib.request.urlopen(f"{fleet.url}/metrics", timeout=5) as resp:
        body = resp.read()
    _promtool("check", "metrics", stdin=body)
    text = body.decode()
    assert 'selfcheck_station_up{site="tv-hn",station="tang-2"} 0.0' in text
    assert 'selfcheck_site_open{site="tv-hn"} 1.0' in text


def test_grafana_dashboard_is_valid_json_on_our_metrics() -> None:
    dash = json.loads((ROOT / "deploy/grafana/selfcheck-fleet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and all("selfcheck_" in e for e in exprs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: scripts/bootstrap installs "
                    "Debian's chromium for this test")
def test_web_page_shows_the_live_table_in_chromium(tmp_path: Path, fleet: FleetService,
                                                   recorder: Recorder) -> None:
    _publish_fleet(recorder)
    wait_until(lambda: len(fleet.state.stations) == 4, 10, "four stations")
    shot = tmp_path / "fleet-page.png"
    base = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,420", "--virtual-time-budget=5000", "--hide-scrollbars"]
    # The snapshot arrives over server-sent events; then a live update, with no reload:
    # tang-2 comes back online while the page is open.
    browser = subprocess.Popen([*base, "--dump-dom", f"{fleet.url}/?stop_after=2&lang=en"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_until(lambda: fleet.hub._clients, 30, "the page's event stream")
    recorder.publish("lib/v1/tv-hn/tang-2/status", messages.encode(messages.Status(
        online=True, session=9, version="0.1.0", mode="selfcheck")), retain=True)
    dom, _ = browser.communicate(timeout=90)
    tang2 = dom.split('id="st-tv-hn/tang-2"', 1)[1].split("</tr>", 1)[0]
    assert ">online<" in tang2 and "offline since" not in tang2, tang2
    for text in ("quay-1", "quay-2", "tre-em", "paper out", "book pad fault", "outbox growing",
                 "out of service", "4 stations · 4 online"):
        assert text in dom, text
    # Vietnamese is the default language of the page, with every word from fleet.po.
    dom_vi = subprocess.run([*base, "--dump-dom", f"{fleet.url}/?stop_after=1"],
                            capture_output=True, text=True, timeout=90).stdout
    for text in ("Trạm tự phục vụ", "trực tuyến", "hết giấy", "lỗi khay đặt sách",
                 "giao dịch chờ gửi tăng", "tạm ngừng", "4 trạm · 4 trực tuyến", "English"):
        assert text in dom_vi, text
    keep = ROOT / "var" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    for lang in ("vi", "en"):
        subprocess.run([*base, f"--screenshot={shot}", f"{fleet.url}/?stop_after=1&lang={lang}"],
                       capture_output=True, timeout=90)
        assert shot.exists() and shot.stat().st_size > 10_000
        shutil.move(shot, keep / f"fleet-page-{lang}.png")

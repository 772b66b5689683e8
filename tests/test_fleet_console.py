"""The operators' console: alert rules, logins and roles over HTTP, the statistics, and the
page itself in headless Chromium against a real Mosquitto, a real station app and the real
fleet service."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.fleet.auth import Auth, LoginRefused
from selfcheck.central.fleet.db import FleetStore
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import FleetState
from selfcheck.central.fleet.stats import Stats
from selfcheck.central.schema import circulation, order_gaps, processed, reconciliation
from selfcheck.lab.bench.browser import CHROMIUM, Browser
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.telemetry import Event, Health, State
from tests.conftest import ROOT, wait_until
from tests.test_fleet_integration import Recorder, StationThread, settings

NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)  # 10:00 in Hanoi
PASSWORDS = {"an": "quan-tri-vien-1", "binh": "van-hanh-vien-2", "chi": "nguoi-xem-3"}
SHOTS = ROOT / "var" / "screenshots"


def _state(**kw: Any) -> State:
    base: dict[str, Any] = dict(at=NOW, version="0.1.0", pad_ok=True, card_ok=True,
                                paper="ok", outbox_pending=0, offline_policy="returns",
                                config_version=1)
    return State(**{**base, **kw})


def _status(online: bool, session: int = 1) -> messages.Status:
    return messages.Status(online=online, session=session, version="0.1.0", mode="selfcheck")


# -- alert rules (no broker)
def test_a_card_reader_fault_is_its_own_alert_and_clears_with_the_fault() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(True), t)
    rec = fs.apply("s", "a", "state", "", _state(card_ok=False), t)
    assert rec is not None
    row = rec.row(t)
    assert row["alerts"] == ["card_reader_fault"] and row["pad_ok"] is True
    assert row["card_ok"] is False
    fs.apply("s", "a", "state", "", _state(card_ok=True), t + 5)
    assert rec.row(t + 5)["alerts"] == []
    assert [a.kind for a in rec.ended] == ["card_reader_fault"]


def test_staff_needed_stays_until_acknowledged_and_who_is_kept() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(True), t)
    fs.apply("s", "a", "evt", "staff_needed", Event(kind="staff_needed", at=NOW), t)
    fs.tick(t + 3600)  # an hour later, nobody came: still there
    rec = fs.stations[("s", "a")]
    assert rec.row(t + 3600)["alerts"] == ["staff_needed"]
    assert fs.ack("s", "a", "staff_needed", "binh", t + 3700) is rec
    assert rec.row(t + 3700)["alerts"] == []
    ended = rec.ended[-1]
    assert (ended.kind, ended.acked_by, ended.acked_at) == ("staff_needed", "binh", t + 3700)
    assert fs.ack("s", "a", "staff_needed", "binh", t + 3701) is None  # nothing left to ack


def test_an_acknowledged_fault_stays_shown_as_acknowledged_until_it_clears() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(True), t)
    fs.apply("s", "a", "state", "", _state(paper="out"), t)
    assert fs.ack("s", "a", "paper_out", "binh", t + 10) is not None
    info = fs.stations[("s", "a")].row(t + 20)["alert_info"]
    assert [(a["kind"], a["acked_by"]) for a in info] == [("paper_out", "binh")]
    fs.apply("s", "a", "state", "", _state(paper="ok"), t + 30)
    assert fs.stations[("s", "a")].row(t + 30)["alerts"] == []


def test_security_write_failure_is_an_alert_until_staff_skip_it() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "evt", "", Event(kind="security_write_failed", at=NOW,
                                        item_id="39000001"), t)
    assert fs.stations[("s", "a")].row(t)["alerts"] == ["security_write_failed"]
    fs.apply("s", "a", "evt", "", Event(kind="security_write_skipped", at=NOW), t + 60)
    assert fs.stations[("s", "a")].row(t + 60)["alerts"] == []


def test_clock_skew_and_outbox_growth_and_severity_order() -> None:
    fs, t = FleetState(), NOW.timestamp()
    fs.apply("s", "a", "status", "", _status(True), t)
    fs.apply("s", "a", "tele", "health", Health(at=NOW - dt.timedelta(minutes=5),
                                                uptime_s=10), t)
    fs.apply("s", "a", "state", "", _state(outbox_pending=3, outbox_oldest_at=NOW), t)
    fs.apply("s", "a", "evt", "", Event(kind="staff_needed", at=NOW), t)
    rec = fs.stations[("s", "a")]
    assert rec.row(t)["alerts"] == ["staff_needed", "clock_skew"]
    assert fs.tick(t + 599) == []
    assert fs.tick(t + 601) == [rec]  # the outbox got old with no message at all
    assert rec.row(t + 601)["alerts"] == ["staff_needed", "outbox_old", "clock_skew"]
    assert rec.row(t + 601)["skew_s"] == -300.0


def test_alerts_and_acknowledgements_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    store, fs, t = FleetStore(url), FleetState(), NOW.timestamp()
    for msg in (_status(True), _state(pad_ok=False, paper="low")):
        rec = fs.apply("s", "a", "x", "", msg, t)
        assert rec is not None
        store.station(rec)
    rec = fs.ack("s", "a", "paper_low", "binh", t + 5)
    assert rec is not None
    store.station(rec)
    store.flush()
    again = FleetState()
    FleetStore(url).load(again)
    info = {a["kind"]: a for a in again.stations[("s", "a")].row(t + 9)["alert_info"]}
    assert set(info) == {"reader_fault", "paper_low"}
    assert (info["paper_low"]["acked_by"], info["paper_low"]["since"]) == ("binh", t)
    assert info["reader_fault"]["acked_by"] is None


# -- logins
def test_passwords_are_hashed_and_repeated_failures_lock_the_account(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'central.db'}")
    auth = Auth(store.engine, max_failures=3, lock_s=600)
    auth.add_user("binh", PASSWORDS["binh"], "operator", ["tv-hn"])
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT pw_hash FROM fleet_users").scalar()
    assert stored is not None
    assert stored.startswith("$argon2id$") and PASSWORDS["binh"] not in stored
    with pytest.raises(ValueError, match="at least"):
        auth.add_user("ngan", "short", "viewer")
    t = NOW.timestamp()
    for _ in range(2):
        with pytest.raises(LoginRefused, match="bad"):
            auth.login("binh", "wrong-password", t)
    with pytest.raises(LoginRefused, match="locked"):
        auth.login("binh", "wrong-password", t)
    with pytest.raises(LoginRefused, match="locked"):  # the right password too, while locked
        auth.login("binh", PASSWORDS["binh"], t + 60)
    token, s = auth.login("binh", PASSWORDS["binh"], t + 601)
    assert (s.user.role, s.user.sites) == ("operator", frozenset({"tv-hn"}))
    assert auth.session(token, t + 602) is not None
    assert auth.session(token, t + 601 + auth.session_s + 1) is None  # idle too long
    with pytest.raises(LoginRefused, match="bad"):
        auth.login("nobody", "whatever-it-is", t)


def test_user_add_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORDS["chi"] + "\n")
    out = subprocess.run([sys.executable, "-m", "selfcheck.cli", "fleet", "user", "add", "chi",
                          "--role", "viewer", "--sites", "tv-hn,tv-hd", "--password-file",
                          str(pw), "--db", url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "viewer, sites tv-hn, tv-hd" in out.stdout
    again = subprocess.run([sys.executable, "-m", "selfcheck.cli", "fleet", "user", "add", "chi",
                            "--role", "admin", "--password-file", str(pw), "--db", url],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stdout
    _, s = Auth(FleetStore(url).engine).login("chi", PASSWORDS["chi"])
    assert s.user.sites == frozenset({"tv-hn", "tv-hd"})


# -- a running service with logins
@pytest.fixture
def console(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.2,
                       login=True, tick_s=0.5, names={
                           "sites": {"tv-hn": "Thư viện Hà Nội", "tv-fleet": "Thư viện tỉnh"},
                           "stations": {"tv-hn/quay-1": "Quầy 1 tầng trệt",
                                        "tv-fleet/st-1": "Sảnh chính"}})
    svc.auth.add_user("an", PASSWORDS["an"], "admin")
    svc.auth.add_user("binh", PASSWORDS["binh"], "operator", ["tv-hn", "tv-fleet"])
    svc.auth.add_user("chi", PASSWORDS["chi"], "viewer", ["tv-hn"])
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Recorder]:
    r = Recorder(broker)
    yield r
    r.close()


class Client:
    """An HTTP client with a cookie jar, as a browser would be."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        self.csrf = ""

    def call(self, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True,
             header: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if header:
            headers["X-Requested-With"] = "fleet"
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.base + path, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def login(self, name: str) -> None:
        status, data = self.call("/api/login", {"name": name, "password": PASSWORDS[name]})
        assert status == 200, data
        self.csrf = data["csrf"]


def _publish_fleet(recorder: Recorder) -> None:
    now = dt.datetime.now(dt.UTC)
    fleet: list[tuple[str, str, bool, dict[str, Any]]] = [
             ("tv-hn", "quay-1", True, dict()), ("tv-hn", "quay-2", True, dict(card_ok=False)),
             ("tv-hn", "tang-2", False, dict(pad_ok=False, paper="low", outbox_pending=2,
                                             outbox_oldest_at=now - dt.timedelta(minutes=25))),
             ("tv-hd", "tra-sach-1", True, dict(paper="out"))]
    for n, (site, station, online, kw) in enumerate(fleet, start=1):
        root = f"lib/v1/{site}/{station}"
        recorder.publish(f"{root}/status", messages.encode(_status(online, n)), retain=True)
        recorder.publish(f"{root}/state", messages.encode(_state(**{"at": now, **kw})),
                         retain=True)
        recorder.publish(f"{root}/tele/health", messages.encode(Health(
            at=now, uptime_s=3600, cpu_temp_c=50.0 + n)))


def test_roles_sites_csrf_and_the_audit_log_over_http(console: FleetService,
                                                      recorder: Recorder, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    _publish_fleet(recorder)
    wait_until(lambda: len(console.state.stations) == 4, 10, "four stations")
    anon = Client(console.url)
    assert anon.call("/api/stations")[0] == 401
    viewer = Client(console.url)
    viewer.login("chi")
    status, rows = viewer.call("/api/stations")
    assert status == 200 and {r["site"] for r in rows} == {"tv-hn"}  # only the viewer's site
    assert viewer.call("/api/station?site=tv-hd&station=tra-sach-1")[0] == 403
    body = {"site": "tv-hn", "station": "quay-2", "kind": "card_reader_fault"}
    assert viewer.call("/api/ack", body)[0] == 403  # a viewer only watches
    assert viewer.call("/api/audit")[0] == 403
    op = Client(console.url)
    op.login("binh")
    assert op.call("/api/ack", body, csrf=False)[0] == 403  # no CSRF token
    assert op.call("/api/ack", body, header=False)[0] == 403  # a cross-site form
    status, row = op.call("/api/ack", body)
    assert status == 200 and row["alert_info"][0]["acked_by"] == "binh"
    assert op.call("/api/command", {"site": "tv-hd", "name": "reload_config"})[0] == 403
    status, err = op.call("/api/command", {"site": "tv-hn", "station": "quay-1",
                                           "name": "set_offline_policy",
                                           "args": {"policy": "sometimes"}})
    assert status == 400 and err["field"] == "args.policy"
    admin = Client(console.url)
    admin.login("an")
    status, audit = admin.call("/api/audit")
    seen = [(a["user"], a["action"], a["result"]) for a in audit]
    assert ("binh", "ack", "ok") in seen and ("chi", "ack", "forbidden") in seen
    assert ("binh", "set_offline_policy", "refused") in seen
    assert ("binh", "reload_config", "forbidden") in seen
    assert admin.call("/api/logout", {})[0] == 200
    assert admin.call("/api/audit")[0] == 401
    # The live table in a terminal logs in too, and sees what its user may see.
    from selfcheck.cli import main

    assert main(["fleet", "--url", console.url, "--once"]) == 2
    told = capsys.readouterr()
    assert "--login" in told.out + told.err
    pw = tmp_path / "chi.pass"
    pw.write_text(PASSWORDS["chi"])
    assert main(["fleet", "--url", console.url, "--once", "--login", "chi",
                 "--login-password-file", str(pw)]) == 0
    out = capsys.readouterr().out
    assert "quay-2" in out and "tra-sach-1" not in out and "lỗi đầu đọc thẻ" in out


# -- statistics
def test_statistics_count_without_personal_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    central = CirculationStore(url)
    central.create()  # the migrated central store
    central.close()
    stats = Stats(url)
    rows, done = [], []
    for i, (kind, hour) in enumerate([("loan", 9), ("loan", 9), ("return", 14), ("renew", 9)]):
        at = NOW.replace(hour=hour - 7) - dt.timedelta(days=1)  # local hour in Hanoi
        rows.append(dict(msg_id=f"m{i}", kind=kind, item_id=f"3900000{i}", patron_ref="p-ref-7",
                         site="tv-hn", station="quay-1", at=at))
        done.append(dict(msg_id=f"m{i}", site="tv-hn", station="quay-1", journal="j", seq=i,
                         kind=kind, result=json.dumps({"ok": True}), applied_at=at))
    done.append(dict(msg_id="m9", site="tv-hn", station="quay-1", journal="j", seq=9,
                     kind="loan", result=json.dumps({"ok": False, "reason": "too_many_loans"}),
                     applied_at=NOW))
    with stats.engine.begin() as conn:
        conn.execute(insert(circulation), rows)
        conn.execute(insert(processed), done)
        conn.execute(insert(reconciliation), [dict(
            msg_id="m5", site="tv-hn", station="quay-1", kind="loan", item_id="39000005",
            patron_ref="p-ref-7", reason="patron_blocked", at=NOW, recorded_at=NOW)])
        conn.execute(insert(order_gaps), [dict(site="tv-hd", station="x", journal="j",
                                               kind="gap", first_seq=3, last_seq=4,
                                               recorded_at=NOW)])
    q = {"period": ["day"], "days": ["7"]}
    rep = stats.report(q, None, now=NOW)
    assert rep["rows"] == [{"period": "2026-11-26", "site": "tv-hn", "station": "quay-1",
                            "loan": 2, "return": 1, "renew": 1}]
    assert rep["hours"][9] == 3 and rep["hours"][14] == 1
    assert rep["accepted"] == {"ok": 4, "total": 5, "share": 0.8}
    assert rep["self_service"]["share"] is None  # no staff calls known here: not 100 %
    assert rep["refusals"] == {"too_many_loans": 1}
    assert rep["offline"] == {"order.gap": 1, "refused.patron_blocked": 1}
    assert stats.report(q, {"tv-hd"}, now=NOW)["rows"] == []  # a user of another site
    assert stats.report({"period": ["month"], "days": ["30"]}, None, now=NOW)["rows"][0][
        "period"] == "2026-11"
    for table in ("periods", "hours", "refusals", "offline"):
        _, text = stats.csv({**q, "days": ["400"]}, None, table)
        assert "p-ref-7" not in text and "3900000" not in text
    with pytest.raises(ValueError, match="period"):
        stats.report({"period": ["year"]}, None)


# -- the page in Chromium
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: "
                                    "scripts/bootstrap installs Debian's chromium")


def _circulation(url: str) -> None:
    """A few days of loans, returns and renewals at tv-hn, and one refusal."""
    central = CirculationStore(url)
    central.create()
    now = dt.datetime.now(dt.UTC)
    rows, done = [], []
    for i in range(30):
        at = now - dt.timedelta(days=i % 6, hours=i % 9)
        kind = ("loan", "return", "renew")[i % 3]
        rows.append(dict(msg_id=f"m{i}", kind=kind, item_id=f"390{i:05d}", patron_ref="p-1",
                         site="tv-hn", station=("quay-1", "quay-2")[i % 2], at=at))
        ok = i % 4 != 0
        done.append(dict(msg_id=f"m{i}", site="tv-hn", station="quay-1", journal="j", seq=i,
                         kind=kind, applied_at=at, result=json.dumps(
                             {"ok": ok, "reason": None if ok else "too_many_loans"})))
    with central.engine.begin() as conn:
        conn.execute(insert(circulation), rows)
        conn.execute(insert(processed), done[:28])
    central.close()


def _login(b: Browser, url: str, name: str, password: str | None = None) -> None:
    b.go(url + "/")
    b.wait("!document.getElementById('login').hidden", what="the login form")
    b.type("#l-name", name)
    b.type("#l-pw", password or PASSWORDS[name])
    b.click("#l-go")
    b.wait("document.getElementById('login').hidden && "
           "document.querySelectorAll('#rows tr').length > 0", what="the stations")


def _order(b: Browser) -> list[str]:
    return list(b.js("[...document.querySelectorAll('#rows tr')].map(t => t.id.slice(3))"))


@needs_chromium
def test_the_console_in_chromium(tmp_path: Path, broker: Broker, console: FleetService,
                                 recorder: Recorder) -> None:
    _publish_fleet(recorder)
    s = settings(tmp_path, broker, station="st-1")
    with StationThread(s):
        wait_until(lambda: len(console.state.stations) == 5, 20, "five stations")
        b = Browser(tmp_path / "profile", 1366, 860)
        try:
            _check_console(b, console, recorder)
        finally:
            b.close()


def _check_console(b: Browser, console: FleetService, recorder: Recorder) -> None:
    url = console.url
    # A viewer limited to one site: sees it, and no buttons to act.
    _login(b, url, "chi")
    assert sorted(_order(b)) == ["tv-hn/quay-1", "tv-hn/quay-2", "tv-hn/tang-2"]
    assert b.js("document.querySelectorAll('[data-ack]').length") == 0
    refused = b.js("""fetch('/api/command', {method: 'POST', headers: {'X-Requested-With':
        'fleet', 'X-CSRF-Token': csrf, 'Content-Type': 'application/json'}, body:
        JSON.stringify({site: 'tv-hn', name: 'reload_config'})}).then(r => r.status)""")
    assert refused == 403
    b.screenshot(SHOTS / "console-viewer-1366.png")
    b.click("#logout")
    b.wait("!document.getElementById('login').hidden")

    # An operator: attention first; the wrong password first, then the right one.
    b.type("#l-name", "binh")
    b.type("#l-pw", "not-the-password")
    b.click("#l-go")
    b.wait("document.getElementById('login-err').textContent.includes('Sai tên')")
    _login(b, url, "binh")
    order = _order(b)
    assert order[:2] == ["tv-hn/tang-2", "tv-hn/quay-2"] or \
        order[:2] == ["tv-hn/quay-2", "tv-hn/tang-2"], order  # both severity 1
    assert order[-1] in ("tv-hn/quay-1", "tv-fleet/st-1")  # no alerts: last
    page = b.text("#rows")
    assert "lỗi đầu đọc thẻ" in page and "mất kết nối từ" in page and "lâu nhất 25 phút" in page
    assert "Quầy 1 tầng trệt" in page and "Thư viện Hà Nội" in page
    # The card-reader fault is not the book pad's: pad "tốt", card reader "lỗi".
    cells = b.js("[...document.getElementById('st-tv-hn/quay-2').children].map(c => c.innerText)")
    assert cells[3] == "tốt" and cells[4] == "lỗi", cells
    # Offline values are the last known, shown as stale.
    assert b.js("document.querySelector('#st-tv-hn\\\\/tang-2 td.stale').title").startswith(
        "Giá trị cuối cùng nhận lúc")

    # Filters: search, then state.
    b.type("#q", "quầy")
    b.wait("document.querySelectorAll('#rows tr').length === 1")
    assert _order(b) == ["tv-hn/quay-1"]
    b.type("#q", "")
    b.type("#f-state", "offline")
    b.wait("document.querySelectorAll('#rows tr').length === 1")
    assert _order(b) == ["tv-hn/tang-2"]
    b.type("#f-state", "")

    # An alert raised while the page is open comes to the top; acknowledged, it goes.
    recorder.publish("lib/v1/tv-hn/quay-1/evt/staff_needed", messages.encode(Event(
        kind="staff_needed", at=dt.datetime.now(dt.UTC), severity="critical")))
    b.wait("document.querySelector('#rows tr').id === 'st-tv-hn/quay-1'",
           what="staff needed on top")
    assert "cần thủ thư" in b.text("#rows tr")
    b.screenshot(SHOTS / "console-operator-1366.png")
    b.click('#st-tv-hn\\/quay-1 [data-ack="staff_needed"]')
    b.wait("!document.querySelector('#st-tv-hn\\\\/quay-1 [data-alert]')", what="acked")
    wait_until(lambda: "staff_needed" not in console.state.stations[("tv-hn", "quay-1")].active,
               5, "acked in the service")

    # A command to the real station, and its job state shown live; its events name the book.
    recorder.publish("lib/v1/tv-fleet/st-1/evt/security_write_failed", messages.encode(Event(
        kind="security_write_failed", at=dt.datetime.now(dt.UTC), item_id="39000001",
        title="Truyện Kiều", detail="the tag's security state could not be written")))
    wait_until(lambda: any(e["kind"] == "security_write_failed"
                           for e in console.store.details("tv-fleet", "st-1")["events"]),
               10, "the event stored")
    b.click('[data-detail="tv-fleet/st-1"]')
    b.wait("document.getElementById('detail').open")
    assert "\u201cTruyện Kiều\u201d (39000001)" in b.text("#d-body")
    b.type('#d-body [data-cmd="name"]', "send_diagnostics")
    b.click('#d-body [data-send="st-1"]')
    b.wait("document.querySelector('#d-jobs .job.succeeded')", 30, "diagnostics succeeded")
    assert "Gửi chẩn đoán" in b.text("#d-jobs") and "xong" in b.text("#d-jobs")
    cmd = next(c for c in console.state.commands.values() if c["name"] == "send_diagnostics")
    assert (cmd["by"], cmd["state"], cmd["station"]) == ("binh", "succeeded", "st-1")
    b.screenshot(SHOTS / "console-detail-1366.png")
    b.click("#d-close")

    # A command for a whole site, from the site's bar.
    b.click('#sites [data-site="tv-fleet"]')
    b.wait("!document.getElementById('site-actions').hidden")
    b.type('#site-actions [data-cmd="name"]', "set_offline_policy")
    b.type('#site-actions [data-arg="policy"]', "none")
    b.click('#site-actions [data-send="*"]')
    b.wait("document.querySelector('#site-jobs .job.succeeded')", 30, "policy set")
    assert "Đặt chế độ ngoại tuyến · st-1 · xong" in b.text("#site-jobs")
    wait_until(lambda: console.state.stations[("tv-fleet", "st-1")].row(0)["policy"] == "none",
               10, "the station's new policy in its state")
    b.click('#sites [data-site="tv-fleet"]')

    # English is one touch away.
    b.click("#lang")
    b.wait("document.getElementById('lang').textContent === 'Tiếng Việt'")
    assert "card reader fault" in b.text("#rows") and "offline since" in b.text("#rows")
    b.click("#lang")
    b.wait("document.getElementById('lang').textContent === 'English'")

    # The statistics, from the central store the fleet lives in.
    _circulation(console.store.engine.url.render_as_string(False))
    b.click('[data-view="stats"]')
    b.wait("document.getElementById('self-share')", what="the statistics")
    stats = b.text("#stats-body")
    assert "Lượt mượn" in stats and "75.0 %" in stats and "quá số sách được mượn" in stats
    assert b.js("document.querySelectorAll('#stats-body svg rect').length") >= 4
    csv = b.js("fetch(document.querySelector('#stats-body a[href*=periods]').href)"
               ".then(r => r.text())")
    assert csv.splitlines()[0].endswith("period,site,station,loan,return,renew"), csv
    b.screenshot(SHOTS / "console-stats-1366.png", full=True)
    b.click('[data-view="stations"]')

    # The admin reads the audit log.
    b.click("#logout")
    _login(b, url, "an")
    b.click('[data-view="audit"]')
    b.wait("document.querySelectorAll('#audit-rows tr').length >= 4")
    audit = b.text("#audit-rows")
    assert "binh" in audit and "Gửi chẩn đoán" in audit and "xác nhận cảnh báo" in audit
    assert "Tải lại cấu hình\ttv-hn/*\tkhông có quyền" in audit  # the viewer's try
    b.screenshot(SHOTS / "console-audit-1366.png")
    b.click('[data-view="stations"]')
    for width, height in ((1024, 768), (390, 844)):
        b.size(width, height)
        b.wait(f"window.innerWidth === {width}")
        # The alerts column stays on screen: its right edge inside the window.
        right = b.js("Math.max(...[...document.querySelectorAll('#rows td.c-alerts')]"
                     ".map(td => td.getBoundingClientRect().right))")
        assert right <= width, (width, right)
        b.screenshot(SHOTS / f"console-stations-{width}.png")


def test_health_history_is_sampled_into_the_store(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'central.db'}")
    t = dt.datetime.now(dt.UTC).timestamp()
    for i, temp in enumerate((50.0, 51.0, 70.0)):  # 0 s, 60 s, 360 s
        store.health("s", "a", {"at": t - 400 + (0, 60, 360)[i], "temp_c": temp})
    store.flush()
    assert [h["temp_c"] for h in store.details("s", "a")["health"]] == [50.0, 70.0]

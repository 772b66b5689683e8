"""The operators' console's commands, acknowledgements and audit log, over real HTTP against the
real fleet service and a real Mosquitto: commands expire on screen, an offline target is named,
a whole site is confirmed first, `selfcheck fleet send` goes through the service (audited, its
result kept), acknowledgements keep to the operator's sites, alerts are acknowledged in bulk,
and the audit log is filtered, paged, exported and complete."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from selfcheck.central.fleet.db import FleetStore
from selfcheck.central.fleet.schema import fleet_audit, fleet_commands
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import FleetState
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.telemetry import BridgeIls, State
from tests.conftest import wait_until
from tests.test_fleet_console import Client
from tests.test_fleet_integration import Recorder, StationThread, settings

PASSWORDS = {"an": "quan-tri-vien-1", "binh": "van-hanh-vien-2", "chi": "nguoi-xem-3",
             "dung": "quan-tri-chi-nhanh-4"}


@pytest.fixture
def svc(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    s = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.2,
                     login=True, tick_s=0.2, names={
                         "sites": {"tv-hn": "Thư viện Hà Nội", "tv-hd": "Thư viện Hải Dương"},
                         "stations": {"tv-hn/quay-1": "Quầy 1", "tv-hd/tra-1": "Trả sách"}})
    s.auth.add_user("an", PASSWORDS["an"], "admin")
    s.auth.add_user("binh", PASSWORDS["binh"], "operator", ["tv-hn", "tv-fleet"])
    s.auth.add_user("chi", PASSWORDS["chi"], "viewer", ["tv-hn"])
    s.auth.add_user("dung", PASSWORDS["dung"], "admin", ["tv-hd"])
    s.start()
    assert s.connected.wait(10)
    yield s
    s.stop()


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Recorder]:
    r = Recorder(broker, "lib/#")
    yield r
    r.close()


def _client(svc: FleetService, name: str) -> Client:
    c = Client(svc.url)
    status, data = c.call("/api/login", {"name": name, "password": PASSWORDS[name]})
    assert status == 200, data
    c.csrf = data["csrf"]
    return c


def _station(recorder: Recorder, site: str, station: str, online: bool = True,
             **state: Any) -> None:
    root = f"lib/v1/{site}/{station}"
    now = dt.datetime.now(dt.UTC)
    recorder.publish(f"{root}/status", messages.encode(messages.Status(
        online=online, session=1, version="0.1.0", mode="selfcheck")), retain=True)
    recorder.publish(f"{root}/state", messages.encode(State(**{
        "at": now, "version": "0.1.0", "pad_ok": True, "card_ok": True, "paper": "ok",
        "outbox_pending": 0, "offline_policy": "returns", "config_version": 1, **state})),
        retain=True)


def _fleet(svc: FleetService, recorder: Recorder) -> None:
    """Three stations at tv-hn (one offline, two out of paper), one at tv-hd out of paper."""
    _station(recorder, "tv-hn", "quay-1", paper="out")
    _station(recorder, "tv-hn", "quay-2", paper="out")
    _station(recorder, "tv-hn", "tang-2", online=False)
    _station(recorder, "tv-hd", "tra-1", paper="out")
    wait_until(lambda: sum("paper_out" in r["alerts"] for r in svc.state.rows()) == 3
               and len(svc.state.stations) == 4, 10, "four stations, three out of paper")


def _stored_commands(svc: FleetService) -> dict[str, dict[str, Any]]:
    with svc.store.engine.connect() as conn:
        return {r["cmd_id"]: dict(r) for r in conn.execute(select(fleet_commands)).mappings()}


def _audit(svc: FleetService) -> list[dict[str, Any]]:
    with svc.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(fleet_audit).order_by(fleet_audit.c.id)).mappings()]


# -- commands
def test_an_unanswered_command_expires_in_the_api_the_stream_and_the_store(
        svc: FleetService, recorder: Recorder, tmp_path: Path) -> None:
    _fleet(svc, recorder)
    op = _client(svc, "binh")
    before = time.time()
    status, sent = op.call("/api/command", {"site": "tv-hn", "station": "tang-2",
                                            "name": "reload_config"})
    assert status == 200, sent
    cmd_id = sent["cmd_ids"][0]
    status, jobs = op.call(f"/api/commands?cmd_id={cmd_id}")
    assert status == 200 and [j["state"] for j in jobs] == ["sent"]
    # Its expiry is the default 300 s from now, and is what the station was told.
    assert before + 299 <= jobs[0]["expires_at"] <= time.time() + 301
    topic = "/tang-2/cmd/req/reload_config"
    wait_until(lambda: any(t.endswith(topic) for t, _p, _r in list(recorder.messages)), 10,
               "the command at the station")
    req = next(p for t, p, _ in list(recorder.messages) if t.endswith(topic))
    told = json.loads(req)
    assert told["cmd_id"] == cmd_id
    assert abs(dt.datetime.fromisoformat(told["expires_at"]).timestamp()
               - jobs[0]["expires_at"]) < 0.01
    # Too short or too long an expiry is refused, naming the field.
    status, err = op.call("/api/command", {"site": "tv-hn", "station": "tang-2",
                                           "name": "reload_config", "expires_s": 3})
    assert status == 400 and err["field"] == "expires_s"

    # Past its expiry with no answer: expired, in the job list, on the stream, in the store.
    events = _Events(svc, op)
    marked = svc.expire_commands(jobs[0]["expires_at"] + 1)
    assert [c["cmd_id"] for c in marked] == [cmd_id]
    assert op.call(f"/api/commands?cmd_id={cmd_id}")[1][0]["state"] == "expired"
    wait_until(lambda: any(e.get("cmd_id") == cmd_id and e["state"] == "expired"
                           for e in events.commands()), 10, "the expiry on the stream")
    events.close()
    wait_until(lambda: _stored_commands(svc).get(cmd_id, {}).get("state") == "expired", 10,
               "the expiry stored")
    stored = _stored_commands(svc)[cmd_id]
    assert (stored["by"], json.loads(stored["args"])) == ("binh", {})
    # After a restart the expiry is still known (and a late command still shows expired).
    again = FleetState()
    FleetStore(svc.store.engine.url.render_as_string(False)).load(again)
    assert again.commands[cmd_id]["expires_at"] == pytest.approx(jobs[0]["expires_at"])
    assert again.commands[cmd_id]["state"] == "expired"


def test_the_api_says_expired_even_before_the_tick(svc: FleetService,
                                                   recorder: Recorder) -> None:
    _fleet(svc, recorder)
    cmd_id = svc.send_command("tv-hn", "tang-2", "reload_config", {}, "binh", expires_s=0.3)
    op = _client(svc, "binh")
    wait_until(lambda: op.call(f"/api/commands?cmd_id={cmd_id}")[1][0]["state"] == "expired",
               10, "expired")


class _Events:
    """The service's event stream, read in a thread, as a page holds it open."""

    def __init__(self, svc: FleetService, client: Client) -> None:
        import threading

        self.frames: list[tuple[str, Any]] = []
        self.resp = client.opener.open(svc.url + "/events", timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: any(e == "snapshot" for e, _ in self.frames), 10, "the snapshot")

    def _read(self) -> None:
        event, data = "", list[str]()
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if not line and data:
                    self.frames.append((event, json.loads("\n".join(data))))
                    event, data = "", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except (OSError, ValueError, AttributeError):
            return  # closed by close(): http.client drops its file under the reader

    def commands(self) -> list[dict[str, Any]]:
        return [d for e, d in list(self.frames) if e == "command"]

    def close(self) -> None:
        self.resp.close()


def test_an_offline_or_silent_target_is_named_in_the_answer(svc: FleetService,
                                                            recorder: Recorder) -> None:
    _fleet(svc, recorder)
    op = _client(svc, "binh")
    status, sent = op.call("/api/command", {"site": "tv-hn", "station": "tang-2",
                                            "name": "reload_config"})
    assert status == 200 and sent["away"] == [{"station": "tang-2", "state": "offline"}]
    assert len(sent["cmd_ids"]) == 1  # sent all the same: it waits until it expires
    status, sent = op.call("/api/command", {"site": "tv-hn", "station": "quay-1",
                                            "name": "reload_config"})
    assert status == 200 and sent["away"] == []
    # A station whose health stopped coming, though its status still says online.
    with svc.state.lock:
        rec = svc.state.stations[("tv-hn", "quay-1")]
        rec.health_every_s, rec.last_seen = 5.0, time.time() - 600
    status, sent = op.call("/api/command", {"site": "tv-hn", "station": "quay-1",
                                            "name": "reload_config"})
    assert status == 200 and sent["away"] == [{"station": "quay-1", "state": "silent"}]


def test_a_site_wide_command_is_refused_until_confirmed_with_its_count(
        svc: FleetService, recorder: Recorder) -> None:
    _fleet(svc, recorder)
    op = _client(svc, "binh")
    body = {"site": "tv-hn", "name": "out_of_service", "args": {"message_vi": "Bảo trì"}}
    status, ask = op.call("/api/command", body)
    assert status == 409 and ask["error"] == "confirm" and ask["count"] == 3
    assert ask["away"] == [{"station": "tang-2", "state": "offline"}]
    assert op.call("/api/command", {**body, "confirm": True})[0] == 409  # not the count
    assert op.call("/api/command", {**body, "confirm": 2})[0] == 409
    assert svc.state.commands == {}  # nothing went out
    status, sent = op.call("/api/command", {**body, "confirm": 3})
    assert status == 200 and len(sent["cmd_ids"]) == 3
    wait_until(lambda: len([t for t, _, _ in recorder.messages
                            if t.endswith("/cmd/req/out_of_service")]) == 3, 10, "three sent")
    row = next(a for a in _audit(svc) if a["action"] == "out_of_service")
    assert (row["user"], row["target"], row["site"], row["result"]) == \
        ("binh", "tv-hn/*", "tv-hn", "sent")
    assert json.loads(row["detail"])["args"] == {"message_vi": "Bảo trì"}
    # A site of one station is that station: nothing more to confirm.
    admin = _client(svc, "an")
    assert admin.call("/api/command", {"site": "tv-hd", "name": "reload_config"})[0] == 200


# -- `selfcheck fleet send`
def test_fleet_send_goes_through_the_service_audited_and_its_result_kept(
        svc: FleetService, broker: Broker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main

    pw = tmp_path / "binh.pass"
    pw.write_text(PASSWORDS["binh"] + "\n")
    with StationThread(settings(tmp_path, broker)):
        wait_until(lambda: ("tv-fleet", "st-1") in svc.state.stations, 10, "the station")
        # Without a login the service refuses, and nothing is sent.
        code = main(["fleet", "send", "--url", svc.url, "tv-fleet/st-1", "send_diagnostics"])
        assert code == 2 and "--login" in capsys.readouterr().out
        assert svc.state.commands == {}
        code = main(["fleet", "--url", svc.url, "send", "st-1", "send_diagnostics",
                     "--login", "binh", "--login-password-file", str(pw), "--timeout", "30"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "sent send_diagnostics to tv-fleet/st-1" in out and "succeeded" in out
    (cmd,) = svc.state.commands.values()
    assert (cmd["by"], cmd["state"], cmd["station"]) == ("binh", "succeeded", "st-1")
    row = next(a for a in _audit(svc) if a["action"] == "send_diagnostics")
    assert (row["user"], row["result"], row["addr"]) == ("binh", "sent", "127.0.0.1")
    assert json.loads(row["detail"])["cmd_ids"] == [cmd["cmd_id"]]



class _FakeService:
    """An HTTP server answering each path with a fixed (status, body), or closing on it: the
    answers a real fleet service never gives, for the command line's handling of them."""

    def __init__(self, answers: dict[str, tuple[int, bytes] | None]) -> None:
        import http.server
        import threading

        self.answers, self.asked = answers, list[str]()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.partition("?")[0]
                owner.asked.append(path)
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                answer = owner.answers.get(path, (404, b"{}"))
                if answer is None:  # the connection cut without an answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer[0])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            do_GET = do_POST = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ME = (200, json.dumps({"csrf": "x", "user": {}, "names": {}, "login": False}).encode())
SENT = (200, json.dumps({"cmd_ids": ["c-1"], "away": []}).encode())


def test_fleet_send_does_not_send_a_password_in_clear_text_across_the_network(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main

    pw = tmp_path / "pass"
    pw.write_text("bi-mat\n")
    for url in ("http://192.0.2.1:9108", "http://fleet.thuvien.vn"):
        code = main(["fleet", "--lang", "en", "send", "--url", url, "tv-hn/quay-1",
                     "reload_config", "--login", "binh", "--login-password-file", str(pw)])
        err = capsys.readouterr().err
        assert code == 2 and "clear text" in err and "--url https://" in err, err
    code = main(["fleet", "--lang", "en", "--url", "http://10.0.0.5:9108", "--once",
                 "--login", "binh", "--login-password-file", str(pw)])
    assert code == 2 and "--url https://10.0.0.5:9108" in capsys.readouterr().err
    # To this machine over http://, or anywhere over https://, the login goes ahead.
    fake = _FakeService({"/api/login": (200, b"{}"), "/api/me": ME, "/api/stations": (
        200, b"[]")})
    try:
        for host in ("127.0.0.1", "localhost"):
            url = fake.url.replace("127.0.0.1", host)
            code = main(["fleet", "send", "--url", url, "quay-1", "reload_config",
                         "--login", "binh", "--login-password-file", str(pw)])
            assert code == 2 and "SITE/STATION" in capsys.readouterr().out
        assert fake.asked.count("/api/login") == 2
    finally:
        fake.close()


def test_fleet_send_says_one_line_for_a_service_that_answers_nonsense_or_goes_away(
        capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main

    def send(answers: dict[str, tuple[int, bytes] | None], *more: str) -> tuple[int, str]:
        fake = _FakeService(answers)
        try:
            code = main(["fleet", "--lang", "en", "send", "--url", fake.url, "tv-hn/quay-1",
                         "reload_config", "--timeout", "2", *more])
        finally:
            fake.close()
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out + err

    # /api/me answers 200 with null: not the fleet service.
    code, said = send({"/api/me": (200, b"null")})
    assert code == 3 and "/api/me" in said and "--url" in said
    # Sent, then the job list is not JSON.
    code, said = send({"/api/me": ME, "/api/command": SENT,
                       "/api/commands": (200, b"<html>proxy</html>")})
    assert code == 3 and "c-1 was sent" in said and "--cmd-id c-1" in said
    assert len(said.strip().splitlines()) == 2  # "sent ..." and the one line
    # Sent, then the service cuts every poll until the deadline.
    code, said = send({"/api/me": ME, "/api/command": SENT, "/api/commands": None})
    assert code == 3 and "c-1 was sent" in said
    # The command's own request cut: unknown whether it went, said once.
    code, said = send({"/api/me": ME, "/api/command": None})
    assert code == 3 and "does not answer" in said


def test_fleet_send_still_takes_the_old_broker_options_and_says_they_are_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main

    fake = _FakeService({"/api/me": ME, "/api/command": SENT, "/api/commands": (
        200, json.dumps([{"cmd_id": "c-1", "state": "succeeded"}]).encode())})
    try:
        code = main(["fleet", "--lang", "en", "send", "--url", fake.url, "tv-hn/quay-1",
                     "reload_config", "--broker", "10.0.0.2:8883", "--user", "operator",
                     "--password-file", str(tmp_path / "absent"), "--tls"])
    finally:
        fake.close()
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "c-1 reload_config succeeded" in out
    (note,) = [line for line in err.splitlines() if "ignored" in line]
    assert "--broker, --user, --password-file, --tls" in note and fake.url in note


# -- acknowledgements
def test_a_branch_operator_neither_acks_the_library_system_for_all_nor_sees_other_sites(
        svc: FleetService, recorder: Recorder) -> None:
    recorder.publish(topics.bridge_ils("central-bridge-1"), messages.encode(BridgeIls(
        bridge="central-bridge-1", state="down", since=dt.datetime.now(dt.UTC),
        ils="koha", detail="timed out")), retain=True)
    wait_until(lambda: svc.state.ils_rows() and svc.state.ils_rows()[0]["alert"], 10,
               "the library system down")
    op = _client(svc, "binh")
    body = {"bridge": "central-bridge-1", "kind": "ils_down"}
    assert op.call("/api/ack", body) == (403, {"error": "forbidden"})
    assert svc.state.ils_rows()[0]["alert"]["acked_at"] is None
    status, me = op.call("/api/me")
    assert status == 200 and me["names"] == {"sites": {"tv-hn": "Thư viện Hà Nội"},
                                             "stations": {"tv-hn/quay-1": "Quầy 1"}}
    admin = _client(svc, "an")
    status, rows = admin.call("/api/ack", body)
    assert status == 200 and rows[0]["alert"]["acked_by"] == "an"
    seen = [(a["user"], a["action"], a["result"]) for a in _audit(svc)]
    assert ("binh", "ack", "forbidden") in seen and ("an", "ack", "ok") in seen


def test_bulk_acknowledge_per_site_and_per_kind_within_the_operators_sites(
        svc: FleetService, recorder: Recorder) -> None:
    _fleet(svc, recorder)
    op = _client(svc, "binh")
    assert op.call("/api/ack_bulk", {})[0] == 400  # neither a site nor a kind
    assert op.call("/api/ack_bulk", {"site": "tv-hd"})[0] == 403  # not the operator's site
    assert _client(svc, "chi").call("/api/ack_bulk", {"site": "tv-hn"})[0] == 403  # a viewer
    # Every paper-out alert the operator sees: tv-hn's two, not tv-hd's.
    status, done = op.call("/api/ack_bulk", {"kind": "paper_out"})
    assert status == 200 and done["count"] == 2
    assert {r["station"] for r in done["rows"]} == {"quay-1", "quay-2"}
    acked = {(r["site"], r["station"]): [a["acked_by"] for a in r["alert_info"]]
             for r in svc.state.rows()}
    assert acked[("tv-hn", "quay-1")] == ["binh"] and acked[("tv-hd", "tra-1")] == [None]
    assert acked[("tv-hn", "tang-2")] == [None]  # its offline alert is another kind
    # The rest of the site, in one press; then nothing is left.
    status, done = op.call("/api/ack_bulk", {"site": "tv-hn"})
    assert status == 200 and done["count"] == 1
    assert op.call("/api/ack_bulk", {"site": "tv-hn"})[1]["count"] == 0
    rows = [a for a in _audit(svc) if a["action"] == "ack_bulk" and a["result"] == "ok"]
    assert [json.loads(r["detail"])["count"] for r in rows] == [2, 1]
    assert json.loads(rows[0]["detail"])["acked"] == ["quay-1 paper_out", "quay-2 paper_out"]
    # Written to the store, so a restart keeps who acknowledged.
    wait_until(lambda: _acked_in_store(svc) >= 3, 10, "the acknowledgements stored")


def test_a_bulk_acknowledge_across_sites_is_logged_per_site_for_each_sites_admin(
        svc: FleetService, recorder: Recorder) -> None:
    _fleet(svc, recorder)
    admin = _client(svc, "an")  # every site
    status, done = admin.call("/api/ack_bulk", {"kind": "paper_out"})
    assert status == 200 and done["count"] == 3
    rows = [a for a in _audit(svc) if a["action"] == "ack_bulk"]
    assert [(r["site"], r["target"], json.loads(r["detail"])) for r in rows] == [
        ("tv-hd", "tv-hd/* paper_out", {"count": 1, "acked": ["tra-1 paper_out"]}),
        ("tv-hn", "tv-hn/* paper_out", {"count": 2, "acked": ["quay-1 paper_out",
                                                              "quay-2 paper_out"]})]
    # The admin of tv-hd reads its part of the press, and nothing of tv-hn's stations.
    status, theirs = _client(svc, "dung").call("/api/audit?action=ack_bulk")
    assert status == 200 and [(a["site"], a["detail"]) for a in theirs] == [
        ("tv-hd", rows[0]["detail"])]
    status, theirs = _client(svc, "dung").call("/api/audit")
    assert status == 200 and "quay-" not in json.dumps(theirs)
    assert {a["site"] for a in theirs} == {"tv-hd"}
    req = _client(svc, "dung").opener.open(svc.url + "/api/audit.csv", timeout=10)
    text = req.read().decode("utf-8-sig")
    assert "tra-1" in text and "quay-" not in text and "login" not in text
    # A press that finds nothing is one row, of its site if it named one.
    assert admin.call("/api/ack_bulk", {"kind": "paper_out"})[1]["count"] == 0
    last = _audit(svc)[-1]
    assert (last["action"], last["site"], last["result"]) == ("ack_bulk", None, "not_active")


def _acked_in_store(svc: FleetService) -> int:
    with svc.store.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT count(*) FROM fleet_alerts WHERE acked_by = 'binh'").scalar() or 0)


# -- the audit log
def test_the_audit_log_filters_pages_exports_and_records_logins_and_user_changes(
        svc: FleetService, recorder: Recorder, tmp_path: Path) -> None:
    _fleet(svc, recorder)
    assert Client(svc.url).call("/api/login", {"name": "binh", "password": "wrong-one-x"}
                                )[0] == 401
    op = _client(svc, "binh")
    op.call("/api/command", {"site": "tv-hn", "station": "quay-1", "name": "out_of_service",
                             "args": {"message_en": "=HYPERLINK(\"x\")"}})
    op.call("/api/ack", {"site": "tv-hn", "station": "quay-2", "kind": "paper_out"})
    assert op.call("/api/logout", {})[0] == 200
    # User changes from the command line, in the same log.
    url = svc.store.engine.url.render_as_string(False)
    pw = tmp_path / "pw"
    pw.write_text("mat-khau-moi-5\n")
    for argv in (["add", "em", "--role", "viewer", "--password-file", str(pw)],
                 ["password", "em", "--password-file", str(pw)], ["disable", "em"],
                 ["remove", "em"]):
        out = subprocess.run([sys.executable, "-m", "selfcheck.cli", "fleet", "user", *argv,
                              "--db", url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    admin = _client(svc, "an")
    status, rows = admin.call("/api/audit")
    assert status == 200
    seen = [(a["user"], a["action"], a["target"], a["result"]) for a in rows]
    assert ("binh", "login", "binh", "bad") in seen and ("binh", "login", "binh", "ok") in seen
    assert ("binh", "logout", "binh", "ok") in seen
    who = next(a["user"] for a in rows if a["action"] == "user_add")
    assert who.startswith("cli")
    assert [a["action"] for a in rows if a["target"] == "em"] == [
        "user_remove", "user_disable", "user_password", "user_add"]
    assert all(a["addr"] == "127.0.0.1" for a in rows if a["user"] == "binh")
    sent = next(a for a in rows if a["action"] == "out_of_service")
    assert json.loads(sent["detail"])["args"] == {"message_en": "=HYPERLINK(\"x\")"}

    # Filters: user, action, site, time range; a bad one is refused.
    def q(query: str) -> list[dict[str, Any]]:
        status, got = admin.call("/api/audit?" + query)
        assert status == 200, got
        return list(got)

    assert {a["user"] for a in q("user=binh")} == {"binh"}
    assert {a["action"] for a in q("action=ack")} == {"ack"}
    assert {a["site"] for a in q("site=tv-hn")} == {"tv-hn"}
    assert len(q("site=tv-hn")) == 2
    assert q(f"from={time.time() + 60:.0f}") == []
    assert len(q(f"to={time.time() + 60:.0f}")) == len(rows)
    assert admin.call("/api/audit?from=yesterday")[0] == 400
    # Paged: newest first, `before` the last id seen goes on to older rows, none twice.
    first = q("limit=3")
    second = q(f"limit=3&before={first[-1]['id']}")
    assert len(first) == len(second) == 3 and first[-1]["id"] > second[0]["id"]
    ids = [a["id"] for a in first + second]
    assert ids == sorted(ids, reverse=True) == [a["id"] for a in rows[:6]]
    # An admin of one site sees its rows only: not another site's, nor those of no site
    # (logins with their addresses, user changes), which are every branch's.
    status, theirs = _client(svc, "dung").call("/api/audit")
    assert status == 200 and {a["site"] for a in theirs} <= {"tv-hd"}
    assert not [a for a in theirs if a["action"] in ("login", "logout", "user_add")]
    assert _client(svc, "dung").call("/api/audit?site=tv-hn")[0] == 403
    assert _client(svc, "binh").call("/api/audit")[0] == 403  # an operator

    # The export: every column, oldest first, a formula quoted as text.
    req = admin.opener.open(svc.url + "/api/audit.csv?user=binh", timeout=10)
    assert req.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in req.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(req.read().decode("utf-8-sig"))))
    assert table[0] == ["id", "at", "user", "addr", "action", "site", "target", "result",
                        "detail"]
    assert [r[4] for r in table[1:]] == ["login", "login", "out_of_service", "ack", "logout",
                                         "login"]  # the last: binh's look at the log above
    assert table[1][1].endswith("Z") and table[1][3] == "127.0.0.1"
    detail = table[3][8]
    assert "HYPERLINK" in detail and not detail.startswith("=")


def test_the_audit_log_is_bounded_by_age_and_rows(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'central.db'}")
    from selfcheck.central.fleet.auth import Auth

    auth = Auth(store.engine)
    for i in range(12):
        auth.audit("an", "ack", f"s/{i}", "ok")
    with store.engine.begin() as conn:  # two rows from long ago
        conn.exec_driver_sql("UPDATE fleet_audit SET at = at - 500 * 86400 WHERE id <= 2")
    store.keep_audit_rows = 5
    store.prune(time.time())
    left = [a["target"] for a in auth.audit_rows()]
    assert left == [f"s/{i}" for i in range(11, 6, -1)]

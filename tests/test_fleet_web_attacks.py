"""The operators' console under attack, over real HTTP: a refused request's body is never read
as the next request, a crowd of logins neither exhausts memory nor races the limits, unknown
names answer as known ones do, and sessions end (streams included) on logout, on a password
change, on removal and on disabling."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.lab.broker import Broker

PASSWORD = "quan-tri-vien-1"


def _service(tmp_path: Path, broker: Broker, login: bool) -> FleetService:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'fleet.db'}", login=login)
    if login:
        svc.auth.add_user("an", PASSWORD, "admin")
    svc.start()
    return svc


@pytest.fixture
def open_fleet(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = _service(tmp_path, broker, login=False)
    yield svc
    svc.stop()


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = _service(tmp_path, broker, login=True)
    yield svc
    svc.stop()


def _addr(svc: FleetService) -> tuple[str, int]:
    host, port = svc.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(f: Any) -> tuple[int, bytes] | None:
    """One HTTP/1.1 response (with a Content-Length) from a socket file; None if closed."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    length = 0
    while (h := f.readline()) not in (b"\r\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, f.read(length)


@pytest.mark.parametrize("refusal", ["header", "size"])
def test_a_refused_posts_body_is_not_read_as_the_next_request(open_fleet: FleetService,
                                                              refusal: str) -> None:
    host, port = _addr(open_fleet)
    smuggled = f"POST /api/logout HTTP/1.1\r\nHost: {host}\r\nX-Requested-With: fleet\r\n" \
               "Content-Length: 0\r\n\r\n"
    if refusal == "header":  # no X-Requested-With: 403 before the body is looked at
        body, extra = smuggled, ""
    else:  # too large: 413 before the body is looked at
        body, extra = smuggled + " " * (70 * 1024), "X-Requested-With: fleet\r\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        f = sock.makefile("rb")
        sock.sendall(f"POST /api/ack HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
                     .encode())
        first = _read_response(f)
        assert first is not None and first[0] in (403, 413)
        try:
            sock.sendall(f"GET /api/stations HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            second = _read_response(f)
        except OSError:
            second = None  # the server closed the connection: as good
    # The next answer is the victim's own request (a list of stations), or nothing at all;
    # never the smuggled logout's {"ok": true}.
    if second is not None:
        assert second == (200, b"[]"), second


def _call(svc: FleetService, path: str, body: dict[str, Any] | None = None, *,
          cookie: str = "", csrf: str = "", origin: str | None = None,
          source: str | None = None) -> tuple[int, dict[str, str], Any]:
    host, port = _addr(svc)
    conn = http.client.HTTPConnection(host, port, timeout=30,
                                      source_address=(source, 0) if source else None)
    headers = {"Content-Type": "application/json", "X-Requested-With": "fleet"}
    if cookie:
        headers["Cookie"] = f"fleet_session={cookie}"
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if origin is not None:
        headers["Origin"] = origin
    try:
        conn.request("POST" if body is not None else "GET", path,
                     body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, \
            json.loads(data or b"null")
    finally:
        conn.close()


def _login(svc: FleetService, password: str = PASSWORD, name: str = "an",
           source: str | None = None) -> tuple[str, str]:
    status, headers, data = _call(svc, "/api/login", {"name": name, "password": password},
                                  source=source)
    assert status == 200, (status, data)
    token = re.search(r"fleet_session=([^;]*)", headers["set-cookie"])
    assert token is not None
    return token.group(1), data["csrf"]


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024  # type: ignore[union-attr]


def test_a_crowd_of_bogus_logins_neither_exhausts_memory_nor_races_the_limits(
        fleet: FleetService) -> None:
    checks = 0
    hasher = fleet.auth.hasher

    class Counted:  # the service's hasher, counting its password checks
        def verify(self, pw_hash: str, password: str) -> bool:
            nonlocal checks
            checks += 1
            return hasher.verify(pw_hash, password)

    fleet.auth.hasher = Counted()  # type: ignore[assignment]
    token, _ = _login(fleet, source="127.0.0.5")  # an operator watching meanwhile
    checks = 0  # (that login's check is not the crowd's)
    latencies: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            assert _call(fleet, "/api/stations", cookie=token)[0] == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = _peak_rss_mib()
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from now
    base = _peak_rss_mib()
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda _: _call(fleet, "/api/login", {
            "name": "an", "password": "wrong-password"}), range(48)))
    peak = _peak_rss_mib()
    stop.set()
    watcher.join(10)
    print(f"\n48 parallel wrong logins: peak RSS {base:.0f} -> {peak:.0f} MiB "
          f"(+{peak - base:.0f}; the process had peaked at {before:.0f}), "
          f"{checks} password checks; /api/stations meanwhile: {len(latencies)} calls, "
          f"max {max(latencies) * 1000:.0f} ms")
    # Two checks at a time at 64 MiB each, not 48 (3 GiB).
    assert peak - base < 400
    assert all(status in (401, 423, 429) for status, _, _ in answers)
    # Every check was counted (one UPDATE each, none lost), and the crowd stopped being
    # checked soon after the lock: not 48 checks.
    assert checks <= fleet.auth.max_failures + 2
    with fleet.store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT failures FROM fleet_users WHERE name='an'").scalar()
    assert stored == checks
    # From this address the account is locked, the right password too ...
    status, headers, data = _call(fleet, "/api/login", {"name": "an", "password": PASSWORD})
    assert status in (423, 429) and data["error"] == "locked"
    # ... but the real user elsewhere is only slowed: told when to try, then let in.
    status, headers, data = _call(fleet, "/api/login", {"name": "an", "password": PASSWORD},
                                  source="127.0.0.2")
    if status == 429:
        wait = int(headers["retry-after"])
        assert 1 <= wait <= 60
        time.sleep(wait)
        status, _, _ = _call(fleet, "/api/login", {"name": "an", "password": PASSWORD},
                             source="127.0.0.2")
    assert status == 200


def test_unknown_names_answer_as_known_ones_do(fleet: FleetService) -> None:
    def timed(name: str, source: str) -> tuple[float, list[Any]]:
        started = time.perf_counter()
        status, _, data = _call(fleet, "/api/login", {"name": name, "password": "not-this-one"},
                                source=source)
        return time.perf_counter() - started, [status, data["error"]]

    # Tried over and over from one address, a real name and a made-up one answer alike, the
    # lock included (it would otherwise tell which names exist) ...
    known: list[tuple[float, list[Any]]] = []
    unknown: list[tuple[float, list[Any]]] = []
    for _ in range(fleet.auth.max_failures + 1):  # in turn: a busy machine slows both alike
        known.append(timed("an", "127.0.0.3"))
        unknown.append(timed("nobody", "127.0.0.4"))
    assert [a for _, a in known] == [a for _, a in unknown]
    assert known[0][1] == [401, "bad"]
    # ... and in about the same time (the first tries: checked, not refused early). The
    # quickest of each: what the check costs, without what other work on the machine adds.
    n = fleet.auth.max_failures - 1
    k = min(t for t, _ in known[:n])
    u = min(t for t, _ in unknown[:n])
    print(f"\nwrong password {k * 1000:.0f} ms, unknown name {u * 1000:.0f} ms")
    assert 0.5 < u / k < 2


class _Stream:
    """An open /events stream, read in a thread; `ended` is set when the server ends it."""

    def __init__(self, svc: FleetService, token: str) -> None:
        host, port = _addr(svc)
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.conn.request("GET", "/events", headers={"Cookie": f"fleet_session={token}"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while self.resp.read1(4096):
                pass
        except OSError:
            pass
        self.ended.set()

    def close(self) -> None:
        self.conn.close()


def test_sessions_and_their_streams_end_on_logout_password_change_removal_and_disabling(
        fleet: FleetService, tmp_path: Path) -> None:
    # Logout: the stream of that session ends within a second or two.
    token, csrf = _login(fleet)
    stream = _Stream(fleet, token)
    assert not stream.ended.wait(1.5)
    assert _call(fleet, "/api/logout", {}, cookie=token, csrf=csrf)[0] == 200
    assert stream.ended.wait(5), "the stream outlived its logout"
    assert _call(fleet, "/api/stations", cookie=token)[0] == 401
    # A password change (`user add --replace`): the old session can no longer send commands.
    token, csrf = _login(fleet)
    stream = _Stream(fleet, token)
    fleet.auth.add_user("an", "mat-khau-moi-2", "admin", replace=True)
    assert stream.ended.wait(5)
    assert _call(fleet, "/api/command", {"site": "s", "name": "reload_config"}, cookie=token,
                 csrf=csrf)[0] == 401
    # `selfcheck fleet user remove` from another process: the stream ends all the same.
    from selfcheck.cli import main

    token, csrf = _login(fleet, "mat-khau-moi-2")
    stream = _Stream(fleet, token)
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    assert main(["fleet", "user", "disable", "an", "--db", db]) == 0
    assert stream.ended.wait(10), "the stream outlived its user's disabling"
    status, _, data = _call(fleet, "/api/login", {"name": "an", "password": "mat-khau-moi-2"},
                            source="127.0.0.4")
    assert (status, data["error"]) == (401, "bad")  # as any wrong password
    fleet.auth.add_user("an", PASSWORD, "admin", replace=True)  # enabled again
    token, csrf = _login(fleet, source="127.0.0.4")
    stream = _Stream(fleet, token)
    assert main(["fleet", "user", "remove", "an", "--db", db]) == 0
    assert stream.ended.wait(10), "the stream outlived its user"
    assert _call(fleet, "/api/stations", cookie=token)[0] == 401
    assert main(["fleet", "user", "remove", "an", "--db", db]) == 2


def test_the_cookie_slides_with_activity_and_origin_is_checked(fleet: FleetService) -> None:
    token, csrf = _login(fleet)
    status, headers, _ = _call(fleet, "/api/stations", cookie=token)
    assert status == 200
    assert f"fleet_session={token}" in headers["set-cookie"]
    assert f"Max-Age={int(fleet.auth.session_s)}" in headers["set-cookie"]
    assert "strict-transport-security" not in headers  # plain HTTP: a browser ignores it
    body = {"site": "s", "station": "a", "kind": "paper_out"}
    # Another site's page, even with a stolen token: refused before anything is done.
    status, _, data = _call(fleet, "/api/ack", body, cookie=token, csrf=csrf,
                            origin="https://evil.example")
    assert (status, data["error"]) == (403, "origin")
    host, port = _addr(fleet)
    status, _, data = _call(fleet, "/api/ack", body, cookie=token, csrf=csrf,
                            origin=f"http://{host}:{port}")
    assert (status, data["error"]) == (409, "not_active")  # past the checks

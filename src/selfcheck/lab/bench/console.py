"""The operators' console at scale: `selfcheck simulate` at 200 and 1,000 stations (tele/health
at the real rate, 60 s), a central bridge, the fleet service and its page in headless Chromium,
each its own process, in the same run.

Figures per size: the fleet service's CPU share over a measuring window with every station
connected; the page's time to first render (navigation start to the station rows on screen);
the delay from a station message to its row on the page (a probe station's health, published
every half second, until the page shows its new value), p50 / p99; the delay from a station
event (`evt/staff_needed` of a new probe station each time) to its alert in the page's DOM,
p50 / p99; the service's resident memory (RSS, and its peak); and `/api/stations` latency,
p50 / p99, for a logged-in operator alone and while 50 clients try wrong passwords (each try a
new name from a new address, as through the reverse proxy: every one costs a password hash).
The service runs with logins, as in production.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfcheck.lab.bench.browser import CHROMIUM, Browser
from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.bench.fleet import TICK, FleetProcess, cpu_seconds, pct
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.telemetry import Event, Health

SITE = "bench-console"
WINDOW_S = 90.0
USER, PASSWORD = "bench", "bench-operator-password"
ATTACKERS = 50
STAFF_PROBES = 40


class Operator:
    """A logged-in operator's HTTP client (a cookie jar, as a browser)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        req = urllib.request.Request(
            f"{url}/api/login", data=json.dumps({"name": USER, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json", "X-Requested-With": "fleet"})
        with self.opener.open(req, timeout=60) as resp:
            resp.read()

    def stations(self) -> list[dict[str, Any]]:
        with self.opener.open(f"{self.url}/api/stations", timeout=60) as resp:
            rows: list[dict[str, Any]] = json.load(resp)
        return rows


class LoginFleet(FleetProcess):
    """The fleet service with logins and one operator (the bench's FleetProcess has none)."""

    def __init__(self, broker: Any, db_url: str, port: int, work: Path) -> None:
        pw = work / "bench.pass"
        pw.write_text(PASSWORD)
        subprocess.run([sys.executable, "-m", "selfcheck.cli", "fleet", "user", "add", USER,
                        "--role", "admin", "--password-file", str(pw), "--db", db_url],
                       check=True, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "fleet", "serve", "--broker", str(broker),
             "--db", db_url, "--http", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"fleet ready" in line:
                return
        raise RuntimeError("fleet service did not start")


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory now and its peak (VmRSS, VmHWM), MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _latencies(op: Operator, seconds: float) -> list[float]:
    """/api/stations one after another for `seconds`: each answer's time, ms."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        op.stations()
        out.append(1000 * (time.perf_counter() - t0))
    return out


class Attackers:
    """Clients trying wrong passwords as fast as they are answered, each try a new name from a
    new address (X-Forwarded-For, believed from this host as from the reverse proxy)."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def _run(self, i: int) -> None:
        k = 0
        while not self.stop.is_set():
            k += 1
            req = urllib.request.Request(
                f"{self.url}/api/login", data=json.dumps(
                    {"name": f"guess-{i}-{k}", "password": "wrong-password"}).encode(),
                headers={"Content-Type": "application/json", "X-Requested-With": "fleet",
                         "X-Forwarded-For": f"10.{i}.{k // 250 % 250}.{k % 250 + 1}"})
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0  # refused or timed out
            with self._lock:
                self.answers[status] += 1

    def __enter__(self) -> Attackers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(150)


def _count(op: Operator) -> int:
    return sum(1 for r in op.stations() if r["online"])


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in a process group (the simulator and its children)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _settle(pgid: int, every_s: float = 5.0, limit_s: float = 300.0) -> float:
    """Wait until the process group's CPU share is steady (two `every_s` samples within 15 %
    of each other, or under 5 % of a core); returns the last share (bounded by `limit_s`)."""
    deadline = time.monotonic() + limit_s
    last = None
    while True:
        before, t0 = group_cpu_seconds(pgid), time.monotonic()
        time.sleep(every_s)
        share = 100 * (group_cpu_seconds(pgid) - before) / (time.monotonic() - t0)
        if (share < 5 or (last is not None and abs(share - last) <= 0.15 * last)
                or time.monotonic() > deadline):
            return share
        last = share


def one_size(stations: int, window_s: float) -> Iterator[Figure]:
    work = Path(tempfile.mkdtemp(prefix="selfcheck-bench-console-"))
    with Broker(work / "broker") as broker, CentralProcess(
            broker.address, f"sqlite:///{work / 'central.db'}",
            sample_items=stations * 3 + 10, sample_patrons=stations + 1):
        fleet = LoginFleet(broker.address, f"sqlite:///{work / 'fleet.db'}", free_port(), work)
        op = Operator(fleet.url)
        sim = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "simulate", "--stations", str(stations),
             "--broker", str(broker.address), "--site", SITE, "--transactions", "0",
             "--linger", str(window_s + 600), "--workdir", str(work / "stations")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, SELFCHECK_TELEMETRY_S="60"))
        browser = None
        try:
            # On a loaded machine a few simulated stations may not get in: measure once 95 %
            # are connected (the note says how many).
            t_connect = time.monotonic()
            while (online := _count(op)) < stations * 0.95:
                if time.monotonic() - t_connect > 1200:
                    raise RuntimeError(f"only {online} of {stations} connected")
                time.sleep(2)
            connect_s = time.monotonic() - t_connect
            # Starting a thousand stations (journals, connections) loads this machine for a
            # while: measure once the simulated stations are down to their steady cost.
            settled_cpu = _settle(sim.pid)
            probe = make_client("probe-console")
            probe.connect(broker.address.host, broker.address.port)
            probe.loop_start()
            browser = Browser(work / "profile", 1366, 860)
            browser.go(f"{fleet.url}/?lang=vi")
            browser.wait("!document.getElementById('login').hidden", 60, "the login form")
            browser.type("#l-name", USER)
            browser.type("#l-pw", PASSWORD)
            browser.click("#l-go")
            browser.wait("document.getElementById('login').hidden", 60, "logged in")
            renders = []
            for _ in range(3):
                browser.go(f"{fleet.url}/?lang=vi")
                browser.wait(f"document.querySelectorAll('#rows tr').length >= {online}", 120)
                renders.append(float(browser.js("window.firstRenderMs")))
            browser.js("""window.seenAt = {}; window.onRendered = () => {
                const c = document.getElementById('st-bench-console/probe-1');
                if (!c) return;
                const v = c.querySelector('td.c-temp').textContent;
                if (!(v in window.seenAt))
                    window.seenAt[v] = performance.timeOrigin + performance.now();
            }""")
            pid = fleet.proc.pid
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            sent: dict[str, float] = {}
            n = 0
            while time.monotonic() - t0 < window_s:
                n += 1
                now = dt.datetime.now(dt.UTC)
                sent[f"{n:.1f}"] = time.time() * 1000
                probe.publish(f"lib/v1/{SITE}/probe-1/tele/health", messages.encode(Health(
                    at=now, uptime_s=n, cpu_temp_c=float(n))), qos=1)
                time.sleep(0.5)
            cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            time.sleep(2)
            seen = browser.js("window.seenAt") or {}
            delays = [seen[k] - t for k, t in sent.items() if k in seen]
            # A station event to its alert in the DOM: a staff call from a new station each
            # time (the event bucket allows a station a few; a new row also reorders the page).
            browser.js("""window.alertSeen = {}; window.onRendered = () => {
                // Alerts first: the probes are among the top rows, not a thousand down.
                for (const tr of [...document.querySelectorAll('#rows tr')].slice(0, 100)) {
                    if (tr.id.includes('/staff-') && !(tr.id in window.alertSeen)
                            && tr.querySelector('[data-alert="staff_needed"]'))
                        window.alertSeen[tr.id] = performance.timeOrigin + performance.now();
                }
            }""")
            raised: dict[str, float] = {}
            for k in range(1, (10 if window_s < 60 else STAFF_PROBES) + 1):
                st = f"staff-{k}"
                raised[f"st-{SITE}/{st}"] = time.time() * 1000
                probe.publish(f"lib/v1/{SITE}/{st}/evt/staff_needed", messages.encode(Event(
                    kind="staff_needed", at=dt.datetime.now(dt.UTC), severity="critical")),
                    qos=1)
                time.sleep(1.0)
            time.sleep(2)
            alert_seen = browser.js("window.alertSeen") or {}
            alert_delays = [alert_seen[k] - t for k, t in raised.items() if k in alert_seen]
            probe.loop_stop()
            browser.close()  # its stream is no load on what follows
            browser = None
            # Memory, and the operator's table alone, then under a crowd of wrong passwords.
            rss_steady, _ = rss_mib(pid)
            phase_s = 10.0 if window_s < 60 else 30.0
            calm = _latencies(op, phase_s)
            with Attackers(fleet.url, ATTACKERS) as crowd:
                time.sleep(2)  # every attacker under way
                attacked = _latencies(op, phase_s)
            rss_after, rss_peak = rss_mib(pid)
            tries = dict(sorted(crowd.answers.items()))
        finally:
            if browser is not None:
                browser.close()
            os.killpg(sim.pid, signal.SIGTERM)
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(sim.pid, signal.SIGKILL)
                sim.wait()
            fleet.stop()
    note = (f"{stations} stations ({online} connected), tele/health every 60 s, "
            f"{window_s:.0f} s window after 95 % connected ({connect_s:.0f} s) and the "
            f"simulated stations settled ({settled_cpu:.0f} % of a core); load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    yield figure(f"console_{stations}_fleet_cpu_share", cpu, "% of one core", note=note)
    yield figure(f"console_{stations}_first_render", pct(renders, 50), "ms",
                 samples=[round(r) for r in renders],
                 note="navigation start to every station row on the page (median of 3)")
    yield figure(f"console_{stations}_event_to_page_p50", pct(delays, 50), "ms",
                 samples=len(delays), sent=len(sent),
                 note="probe health published -> its new value on the page")
    yield figure(f"console_{stations}_event_to_page_p99", pct(delays, 99), "ms",
                 samples=len(delays))
    yield figure(f"console_{stations}_staff_event_to_dom_p50", pct(alert_delays, 50), "ms",
                 samples=len(alert_delays), sent=len(raised),
                 note="evt/staff_needed published -> its alert in the page's DOM (Chromium)")
    yield figure(f"console_{stations}_staff_event_to_dom_p99", pct(alert_delays, 99), "ms",
                 samples=len(alert_delays))
    yield figure(f"console_{stations}_fleet_rss", rss_steady, "MiB",
                 note="fleet service resident memory, every station connected, after the "
                 "page measures")
    yield figure(f"console_{stations}_fleet_rss_peak", rss_peak, "MiB",
                 rss_after_attack=round(rss_after, 1),
                 note="peak resident memory (VmHWM) over the run, wrong-password crowd included")
    for label, values, extra in (("alone", calm, {}), ("attacked", attacked, {
            "attackers": ATTACKERS, "login_answers": tries,
            "login_tries_per_s": round(sum(tries.values()) / (phase_s + 2), 1)})):
        base = pct(calm, 50) if label == "attacked" else None
        yield figure(f"console_{stations}_api_stations_{label}_p50", pct(values, 50), "ms",
                     baseline=base, samples=len(values), **extra)
        yield figure(f"console_{stations}_api_stations_{label}_p99", pct(values, 99), "ms",
                     baseline=pct(calm, 99) if label == "attacked" else None,
                     samples=len(values))


def run(args: argparse.Namespace) -> Iterator[Figure]:
    if CHROMIUM is None:
        raise RuntimeError("chromium missing: scripts/bootstrap installs it")
    # SELFCHECK_BENCH_STATIONS=200,1000 (the default) picks the fleet sizes.
    sizes = (50,) if args.quick else tuple(
        int(n) for n in os.environ.get("SELFCHECK_BENCH_STATIONS", "200,1000").split(","))
    for n in sizes:
        yield from one_size(n, 20.0 if args.quick else WINDOW_S)

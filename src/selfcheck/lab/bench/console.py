"""The operators' console at scale: `selfcheck simulate` at 200 and 1,000 stations (tele/health
at the real rate, 60 s), a central bridge, the fleet service and its page in headless Chromium,
each its own process, in the same run.

Figures per size: the fleet service's CPU share over a measuring window with every station
connected; the page's time to first render (navigation start to the station rows on screen);
the delay from a station event to its row on the page (a probe station's health, published
every half second, until the page shows its new value), p50 / p99; and the same delay to the
service's server-sent events, for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.browser import CHROMIUM, Browser
from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.bench.fleet import TICK, FleetProcess, cpu_seconds, pct
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.telemetry import Health

SITE = "bench-console"
WINDOW_S = 90.0


def _count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/stations", timeout=30) as resp:
        return sum(1 for r in json.load(resp) if r["online"])


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
        fleet = FleetProcess(broker.address, f"sqlite:///{work / 'fleet.db'}", free_port())
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
            while (online := _count(fleet.url)) < stations * 0.95:
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
            probe.loop_stop()
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


def run(args: argparse.Namespace) -> Iterator[Figure]:
    if CHROMIUM is None:
        raise RuntimeError("chromium missing: scripts/bootstrap installs it")
    # SELFCHECK_BENCH_STATIONS=200,1000 (the default) picks the fleet sizes.
    sizes = (50,) if args.quick else tuple(
        int(n) for n in os.environ.get("SELFCHECK_BENCH_STATIONS", "200,1000").split(","))
    for n in sizes:
        yield from one_size(n, 20.0 if args.quick else WINDOW_S)

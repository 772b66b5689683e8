"""Fleet telemetry at scale: `selfcheck simulate --stations 200` with telemetry on, against a
broker, one central bridge and one fleet-state service, each its own process.

Figures: the CPU share of each central process (CPU seconds / wall seconds over the run, 100 =
one core), and the delay from a station event (`evt/staff_needed` published) to the
operator's screen (the row arriving on the fleet service's server-sent events), sampled every
half second during the load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import BrokerAddress, make_client
from selfcheck.mqtt.telemetry import Event

SITE = "bench-fleet"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered \
        else float("nan")


class FleetProcess:
    def __init__(self, broker: BrokerAddress, db_url: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "fleet", "serve", "--broker", str(broker),
             "--db", db_url, "--http", f"127.0.0.1:{port}", "--no-login"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"fleet ready" in line:
                return
        raise RuntimeError("fleet service did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Screen(threading.Thread):
    """An operator's screen: reads /events and notes when each probe event shows."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, float] = {}
        self.updates = 0
        self.ready = threading.Event()

    def run(self) -> None:
        with urllib.request.urlopen(f"{self.url}/events", timeout=600) as resp:
            for raw in resp:
                if raw.startswith(b"event: snapshot"):
                    self.ready.set()
                if not raw.startswith(b"data:"):
                    continue
                self.updates += 1
                if b"probe-" not in raw:
                    continue
                at = time.monotonic()
                evt = (json.loads(raw[5:]) or {})
                detail = (evt.get("last_event") or {}).get("detail") if isinstance(evt, dict) \
                    else None
                if detail:
                    self.seen.setdefault(detail, at)


def run(args: argparse.Namespace) -> Iterator[Figure]:
    stations = 50 if args.quick else 200
    period = 5.0  # tele/health every 5 s instead of 60: twelve times the real load
    work = Path(tempfile.mkdtemp(prefix="selfcheck-bench-fleet-"))
    with Broker(work / "broker") as broker, CentralProcess(
            broker.address, f"sqlite:///{work / 'central.db'}",
            sample_items=stations * 3 + 10, sample_patrons=stations + 1) as central:
        fleet = FleetProcess(broker.address, f"sqlite:///{work / 'fleet.db'}", free_port())
        try:
            screen = Screen(fleet.url)
            screen.start()
            screen.ready.wait(10)
            probe = make_client("probe-1")
            probe.connect(broker.address.host, broker.address.port)
            probe.loop_start()
            pids = {"broker": broker.proc.pid if broker.proc else 0, "bridge": central.pid,
                    "fleet": fleet.proc.pid}
            env = dict(os.environ, SELFCHECK_TELEMETRY_S=str(period))
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            t0 = time.monotonic()
            # One `selfcheck simulate --stations 200`, as operators would run it; it spreads
            # the stations over child processes itself (paho's select() limit).
            sims = [subprocess.Popen(
                [sys.executable, "-m", "selfcheck.cli", "simulate", "--stations",
                 str(stations), "--broker", str(broker.address), "--site", SITE + "-sim",
                 "--transactions", "48", "--workdir", str(work / "stations")],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)]
            sent: dict[str, float] = {}
            n = 0
            while any(sim.poll() is None for sim in sims):
                n += 1
                token = f"probe-{n}"
                evt = Event(kind="staff_needed", at=dt.datetime.now(dt.UTC), detail=token)
                sent[token] = time.monotonic()
                probe.publish(f"lib/v1/{SITE}/probe-1/evt/staff_needed", messages.encode(evt),
                              qos=1)
                time.sleep(0.5)
            wall = time.monotonic() - t0
            cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
            results = [json.loads((sim.stdout.read() if sim.stdout else b"{}").decode()
                                  .strip().splitlines()[-1] or "{}") for sim in sims]
            time.sleep(1)
            probe.loop_stop()
            delays = [(screen.seen[k] - t) * 1000 for k, t in sent.items() if k in screen.seen]
            with urllib.request.urlopen(f"{fleet.url}/metrics", timeout=10) as resp:
                metrics = resp.read().decode()
            channels = {line.split('"')[1]: int(float(line.rsplit(" ", 1)[1]))
                        for line in metrics.splitlines()
                        if line.startswith("selfcheck_fleet_messages_total{")}
            taken = sum(channels.values())
        finally:
            fleet.stop()
    note = (f"{stations} simulated stations, tele/health every {period:.0f} s, "
            f"{sum(r.get('transactions', 0) for r in results)} transactions "
            f"({sum(r.get('ok', 0) for r in results)} ok, "
            f"{sum(r.get('failed', 0) for r in results)} failed), "
            f"{wall:.1f} s")
    for name, pid_key in (("fleet", "fleet"), ("bridge", "bridge"), ("broker", "broker")):
        yield figure(f"fleet_{name}_cpu_share", 100 * (cpu1[pid_key] - cpu0[pid_key]) / wall,
                     "% of one core", note=note)
    yield figure("fleet_messages_per_s", taken / wall, "msg/s", channels=channels,
                 note="messages the fleet service took")
    yield figure("fleet_event_to_screen_p50", pct(delays, 50), "ms",
                 samples=len(delays), sent=len(sent),
                 note="evt published -> row on the fleet service's server-sent events")
    yield figure("fleet_event_to_screen_p99", pct(delays, 99), "ms", samples=len(delays))
    yield figure("fleet_event_to_screen_max", max(delays) if delays else float("nan"), "ms")

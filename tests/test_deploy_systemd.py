"""The systemd units verify, and the station app speaks the notify protocol from its UI loop."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNITS = sorted((ROOT / "systemd").glob("*.service"))


def test_there_are_units_for_station_bridge_and_fleet() -> None:
    names = {u.name for u in UNITS}
    assert {"selfcheck-station.service", "selfcheck-central@.service",
            "selfcheck-fleet.service"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze missing: scripts/bootstrap installs Debian's systemd")
    # verify checks that ExecStart exists: point /opt/selfcheck at this checkout (same layout),
    # and the station's current release at its venv (provision.sh's first release).
    name = unit.name.replace("@.", "@1.")  # a template verifies as an instance
    (tmp_path / name).write_text(unit.read_text().replace(
        "/var/lib/selfcheck/releases/current/venv", str(ROOT / ".venv")).replace(
        "/opt/selfcheck", str(ROOT)))
    out = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True,
                         text=True, timeout=60)
    # verify exits 0 on unknown keys, only warning: any output at all is a failure here
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), (
        out.stdout + out.stderr)


def test_station_unit_is_a_supervised_kiosk_on_tty1() -> None:
    text = (ROOT / "systemd" / "selfcheck-station.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=always", "Conflicts=getty@tty1.service",
                 "TTYPath=/dev/tty1", "SDL_VIDEODRIVER=kmsdrm", "NotifyAccess=main"):
        assert line in text
    settings = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    assert "network-online" not in settings  # the station must boot to its screen offline


class NotifySocket:
    """What systemd does for a Type=notify service: a datagram socket in $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []

    def collect_until(self, done: object, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done():  # type: ignore[operator]
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def messages(self, prefix: str) -> list[float]:
        return [t for t, m in self.got if any(ln == prefix for ln in m.splitlines())]


def _env(sock: Path, watchdog_usec: int) -> dict[str, str]:
    env = dict(os.environ, NOTIFY_SOCKET=str(sock), WATCHDOG_USEC=str(watchdog_usec),
               SDL_VIDEODRIVER="offscreen", PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_PID", None)
    return env


@pytest.mark.ui
@pytest.mark.parametrize("how", ["--offscreen", "--headless"])
def test_station_sends_ready_then_watchdog_pings(how: str, tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    cfg = tmp_path / "station.toml"
    # a broker nobody listens on: the station must still come up (offline) and be ready
    cfg.write_text(f'site = "site-1"\nstation = "st-a"\nbroker = "127.0.0.1:9"\n'
                   f'journal = "{tmp_path / "st.db"}"\n')
    log = tmp_path / "station.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "selfcheck.cli", "station",
                                 how, "--config", str(cfg)], cwd=ROOT,
                                env=_env(notify.path, 400_000), stdout=out, stderr=out)
    try:
        notify.collect_until(lambda: len([p for p in notify.messages("WATCHDOG=1")
                                          if notify.messages("READY=1")
                                          and p >= notify.messages("READY=1")[0]]) >= 3
                             or proc.poll() is not None, 60)
    finally:
        proc.terminate()
        proc.wait(20)
    ready, pings = notify.messages("READY=1"), notify.messages("WATCHDOG=1")
    assert len(ready) == 1, (notify.got, log.read_text()[-3000:])
    after = [p for p in pings if p >= ready[0]]
    assert len(after) >= 3, notify.got  # the pings go on once the station is ready
    # every ~0.2 s; the median, so that one slow frame on a busy machine does not count
    assert statistics.median(b - a for a, b in itertools.pairwise(after)) < 1.0


FROZEN = """
import asyncio, sys, time
from pathlib import Path
from selfcheck.kiosk.ui.boot import configure
configure(headless=True)
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.kiosk.ui.app import StationApp, run_app

async def script(app):
    await asyncio.sleep(1.5)
    time.sleep(2.5)  # the UI loop hangs, as a frozen screen would
    await asyncio.sleep(1.5)
    return 0

s = StationSettings(broker="127.0.0.1:9", journal=Path(sys.argv[1]))
app = StationApp(StationRuntime(s, SimulatedPad(), SimulatedCardReader()))
sys.exit(asyncio.run(run_app(app, script)))
"""


@pytest.mark.ui
def test_a_frozen_ui_loop_stops_the_watchdog_pings(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    proc = subprocess.Popen([sys.executable, "-c", FROZEN, str(tmp_path / "st.db")], cwd=ROOT,
                            env=_env(notify.path, 400_000), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    notify.collect_until(lambda: proc.poll() is not None, 60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    pings = notify.messages("WATCHDOG=1")
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 6
    # The freeze shows as one gap of about 2.5 s, longer than systemd would wait with
    # WatchdogSec=0.4 s: it would restart the app. The other gaps are the ~0.2 s interval.
    assert max(gaps) >= 2.3
    assert sorted(gaps)[-2] < 1.0
    assert notify.messages("STOPPING=1")

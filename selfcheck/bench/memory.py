"""Resident memory of the idle station UI process (offscreen Kivy, simulated devices), beside
a bare Kivy window in the same run: the share that is Kivy and GL themselves."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from selfcheck.bench.cmd import Figure, figure
from selfcheck.broker import Broker

BARE_KIVY = """
from kiosk.ui.boot import configure
configure(headless=True)
from kivy.app import App
from kivy.uix.label import Label
class Bare(App):
    def build(self):
        return Label(text="x")
Bare().run()
"""


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident set, and the private part of it (USS: what this process alone costs; the
    rest is shared libraries, large here because llvmpipe maps all of LLVM)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields["Rss"] / 1024, private / 1024


def idle_memory(cmd: list[str], settle_s: float) -> tuple[float, float]:
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle_s)
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        samples = []
        for _ in range(5):
            time.sleep(0.2)
            samples.append(memory_mb(proc.pid))
        return max(samples)
    finally:
        proc.terminate()
        proc.wait(10)


def run(args: argparse.Namespace) -> Iterator[Figure]:
    settle = 6.0 if getattr(args, "quick", False) else 12.0
    with tempfile.TemporaryDirectory(prefix="selfcheck-mem-") as tmp, \
            Broker(Path(tmp) / "broker") as broker:
        station = idle_memory([sys.executable, "-m", "selfcheck.cli", "station", "--headless",
                            "--broker", str(broker.address), "--journal",
                            str(Path(tmp) / "station.db")], settle)
        script = Path(tmp) / "bare_kivy.py"  # Kivy wants a source file to find .kv beside
        script.write_text(BARE_KIVY)
        bare = idle_memory([sys.executable, str(script)], settle)
    yield figure("station_ui_idle_rss", station[0], "MB", baseline=bare[0],
                 baseline_name="bare Kivy window, same machine")
    yield figure("station_ui_idle_private", station[1], "MB", baseline=bare[1],
                 baseline_name="bare Kivy window, same machine")

"""Resident memory of the idle station UI process (offscreen Kivy, simulated devices), beside
a bare Kivy window in the same run: the share that is Kivy and GL themselves."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.broker import Broker

BARE_KIVY = """
import os, sys
from selfcheck.kiosk.ui.boot import configure
w, h = (int(v) for v in os.environ.get("SELFCHECK_SCREEN", "1280x800").split("x"))
configure(headless=True, size=(w, h))
from kivy.app import App
from kivy.core.window import Window
from kivy.uix.label import Label
from selfcheck.system.sdnotify import notify
def flipped(window):
    window.unbind(on_flip=flipped)
    notify("READY=1")
Window.bind(on_flip=flipped)
class Bare(App):
    def build(self):
        return Label(text="x")
Bare().run()
"""
SCREENS = ("800x480", "1920x1080")


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident set, and the private part of it (USS: what this process alone costs; the
    rest is shared libraries, large here because llvmpipe maps all of LLVM)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields["Rss"] / 1024, private / 1024


def settled_memory(proc: subprocess.Popen[bytes], cmd: list[str],
                   settle_s: float) -> tuple[float, float]:
    """After `settle_s`, the largest (rss, private) MB of five samples 0.2 s apart."""
    time.sleep(settle_s)
    if proc.poll() is not None:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    samples = []
    for _ in range(5):
        time.sleep(0.2)
        samples.append(memory_mb(proc.pid))
    return max(samples)


def idle_memory(cmd: list[str], settle_s: float) -> tuple[float, float]:
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return settled_memory(proc, cmd, settle_s)
    finally:
        proc.terminate()
        proc.wait(10)


def ready_and_memory(cmd: list[str], screen: str, settle_s: float,
                     folder: Path) -> tuple[float, float, float]:
    """Seconds from start to the first frame on screen (the station's READY=1, sent when
    the idle screen is flipped to the display), then the idle memory as idle_memory."""
    sock_path = folder / f"notify-{screen}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(180)
        env = dict(os.environ, SDL_VIDEODRIVER="offscreen", NOTIFY_SOCKET=str(sock_path),
                   SELFCHECK_SCREEN=screen)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready = time.monotonic() - started
            # the idle screen's first minutes: broker, offline list
            rss, private = settled_memory(proc, cmd, settle_s)
            return ready, rss, private
        finally:
            proc.terminate()
            proc.wait(10)


def run(args: argparse.Namespace) -> Iterator[Figure]:
    settle = 6.0 if getattr(args, "quick", False) else 12.0
    with tempfile.TemporaryDirectory(prefix="selfcheck-mem-") as tmp, \
            Broker(Path(tmp) / "broker") as broker:
        station = idle_memory([sys.executable, "-m", "selfcheck.cli", "station", "--offscreen",
                            "--broker", str(broker.address), "--journal",
                            str(Path(tmp) / "station.db")], settle)
        script = Path(tmp) / "bare_kivy.py"  # Kivy wants a source file to find .kv beside
        script.write_text(BARE_KIVY)
        bare = idle_memory([sys.executable, str(script)], settle)
    yield figure("station_ui_idle_rss", station[0], "MB", baseline=bare[0],
                 baseline_name="bare Kivy window, same machine")
    yield figure("station_ui_idle_private", station[1], "MB", baseline=bare[1],
                 baseline_name="bare Kivy window, same machine")
    # Per screen size: start to idle screen, and idle memory, beside a bare Kivy window of
    # the same size in the same run.
    with tempfile.TemporaryDirectory(prefix="selfcheck-mem-") as tmp, \
            Broker(Path(tmp) / "broker") as broker:
        folder = Path(tmp)
        script = folder / "bare_kivy.py"
        script.write_text(BARE_KIVY)
        for screen in SCREENS:
            st = ready_and_memory([sys.executable, "-m", "selfcheck.cli", "station",
                                   "--offscreen", "--broker", str(broker.address), "--journal",
                                   str(folder / f"station-{screen}.db")], screen, settle,
                                  folder)
            bk = ready_and_memory([sys.executable, str(script)], screen, settle, folder)
            base = dict(baseline_name="bare Kivy window, same size, same machine",
                        screen=screen)
            yield figure(f"station_ui_start_to_idle_{screen}", st[0], "s", baseline=bk[0],
                         **base)
            yield figure(f"station_ui_idle_rss_{screen}", st[1], "MB", baseline=bk[1], **base)
            yield figure(f"station_ui_idle_private_{screen}", st[2], "MB", baseline=bk[2],
                         **base)

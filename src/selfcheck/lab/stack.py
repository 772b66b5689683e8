"""Start the central side as processes: what the demo, the benchmarks and the tests share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfcheck.lab.process import ChildProcess
from selfcheck.mqtt.connection import BrokerAddress


class CentralProcess(ChildProcess):
    """`selfcheck central` in a child process, started and waited for."""

    def __init__(self, broker: BrokerAddress, db_url: str, *, client_id: str = "central-bridge-1",
                 sample: bool = True, sample_items: int = 0, sample_patrons: int = 0,
                 log: Path | None = None, order_wait_s: float | None = None,
                 order: bool = True, station_share: bool = True,
                 pin: str | None = "never", offline_list: tuple[str, ...] = ("*",)) -> None:
        self.args = [sys.executable, "-m", "selfcheck.cli", "central", "--broker", str(broker),
                     "--db", db_url, "--id", client_id]
        if pin is not None:  # the sample's synthetic readers have no PIN; None: the default
            self.args += ["--pin", pin]
        for mark in offline_list:  # the demo's stations lend offline: every one by default
            self.args += ["--offline-list", mark]
        if not station_share:  # benchmarks that send thousands from one station at once
            self.args += ["--station-rate", "0"]
        if order_wait_s is not None:
            self.args += ["--order-wait", str(order_wait_s)]
        if not order:  # the benchmark's baseline: no per-station order
            self.args.append("--no-order")
        if sample:
            self.args += ["--load-sample", "--sample-items", str(sample_items),
                          "--sample-patrons", str(sample_patrons)]
        self.log = log
        self.env: dict[str, str] = {}  # more environment for this one (the bench's hops)
        super().__init__()

    def start(self, timeout_s: float = 30.0) -> CentralProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=out, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if b"central ready" in line:
                return self
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"central exited with {self.proc.returncode}")
        raise TimeoutError("central did not get ready")
    def __enter__(self) -> CentralProcess:
        return self.start()


class HeadlessStation(ChildProcess):
    """`selfcheck station --headless --events` in a child process: commands in on standard
    input (kiosk/runtime/headless.py), one JSON event per transaction state change out."""

    def __init__(self, config: Path, log: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.log = log
        self.events: list[dict[str, Any]] = []  # since the last start
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # every event, ever
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def start(self, timeout_s: float = 30.0) -> HeadlessStation:
        with self._lock:
            self.events = []
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "station", "--headless", "--events",
             "--config", str(self.config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=out, env=env)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.wait_for(lambda e: e.get("event") == "ready", timeout_s)
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            with self._changed:
                self.events.append(event)
                if self.on_event is not None:
                    self.on_event(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def send(self, *commands: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("".join(c + "\n" for c in commands).encode())
        self.proc.stdin.flush()

    def mark(self) -> int:
        """Where the events are now: wait_for(..., after=mark) sees only later ones."""
        with self._lock:
            return len(self.events)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0, *,
                 after: int = 0) -> dict[str, Any]:
        """The first event (since start, or since `after`) that matches; TimeoutError if
        none comes."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((e for e in self.events[after:] if match(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    raise TimeoutError("station: no such event")
                self._changed.wait(min(left, 0.5))

    def tx(self, item: str, *statuses: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The first event of a transaction on `item` reaching one of `statuses`."""
        return self.wait_for(lambda e: e.get("event") == "tx" and e.get("item") == item
                             and e.get("status") in statuses, timeout_s)

    def __enter__(self) -> HeadlessStation:
        return self.start()


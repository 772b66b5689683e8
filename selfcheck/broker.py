"""Start a private Mosquitto with the project's config on a free port (demo, tests, bench)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from mqtt.connection import BrokerAddress

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "selfcheck.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("mosquitto is not installed: run scripts/bootstrap")


class Broker:
    """A Mosquitto process. `restart()` keeps the port and the persistence folder."""

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        self.datadir = Path(datadir)
        self.port = port or free_port()
        self.address = BrokerAddress("127.0.0.1", self.port)
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = self.datadir / "mosquitto.conf"
        conf.write_text(CONFIG.read_text() + f"\nlistener {self.port} 127.0.0.1\n"
                        f"persistence_location {self.datadir}/\n")
        return conf

    def start(self, timeout_s: float = 10.0) -> Broker:
        conf = self._write_config()
        log = open(self.datadir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: see {self.datadir / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Start a private Mosquitto with the project's config on a free port (demo, tests, bench)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from selfcheck.lab.process import ChildProcess
from selfcheck.mqtt.connection import BrokerAddress

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto" / "selfcheck.conf"
# The production profile (TLS, passwords, ACL); `Broker(secure=CREDS)` runs it with test paths.
SECURE_CONFIG = CONFIG.with_name("secure.conf")


def _listening(pid: int, port: int) -> bool:
    """Process `pid` holds a socket listening on `port`: ours, not another test's broker that
    took the port between free_port() and our start (which a connection would not tell)."""
    mine = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    except OSError:  # gone, or not yet
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local address "HEX_IP:HEX_PORT", state 0A is LISTEN, inode in column 10
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in mine:
                return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The plugin's path in secure.conf (Debian amd64); other machines keep it elsewhere.
DYNSEC_IN_CONFIG = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def dynsec_plugin() -> str:
    """This machine's Mosquitto dynamic security plugin (the secure profile's access control)."""
    for pattern in ("/usr/lib/*/mosquitto_dynamic_security.so",
                    "/usr/lib/mosquitto_dynamic_security.so",
                    "/usr/local/lib/mosquitto_dynamic_security.so"):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    raise FileNotFoundError("mosquitto_dynamic_security.so is missing: run scripts/bootstrap")


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("mosquitto is not installed: run scripts/bootstrap")


class Broker(ChildProcess):
    """A Mosquitto process. `restart()` keeps the port and the persistence folder."""

    def __init__(self, datadir: Path, port: int | None = None, *,
                 secure: Path | None = None) -> None:
        """`secure`: a folder made by deploy/mosquitto/make-credentials; then `port` is the
        TLS listener and `plain_address` the loopback one, as in secure.conf."""
        self.datadir = Path(datadir)
        self.port = port or free_port()
        self.address = BrokerAddress("127.0.0.1", self.port)
        self.secure = Path(secure).resolve() if secure else None
        self.plain_address = BrokerAddress("127.0.0.1", free_port()) if secure else self.address
        super().__init__()

    def _write_config(self) -> Path:
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = self.datadir / "mosquitto.conf"
        # Mosquitto started as root drops to user 'mosquitto', which cannot write the
        # persistence file into a private folder of ours.
        as_root = "\nuser root\n" if os.geteuid() == 0 else ""
        if self.secure is None:
            conf.write_text(CONFIG.read_text() + f"\nlistener {self.port} 127.0.0.1\n"
                            f"persistence_location {self.datadir.resolve()}/\n" + as_root)
            return conf
        # The production file itself, with only its paths and ports moved.
        text = SECURE_CONFIG.read_text()
        for old, new in (("/etc/mosquitto/selfcheck/", f"{self.secure}/"),
                         ("/var/lib/mosquitto/", f"{self.datadir.resolve()}/"),
                         (DYNSEC_IN_CONFIG, dynsec_plugin()),
                         ("\nlistener 8883\n", f"\nlistener {self.port} 127.0.0.1\n"),
                         ("\nlistener 1883 127.0.0.1\n",
                          f"\nlistener {self.plain_address.port} 127.0.0.1\n")):
            if old not in text:
                raise ValueError(f"{SECURE_CONFIG}: expected {old.strip()!r} in it")
            text = text.replace(old, new)
        conf.write_text(text + as_root)
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
            if _listening(self.proc.pid, self.port):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")



    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Broker:
        return self.start()


"""Start the central side as processes: what the demo, the benchmarks and the tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mqtt.connection import BrokerAddress
from selfcheck.process import ChildProcess


class CentralProcess(ChildProcess):
    """`selfcheck central` in a child process, started and waited for."""

    def __init__(self, broker: BrokerAddress, db_url: str, *, client_id: str = "central-bridge-1",
                 sample: bool = True, sample_items: int = 0, sample_patrons: int = 0,
                 log: Path | None = None) -> None:
        self.args = [sys.executable, "-m", "selfcheck.cli", "central", "--broker", str(broker),
                     "--db", db_url, "--id", client_id]
        if sample:
            self.args += ["--load-sample", "--sample-items", str(sample_items),
                          "--sample-patrons", str(sample_patrons)]
        self.log = log
        super().__init__()

    def start(self, timeout_s: float = 30.0) -> CentralProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = dict(os.environ, PYTHONUNBUFFERED="1")
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


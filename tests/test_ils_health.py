"""The central checks the library system at start and keeps checking: against the real SIP2
server (lab/standins/sip2_server.py), the embedded store, and through `selfcheck central` itself."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.ils_health import IlsHealth, sip2_probe, store_probe
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.standins.sip2_server import Library, running
from tests.conftest import ROOT, wait_until


def _url(port: int, password: str = "secret") -> str:
    return f"sip2://sc:{password}@127.0.0.1:{port}?institution=tv-test&timeout=2"


def test_sip2_states_each_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    lib = Library()
    caplog.set_level(logging.INFO, logger="selfcheck.central.ils_health")
    with running(lib) as (server, _proxy):
        health = IlsHealth(sip2_probe(Sip2Config.parse(_url(server.port))), "acs", 3600)
        for _ in range(3):
            health.check()
        assert health.state == "ok"
        since_ok = health.since
        lib.password = "changed"  # the library changed the SIP2 account's password
        for _ in range(2):
            health.check()
        assert health.state == "login refused"
        assert health.since >= since_ok
        lib.password = "secret"
        health.check()
        assert health.state == "ok"
    health.check()  # the server is gone
    assert health.state == "down"
    lines = [(r.levelname, r.getMessage().split(":")[0], getattr(r, "state", None))
             for r in caplog.records if r.name == "selfcheck.central.ils_health"]
    assert lines == [("INFO", "library system answers", "ok"),
                     ("WARNING", "library system login refused", "login refused"),
                     ("INFO", "library system answers", "ok"),
                     ("WARNING", "library system down", "down")], lines
    assert all(getattr(r, "ils", None) == "acs" for r in caplog.records
               if r.name == "selfcheck.central.ils_health")


def test_store_probe(tmp_path: Path) -> None:
    store = CirculationStore(f"sqlite:///{tmp_path / 'c.db'}")
    store.create()
    assert IlsHealth(store_probe(store.engine), "store").check().state == "ok"
    store.close()
    missing = CirculationStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    verdict = IlsHealth(store_probe(missing.engine), "pg").check()
    assert verdict.state == "down" and verdict.detail


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
            return text
    except OSError:  # not listening yet
        return ""


@pytest.mark.parametrize("case", ["down", "login refused"])
def test_central_logs_a_verdict_at_start_and_exposes_it(tmp_path: Path, case: str) -> None:
    lib = Library()
    with running(lib) as (server, _proxy), Broker(tmp_path / "broker") as broker:
        port = free_port() if case == "down" else server.port  # nothing listens on a free one
        metrics = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "JOURNAL_STREAM": "8:1"}
        secret = tmp_path / "ils.pass"  # the central takes the password from a 0600 file
        secret.write_text("wrong\n")
        secret.chmod(0o600)
        started = time.monotonic()
        p = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "central", "--broker", str(broker.address),
             "--db", f"sqlite:///{tmp_path / 'c.db'}",
             "--ils", f"sip2://sc@127.0.0.1:{port}?institution=tv-test&timeout=2",
             "--ils-password-file", str(secret),
             "--metrics", f"127.0.0.1:{metrics}"],
            cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert p.stderr is not None
            verdict = ""
            for line in p.stderr:
                if "central.ils_health" in line:
                    verdict = line.strip()
                    break
            took = time.monotonic() - started
            assert verdict.startswith(f"<4>WARNING central.ils_health: library system {case}"), \
                verdict
            assert f'state="{case}"' in verdict or f"state={case}" in verdict
            assert "wrong" not in verdict  # the password is never in the log
            print(f"central start -> logged verdict {case!r}: {took:.2f} s")
            key = case.replace(" ", "_")
            wait_until(lambda: f'selfcheck_ils_state{{ils="sip2://sc@127.0.0.1:{port}'
                       f'?institution=tv-test",state="{key}"}} 1.0' in _metrics(metrics), 10,
                       "state in the metrics")
            text = _metrics(metrics)
            assert "selfcheck_ils_up{" in text and "} 0.0" in text.split("selfcheck_ils_up{")[1]
            assert "selfcheck_bridge_applied_total 0.0" in text
        finally:
            p.terminate()
            p.wait(15)

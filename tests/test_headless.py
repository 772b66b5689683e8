"""`selfcheck station --headless`: the station without a screen, driven by commands and
reporting its transactions as JSON lines; killed and started again on the same journal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.lab.stack import HeadlessStation
from tests.conftest import ROOT


def test_importing_the_headless_station_loads_no_kivy() -> None:
    code = ("import sys, selfcheck.kiosk.runtime.headless, selfcheck.cli.station; "
            "sys.exit(any(m == 'kivy' or m.startswith('kivy.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_offline_return_reported_then_kept_across_a_kill(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    journal = tmp_path / "journal.db"
    # A broker nobody listens on: returns are accepted under the offline policy.
    cfg.write_text(f'site = "s"\nstation = "st-h"\nbroker = "127.0.0.1:9"\n'
                   f'journal = "{journal}"\nack_timeout_s = 1\n')
    st = HeadlessStation(cfg, log=tmp_path / "station.log").start()
    ready = st.wait_for(lambda e: e.get("event") == "ready")
    st.send("touch return")
    st.wait_for(lambda e: e.get("mode") == "return")
    st.send("place 49000001", "wave hello")
    done = st.tx("49000001", "offline")
    assert (done["seq"], done["kind"]) == (1, "return")
    bad = st.wait_for(lambda e: e.get("event") == "error")
    assert bad["command"] == "wave hello"
    st.kill()  # SIGKILL: the journal keeps the return until the central's ack
    again = HeadlessStation(cfg, log=tmp_path / "station.log").start()
    assert again.wait_for(lambda e: e.get("event") == "ready")["journal"] == ready["journal"]
    again.send("quit")
    assert again.proc is not None and again.proc.wait(30) == 0
    kept = Journal(journal)
    assert kept.depth()[0] == 1 and kept.seq_of(done["msg_id"]) == 1
    kept.close()

"""`selfcheck simulate` drives headless stations end to end and reports what happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_simulate_three_stations(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "selfcheck.cli", "simulate", "--stations", "3",
                           "--transactions", "8", "--workdir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["transactions"], report["ok"], report["failed"]) == (24, 24, 0)
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]

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


def test_simulate_spreads_stations_over_processes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "selfcheck.cli", "simulate", "--stations", "5",
                           "--per-process", "2", "--transactions", "4", "--workdir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["stations"], report["ok"], report["failed"]) == (5, 20, 0)
    # five distinct journals: stations 1-5 over three processes, none doubled
    assert sorted(p.name for p in tmp_path.glob("sim-*.db")) == [f"sim-{n}.db"
                                                                  for n in range(1, 6)]

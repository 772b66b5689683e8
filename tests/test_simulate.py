"""`selfcheck simulate` drives headless stations end to end and reports what happened."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from tests.conftest import wait_until

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


# -- resuming on the same workdir, and draining

def simulate(workdir: Path, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "selfcheck.cli", "simulate", "--workdir",
                           str(workdir), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def kinds_by_station(db: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with sqlite3.connect(db) as conn:
        for station, kind in conn.execute("SELECT station, kind FROM circulation ORDER BY id"):
            out.setdefault(station, []).append(kind)
    return out


def cycle(count: int) -> list[str]:
    """What a station of the simulation does: three loans, their three returns, again."""
    return [("loan", "return")[n % 6 // 3] for n in range(count)]


def done(workdir: Path) -> int:
    total = 0
    for path in workdir.glob("sim-*.progress.json"):
        try:
            total += json.loads(path.read_text())["done"]
        except ValueError:  # being replaced right now
            pass
    return total


def test_a_second_run_on_the_same_workdir_goes_on_where_the_first_stopped(
        tmp_path: Path) -> None:
    code, first = simulate(tmp_path, "--stations", "2", "--transactions", "4")
    assert code == 0 and (first["transactions"], first["resumed"]) == (8, 0)
    code, second = simulate(tmp_path, "--stations", "2", "--transactions", "8", "--drain")
    assert code == 0, second
    assert (second["transactions"], second["ok"], second["resumed"]) == (8, 8, 8)
    assert (second["drained"], second["pending"]) == (True, 0)
    code, third = simulate(tmp_path, "--stations", "2", "--transactions", "8")
    assert code == 0 and (third["transactions"], third["resumed"]) == (0, 16)
    # the central (kept in the workdir) got each transaction once: nothing done twice
    assert kinds_by_station(tmp_path / "central.db") == {"sim-1": cycle(8), "sim-2": cycle(8)}


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_or_losing_a_transaction(
        tmp_path: Path, broker: Broker) -> None:
    db = tmp_path / "central.db"
    work = tmp_path / "work"
    args = ["--broker", str(broker.address), "--stations", "3", "--transactions", "12"]
    with CentralProcess(broker.address, f"sqlite:///{db}", sample_items=20, sample_patrons=5):
        run = subprocess.Popen([sys.executable, "-m", "selfcheck.cli", "simulate", "--workdir",
                                str(work), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: done(work) >= 8, timeout_s=60, what="8 transactions done")
        finally:
            run.kill()  # in the middle of the run: some in flight, some only in a journal
            run.wait()
        assert done(work) < 36
        code, report = simulate(work, *args, "--drain")
    assert code == 0, report
    assert report["resumed"] + report["transactions"] == 36
    assert (report["failed"], report["drained"], report["pending"]) == (0, True, 0)
    assert kinds_by_station(db) == {f"sim-{n}": cycle(12) for n in (1, 2, 3)}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(DISTINCT msg_id) FROM circulation").fetchone() == (36,)


@pytest.mark.slow
def test_drain_says_what_is_left_when_the_central_does_not_answer(
        tmp_path: Path, broker: Broker) -> None:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    args = ["--broker", str(broker.address), "--stations", "1"]
    central = CentralProcess(broker.address, db, sample_items=20, sample_patrons=5).start()
    code, report = simulate(tmp_path, *args, "--transactions", "3")  # the three loans
    assert code == 0 and report["ok"] == 3
    central.stop()
    # the first return: accepted offline, in the journal; nobody acks it within the bound
    code, report = simulate(tmp_path, *args, "--transactions", "4", "--drain",
                            "--drain-timeout", "1")
    assert code == 1 and (report["transactions"], report["resumed"]) == (1, 3)
    assert (report["drained"], report["pending"]) == (False, 1)
    with CentralProcess(broker.address, db, sample=False):
        code, report = simulate(tmp_path, *args, "--transactions", "4", "--drain")
    assert code == 0 and (report["transactions"], report["drained"], report["pending"]) == (
        0, True, 0)
    assert kinds_by_station(tmp_path / "central.db") == {"sim-1": cycle(4)}

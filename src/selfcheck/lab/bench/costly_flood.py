"""Bench: one station floods PIN checks, then offline-list pages; how long do the others wait?

A real Mosquitto and the bridge as a child process (selfcheck.lab.bench.shares: the sample
store, every wrong PIN checked). Honest stations ask all along: a plain patron check every
50 ms from one, a PIN check every 1.5 s from each of three others. Then a thief's station
sends 300 wrong PINs for a card that exists at once and 20 a second after, for a window; once
the bridge has dealt with all of it, another thief sends 1,000 offline-list requests at once.
Measured twice in the same run: with the bridge's cost shares off (`cost_shares=False`: every
message costs 1 and runs on the one worker in arrival order, the bridge as it was), then on.
The figures are the honest stations' round trips sent within each window; an honest request
not answered within the run is counted (lost).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure
from selfcheck.lab.bench.shares import Station, Trickle, percentile
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess

PHASES = ("unloaded", "pin_flood", "list_flood")
KINDS = ("plain", "pin")
DRAIN_S = 300.0  # the baseline works through the whole flood before it answers again

Window = tuple[float, float]


def _drain(honest: Station) -> None:
    """Until the bridge is through the flood: no honest plain check waits a second (the
    baseline answers in arrival order, so the backlog is behind it then), and 2 s more for
    what the pool still holds."""
    deadline = time.monotonic() + DRAIN_S
    while honest.oldest_waiting("plain") > 1.0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the flood was not dealt with in {DRAIN_S:g} s")
        time.sleep(0.1)
    time.sleep(2.0)


def _round(root: Path, shares: bool, window_s: float, patrons: int
           ) -> dict[tuple[str, str], tuple[list[float], int]]:
    """One bridge, three windows: {(phase, kind): (round trips, lost)}."""
    broker = Broker(root / "broker").start()
    central = CentralProcess(broker.address, "", sample=False, log=root / "central.log")
    central.args = [sys.executable, "-m", "selfcheck.lab.bench.shares", "--broker",
                    str(broker.address), "--db", f"sqlite:///{root / 'central.db'}",
                    "--patrons", str(patrons)] + ([] if shares else ["--no-shares"])
    windows: dict[str, Window] = {}
    try:
        central.start(timeout_s=120)
        with ExitStack() as stack:
            plain = Station(broker.address, "st-honest")
            pins = [Station(broker.address, f"st-honest-pin-{n}") for n in range(3)]
            stack.enter_context(Trickle(plain, "plain", 20))
            for station in pins:
                stack.enter_context(Trickle(station, "pin", 1 / 1.5))
                time.sleep(0.5)  # spread over the 1.5 s
            time.sleep(1.0)  # warm

            start = time.monotonic()
            time.sleep(window_s)
            windows["unloaded"] = (start, time.monotonic())

            thief = Station(broker.address, "st-thief-pin")
            start = time.monotonic()
            for _ in range(300):
                thief.send("guess")
            with Trickle(thief, "guess", 20):
                time.sleep(window_s)
            windows["pin_flood"] = (start, time.monotonic())
            _drain(plain)
            thief.close()

            thief = Station(broker.address, "st-thief-list")
            start = time.monotonic()
            for _ in range(1_000):
                thief.send("list")
            time.sleep(window_s)
            windows["list_flood"] = (start, time.monotonic())
            _drain(plain)
            thief.close()
        out: dict[tuple[str, str], tuple[list[float], int]] = {}
        for phase, (a, b) in windows.items():
            out[(phase, "plain")] = (plain.between("plain", a, b),
                                     plain.unanswered("plain", a, b))
            out[(phase, "pin")] = (
                [r for s in pins for r in s.between("pin", a, b)],
                sum(s.unanswered("pin", a, b) for s in pins))
        for s in (plain, *pins):
            s.close()
        return out
    finally:
        central.stop()
        broker.stop()


def _table(results: dict[str, dict[tuple[str, str], tuple[list[float], int]]]) -> str:
    head = (f"{'honest check':<14}{'phase':<12}"
            + "".join(f"{m + ' p50':>16}{m + ' p99':>16}{m + ' lost':>16}" for m in results))
    lines = [head, "-" * len(head)]
    for kind in KINDS:
        for phase in PHASES:
            row = f"{kind:<14}{phase:<12}"
            for by in results.values():
                rtts, lost = by[(phase, kind)]
                row += (f"{percentile(rtts, 0.5) * 1000:>13.1f} ms"
                        f"{percentile(rtts, 0.99) * 1000:>13.1f} ms{lost:>16d}")
            lines.append(row)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Iterator[Figure]:
    window = 5.0 if args.quick else 8.0
    patrons = 2_000 if args.quick else 10_000
    results: dict[str, dict[tuple[str, str], tuple[list[float], int]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-costly-") as tmp:
        for mode, shares in (("no_shares", False), ("shares", True)):
            results[mode] = _round(Path(tmp) / mode, shares, window, patrons)
    print(_table(results), file=sys.stderr, flush=True)
    for mode, by in results.items():
        for (phase, kind), (rtts, lost) in by.items():
            base = by[("unloaded", kind)][0]
            for name, p in (("p50", 0.5), ("p99", 0.99)):
                yield figure(f"flood_{phase}_honest_{kind}_rtt_{name}_{mode}",
                             percentile(rtts, p) * 1000, "ms",
                             baseline=percentile(base, p) * 1000, answered=len(rtts),
                             lost=lost, patrons=patrons, window_s=window)

"""`selfcheck simulate`: N headless stations (the real core, journal and MQTT client) borrow
and return simulated books against a running central; prints counts and latency percentiles.

With `--workdir` a run can be stopped (or killed) and run again on the same folder: each
station's journal is there (what it holds is sent again on start) and so is how far the station
got (`STATION.progress.json`), so the second run goes on where the first stopped instead of
doing finished transactions again. `--drain` waits, bounded, until every outbox is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.seen import tag_uid
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.mqtt.connection import BrokerAddress

BOOKS_PER_VISIT = 3
FINAL = (core.Status.DONE, core.Status.REFUSED, core.Status.UNCONFIRMED, core.Status.OFFLINE)


@dataclass
class Tally:
    ok: int = 0
    refused: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    resumed: int = 0  # transactions finished by earlier runs on the same workdir
    pending: int = 0  # journal rows still waiting for their ack when the stations stopped


@dataclass
class Progress:
    """How far one station got: `done` transactions finished when its journal's last seq was
    `seq`. Saved after every transaction; a kill leaves the old file or the new one."""

    path: Path
    done: int = 0
    seq: int = 0

    @classmethod
    def load(cls, path: Path) -> Progress:
        try:
            data = json.loads(path.read_text())
            return cls(path, int(data["done"]), int(data["seq"]))
        except FileNotFoundError:
            return cls(path)
        except (ValueError, KeyError, TypeError):  # unreadable: the journal alone tells
            return cls(path)

    def resume_at(self, journal_seq: int) -> int:
        """Transactions journaled after the last save (killed between the journal and the
        save) are in the journal and go out from there: they are finished too."""
        return self.done + max(0, journal_seq - self.seq)

    def save(self, done: int, seq: int) -> None:
        self.done, self.seq = done, seq
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"done": done, "seq": seq}))
        os.replace(tmp, self.path)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="drive N headless stations against a central")
    p.add_argument("--stations", type=int, default=5)
    p.add_argument("--transactions", type=int, default=12,
                   help="loans plus returns per station")
    p.add_argument("--broker", type=BrokerAddress.parse,
                   help="HOST:PORT of a broker with a central bridge on the sample library "
                   "(with --sample-items and --sample-patrons at least the station count x 3); "
                   "default: start a private broker and central")
    p.add_argument("--site", default="sim-lib")
    p.add_argument("--prefix", default="sim", help="station ids are PREFIX-1, PREFIX-2, ...: "
                   "give each simulate process on one broker its own (ids are MQTT client ids)")
    p.add_argument("--workdir", type=Path,
                   help="where station journals and progress go (default: temp); run again "
                   "with the same folder to go on where the last run stopped")
    p.add_argument("--drain", action="store_true",
                   help="after the transactions, wait until every station's outbox is empty")
    p.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="with --drain: how long each station waits at most (default 60)")
    p.add_argument("--linger", type=float, default=0.0, metavar="S",
                   help="stay connected S seconds after the transactions (telemetry goes on)")
    p.add_argument("--per-process", type=int, default=80,
                   help="stations per process: more are spread over child processes (paho's "
                   "select() loop cannot use file descriptors past 1023)")
    p.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def until(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def one_station(n: int, settings: StationSettings, transactions: int, tally: Tally,
                      progress: Progress, drain_s: float | None = None,
                      linger_s: float = 0.0) -> None:
    pad, card = SimulatedPad(), SimulatedCardReader()
    rt = StationRuntime(settings, pad, card)
    runner = asyncio.ensure_future(rt.run())
    books = [(bytes.fromhex(f"E0FF{n:04X}{b:08X}"), f"49{n * BOOKS_PER_VISIT + b + 1:06d}")
             for b in range(BOOKS_PER_VISIT)]
    card_id = f"TN{n + 1:05d}"
    view = rt.view
    timeout = settings.config.timeouts.ack_s + 5
    done = progress.resume_at(rt.journal.last_seq())
    tally.resumed += min(done, transactions)
    try:
        await until(lambda: view().online, 30)
        # Visits of one reader: loans of the station's books, then their returns. Where a
        # resumed run starts in that cycle follows from the count alone.
        while done < transactions:
            pos = done % (2 * BOOKS_PER_VISIT)
            first = pos % BOOKS_PER_VISIT
            if pos < BOOKS_PER_VISIT:
                card.present(card_id)
                if not await until(lambda: view().mode is core.Mode.BORROW, timeout):
                    # Not signed in: these loans are failed, and on to the returns.
                    skipped = min(BOOKS_PER_VISIT - first, transactions - done)
                    tally.failed += skipped
                    done += skipped
                    progress.save(done, rt.journal.last_seq())
                    rt.feed(core.Touch("cancel"))
                    continue
            else:
                rt.feed(core.Touch("return"))
            for uid, item in books[first:]:
                if done >= transactions:
                    break
                start = time.monotonic()
                pad.place(uid, iso28560_3.encode(item))
                finished = await until(lambda uid=uid: any(
                    ln.uid == tag_uid(uid) and ln.status in FINAL
                    for ln in view().lines), timeout)
                line = next((ln for ln in view().lines if ln.uid == tag_uid(uid)), None)
                if finished and line is not None and line.status is core.Status.DONE:
                    tally.ok += 1
                    tally.latencies_ms.append((time.monotonic() - start) * 1000)
                elif finished:
                    tally.refused += 1
                else:
                    tally.failed += 1
                pad.lift(uid)
                done += 1
                progress.save(done, rt.journal.last_seq())
            # Away only once the pad has seen the last book go: the next visit would take a
            # book still on it for one of its own (a return right after the loans).
            polls = pad.counters.inventories
            await until(lambda polls=polls: pad.counters.inventories >= polls + 2, 5)
            rt.feed(core.Touch("cancel"))
        if drain_s is not None:
            await until(lambda: rt.journal.depth()[0] == 0, drain_s)
        await asyncio.sleep(linger_s)
    finally:
        tally.pending += rt.journal.depth()[0]
        rt.stop()
        await runner


async def simulate(broker: BrokerAddress, stations: int, transactions: int, site: str,
                   workdir: Path, prefix: str = "sim", offset: int = 0,
                   drain_s: float | None = None, linger_s: float = 0.0) -> Tally:
    tally = Tally()
    runs = []
    for n in range(offset, offset + stations):
        name = f"{prefix}-{n + 1}"
        settings = StationSettings(site=site, station=name, broker=str(broker),
                                   journal=workdir / f"{name}.db", inactivity_s=120)
        runs.append(one_station(n, settings, transactions, tally,
                                Progress.load(workdir / f"{name}.progress.json"), drain_s,
                                linger_s))
    await asyncio.gather(*runs)
    return tally


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="selfcheck-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.broker is None:
        from selfcheck.lab.broker import Broker
        from selfcheck.lab.stack import CentralProcess

        with Broker(workdir / "broker") as broker, CentralProcess(
                broker.address, f"sqlite:///{workdir / 'central.db'}",
                sample_items=args.stations * BOOKS_PER_VISIT + 10,
                sample_patrons=args.stations + 1):
            tally, seconds = _timed(broker.address, args, workdir)
    else:
        tally, seconds = _timed(args.broker, args, workdir)
    if args.raw:  # a child of a larger run: the parent adds the tallies up
        print(json.dumps(dataclasses.asdict(tally)))
        return 0
    lat = tally.latencies_ms
    drained = {"drained": tally.pending == 0} if args.drain else {}
    print(json.dumps({
        "stations": args.stations, "transactions": tally.ok + tally.refused + tally.failed,
        "ok": tally.ok, "refused": tally.refused, "failed": tally.failed,
        "resumed": tally.resumed, "pending": tally.pending, **drained,
        "seconds": round(seconds, 2),
        "latency_ms": {"p50": round(percentile(lat, 50), 1), "p90": round(percentile(lat, 90), 1),
                       "p99": round(percentile(lat, 99), 1),
                       "mean": round(statistics.fmean(lat), 1) if lat else None},
        "note": "latency: book placed on the pad to the central's answer on screen "
                "(includes the pad's 100 ms polling); transactions: done by this run, "
                "resumed: finished by earlier runs on this workdir; pending: outbox rows "
                "not yet acked when the stations stopped",
    }))
    return 0 if tally.failed == 0 and not (args.drain and tally.pending) else 1


def _timed(broker: BrokerAddress, args: argparse.Namespace, workdir: Path) -> tuple[Tally, float]:
    start = time.monotonic()
    if args.stations <= args.per_process:
        tally = asyncio.run(simulate(broker, args.stations, args.transactions, args.site,
                                     workdir, args.prefix, args.offset,
                                     args.drain_timeout if args.drain else None, args.linger))
    else:
        tally = _in_children(broker, args, workdir)
    return tally, time.monotonic() - start


def _in_children(broker: BrokerAddress, args: argparse.Namespace, workdir: Path) -> Tally:
    """Spread the stations over child processes of at most --per-process each."""
    children = []
    for offset in range(0, args.stations, args.per_process):
        count = min(args.per_process, args.stations - offset)
        children.append(subprocess.Popen(
            [sys.executable, "-m", "selfcheck.cli", "simulate", "--raw", "--broker", str(broker),
             "--stations", str(count), "--offset", str(args.offset + offset),
             "--transactions", str(args.transactions), "--site", args.site,
             "--prefix", args.prefix, "--workdir", str(workdir),
             "--per-process", str(args.per_process), "--linger", str(args.linger),
             *(["--drain", "--drain-timeout", str(args.drain_timeout)] if args.drain else [])],
            stdout=subprocess.PIPE, text=True))
    total = Tally()
    for child in children:
        out, _ = child.communicate()
        part = json.loads(out.strip().splitlines()[-1])
        total.ok += part["ok"]
        total.refused += part["refused"]
        total.failed += part["failed"]
        total.latencies_ms += part["latencies_ms"]
        total.resumed += part["resumed"]
        total.pending += part["pending"]
    return total

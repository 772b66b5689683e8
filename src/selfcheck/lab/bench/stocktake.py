"""Bench: a 500-book stock-take of one shelf, a stack of 10 at a time, through the real parts:
the 3M 810 simulator at 19200 baud on a socket, the station runtime with its pad driver, its
stock-take journal and outbox, Mosquitto, the central bridge and the embedded store (SQLite).

Per stack: from the books laid on the pad to the station having seen all ten (the pad's
inventory and block reads: the wire is most of it), and to all ten answered by the central
(found, misplaced, ...), which is what staff wait for before the next stack. Then the report
of the 500 (and its CSV), as the console asks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from selfcheck.lab.bench.cmd import Figure, figure

SITE = "bench-lib"
SHELF = "K1"
STACK = 10


def _uid(n: int) -> bytes:
    return bytes.fromhex(f"E0040150{0x30000000 + n:08X}")


async def _take(rt: object, sim: object, books: int) -> tuple[list[float], list[float]]:
    from selfcheck.drivers.tags import iso28560_3
    from selfcheck.mqtt import messages

    st = rt.stocktake  # type: ignore[attr-defined]

    async def until(check: object, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise TimeoutError("the stock-take bench stalled")
            await asyncio.sleep(0.005)

    await until(lambda: rt.view().online)  # type: ignore[attr-defined]
    res = await asyncio.to_thread(st.begin, messages.Place(kind="shelf", value=SHELF))
    if res is None or not res.ok:
        raise RuntimeError(f"the stock-take did not open: {res}")
    seen_s, answered_s = [], []
    for first in range(0, books, STACK):
        n = min(STACK, books - first)
        done = len(st.run.books) + n
        t0 = time.perf_counter()
        for k in range(first, first + n):
            sim.place(_uid(k), iso28560_3.encode(f"B{k:07d}", owner_isil="VN-HN0001")  # type: ignore[attr-defined]
                      .ljust(112, b"\x00"))
        await until(lambda d=done: len(st.run.books) >= d)
        seen_s.append(time.perf_counter() - t0)
        await until(lambda: st.run.waiting == 0 and st.unsent == 0)
        answered_s.append(time.perf_counter() - t0)
        sim.clear()  # type: ignore[attr-defined]
        await until(lambda: st.run.on_pad == 0)
    return seen_s, answered_s


def run(args: argparse.Namespace) -> Iterator[Figure]:
    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.central.bridge import Bridge
    from selfcheck.central.stocktake import Stocktakes
    from selfcheck.drivers.pad.simulators import M810Simulator
    from selfcheck.kiosk.runtime.devices import open_devices
    from selfcheck.kiosk.runtime.station import StationRuntime
    from selfcheck.kiosk.settings import load_settings
    from selfcheck.lab.broker import Broker

    books = 100 if getattr(args, "quick", False) else 500
    with tempfile.TemporaryDirectory(prefix="bench-stocktake-") as tmp:
        work = Path(tmp)
        store = CirculationStore(f"sqlite:///{work / 'central.db'}")
        store.create()
        # The shelf's books, and as many elsewhere: the expected list is a query, not a scan.
        store.add_items([{"item_id": f"B{k:07d}", "title": f"Sách kiểm kê số {k}",
                          "sort_bin": SHELF if k < books else "K2",
                          "call_number": f"895.9 K{k:05d}"} for k in range(2 * books)])
        broker = Broker(work / "broker").start()
        bridge = Bridge(store, broker.address)
        bridge.start()
        try:
            if not bridge.connected.wait(10):
                raise RuntimeError("the bridge did not connect")
            with M810Simulator(listen="127.0.0.1:0") as sim:
                cfg = work / "station.toml"
                cfg.write_text(
                    f'site = "{SITE}"\nstation = "bench-st"\nbroker = "{broker.address}"\n'
                    f'journal = "{work / "station.db"}"\npad = "3m810"\npad_url = "{sim.url}"\n'
                    'pad_options = { timeout = 1.0 }\ncard_reader = "sim"\n', encoding="utf-8")
                settings = load_settings(cfg)
                pad, card = open_devices(settings.config.devices)

                async def main() -> tuple[list[float], list[float]]:
                    rt = StationRuntime(settings, pad, card)
                    task = asyncio.ensure_future(rt.run())
                    try:
                        return await _take(rt, sim, books)
                    finally:
                        rt.stop()
                        await task

                try:
                    seen_s, answered_s = asyncio.run(main())
                finally:
                    pad.close()
            takes = Stocktakes(store.engine)
            sid = takes.reports()[0].stocktake_id
            t0 = time.perf_counter()
            report = takes.report(sid)
            csv_text = report.csv()
            report_s = time.perf_counter() - t0
        finally:
            bridge.stop()
            broker.stop()
            store.close()
    counts = report.counts()
    if counts["found"] != books:
        raise RuntimeError(f"found {counts['found']} of {books}")
    stacks = len(answered_s)
    yield figure("stocktake.stack10.seen", statistics.median(seen_s) * 1000, "ms",
                 stacks=stacks, books=books, pad="3m810 19200 baud, socket")
    yield figure("stocktake.stack10.answered", statistics.median(answered_s) * 1000, "ms",
                 p90=round(sorted(answered_s)[int(0.9 * (stacks - 1))] * 1000, 1),
                 worst=round(max(answered_s) * 1000, 1))
    yield figure("stocktake.total", sum(answered_s), "s", books=books,
                 at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    yield figure("stocktake.report", report_s * 1000, "ms", lines=len(report.lines),
                 csv_bytes=len(csv_text.encode()))

"""A real headless station process for the crash tests: returns the books it is given,
prints `RECORDED <msg_id>` once each is in the journal, then keeps running (to be killed),
or with --drain runs until its outbox is empty and prints DRAINED."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.card.base import SimulatedCardReader
from drivers.pad.simulated import SimulatedPad
from drivers.tags import iso28560_3
from kiosk import core
from kiosk.runtime import StationRuntime
from kiosk.settings import StationSettings


async def main(args: argparse.Namespace) -> int:
    settings = StationSettings(site="crash-lib", station=args.station, broker=args.broker,
                               journal=args.journal, resend_after_s=1.0, inactivity_s=600)
    pad = SimulatedPad()
    rt = StationRuntime(settings, pad, SimulatedCardReader())
    runner = asyncio.ensure_future(rt.run())
    printed: set[str] = set()

    def report(view: core.View) -> None:
        for line in view.lines:
            if line.msg_id and line.status is not core.Status.RECORDING \
                    and line.msg_id not in printed:
                printed.add(line.msg_id)
                print(f"RECORDED {line.msg_id}", flush=True)

    rt.add_listener(report)
    items = [i for i in args.returns.split(",") if i]
    if items:
        rt.feed(core.Touch("return"))
        for n, item in enumerate(items):
            pad.place(bytes.fromhex(f"E0CC0000{n:08X}"), iso28560_3.encode(item))
            await asyncio.sleep(args.gap)
    while True:
        await asyncio.sleep(0.1)
        if args.drain and rt.journal.depth()[0] == 0:
            print("DRAINED", flush=True)
            rt.stop()
            await runner
            return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--journal", type=Path, required=True)
    p.add_argument("--station", default="st-crash")
    p.add_argument("--returns", default="")
    p.add_argument("--gap", type=float, default=0.02)
    p.add_argument("--drain", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))

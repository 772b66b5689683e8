"""`selfcheck demo`: the whole system on one machine, with simulated pad and cards.

A private Mosquitto on a free port with the project's config, the central bridge on its
embedded store with the sample library, and the station UI. With --headless it plays the
scripted walk offscreen and checks the central store afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from kiosk.settings import StationSettings
from selfcheck.broker import Broker
from selfcheck.stack import CentralProcess

SITE, STATION = "demo-lib", "demo-1"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the station demo (simulated pad and card reader)")
    p.add_argument("--headless", action="store_true",
                   help="play the scripted walk offscreen and check the central store")
    p.add_argument("--screenshots", type=Path, help="write a PNG of every screen here")
    p.add_argument("--lang", choices=["vi", "en"], default="vi")
    p.add_argument("--scenario", choices=["walk", "refusals"], default="walk",
                   help="with --headless: which scripted scenario to play")
    p.add_argument("--workdir", type=Path,
                   help="keep broker, store and journal here (default: a fresh temp folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="selfcheck-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'central.db'}"
    broker = Broker(workdir / "broker").start()
    central = CentralProcess(broker.address, db_url, log=workdir / "central.log").start()
    settings = StationSettings(site=SITE, station=STATION, broker=str(broker.address),
                               journal=workdir / "station.db", lang=args.lang,
                               summary_s=4.0 if args.headless else 12.0)
    try:
        code = asyncio.run(play(settings, args.headless, args.screenshots, args.lang,
                                args.scenario))
    finally:
        central.stop()
        broker.stop()
    if args.headless and code == 0:
        code = check_store(db_url, args.scenario)
    if args.workdir is None and code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    elif code != 0:
        print(f"demo: logs and databases kept in {workdir}")
    return code


async def play(settings: StationSettings, headless: bool, shots: Path | None,
               lang: str, scenario: str = "walk") -> int:
    if not headless:
        from selfcheck.station_cmd import run_station

        return await run_station(settings)
    from kiosk.ui.boot import configure

    configure(headless=True)
    from drivers.card.base import SimulatedCardReader
    from drivers.pad.simulated import SimulatedPad
    from kiosk.runtime import StationRuntime
    from kiosk.ui.app import StationApp, run_app
    from kiosk.ui.demo_panel import DemoPanel
    from selfcheck.demo_library import demo_books, demo_cards
    from selfcheck.demo_walk import SCENARIOS

    pad, card = SimulatedPad(), SimulatedCardReader()
    runtime = StationRuntime(settings, pad, card)
    app = StationApp(runtime, lambda: DemoPanel(pad, card, demo_books(), demo_cards(),
                                                lambda: runtime.core.lang))
    return await run_app(app, lambda a: SCENARIOS[scenario](a, shots, lang))


def check_store(db_url: str, scenario: str = "walk") -> int:
    """Exit 0 only if the store holds what the scenario should have left there: the walk's
    three loans and three returns, or (refusals) no circulation at all."""
    from central.store import CirculationStore
    from selfcheck.demo_walk import WALK_ITEMS

    store = CirculationStore(db_url)
    rows = store.history(None if scenario == "refusals" else WALK_ITEMS)
    store.close()
    if scenario == "refusals":
        print(f"central store: {len(rows)} circulation rows (expected none)")
        return 0 if not rows else 1
    loans = sorted(r["item_id"] for r in rows if r["kind"] == "loan")
    returns = sorted(r["item_id"] for r in rows if r["kind"] == "return")
    ok = loans == sorted(WALK_ITEMS) and returns == sorted(WALK_ITEMS)
    print(f"central store: {len(loans)} loans, {len(returns)} returns of {list(WALK_ITEMS)}: "
          + ("as expected" if ok else "NOT as expected"))
    return 0 if ok else 1

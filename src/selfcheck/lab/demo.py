"""`selfcheck demo`: the whole system on one machine, with simulated pad and cards.

A private Mosquitto on a free port with the project's config, the central bridge on its
embedded store with the sample library, and the station UI. With --headless it plays a
scripted scenario offscreen and checks the central store and the station journal afterwards;
`--scenario all` plays each in its own process (Kivy allows one window per process).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker
from selfcheck.lab.demo_library import DESK_WHERE
from selfcheck.lab.demo_scenarios import (
    RECEIPT_PRINTER,
    SCENARIOS,
    Outcome,
    Scenario,
    journal_path,
)
from selfcheck.lab.stack import CentralProcess

SITE, STATION = "demo-lib", "demo-1"
HEADLESS_FPS = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the station demo (simulated pad and card reader)")
    p.add_argument("--headless", action="store_true",
                   help="play a scripted scenario offscreen and check the central store")
    p.add_argument("--screenshots", type=Path, help="write a PNG of every screen here")
    p.add_argument("--lang", choices=["vi", "en"], default="vi")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="walk",
                   help="with --headless: which scripted scenario to play (all: each in turn)")
    p.add_argument("--size", type=_size, metavar="WxH",
                   help="the station's screen, e.g. 800x480 or 720x1280 (default: the "
                   "display's size; headless: 1280x800); the demo panel goes beside it")
    p.add_argument("--fullscreen", action="store_true",
                   help="the station fills the display; F2 shows the demo panel over it")
    p.add_argument("--workdir", type=Path,
                   help="keep broker, store and journal here (default: a fresh temp folder)")
    p.set_defaults(func=run)


def _size(text: str) -> str:
    from selfcheck.kiosk.settings import parse_size

    try:
        parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run(args: argparse.Namespace) -> int:
    if args.headless and not args.size:
        args.size = "1280x800"
    if args.scenario == "all":
        return run_all(args)
    scenario = SCENARIOS[args.scenario]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="selfcheck-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'central.db'}"
    broker = Broker(workdir / "broker").start()
    central = CentralProcess(broker.address, db_url, log=workdir / "central.log").start()
    site: dict[str, Any] = dict(scenario.site) if args.headless else {}
    printer = None
    if args.headless and scenario.printer:
        from selfcheck.drivers.printer.simulator import PrinterSimulator

        printer = PrinterSimulator().start()  # port 0: a free one
        options = {k: v for k, v in RECEIPT_PRINTER.items() if k != "transport"}
        site.update(printer_transport="network", printer_url=f"127.0.0.1:{printer.port}",
                    printer_options=options)
    settings = StationSettings(site=SITE, station=STATION, broker=str(broker.address),
                               journal=journal_path(workdir), lang=args.lang,
                               summary_s=4.0 if args.headless else 12.0,
                               audio=not args.headless, audio_cache=workdir / "prompts",
                               screen=args.size or "", fullscreen=args.fullscreen,
                               desk_where_vi=DESK_WHERE["vi"], desk_where_en=DESK_WHERE["en"],
                               **site)
    started = dt.datetime.now(dt.UTC)
    try:
        if args.headless and scenario.seed is not None:
            _with_store(db_url, scenario.seed)
        code = asyncio.run(play(settings, args.headless, args.screenshots, args.lang,
                                args.scenario, central))
    finally:
        central.stop()
        broker.stop()
        if printer is not None:
            printer.close()
    if args.headless and code == 0:
        out = Outcome(None, None, bytes(printer.printed) if printer else b"", args.lang,
                      started, dt.datetime.now(dt.UTC))
        code = check(db_url, journal_path(workdir), scenario, out)
    if args.workdir is None and code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    elif code != 0:
        print(f"demo: logs and databases kept in {workdir}")
    return code


def run_all(args: argparse.Namespace) -> int:
    """Each scenario in its own process; 0 only if every one ended as expected."""
    base = args.workdir or Path(tempfile.mkdtemp(prefix="selfcheck-demo-all-"))
    failed = []
    for name in SCENARIOS:
        cmd = [sys.executable, "-m", "selfcheck.cli", "demo", "--headless", "--scenario", name,
               "--lang", args.lang, "--workdir", str(base / name), "--size", args.size]
        if args.screenshots:
            cmd += ["--screenshots", str(args.screenshots / name)]
        print(f"demo: scenario {name} at {args.size}", flush=True)
        code = subprocess.run(cmd, env=dict(os.environ)).returncode
        print(f"demo: scenario {name}: {'ok' if code == 0 else f'FAILED ({code})'}", flush=True)
        if code != 0:
            failed.append(name)
    print(f"demo: {len(SCENARIOS) - len(failed)} of {len(SCENARIOS)} scenarios as expected"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if not failed and args.workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


def _with_store(db_url: str, fn: Any) -> None:
    from selfcheck.central.backends.store import CirculationStore

    store = CirculationStore(db_url)
    try:
        fn(store)
    finally:
        store.close()


async def play(settings: StationSettings, headless: bool, shots: Path | None,
               lang: str, scenario: str = "walk", central: CentralProcess | None = None) -> int:
    from selfcheck.kiosk.ui.boot import DEMO_PANEL_WIDTH, configure

    screen = settings.config.screen
    size = screen.size
    beside = headless or not screen.fullscreen
    if beside:
        # the panel beside the station: the station keeps the whole of its size
        window = (size[0] + DEMO_PANEL_WIDTH, size[1]) if size else None
        if headless:
            # Nobody watches a scripted run's frames, and every one is drawn by Mesa's
            # software renderer on the CPU: a third of them is plenty for its touches and
            # pictures, and one renderer thread leaves the other cores to the rest.
            os.environ.setdefault("LP_NUM_THREADS", "1")
        configure(headless=headless, size=window, rotation=screen.rotation,
                  max_fps=HEADLESS_FPS if headless else None)
    else:
        configure(fullscreen=True, size=size, rotation=screen.rotation)
    from selfcheck.drivers.card.base import SimulatedCardReader
    from selfcheck.drivers.pad.simulated import SimulatedPad
    from selfcheck.kiosk.runtime.station import StationRuntime
    from selfcheck.kiosk.ui.app import StationApp, run_app
    from selfcheck.kiosk.ui.demo_panel import DemoPanel
    from selfcheck.lab import demo_walk
    from selfcheck.lab.demo_library import demo_books, demo_cards
    from selfcheck.lab.demo_walk import SCENARIOS as SCRIPTS

    demo_walk.CENTRAL = central  # the offline scenario stops and starts it

    desk = SCENARIOS[scenario].desk
    pad, card = SimulatedPad(), SimulatedCardReader()
    runtime = StationRuntime(settings, pad, card)
    app = StationApp(runtime, lambda: DemoPanel(pad, card, demo_books(desk), demo_cards(desk),
                                                lambda: runtime.core.lang),
                     panel="beside" if beside else "toggle")
    if headless:
        return await run_app(app, lambda a: SCRIPTS[scenario](a, shots, lang))
    if size is None and beside:
        from kivy.core.window import Window

        Window.maximize()  # the size of the screen it runs on
    print("demo: the station is on the left, the simulator on the right"
          if beside else "demo: the station fills the screen; F2 shows the simulator")
    print("demo: tap a card (or press c) to sign in, tap a book (or press 1-9) to put it on "
          "the book pad, tap it again to lift it; Esc closes the window" if beside else
          "demo: tap a card (or press c) to sign in, tap a book (or press 1-9) to put it on "
          "the book pad, tap it again to lift it", flush=True)
    return await run_app(app)


def check(db_url: str, journal: Path, scenario: Scenario, out: Outcome | None = None) -> int:
    """Exit 0 only if the central store and the station journal hold what the scenario
    should have left there, and every transaction was acknowledged."""
    from dataclasses import replace

    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.kiosk.runtime.journal import Journal

    store, station = CirculationStore(db_url), Journal(journal)
    try:
        out = replace(out or Outcome(None, None), store=store, journal=station)
        problems = scenario.check(out) if scenario.check else []
        count, _ = station.depth()
        if count:
            problems.append(f"{count} transactions still in the station outbox")
    finally:
        store.close()
        station.close()
    for problem in problems:
        print(f"demo: NOT as expected: {problem}")
    if not problems:
        print(f"demo: {scenario.name}: as expected")
    return 1 if problems else 0


def check_store(db_url: str, scenario: str = "walk") -> int:
    """The store half of `check`, for callers that have no journal at hand."""
    from selfcheck.central.backends.store import CirculationStore

    store = CirculationStore(db_url)
    try:
        s = SCENARIOS[scenario]
        problems = s.check(Outcome(store, None)) if s.check else []
    finally:
        store.close()
    return 1 if problems else 0

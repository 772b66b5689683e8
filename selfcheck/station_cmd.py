"""`selfcheck station`: run the station app (Kivy) with the devices its config names."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from pydantic import ValidationError

from kiosk.settings import StationSettings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("station", help="run the station app")
    p.add_argument("--config", type=Path, help="station TOML file (SELFCHECK_* env overrides)")
    p.add_argument("--broker", help="HOST:PORT of the MQTT broker")
    p.add_argument("--journal", type=Path, help="station journal (SQLite file)")
    p.add_argument("--headless", action="store_true", help="render offscreen (no display)")
    p.add_argument("--fullscreen", action="store_true")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> StationSettings:
    overrides = {k: v for k, v in (("broker", args.broker), ("journal", args.journal))
                 if v is not None}
    if args.fullscreen:
        overrides["fullscreen"] = True
    return load_settings(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = settings_from(args)
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"station config is not valid: {exc}")
        return 2
    return asyncio.run(run_station(settings, headless=args.headless))


async def run_station(settings: StationSettings, *, headless: bool = False) -> int:
    from kiosk.ui.boot import configure

    configure(headless=headless, fullscreen=settings.fullscreen)
    from drivers.card.base import SimulatedCardReader
    from drivers.pad.simulated import SimulatedPad
    from kiosk.devices import open_devices
    from kiosk.runtime import StationRuntime
    from kiosk.ui.app import StationApp, run_app
    from kiosk.ui.demo_panel import DemoPanel
    from selfcheck.demo_library import demo_books, demo_cards

    try:
        pad, card = open_devices(settings)
    except ValueError as exc:
        print(f"station config is not valid: {exc}")
        return 2
    runtime = StationRuntime(settings, pad, card)
    demo = None
    if isinstance(pad, SimulatedPad) and isinstance(card, SimulatedCardReader):
        sim_pad, sim_card = pad, card

        def demo() -> DemoPanel:
            return DemoPanel(sim_pad, sim_card, demo_books(), demo_cards(),
                             lambda: runtime.core.lang)

    return await run_app(StationApp(runtime, demo))

"""`selfcheck station`: run the station app (Kivy) with the devices its config names."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from kiosk.settings import StationSettings, load_settings

# The installer may read either language; the reason after it names the setting.
CONFIG_INVALID = "Cấu hình trạm không hợp lệ / station config is not valid"

if TYPE_CHECKING:
    from drivers.card.base import CardReader
    from drivers.pad.base import BookPad


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
        print(f"{CONFIG_INVALID}: {exc}")
        return 2
    from kiosk.devices import open_devices

    try:  # before the UI starts: a wrong device setting is a config error, exit 2
        devices = open_devices(settings)
    except ValueError as exc:
        print(f"{CONFIG_INVALID}: {exc}")
        return 2
    code = asyncio.run(run_station(settings, headless=args.headless, devices=devices,
                                   reload=lambda: settings_from(args)))
    return code


async def run_station(settings: StationSettings, *, headless: bool = False,
                      devices: tuple[BookPad, CardReader] | None = None,
                      reload: Callable[[], StationSettings] | None = None) -> int:
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
        pad, card = devices or open_devices(settings)
    except ValueError as exc:
        print(f"{CONFIG_INVALID}: {exc}")
        return 2
    runtime = StationRuntime(settings, pad, card)
    runtime.reload = reload  # the `reload_config` command re-reads the same sources
    demo = None
    if isinstance(pad, SimulatedPad) and isinstance(card, SimulatedCardReader):
        sim_pad, sim_card = pad, card

        def demo() -> DemoPanel:
            return DemoPanel(sim_pad, sim_card, demo_books(), demo_cards(),
                             lambda: runtime.core.lang)

    code = await run_app(StationApp(runtime, demo))
    return runtime.exit_code or code  # 75 after a `restart` command: systemd restarts us

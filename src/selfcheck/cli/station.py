"""`selfcheck station`: run the station app (Kivy) with the devices its config names."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from selfcheck.cli import logs
from selfcheck.cli.errors import ConfigInvalid, UserError, t
from selfcheck.kiosk.settings import StationSettings, load_settings
from selfcheck.system import faults

if TYPE_CHECKING:
    from selfcheck.drivers.card.base import CardReader
    from selfcheck.drivers.pad.base import BookPad


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("station", help="run the station app")
    p.add_argument("--config", type=Path, help="station TOML file (SELFCHECK_* env overrides)")
    p.add_argument("--broker", help="HOST:PORT of the MQTT broker")
    p.add_argument("--journal", type=Path, help="station journal (SQLite file)")
    p.add_argument("--headless", action="store_true",
                   help="no screen and no Kivy: the runtime alone (with simulated devices, "
                   "driven by commands on standard input; see kiosk/runtime/headless.py)")
    p.add_argument("--events", action="store_true",
                   help="with --headless: one JSON line per transaction state change")
    p.add_argument("--offscreen", action="store_true",
                   help="the station's screens rendered offscreen (no display)")
    p.add_argument("--fullscreen", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="load the config, the code and the journal (read only), then exit: "
                   "0 if this release can run the station (the health check of an update)")
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> StationSettings:
    overrides = {k: v for k, v in (("broker", args.broker), ("journal", args.journal))
                 if v is not None}
    if args.fullscreen:
        overrides["fullscreen"] = True
    return load_settings(args.config, **overrides)


def config_lang(path: Path | None) -> str | None:
    """The `lang` of a station TOML, read even when the rest of it is not valid, so that its
    errors come in the station's language."""
    if path is None:
        return None
    import tomllib

    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("lang")
    except (OSError, ValueError, RecursionError):  # load_settings then says what is wrong
        return None
    return value if isinstance(value, str) else None


def load_or_explain(args: argparse.Namespace) -> StationSettings:
    """The settings, or a UserError that names each wrong key (and the one probably meant)."""
    where = args.config or "SELFCHECK_*"
    try:
        return settings_from(args)
    except FileNotFoundError:
        raise UserError("config.not_found", path=args.config) from None
    except ValidationError as exc:
        raise ConfigInvalid(where, exc, StationSettings.model_fields) from None
    except ValueError as exc:
        raise UserError("config.invalid.one", path=where, msg=exc) from None


def preflight(settings: StationSettings, lang: str) -> None:
    """Say at once what will not work, instead of a silent screen: the broker and the pad.
    The station starts anyway (it works offline and keeps trying)."""
    import socket

    addr = settings.config.broker.address
    try:
        socket.create_connection((addr.host, addr.port), timeout=2).close()
    except OSError as exc:
        print(t("station.broker_unreachable", lang, broker=settings.broker, reason=exc),
              file=sys.stderr, flush=True)
    devices = settings.config.devices
    if devices.pad != "sim":
        import serial

        try:
            serial.serial_for_url(devices.pad_url, timeout=1).close()
        except (OSError, ValueError, serial.SerialException) as exc:
            # Not allowed is not unplugged: the cure is the dialout group, not the cable.
            key = ("station.pad_permission" if getattr(exc, "errno", None) in
                   (errno.EACCES, errno.EPERM) else "station.pad_unreachable")
            print(t(key, lang, url=devices.pad_url, reason=exc), file=sys.stderr, flush=True)


def journal_writable(settings: StationSettings) -> None:
    """A UserError, before anything starts, when the journal cannot be created or written
    (its folder missing rights, a read-only disk): without it nothing can be lent or returned,
    and the station would only die later with a traceback."""
    import sqlite3

    path = Path(settings.config.journal)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA user_version")  # opens (creates) the file
            db.execute("BEGIN IMMEDIATE")  # and takes the write lock: a read-only file fails
            db.rollback()
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        import getpass

        raise UserError("station.journal_unwritable", code=1, path=path, reason=exc,
                        user=getpass.getuser()) from None


def run(args: argparse.Namespace) -> int:
    args.lang = config_lang(args.config)  # the language of the errors (selfcheck.cli)
    settings = load_or_explain(args)
    args.lang = lang = settings.lang
    if getattr(args, "log_level", None) is None and not os.environ.get(logs.ENV):
        logs.set_level(settings.log_level)  # the config's, below the option and the env
    from selfcheck.kiosk.runtime.devices import open_devices
    from selfcheck.kiosk.runtime.journal import VERSION, JournalVersionError, journal_version

    if settings.releases is not None and not args.check:
        from selfcheck.kiosk.runtime.agent import RESTART_EXIT_CODE
        from selfcheck.kiosk.runtime.releases import Releases

        back = Releases(settings.releases).started()
        if back is not None:  # the new release never got on line: the unit starts the old
            print(t("station.release_rolled_back", lang, version=back.version,
                    failed=back.previous), file=sys.stderr, flush=True)
            return RESTART_EXIT_CODE

    if args.check:
        # Run by the release being installed while the old one still has the devices open:
        # everything but the devices and the broker.
        import selfcheck.kiosk.runtime.agent
        import selfcheck.kiosk.runtime.headless
        import selfcheck.kiosk.runtime.station  # noqa: F401

        found = journal_version(settings.journal)
        if found > VERSION:
            raise UserError("station.journal_newer", path=settings.journal, found=found,
                            supported=VERSION)
        print(t("station.check_ok", lang, journal=settings.journal, found=found,
                supported=VERSION), flush=True)
        return 0
    try:  # before the UI starts: a wrong device setting is a config error, exit 2
        devices = open_devices(settings.config.devices)
    except ValueError as exc:
        raise UserError("station.device_invalid", msg=exc) from None
    faults.set_lang(lang)  # the lines about outside faults (broker, pad) in the same words
    journal_writable(settings)
    preflight(settings, lang)
    try:
        return _run(args, settings, devices)
    except JournalVersionError as exc:
        raise UserError("station.journal_newer", path=exc.path, found=exc.found,
                        supported=VERSION) from None


def _run(args: argparse.Namespace, settings: StationSettings,
         devices: tuple[BookPad, CardReader]) -> int:
    lang = settings.lang
    if args.headless:
        from selfcheck.kiosk.runtime.headless import run_headless, takes_commands

        if not takes_commands(*devices):  # said once: commands typed there would go nowhere
            print(t("station.stdin_ignored", lang), file=sys.stderr, flush=True)
        return asyncio.run(run_headless(settings, *devices, events=args.events))
    code = asyncio.run(run_station(settings, headless=args.offscreen, devices=devices,
                                   reload=lambda: settings_from(args)))
    return code


async def run_station(settings: StationSettings, *, headless: bool = False,
                      devices: tuple[BookPad, CardReader] | None = None,
                      reload: Callable[[], StationSettings] | None = None) -> int:
    from selfcheck.kiosk.ui.boot import configure

    screen = settings.config.screen
    configure(headless=headless, fullscreen=screen.fullscreen, size=screen.size,
              rotation=screen.rotation)
    from selfcheck.kiosk.runtime.devices import open_devices
    from selfcheck.kiosk.runtime.station import StationRuntime
    from selfcheck.kiosk.ui.app import StationApp, run_app

    try:
        pad, card = devices or open_devices(settings.config.devices)
    except ValueError as exc:
        raise UserError("station.device_invalid", msg=exc) from None
    runtime = StationRuntime(settings, pad, card)
    runtime.reload = reload  # the `reload_config` command re-reads the same sources
    # No demo panel here: the station command never loads the lab (`selfcheck demo` is the
    # station with its simulator beside it).
    # Kivy, pydantic's models and the settings live as long as the process: out of the
    # collector's sight, a full collection (the UI and the acks wait behind it) walks only
    # what came after.
    gc.freeze()
    code = await run_app(StationApp(runtime))
    return runtime.exit_code or code  # 75 after a `restart` command: systemd restarts us

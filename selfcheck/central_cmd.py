"""`selfcheck central`: run the central bridge until stopped, on the embedded store or, with
`--ils sip2://...`, on a library system over SIP2 (the --db then keeps its dedupe rows)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mqtt import security
from mqtt.connection import BrokerAddress
from mqtt.security import read_password
from selfcheck import central_admin
from selfcheck.sdnotify import notify

if TYPE_CHECKING:
    from central.sip2.client import Sip2Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("central", help="run the central bridge (embedded circulation store)")
    p.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress(),
                   help="HOST:PORT of the MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--db", default="sqlite:///var/central.db",
                   help="store URL: sqlite:///PATH or postgresql://USER@HOST/DB")
    p.add_argument("--id", default="central-bridge-1",
                   help="MQTT client id; give each bridge process its own")
    p.add_argument("--ils", default=os.environ.get("SELFCHECK_ILS") or None, metavar="URL",
                   help="library system: sip2://USER@HOST:PORT?institution=ID&location=LOC"
                   "&encoding=utf-8|ascii, its password in --ils-password-file (default "
                   "$SELFCHECK_ILS, else the embedded store)")
    p.add_argument("--ils-password-file", type=Path, metavar="FILE",
                   default=os.environ.get("SELFCHECK_ILS_PASSWORD_FILE") or None,
                   help="file (mode 0600): the library system's password on the first line, "
                   "its terminal password (AC), if any, on the second (default "
                   "$SELFCHECK_ILS_PASSWORD_FILE)")
    p.add_argument("--offline-salt-days", type=_days, default=7.0, metavar="DAYS",
                   help="replace each site's offline-list card-hash key this often "
                   "(default 7; 0: never)")
    p.add_argument("--offline-recent-days", type=_days, default=0.0, metavar="DAYS",
                   help="offline list: only patrons who used this site within DAYS "
                   "(default 0: every patron in good standing)")
    p.add_argument("--load-sample", action="store_true",
                   help="fill an empty store with the sample library")
    p.add_argument("--sample-items", type=int, default=0, help="extra synthetic items")
    p.add_argument("--sample-patrons", type=int, default=0, help="extra synthetic patrons")
    security.add_arguments(p)
    p.set_defaults(func=run)
    central_admin.register(p)  # `central migrate`, `central import`


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= value <= 3650:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 to 3650 days")
    return value


def ils_config(url: str, password_file: Path | None) -> Sip2Config:
    """The SIP2 settings, with the password from its file: a password in the URL would show
    in `ps` and in the unit file, so it is refused."""
    from central.sip2.client import Sip2Config

    cfg = Sip2Config.parse(url)
    if cfg.password or cfg.terminal_password:
        raise ValueError("--ils: a password in the URL shows in `ps`; put it in a file (mode "
                         "0600) and give --ils-password-file")
    if password_file is None:
        if cfg.user:
            raise ValueError(f"--ils: user {cfg.user!r} needs --ils-password-file")
        return cfg
    password = read_password(password_file, "--ils-password-file")
    # An optional second line: the terminal password (AC) some library systems ask for.
    lines = Path(password_file).read_text().splitlines()
    return dataclasses.replace(cfg, password=password or "",
                               terminal_password=lines[1] if len(lines) > 1 else "")


def run(args: argparse.Namespace) -> int:
    # Imported here so that other subcommands (the station above all) never load SQLAlchemy.
    from central.backend import Backend
    from central.bridge import Bridge
    from central.sample import load_sample
    from central.store import CirculationStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:  # before anything else: refuse clear text off this machine, bad paths, no password
        client_security = security.from_args(args, args.id, args.broker)
    except ValueError as exc:
        print(f"central config is not valid: {exc}", file=sys.stderr)
        return 2
    if args.db.startswith("sqlite:///"):
        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    backend: Backend
    if args.ils:
        from central.sip2.backend import Sip2Backend

        try:
            cfg = ils_config(args.ils, args.ils_password_file)
        except ValueError as exc:
            print(f"central config is not valid: {exc}", file=sys.stderr)
            return 2
        backend = Sip2Backend(cfg, args.db, owner=args.id)
        where = str(cfg)
    else:
        import datetime as dt

        def days(n: float) -> dt.timedelta | None:
            return dt.timedelta(days=n) if n else None

        store = CirculationStore(args.db, offline_salt_age=days(args.offline_salt_days),
                                 offline_recent=days(args.offline_recent_days))
        if args.load_sample:
            load_sample(store, args.sample_items, args.sample_patrons, scenarios=True)
        else:
            store.create()
        backend = store
        where = store.engine.url.render_as_string(hide_password=True)
    bridge = Bridge(backend, args.broker, client_id=args.id, security=client_security)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge.start()
    logging.getLogger("central").info("bridge %s on %s, backend %s", args.id, args.broker,
                                      where)
    print("central ready", flush=True)
    notify("READY=1")  # systemd Type=notify: the bridge is up and connects by itself
    stop.wait()
    bridge.stop()
    backend.close()
    return 0

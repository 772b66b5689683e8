"""`selfcheck central`: run the central bridge until stopped, on the embedded store or, with
`--ils sip2://...`, on a library system over SIP2 (the --db then keeps its dedupe rows)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from mqtt import security
from mqtt.connection import BrokerAddress
from selfcheck import central_admin
from selfcheck.sdnotify import notify

STATUS_EVERY_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("central", help="run the central bridge (embedded circulation store)")
    p.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress(),
                   help="HOST:PORT of the MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--db", default="sqlite:///var/central.db",
                   help="store URL: sqlite:///PATH or postgresql://USER@HOST/DB")
    p.add_argument("--id", default="central-bridge-1",
                   help="MQTT client id; give each bridge process its own")
    p.add_argument("--ils", default=None, metavar="URL",
                   help="library system: sip2://USER:PASSWORD@HOST:PORT?institution=ID"
                   "&location=LOC&encoding=utf-8|ascii (default: the embedded store)")
    p.add_argument("--load-sample", action="store_true",
                   help="fill an empty store with the sample library")
    p.add_argument("--sample-items", type=int, default=0, help="extra synthetic items")
    p.add_argument("--sample-patrons", type=int, default=0, help="extra synthetic patrons")
    security.add_arguments(p)
    p.set_defaults(func=run)
    central_admin.register(p)  # `central migrate`, `central import`


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
        from pathlib import Path

        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    backend: Backend
    if args.ils:
        from central.sip2.backend import Sip2Backend
        from central.sip2.client import Sip2Config

        try:
            cfg = Sip2Config.parse(args.ils)
        except ValueError as exc:
            print(f"central config is not valid: {exc}", file=sys.stderr)
            return 2
        backend = Sip2Backend(cfg, args.db, owner=args.id)
        where = str(cfg)
    else:
        store = CirculationStore(args.db)
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
    # What operators see in `systemctl status`: what went through and what was rejected.
    rejected = 0
    while not stop.wait(STATUS_EVERY_S):
        notify(f"STATUS={bridge.counters.summary()}")
        if bridge.counters.rejected != rejected:  # new rejections: one summary line
            rejected = bridge.counters.rejected
            logging.getLogger("central").warning("bridge %s: %s", args.id,
                                                 bridge.counters.summary())
    bridge.stop()
    backend.close()
    return 0

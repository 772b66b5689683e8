"""`selfcheck central`: run the central bridge on the embedded store until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from central.bridge import Bridge
from central.sample import load_sample
from central.store import CirculationStore
from mqtt.connection import BrokerAddress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("central", help="run the central bridge (embedded circulation store)")
    p.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress(),
                   help="HOST:PORT of the MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--db", default="sqlite:///var/central.db",
                   help="store URL: sqlite:///PATH or postgresql://USER@HOST/DB")
    p.add_argument("--id", default="central-bridge-1",
                   help="MQTT client id; give each bridge process its own")
    p.add_argument("--load-sample", action="store_true",
                   help="fill an empty store with the sample library")
    p.add_argument("--sample-items", type=int, default=0, help="extra synthetic items")
    p.add_argument("--sample-patrons", type=int, default=0, help="extra synthetic patrons")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.db.startswith("sqlite:///"):
        from pathlib import Path

        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = CirculationStore(args.db)
    if args.load_sample:
        load_sample(store, args.sample_items, args.sample_patrons)
    else:
        store.create()
    bridge = Bridge(store, args.broker, client_id=args.id)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge.start()
    logging.getLogger("central").info("bridge %s on %s, store %s", args.id, args.broker,
                                      store.engine.url.render_as_string(hide_password=True))
    print("central ready", flush=True)
    stop.wait()
    bridge.stop()
    store.close()
    return 0

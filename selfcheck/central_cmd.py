"""`selfcheck central`: run the central bridge until stopped, on the embedded store or, with
`--ils sip2://...`, on a library system over SIP2 (the --db then keeps its dedupe rows)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from mqtt import security
from mqtt.connection import BrokerAddress
from selfcheck import central_admin
from selfcheck.errors import UserError
from selfcheck.sdnotify import notify

SIP2_HELP = (
    "sip2://USER:PASSWORD@HOST:PORT?institution=ID with optional &KEY=VALUE: "
    "location=LOC (login CP; also the check-in AP unless checkin_location=LOC), "
    "encoding=utf-8|ascii|cp850|cp1258|... (utf-8: as is; ascii: Vietnamese diacritics "
    "stripped; a single-byte code page: text in it, characters it lacks stripped of "
    "diacritics; passwords are always sent as typed), "
    "timeout=SECONDS (per request, default 5), pool=N (connections, default 4), "
    "keepalive=SECONDS (idle time before a 99 status, default 30), "
    "error_detection=1|0 (AY/AZ checksums, default 1), terminal_password=X (AC), "
    "language=NNN (SIP2 language code sent for patrons, default 000). "
    "Percent-encode a '#', '/' or '?' in the user or password (%%23, %%2F, %%3F); a '+' "
    "stays a '+'")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("central", help="run the central bridge (embedded circulation store)")
    p.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress(),
                   help="HOST:PORT of the MQTT broker (default 127.0.0.1:1883)")
    p.add_argument("--db", default="sqlite:///var/central.db",
                   help="store URL: sqlite:///PATH or postgresql://USER@HOST/DB")
    p.add_argument("--id", default="central-bridge-1",
                   help="MQTT client id; give each bridge process its own")
    p.add_argument("--ils", default=None, metavar="URL",
                   help="library system (default: the embedded store): " + SIP2_HELP)
    p.add_argument("--ils-check", type=float, default=30.0, metavar="SECONDS",
                   help="how often the library system is checked (SIP2 93 login and 99 "
                   "status, or a store query); each change of its state is logged once")
    p.add_argument("--metrics", default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics here (the library system's state, the "
                   "bridge's counters), e.g. 127.0.0.1:9110")
    p.add_argument("--load-sample", action="store_true",
                   help="fill an empty store with the sample library")
    p.add_argument("--sample-items", type=int, default=0, help="extra synthetic items")
    p.add_argument("--sample-patrons", type=int, default=0, help="extra synthetic patrons")
    p.add_argument("--order-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long a station's transaction waits for a missing predecessor "
                   "before it is applied anyway and the gap recorded (central report)")
    security.add_arguments(p)
    p.set_defaults(func=run)
    central_admin.register(p)  # `central migrate`, `central import`


def run(args: argparse.Namespace) -> int:
    # Imported here so that other subcommands (the station above all) never load SQLAlchemy.
    from central.backend import Backend
    from central.bridge import Bridge
    from central.ils_health import IlsHealth, sip2_probe, store_probe
    from central.sample import load_sample
    from central.store import CirculationStore

    try:  # before anything else: refuse clear text off this machine, bad paths, no password
        client_security = security.from_args(args, args.id, args.broker)
    except ValueError as exc:
        raise UserError("options.invalid", command="central", msg=exc) from None
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
            raise UserError("ils.invalid", msg=exc) from None
        probe = sip2_probe(cfg)  # before the backend: the verdict comes as soon as it can
        health = IlsHealth(probe, str(cfg), args.ils_check).start()
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
        health = IlsHealth(store_probe(store.engine), "store", args.ils_check).start()
    bridge = Bridge(backend, args.broker, client_id=args.id, security=client_security,
                    order_wait_s=args.order_wait)
    if args.metrics:
        from central.metrics import serve

        try:
            serve(args.metrics, health, bridge)
        except (OSError, ValueError) as exc:
            raise UserError("options.invalid", command="central",
                            msg=f"--metrics {args.metrics}: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge.start()
    # Ready once subscribed, so that nothing sent right after is lost; a broker that is not
    # there yet does not hold the central back (it connects by itself).
    if not bridge.connected.wait(10):
        logging.getLogger("central").warning("broker %s not reached yet", args.broker)
    logging.getLogger("central").info("bridge %s on %s, backend %s", args.id, args.broker,
                                      where)
    print("central ready", flush=True)
    notify("READY=1")  # systemd Type=notify: the bridge is up and connects by itself
    stop.wait()
    bridge.stop()
    health.stop()
    backend.close()
    return 0

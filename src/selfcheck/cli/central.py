"""`selfcheck central`: run the central bridge until stopped, on the embedded store or, with
`--ils sip2://...`, on a library system over SIP2, or with `--ils koha+https://...` and
`--ils-circulation sip2://...` on Koha's REST API with SIP2 for returns (the --db then keeps
the dedupe rows)."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from selfcheck.central.offline_policy import OfflineStations, parse_mark
from selfcheck.central.pin_guard import StationBudget
from selfcheck.central.pin_rules import PinRule, PinRules, parse_assignment, parse_rule
from selfcheck.central.throttle import STATION_BURST, STATION_RATE_PER_S
from selfcheck.cli import broker_options, central_admin
from selfcheck.cli.errors import UserError, lang_of
from selfcheck.mqtt.connection import BrokerAddress
from selfcheck.system import faults
from selfcheck.system.sdnotify import notify

STATUS_EVERY_S = 10.0

if TYPE_CHECKING:
    from selfcheck.central.bridge import Bridge
    from selfcheck.central.ils_health import IlsHealth
    from selfcheck.central.ils_report import IlsReporter

SIP2_HELP = (
    "sip2://USER@HOST:PORT?institution=ID with optional &KEY=VALUE: "
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
    p.add_argument("--ils", default=os.environ.get("SELFCHECK_ILS") or None, metavar="URL",
                   help="library system (default $SELFCHECK_ILS, else the embedded store): "
                   + SIP2_HELP + "; the password goes in --ils-password-file, never in the "
                   "URL. Or Koha's REST API: koha+https://USER@HOST[/PATH] (HTTP Basic) or "
                   "koha+https://CLIENT_ID@HOST?auth=oauth2, with &ca=FILE&timeout=S"
                   "&library=BRANCH&loans=rest|sip2&currency=VND&confirm=CODE,...; its "
                   "password or client secret in --ils-secret-file, and --ils-circulation "
                   "for returns")
    p.add_argument("--ils-password-file", type=Path, metavar="FILE",
                   default=os.environ.get("SELFCHECK_ILS_PASSWORD_FILE") or None,
                   help="file (mode 0600): the library system's password on the first line, "
                   "its terminal password (AC), if any, on the second (default "
                   "$SELFCHECK_ILS_PASSWORD_FILE)")
    p.add_argument("--ils-secret-file", type=Path, metavar="FILE",
                   default=os.environ.get("SELFCHECK_ILS_SECRET_FILE") or None,
                   help="with --ils koha+https://...: file (mode 0600) with Koha's password "
                   "(HTTP Basic) or OAuth2 client secret on its first line (default "
                   "$SELFCHECK_ILS_SECRET_FILE)")
    p.add_argument("--ils-circulation", metavar="SIP2_URL",
                   default=os.environ.get("SELFCHECK_ILS_CIRCULATION") or None,
                   help="with --ils koha+https://...: the SIP2 URL (as above, its password "
                   "in --ils-password-file) for returns, which Koha's REST API cannot do, "
                   "and for titles; required with Koha (default $SELFCHECK_ILS_CIRCULATION)")
    p.add_argument("--ils-check", type=float, default=30.0, metavar="SECONDS",
                   help="how often the library system is checked (SIP2 93 login and 99 "
                   "status, or a store query); each change of its state is logged once")
    p.add_argument("--metrics", default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics here (the library system's state, the "
                   "bridge's counters), e.g. 127.0.0.1:9110")
    p.add_argument("--offline-salt-days", type=_days, default=7.0, metavar="DAYS",
                   help="replace each site's offline-list card-hash key this often "
                   "(default 7; 0: never)")
    p.add_argument("--offline-recent-days", type=_days, default=0.0, metavar="DAYS",
                   help="offline list: only patrons who used this site within DAYS "
                   "(default 0: every patron in good standing)")
    p.add_argument("--offline-list", type=_arg(parse_mark), action="append",
                   default=[], metavar="SITE[/STATION]",
                   help="send the offline list (who may borrow while the central cannot be "
                   "reached) to this site's stations, or to one station; * for every "
                   "station; repeat for more, added to $SELFCHECK_OFFLINE_LIST (the same, "
                   "separated by spaces). Default: none, since a stolen station's list gives "
                   "away its readers' card numbers (docs/security.md); a station not named is "
                   "answered not_offline and lends nothing offline")
    p.add_argument("--tx-past-days", type=_bounded(1, 3650, "days"), default=30.0,
                   metavar="DAYS", help="a transaction dated further back than this by its "
                   "station is applied at the central's time and recorded for "
                   "reconciliation (default %(default)g: longer than any offline spell)")
    p.add_argument("--tx-future-minutes", type=_bounded(1, 1440, "minutes"), default=5.0,
                   metavar="MINUTES", help="likewise for a transaction dated this far ahead "
                   "of the central's clock (default %(default)g)")
    p.add_argument("--load-sample", action="store_true",
                   help="fill an empty store with the sample library")
    p.add_argument("--sample-items", type=int, default=0, help="extra synthetic items")
    p.add_argument("--sample-patrons", type=int, default=0, help="extra synthetic patrons")
    p.add_argument("--order-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long a station's transaction waits for a missing predecessor "
                   "before it is applied anyway and the gap recorded (central report)")
    p.add_argument("--station-rate", type=_bounded(0, 100_000, "messages a second"),
                   default=STATION_RATE_PER_S, metavar="PER_S",
                   help="each station's share of a bridge: messages a second after its burst "
                   "(default %(default)g; 0: no limit). Over it, a station's messages are "
                   "left for it to send again, so a flooding station cannot hold up the others")
    p.add_argument("--station-burst", type=_bounded(1, 1_000_000, "messages", integer=True),
                   default=STATION_BURST, metavar="N",
                   help="each station's share: messages at once (default %(default)d, more than a "
                   "day offline leaves behind)")
    p.add_argument("--pin", type=_arg(parse_rule), default=PinRule.ALWAYS, metavar="RULE",
                   help="when a patron check needs the reader's PIN, whatever the station "
                   "sends: always (default: a card number alone reveals nothing), "
                   "after_failure (once a wrong PIN was given for the card, until a right "
                   "one) or never; a locked card is refused under every rule")
    p.add_argument("--pin-site", type=_arg(parse_assignment), action="append", default=[],
                   metavar="SITE=RULE", help="the rule for one site (repeat for more)")
    p.add_argument("--pin-category", type=_arg(parse_assignment), action="append",
                   default=[], metavar="CATEGORY=RULE",
                   help="the rule for one patron category, before the site's (the store's "
                   "category, Koha's category_id; SIP2 has none, so the site's rule applies)")
    p.add_argument("--pin-station-budget", type=_bounded(0, 100_000, "wrong PINs"),
                   default=10.0, metavar="N",
                   help="wrong PINs one station may give within 15 minutes, over any cards, "
                   "before its PIN checks pause (15 minutes, doubling up to 4 hours: at 10 a "
                   "thief gets about 60 guesses a day per station, an honest station that "
                   "meets it by mischance is back within 4 hours); 0: no pause "
                   "(default %(default)g)")
    p.add_argument("--session-idle", type=_bounded(30, 86_400, "seconds"), default=600.0,
                   metavar="SECONDS", help="a reader's session at a station (opened by the "
                   "patron check, needed by the account, loans and renewals) ends this long "
                   "after its last use (default %(default)g)")
    # The benchmark's baseline only: apply whatever arrives at once, without per-station order.
    p.add_argument("--no-order", action="store_true", help=argparse.SUPPRESS)
    broker_options.add_arguments(p)
    p.set_defaults(func=run)
    central_admin.register(p)  # `central migrate`, `central import`


def _bounded(low: float, high: float, what: str,
             integer: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: give {low:g} to {high:g} {what}")
        return value
    return parse


_days = _bounded(0, 3650, "days")


def _env_marks() -> list[str]:
    """$SELFCHECK_OFFLINE_LIST (central.env), checked like the option; a bad one is named at
    start-up rather than leaving stations without a list unnoticed."""
    try:
        return [parse_mark(m) for m in os.environ.get("SELFCHECK_OFFLINE_LIST", "").split()]
    except ValueError as exc:
        raise UserError("options.invalid", command="central",
                        msg=f"SELFCHECK_OFFLINE_LIST: {exc}") from None


def _arg(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A parser's ValueError as argparse's own message."""
    def wrapped(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return wrapped


def pin_budget(args: argparse.Namespace) -> StationBudget:
    return StationBudget(budget=int(getattr(args, "pin_station_budget", 10)))


def pin_rules(args: argparse.Namespace) -> PinRules:
    return PinRules(default=args.pin, sites=dict(args.pin_site),
                    categories=dict(args.pin_category))


def run(args: argparse.Namespace) -> int:
    # Imported here so that other subcommands (the station above all) never load SQLAlchemy.
    from selfcheck.central.backends.store import CirculationStore
    from selfcheck.central.bridge import Bridge
    from selfcheck.central.ils_health import IlsHealth, sip2_probe, store_probe
    from selfcheck.central.sample import load_sample
    from selfcheck.central.tx_clock import ClockBounds

    try:  # before anything else: refuse clear text off this machine, bad paths, no password
        broker = broker_options.from_args(args, args.id)
    except ValueError as exc:
        raise UserError("options.invalid", command="central", msg=exc) from None
    faults.set_lang(lang_of())  # the IT person's language for the lines about outside faults
    # Set first: a central waiting for its database is stopped as cleanly as a running one.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    offline = OfflineStations(frozenset(_env_marks() + args.offline_list))
    if not offline.marked:
        # The list is off unless a station is marked: an upgraded central whose stations lent
        # offline before says so once, where its operator reads.
        logging.getLogger("selfcheck.central").info(
            "no station gets the offline list of readers, so none lends offline; mark those "
            "that may with --offline-list SITE, SITE/STATION or * (SELFCHECK_OFFLINE_LIST)")
    if args.db.startswith("sqlite:///"):
        folder = Path(args.db.removeprefix("sqlite:///")).parent

        def make_folder() -> bool:
            folder.mkdir(parents=True, exist_ok=True)
            return True

        if _until_store(make_folder, args.db, stop) is None:
            return 0
    from selfcheck.central.backends import choose_backend, open_backend

    try:  # which library system, its settings and passwords read: nothing opened yet
        choice = choose_backend(args.db, args.ils, circulation=args.ils_circulation,
                                password_file=args.ils_password_file,
                                secret_file=args.ils_secret_file)
    except ValueError as exc:
        raise UserError("ils.invalid", msg=exc) from None
    if choice.sip2 is not None and choice.kind == "sip2":
        # the verdict comes as soon as it can: before the central's database is reached
        health: IlsHealth | None = IlsHealth(sip2_probe(choice.sip2), choice.where,
                                             args.ils_check).start()
    else:
        health = None

    def days(n: float) -> dt.timedelta | None:
        return dt.timedelta(days=n) if n else None

    opened = _until_store(lambda: open_backend(
        choice, pin_rules=pin_rules(args), pin_budget=pin_budget(args),
        offline_salt_age=days(args.offline_salt_days),
        offline_recent=days(args.offline_recent_days)), args.db, stop)
    if opened is None:
        return 0
    backend = opened
    where = choice.where
    if choice.kind == "koha":
        from selfcheck.central.backends.koha.backend import KohaBackend
        from selfcheck.central.backends.koha.health import koha_probe

        assert isinstance(backend, KohaBackend)
        # Both doors: REST for loans and accounts, SIP2 for returns.
        health = IlsHealth(koha_probe(backend.client, backend.cfg), where,
                           args.ils_check).start()
    elif choice.kind == "store":
        assert isinstance(backend, CirculationStore)
        store = backend

        def fill() -> bool:
            if args.load_sample:
                load_sample(store, args.sample_items, args.sample_patrons, scenarios=True)
            else:
                store.create()
            return True

        if not _until_store(fill, args.db, stop):
            return 0
        where = store.engine.url.render_as_string(hide_password=True)
        health = IlsHealth(store_probe(store.engine), "store", args.ils_check).start()
    assert health is not None
    made = _until_store(lambda: Bridge(
        backend, broker.address, client_id=args.id, security=broker.security,
        order_wait_s=args.order_wait, order=not args.no_order,
        station_rate_per_s=args.station_rate, station_burst=int(args.station_burst),
        session_idle=dt.timedelta(seconds=args.session_idle)), args.db, stop)
    if made is None:
        return 0
    bridge = made
    backend.offline_stations = offline
    bridge.ledger.clock = ClockBounds(past=dt.timedelta(days=args.tx_past_days),
                                      future=dt.timedelta(minutes=args.tx_future_minutes))
    reporter = _ils_reporter(bridge, args.id, health)  # before start: the will goes with connect
    if args.metrics:
        from selfcheck.central.metrics import serve

        try:
            serve(args.metrics, health, bridge)
        except (OSError, ValueError) as exc:
            raise UserError("options.invalid", command="central",
                            msg=f"--metrics {args.metrics}: {exc}") from None
    from selfcheck.mqtt import hops

    recorder = hops.from_env()  # the benchmark's breakdown of the round trip, if it asks
    # What start-up made (SQLAlchemy, the migrations, pydantic's models) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it (measured:
    # about half a second each, with every transaction behind it waiting).
    gc.freeze()
    bridge.start()
    # Ready once subscribed, so that nothing sent right after is lost; a broker that is not
    # there yet does not hold the central back (it connects by itself).
    if not _until_broker(bridge, stop):
        bridge.stop()
        health.stop()
        backend.close()
        return 0
    logging.getLogger("selfcheck.central").info("bridge %s on %s, backend %s", args.id, broker,
                                      where)
    print("central ready", flush=True)
    notify("READY=1")  # systemd Type=notify: the bridge is up and connects by itself
    # What operators see in `systemctl status`: what went through and what was rejected.
    rejected = 0
    while not stop.wait(STATUS_EVERY_S):
        notify(f"STATUS={bridge.counters.summary()}")
        if bridge.counters.rejected != rejected:  # new rejections: one summary line
            rejected = bridge.counters.rejected
            logging.getLogger("selfcheck.central").warning("bridge %s: %s", args.id,
                                                 bridge.counters.summary())
    if reporter is not None:
        reporter.gone()
    bridge.stop()
    hops.dump_to_env(recorder)
    health.stop()
    backend.close()
    return 0


def _ils_reporter(bridge: Bridge, bridge_id: str, health: IlsHealth) -> IlsReporter | None:
    """The library system's state for the operators' console, on the bridge's own client (its
    credentials may publish there; a second connection would need a second account)."""
    from selfcheck.central.ils_report import IlsReporter
    from selfcheck.mqtt.topics import TopicError

    try:
        return IlsReporter(bridge._client, bridge_id, health)
    except TopicError as exc:
        logging.getLogger("selfcheck.central").warning(
            "the library system's state is not published for the console: %s", exc)
        return None


T = TypeVar("T")


def _until_store(step: Callable[[], T], url: str, stop: threading.Event) -> T | None:
    """`step`'s result once the database lets it run; None if stopped while waiting. A
    database that is down, full or may not be written is said once (and once when it works),
    and tried again less and less often: under systemd a central that exited would be started
    again every few seconds, each time with a traceback."""
    from sqlalchemy import make_url

    from selfcheck.central.bridge import first_line, store_fault

    try:
        where = make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown as given: the store itself says what is wrong with it
        where = url.split("@")[-1]
    fault = faults.Fault(logging.getLogger("selfcheck.central"), "store.up", store=where)
    failures = 0
    while True:
        try:
            result = step()
        except Exception as exc:
            key = store_fault(exc)
            if key is None:
                raise
            failures += 1
            if fault.down(key, reason=first_line(exc)):
                notify(f"STATUS={faults.say(key, store=where, reason=first_line(exc))}")
            wait = faults.backoff(failures, 1.0, 30.0)
            # Waiting for the database is not a start that hangs: systemd is told to wait too.
            notify(f"EXTEND_TIMEOUT_USEC={int((wait + 30) * 1e6)}")
            if stop.wait(wait):
                return None
            continue
        fault.up()
        return result


def _until_broker(bridge: Bridge, stop: threading.Event) -> bool:
    """Wait (up to 10 s) for the broker to hand over the stations' messages; False if stopped.
    A broker that is not there yet does not hold the central back (it connects by itself, and
    the bridge said why it could not). One that refuses the central's login or certificate
    will not let it in by waiting: the central is not ready until it does (the line said what
    to fix), so that neither `central ready` nor systemd says otherwise."""
    deadline = time.monotonic() + 10
    while not bridge.connected.wait(0.2):
        if stop.is_set():
            return False
        if bridge.broker_watch.fault.reason in _REFUSALS:
            continue
        if time.monotonic() >= deadline:
            break
    return True


# Broker faults that no waiting mends: the login or the certificate is wrong.
_REFUSALS = {"broker.login_refused", "broker.refused", "broker.tls", "broker.tls_untrusted"}

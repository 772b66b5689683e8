"""`selfcheck doctor`: is this station (or central) set up right? One line per check.

    selfcheck doctor --config station.toml     config, broker (TLS, password), book pad and its
                                               version, card reader, printer and its paper
    selfcheck doctor --central --ils URL ...   the central's broker login, store, library system

Each line says ok, or the problem and what to do next, in Vietnamese or English (--lang, else
the station's `lang`, else LANG). Exit 0 when all is well, 1 on any problem, 2 when the config
itself cannot be read.

The station's checks never disturb a running station: with the station app running (its
journal open), the broker is only checked to answer (a login as the station would have the
broker, which makes the client id the login name, drop the station) and the devices it holds
are not opened. With the app stopped, the doctor logs in as the station under its own client
id, and the station's broker session is resumed without taking anything from it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfcheck.cli.errors import LANGS, config_problems, lang_of, t

Result = tuple[str, str]  # ("ok" | "problem", the line's text)


@dataclass
class Check:
    title: str
    run: Callable[[], Result]


def register(sub: argparse._SubParsersAction) -> None:
    from selfcheck.cli import broker_options
    from selfcheck.mqtt.connection import BrokerAddress

    p = sub.add_parser("doctor", help="check a station's or the central's set-up, one line "
                       "per check", description="\n\n".join(__doc__.split("\n\n")[:3]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="station TOML file (SELFCHECK_* env overrides)")
    p.add_argument("--central", action="store_true",
                   help="check the central instead: --broker, --db, --ils and broker security")
    p.add_argument("--lang", choices=LANGS, help="vi or en (default: the station's lang, LANG)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    p.add_argument("--station-user", default="kiosk", metavar="USER",
                   help="the user the station runs as, who must be able to open its serial "
                   "ports (default kiosk, as in systemd/selfcheck-station.service)")
    c = p.add_argument_group("central (with --central)")
    c.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress())
    c.add_argument("--db", default="sqlite:///var/central.db")
    c.add_argument("--id", default="central-bridge-1", help="the bridge's MQTT client id")
    c.add_argument("--ils", default=None, metavar="URL", help="as for `selfcheck central`")
    c.add_argument("--ils-password-file", type=Path, default=None, metavar="FILE",
                   help="as for `selfcheck central`")
    c.add_argument("--ils-circulation", default=None, metavar="URL",
                   help="as for `selfcheck central` (Koha: the SIP2 server for returns)")
    c.add_argument("--ils-secret-file", type=Path, default=None, metavar="FILE",
                   help="as for `selfcheck central`")
    broker_options.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.central:
        lang = lang_of(args.lang)
        checks = central_checks(args, lang)
    else:
        from selfcheck.cli.station import config_lang

        lang = lang_of(args.lang or config_lang(args.config))
        settings, first = _station_config(args.config, lang)
        print(_line(first[0], t("doctor.config", lang, path=args.config or "SELFCHECK_*"),
                    first[1], lang), flush=True)
        if settings is None:
            return 2
        checks = station_checks(settings, lang, args.timeout, station_user=args.station_user)
        lang = args.lang or settings.lang
    problems = 0
    for check in checks:
        try:
            status, text = check.run()
        except Exception as exc:  # a check that breaks is a problem to show, not a crash
            status, text = "problem", f"{type(exc).__name__}: {exc}"
        problems += status == "problem"
        print(_line(status, check.title, text, lang), flush=True)
    total = len(checks) + (0 if args.central else 1)
    print(t("doctor.summary.problems", lang, problems=problems, count=total) if problems
          else t("doctor.summary.ok", lang, count=total))
    return 1 if problems else 0


def _line(status: str, title: str, text: str, lang: str) -> str:
    mark = t({"ok": "doctor.ok", "skipped": "doctor.skipped"}.get(status, "doctor.problem"),
             lang)
    return f"{mark:<7} {title}: {text}"


# -- the station
def _station_config(path: Path | None, lang: str) -> tuple[Any, Result]:
    from pydantic import ValidationError

    from selfcheck.kiosk.settings import StationSettings, load_settings

    try:
        s = load_settings(path)
    except FileNotFoundError:
        return None, ("problem", t("config.not_found", lang, path=path))
    except ValidationError as exc:
        lines = config_problems(exc, StationSettings.model_fields, lang)
        return None, ("problem", "; ".join(lines))
    except ValueError as exc:
        return None, ("problem", str(exc))
    return s, ("ok", t("doctor.config.ok", lang, site=s.site, station=s.station))


def station_checks(s: Any, lang: str, timeout: float, *,
                   station_user: str = "kiosk") -> list[Check]:
    from selfcheck.kiosk.runtime.journal import Journal
    from selfcheck.kiosk.settings import StationSettings

    assert isinstance(s, StationSettings)
    running = Journal.in_use(s.journal)

    def unless_running(check: Callable[[], Result]) -> Callable[[], Result]:
        # The station holds its devices: a second reader of a serial port takes its bytes.
        return (lambda: ("skipped", t("doctor.in_use", lang))) if running else check

    checks = [Check(t("doctor.broker", lang, broker=s.broker),
                    lambda: broker_check(s.config.broker.address, s.config.broker.security,
                                         s.station, lang, timeout, keep_session=True,
                                         station_running=running)),
              Check(t("doctor.journal", lang, path=s.journal),
                    lambda: journal_check(Path(s.journal), lang)),
              Check(t("doctor.pad", lang, kind=s.pad, url=s.pad_url).rstrip(),
                    unless_running(lambda: pad_check(s.pad, s.pad_url, s.pad_options, lang))),
              Check(t("doctor.card", lang, kind=s.card_reader, url=s.card_url).rstrip(),
                    unless_running(lambda: card_check(s.card_reader, s.card_url,
                                                      s.card_options, lang)))]
    checks.append(Check(t("doctor.printer", lang, kind=s.printer_transport,
                          url=s.printer_url).rstrip(),
                        unless_running(lambda: printer_check(s, lang))))
    devices = serial_devices(s)
    if devices:
        checks.append(Check(t("doctor.serial", lang, user=station_user),
                            lambda: serial_check(station_user, devices, lang)))
    return checks


def journal_check(path: Path, lang: str) -> Result:
    """The station writes its journal (and SQLite its -wal and -shm files) in this folder, or
    makes the folder: try a real write where that happens (root passes any access test)."""
    import tempfile

    folder = path.absolute().parent
    where = folder
    while not where.exists():
        where = where.parent
    try:
        if not where.is_dir():
            raise NotADirectoryError(f"{where} is not a folder")
        with tempfile.TemporaryFile(dir=where):
            pass
        if path.exists():
            with open(path, "r+b"):
                pass
    except OSError as exc:
        return "problem", t("doctor.journal.readonly", lang, folder=folder,
                            reason=exc.strerror or exc)
    from selfcheck.kiosk.runtime.journal import VERSION, journal_version

    try:
        found = journal_version(path)
    except sqlite3.DatabaseError:  # not one to read: the station says so when it opens it
        found = 0
    if found > VERSION:  # written by a newer release: this one would refuse to start
        return "problem", t("station.journal_newer", lang, path=path, found=found,
                            supported=VERSION)
    return "ok", t("doctor.journal.ok", lang)


def serial_devices(s: Any) -> list[str]:
    """The serial ports the station opens: the udev rules (deploy/pi/99-selfcheck.rules) give
    them to the dialout group."""
    found: list[str] = []
    if s.pad != "sim" and s.pad_url.startswith("/dev/"):
        found.append(s.pad_url)
    if s.card_reader == "barcode-serial" and s.card_url.startswith("/dev/"):
        found.append(s.card_url)
    elif s.card_reader == "nfc" and s.card_url.startswith("tty:"):  # nfcpy: tty:USB0:pn532
        found.append("/dev/tty" + s.card_url.split(":")[1])
    if s.printer_transport == "serial" and s.printer_url.startswith("/dev/"):
        found.append(s.printer_url.split(":")[0])
    return list(dict.fromkeys(found))


def serial_check(user: str, devices: list[str], lang: str) -> Result:
    import grp
    import pwd

    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return "problem", t("doctor.serial.no_user", lang, user=user)
    names = ", ".join(devices)
    if account.pw_uid == 0:
        return "ok", t("doctor.serial.ok", lang, user=user, devices=names)
    try:
        dialout = grp.getgrnam("dialout").gr_gid
    except KeyError:
        dialout = None
    if dialout is None or dialout not in os.getgrouplist(user, account.pw_gid):
        return "problem", t("doctor.serial.group", lang, user=user, devices=names)
    return "ok", t("doctor.serial.ok", lang, user=user, devices=names)


def broker_check(address: Any, sec: Any, user: str, lang: str, timeout: float, *,
                 keep_session: bool, station_running: bool = False) -> Result:
    import dataclasses
    import ssl

    from selfcheck.mqtt import security
    from selfcheck.mqtt.connection import SESSION_EXPIRY_S, connect_properties, make_client

    login = bool(sec.username) and not station_running
    if sec.username and station_running:
        # No login: the broker forces the client id to the login name, so logging in as the
        # station takes over its session whatever id is asked for. A refused anonymous
        # CONNECT still proves the broker answers and its TLS certificate holds.
        sec = dataclasses.replace(sec, username=None, password=None)
    # Never the station's own client id: a broker that keeps ids apart then leaves a running
    # station alone.
    client_id = f"doctor-{user}-{uuid.uuid4().hex[:8]}"
    # manual_ack and no acks: whatever the broker kept for the station goes back to it.
    client = make_client(client_id, manual_ack=True)
    security.apply(client, address, sec)
    answer: list[Any] = []
    done = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        answer.append(rc)
        done.set()

    client.on_connect = on_connect
    # The station's own session expiry: a doctor must not end the session the station keeps.
    props = connect_properties(SESSION_EXPIRY_S if keep_session and sec.username else 0)
    props.ReceiveMaximum = 1
    try:
        client.connect(address.host, address.port, keepalive=10,
                       clean_start=not (keep_session and sec.username), properties=props)
    except ssl.SSLError as exc:
        return "problem", t("doctor.broker.tls", lang, reason=exc.reason or exc)
    except OSError as exc:
        return "problem", t("doctor.broker.down", lang, reason=exc)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return "problem", t("doctor.broker.down", lang, reason=f"no CONNACK in {timeout:g} s")
        rc = answer[0]
        if station_running and rc.is_failure and rc.value in (0x86, 0x87):
            return "ok", t("doctor.broker.running", lang)  # bad login / not authorized
        if rc.is_failure:
            return "problem", t("doctor.broker.refused", lang, reason=rc)
        return "ok", t("doctor.broker.ok", lang,
                       login=t("doctor.broker.login", lang, user=user) if login else "")
    finally:
        client.disconnect()
        client.loop_stop()


def pad_check(kind: str, url: str, options: dict[str, Any], lang: str) -> Result:
    if kind == "sim":
        return "ok", t("doctor.pad.sim", lang)
    from selfcheck.drivers.pad import open_pad
    from selfcheck.drivers.pad.base import PadError

    # No reconnect window: a doctor says at once that the port is not there.
    pad = open_pad(kind, url, **{"reconnect_window": 0.0, **options})
    try:
        version = pad.version() if hasattr(pad, "version") else None
        if version is None:
            pad.inventory()
    except (PadError, OSError, ValueError) as exc:
        return "problem", t("doctor.pad.down", lang, reason=exc)
    finally:
        try:
            pad.close()
        except Exception:  # closing a port that never opened
            pass
    return "ok", t("doctor.pad.ok", lang, version=f" ({version})" if version else "")


def card_check(kind: str, url: str, options: dict[str, Any], lang: str) -> Result:
    if kind == "sim":
        return "ok", t("doctor.card.sim", lang)
    try:
        if kind == "nfc":
            import nfc

            clf = nfc.ContactlessFrontend()
            if not clf.open(url):
                raise OSError(f"no reader at {url}")
            clf.close()
        elif kind == "barcode-serial":
            import serial

            serial.serial_for_url(url, timeout=1).close()
        elif url not in ("-", "stdin"):  # barcode-wedge: a file, a FIFO or an input device
            with open(url, "rb", buffering=0):
                pass
    except Exception as exc:  # nfcpy and pyserial raise their own kinds of errors
        return "problem", t("doctor.card.down", lang, reason=exc)
    return "ok", t("doctor.card.ok", lang)


def printer_check(s: Any, lang: str) -> Result:
    if s.printer_transport == "none":
        return "ok", t("doctor.printer.none", lang)
    from selfcheck.drivers.printer.device import ReceiptPrinter
    from selfcheck.drivers.printer.status import Paper

    assert s.config.printer is not None  # parsed with the settings
    printer = ReceiptPrinter(s.config.printer)
    try:
        if printer.can_read_status:
            paper = printer.paper()
            if paper is Paper.UNKNOWN:
                return "problem", t("doctor.printer.down", lang, reason=paper.value)
            if paper in (Paper.LOW, Paper.OUT):
                return "problem", t("doctor.printer.paper", lang, paper=paper.value)
            return "ok", t("doctor.printer.ok", lang, paper=paper.value)
        _ = printer.escpos.device  # opens the transport
        return "ok", t("doctor.printer.ok", lang, paper="?")
    except Exception as exc:  # python-escpos transports raise their own errors
        return "problem", t("doctor.printer.down", lang, reason=exc)
    finally:
        printer.close()


# -- the central
def central_checks(args: argparse.Namespace, lang: str) -> list[Check]:
    from selfcheck.cli import broker_options
    from selfcheck.cli.errors import UserError

    try:
        broker = broker_options.from_args(args, args.id)
    except ValueError as exc:
        raise UserError("options.invalid", command="doctor", msg=exc) from None
    checks = [Check(t("doctor.broker", lang, broker=args.broker),
                    lambda: broker_check(broker.address, broker.security, args.id, lang,
                                         args.timeout,
                                         keep_session=False)),
              Check(t("doctor.store", lang, url=_store_name(args.db)),
                    lambda: store_check(args.db, lang))]
    if args.ils:
        from selfcheck.central.backends import choose_backend

        try:  # the central's own rules: no password in the URL, the file 0600
            choice = choose_backend(args.db, args.ils, circulation=args.ils_circulation,
                                    password_file=args.ils_password_file,
                                    secret_file=args.ils_secret_file)
        except ValueError as exc:
            raise UserError("ils.invalid", msg=exc) from None
        cfg = choice.sip2  # the SIP2 server: the library system's, or Koha's returns
        checks.append(Check(t("doctor.ils", lang, ils=cfg), lambda: ils_check(cfg, lang)))
    return checks


def _store_name(url: str) -> str:
    """The store as shown, without its password; a URL that cannot be read (the multi-host
    form can) stops the doctor with what to give instead."""
    from selfcheck.central.engine import hide_password, parse_url
    from selfcheck.cli.errors import UserError

    try:
        parse_url(url)
    except ValueError as exc:
        raise UserError("central.store.bad_url", 2, url=hide_password(url),
                        reason=exc) from None
    return hide_password(url)


def store_check(url: str, lang: str) -> Result:
    """Opens, is at the code's schema revision, and takes a write (rolled back: a read-only
    file, folder, user or server fails it; root passes any access test, a write it cannot)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from selfcheck.central import migrations
    from selfcheck.central.engine import open_engine
    from selfcheck.central.ils_health import store_probe

    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and not os.path.exists(path):
        return "problem", t("doctor.store.missing", lang, path=path)
    # SQLite without the bridge's start-up pragmas: a doctor changes nothing in the file.
    engine = create_engine(url) if url.startswith("sqlite") else open_engine(url)
    try:
        verdict = store_probe(engine)()
        if verdict.state != "ok":
            return "problem", t("doctor.store.down", lang, reason=verdict.detail)
        revision, head = migrations.current(engine), migrations.head()
        if revision != head:
            return "problem", t("doctor.store.not_migrated", lang, revision=revision or "-",
                                head=head)
        try:
            with engine.connect() as conn:
                with conn.begin() as tx:
                    conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
                    tx.rollback()
        except DBAPIError as exc:
            return "problem", t("doctor.store.readonly", lang,
                                reason=str(exc.orig).strip().splitlines()[0])
    finally:
        engine.dispose()
    return "ok", t("doctor.store.ok", lang, revision=revision)


def ils_check(cfg: Any, lang: str) -> Result:
    from selfcheck.central.ils_health import sip2_probe

    verdict = sip2_probe(cfg)()
    if verdict.state == "ok":
        return "ok", t("doctor.ils.ok", lang)
    if verdict.state == "login refused":
        return "problem", t("doctor.ils.login", lang, reason=verdict.detail)
    if verdict.hint == "ils.slow":  # there, but slower than the URL's timeout= allows
        return "problem", t("doctor.ils.slow", lang, reason=verdict.detail,
                            timeout=cfg.timeout_s)
    return "problem", t("doctor.ils.down", lang, reason=verdict.detail)


if __name__ == "__main__":
    from selfcheck.cli import main

    sys.exit(main(["doctor", *sys.argv[1:]]))

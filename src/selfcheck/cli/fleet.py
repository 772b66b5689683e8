"""`selfcheck fleet`: the operators' tools.

  selfcheck fleet serve ...             run the fleet-state service (its own process)
  selfcheck fleet [--site S]            live table of every station (from the service)
  selfcheck fleet send STATION CMD k=v  send a command through the service (logged in, audited,
                                        tracked) and wait for its final state
  selfcheck fleet user add NAME ...     an operator of the web page (password from a prompt
                                        or a file)
  selfcheck fleet user remove NAME      remove one (its sessions end at once)
  selfcheck fleet user disable NAME     keep the name, refuse its logins and end its sessions
  selfcheck fleet user password NAME    a new password (and enabled again); sessions end

User changes are written to the audit log as done by `cli:<the system user>`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfcheck.cli import broker_options
from selfcheck.cli.errors import UserError, lang_of, t
from selfcheck.system.sdnotify import notify

DEFAULT_URL = "http://127.0.0.1:9108"
OLD_SEND_OPTIONS = ("--broker", "--user", "--password-file", "--ca-file", "--cert-file",
                    "--key-file")
OLD_SEND_FLAGS = ("--tls", "--allow-insecure")


def register(sub: argparse._SubParsersAction) -> None:
    from selfcheck.mqtt.connection import BrokerAddress

    p = sub.add_parser("fleet", help="watch and steer the stations (operators)")
    p.add_argument("--url", default=DEFAULT_URL, help="the fleet service (default %(default)s)")
    p.add_argument("--site", help="only this site")
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--lang", choices=["vi", "en"], default="vi", help="the table's language")
    p.add_argument("--login", metavar="NAME", help="log in to a service that asks for it "
                   "(with --login-password-file)")
    p.add_argument("--login-password-file", type=Path, metavar="FILE")
    p.set_defaults(func=watch)
    verbs = p.add_subparsers(dest="verb")

    s = verbs.add_parser("serve", help="run the fleet-state service")
    s.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress())
    s.add_argument("--db", default="sqlite:///var/central.db",
                   help="central store URL (the fleet tables live beside the circulation)")
    s.add_argument("--http", default="127.0.0.1:9108", help="HOST:PORT for the page, "
                   "/events, /api/stations and /metrics")
    s.add_argument("--id", default="central-fleet-1", help="MQTT client id")
    s.add_argument("--open", action="append", default=[], metavar="[SITE=]HOURS",
                   help="opening hours, local time (default all day): 'Mon-Fri 07:30-17:00,"
                   "Sat 08:00-12:00' or '07:00-21:00'; repeat with SITE= per site. Offline "
                   "outside them is shown as closed, not alerted")
    s.add_argument("--tz", default="Asia/Ho_Chi_Minh",
                   help="time zone of the opening hours and the statistics")
    s.add_argument("--no-login", action="store_true",
                   help="serve the page without logins (only on a loopback address)")
    s.add_argument("--names", type=Path, metavar="FILE",
                   help="TOML with [sites] CODE = \"name\" and [stations] \"SITE/ID\" = "
                   "\"name\": human names shown beside the codes")
    s.add_argument("--stats-db", help="central store URL for the statistics page (default: "
                   "--db, where the circulation lives)")
    s.add_argument("--updates", type=Path, metavar="DIR",
                   help="serve the stations' releases in DIR (one folder each, made by "
                   "`selfcheck central wheelhouse build`) read only at /updates/RELEASE/")
    s.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    s.add_argument("--secure-cookie", action="store_true",
                   help="mark the session cookie Secure (HTTPS at a reverse proxy)")
    broker_options.add_arguments(s)
    s.set_defaults(func=serve)

    u = verbs.add_parser("user", help="operators of the web page")
    uverbs = u.add_subparsers(dest="user_verb", required=True)
    ua = uverbs.add_parser("add", help="add (or with --replace change) a user")
    ua.add_argument("name")
    ua.add_argument("--role", choices=["viewer", "operator", "admin"], required=True)
    ua.add_argument("--sites", default="", help="a,b: only these sites (default every site)")
    ua.add_argument("--password-file", type=Path,
                    help="read the password from this file (default: ask for it)")
    ua.add_argument("--replace", action="store_true", help="change an existing user")
    ua.add_argument("--db", default="sqlite:///var/central.db", help="central store URL")
    ua.set_defaults(func=user_add)
    ul = uverbs.add_parser("list", help="list the users")
    ul.add_argument("--db", default="sqlite:///var/central.db", help="central store URL")
    ul.set_defaults(func=user_list)
    for verb, doc in (("remove", "remove a user and end its sessions"),
                      ("disable", "refuse a user's logins (until add --replace) and end its "
                                  "sessions")):
        ur = uverbs.add_parser(verb, help=doc)
        ur.add_argument("name")
        ur.add_argument("--db", default="sqlite:///var/central.db", help="central store URL")
        ur.set_defaults(func=user_remove if verb == "remove" else user_disable)
    up = uverbs.add_parser("password", help="give a user a new password (ends its sessions)")
    up.add_argument("name")
    up.add_argument("--password-file", type=Path,
                    help="read the password from this file (default: ask for it)")
    up.add_argument("--db", default="sqlite:///var/central.db", help="central store URL")
    up.set_defaults(func=user_password)

    # Through the running service's HTTP API, as the page sends: the same login, checks,
    # audit log and job tracking (the service takes only the results of commands it sent).
    c = verbs.add_parser("send", help="send a command to a station through the fleet service "
                         "and wait for the result")
    c.add_argument("station", help="STATION or SITE/STATION")
    c.add_argument("command", help="out_of_service, in_service, reload_config, "
                   "set_offline_policy, send_diagnostics, restart, update (version= url= "
                   "sha256=, as `central wheelhouse build` prints), rollback")
    c.add_argument("args", nargs="*", metavar="KEY=VALUE",
                   help="arguments, e.g. message_vi='Bảo trì' policy=none force=true")
    c.add_argument("--expires", type=float, default=300, help="seconds until it expires")
    c.add_argument("--timeout", type=float, default=60, help="seconds to wait for the result")
    c.add_argument("--cmd-id", help="reuse an id (a repeat returns the stored result)")
    # Also after the verb; SUPPRESS: not given here, the fleet-level value stands.
    c.add_argument("--url", default=argparse.SUPPRESS, help="the fleet service")
    c.add_argument("--login", metavar="NAME", default=argparse.SUPPRESS,
                   help="an operator of the service (with --login-password-file)")
    c.add_argument("--login-password-file", type=Path, metavar="FILE",
                   default=argparse.SUPPRESS)
    # The options of the days when send spoke to the broker itself: still accepted so that
    # existing scripts run, ignored with a note (the service holds the broker login now).
    old = c.add_argument_group("no longer used (ignored)")
    for opt in OLD_SEND_OPTIONS:
        old.add_argument(opt, dest=f"old_{opt[2:].replace('-', '_')}", metavar="X",
                         default=None, help=argparse.SUPPRESS)
    for opt in OLD_SEND_FLAGS:
        old.add_argument(opt, dest=f"old_{opt[2:].replace('-', '_')}", action="store_true",
                         help=argparse.SUPPRESS)
    c.set_defaults(func=send)


# -- serve
def serve(args: argparse.Namespace) -> int:
    from selfcheck.central.fleet.metrics import OpeningHours
    from selfcheck.central.fleet.service import FleetService

    default, per_site = "00:00-24:00", {}
    for spec in args.open:
        site, eq, hours = spec.rpartition("=")
        if eq:
            per_site[site] = hours
        else:
            default = hours
    try:
        broker = broker_options.from_args(args, args.id)
        hours = OpeningHours(default, per_site, args.tz)
    except ValueError as exc:
        print(f"fleet service not started: {exc}")
        return 2
    host, _, port = args.http.rpartition(":")
    host = host or "127.0.0.1"
    if args.no_login and host not in ("127.0.0.1", "::1", "localhost"):
        print(f"fleet service not started: --no-login only on a loopback address, not {host} "
              f"(add users with `selfcheck fleet user add`)")
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("fleet service not started: give both --tls-cert and --tls-key")
        return 2
    try:
        names = load_names(args.names) if args.names else None
    except (OSError, ValueError) as exc:
        print(f"fleet service not started: names file {args.names}: {exc}")
        return 2
    if args.db.startswith("sqlite:///"):
        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    service = FleetService(broker.address, args.db, http=(host, int(port)),
                           hours=hours, client_id=args.id,
                           security=broker.security, login=not args.no_login, names=names,
                           tls=(str(args.tls_cert), str(args.tls_key)) if args.tls_cert
                           else None, secure_cookie=args.secure_cookie,
                           stats_url=args.stats_db, tz=args.tz, updates=args.updates)
    if not args.no_login and not service.auth.has_users():
        print("no users yet: add one with `selfcheck fleet user add NAME --role admin`",
              flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    print(f"fleet ready {service.url}", flush=True)
    notify("READY=1")  # systemd Type=notify
    stop.wait()
    service.stop()
    return 0


def load_names(path: Path) -> dict[str, Any]:
    """Human names of sites and stations, from TOML: [sites] and [stations] tables."""
    import tomllib

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for table in ("sites", "stations"):
        values = data.get(table, {})
        if not isinstance(values, dict) or not all(
                isinstance(v, str) for v in values.values()):
            raise ValueError(f"[{table}]: CODE = \"name\" lines")
        out[table] = dict(values)
    return out


# -- users
def _auth(url: str) -> Any:
    from selfcheck.central.engine import open_engine
    from selfcheck.central.fleet.auth import Auth
    from selfcheck.central.fleet.schema import ensure

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(url)
    ensure(engine)
    return Auth(engine)


def user_add(args: argparse.Namespace) -> int:
    import getpass

    if args.password_file:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            print(f"user not added: {exc}")
            return 2
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("user not added: the two passwords differ")
            return 2
    sites = [s for s in args.sites.split(",") if s]
    try:
        _auth(args.db).add_user(args.name, password, args.role, sites, replace=args.replace,
                                by=_by())
    except ValueError as exc:
        print(f"user not added: {exc}")
        return 2
    print(f"user {args.name}: {args.role}, " + (f"sites {', '.join(sites)}" if sites
                                                  else "every site"))
    return 0


def _by() -> str:
    """Who made a user change from the command line, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _password(args: argparse.Namespace) -> str | None:
    import getpass

    if args.password_file:
        try:
            return str(args.password_file.read_text(encoding="utf-8").strip("\r\n"))
        except OSError as exc:
            print(f"password not read: {exc}")
            return None
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        print("the two passwords differ")
        return None
    return password


def user_password(args: argparse.Namespace) -> int:
    password = _password(args)
    if password is None:
        return 2
    try:
        done = _auth(args.db).set_password(args.name, password, by=_by())
    except ValueError as exc:
        print(f"password not changed: {exc}")
        return 2
    if not done:
        print(f"user {args.name}: no such user")
        return 2
    print(f"user {args.name}: new password, sessions ended")
    return 0


def user_remove(args: argparse.Namespace) -> int:
    if not _auth(args.db).remove_user(args.name, by=_by()):
        print(f"user {args.name}: no such user")
        return 2
    print(f"user {args.name}: removed, sessions ended")
    return 0


def user_disable(args: argparse.Namespace) -> int:
    if not _auth(args.db).disable_user(args.name, by=_by()):
        print(f"user {args.name}: no such user")
        return 2
    print(f"user {args.name}: disabled, sessions ended (`user add --replace` enables it)")
    return 0


def user_list(args: argparse.Namespace) -> int:
    for u in _auth(args.db).users():
        locked = " (locked)" if u["locked_until"] and u["locked_until"] > time.time() else ""
        locked += " (disabled)" if u["disabled"] else ""
        print(f"{u['name']}\t{u['role']}\t{u['sites'] or '*'}{locked}")
    return 0


# -- the live table
def _opener(args: argparse.Namespace) -> urllib.request.OpenerDirector:
    """An HTTP client for the service, logged in when --login is given (a session cookie)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    if args.login:
        _refuse_clear_text(args.url)
        password = args.login_password_file.read_text(encoding="utf-8").strip("\r\n") \
            if args.login_password_file else __import__("getpass").getpass("password: ")
        req = urllib.request.Request(
            f"{args.url}/api/login", data=json.dumps({"name": args.login,
                                                       "password": password}).encode(),
            headers={"Content-Type": "application/json", "X-Requested-With": "fleet"})
        opener.open(req, timeout=10).close()
    return opener


def _refuse_clear_text(url: str) -> None:
    """A password goes in clear text over http://: only to this machine, never across a
    network where anyone on the way reads it."""
    import ipaddress
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UserError("fleet.login_clear_text", code=2, url=url,
                        https=parts._replace(scheme="https").geturl())


def _stream(url: str, opener: urllib.request.OpenerDirector | None = None
            ) -> Iterator[tuple[str, Any]]:
    """(event, data) from the service's server-sent events."""
    with (opener or urllib.request.build_opener()).open(url, timeout=60) as resp:
        event, data = "message", list[str]()
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def table(rows: list[dict[str, Any]], site: str | None = None, lang: str = "vi") -> Any:
    """The fleet as a rich table, in the operator's language (central/fleet/locale)."""
    from rich.table import Table

    from selfcheck.central.fleet.i18n import t as tr

    def w(key: str, **kw: object) -> str:
        return tr(key, lang, **kw)

    online = sum(bool(r["online"]) for r in rows)
    alerting = sum(bool(r["alerts"]) for r in rows)
    title = w("summary", stations=len(rows), online=online, alerting=alerting)
    t = Table(title=title + (f" · {w('summary.site', site=site)}" if site else ""),
              title_justify="left")
    for key in ("site", "station", "online", "service", "reader", "paper", "outbox", "oldest",
                "temp", "version", "event", "order", "alerts"):
        t.add_column(w(f"col.{key}"),
                     justify="right" if key in ("outbox", "oldest", "temp") else "left")
    for r in rows:
        ev = r.get("last_event") or {}
        t.add_row(
            r["site"], r["station"],
            f"[green]{w('online')}[/]" if r["online"] else f"[red]{w('offline')}[/]",
            f"[yellow]{w('out_of_service')}[/]" if r["service"] == "out_of_service"
            else (w(r["service"]) if r["service"] else "–"),
            "–" if r["pad_ok"] is None
            else (w("reader.ok") if r["pad_ok"] else f"[red]{w('reader.fault')}[/]"),
            w(f"paper.{r['paper']}") if r["paper"] else "–",
            str(r["outbox"] if r["outbox"] is not None else "–"),
            _age(r["outbox_age_s"], w) if r["outbox_age_s"] else "–",
            f"{r['temp_c']:.1f}" if r["temp_c"] is not None else "–", r["version"] or "–",
            f"{w('event.' + ev.get('kind', ''))} {ev.get('at', '')[11:19]}" if ev else "–",
            f"[red]{w('order.cell', gaps=r['order_gaps'], late=r['order_late'])}[/]"
            if r.get("order_gaps") or r.get("order_late") else "–",
            " ".join(f"[bold red]{w('alert.' + a)}[/]" for a in r["alerts"]) or "[green]–[/]")
    return t


def _get_rows(opener: Any, url: str, query: str) -> list[dict[str, Any]]:
    try:
        with opener.open(f"{url}/api/stations{query}", timeout=10) as resp:
            rows: list[dict[str, Any]] = json.load(resp)
    except urllib.error.HTTPError as exc:  # before OSError: it is one
        if exc.code in (401, 403):  # a usage matter: say how to log in
            raise UserError("fleet.bad_answer", code=2, url=url,
                            reason=f"HTTP {exc.code}: log in with --login NAME") from None
        raise UserError("fleet.bad_answer", code=3, url=url, reason=f"HTTP {exc.code}") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserError("fleet.unreachable", code=3, url=url, reason=reason) from None
    except ValueError as exc:
        raise UserError("fleet.bad_answer", code=3, url=url, reason=exc) from None
    return rows


def _age(seconds: float, w: Any) -> str:
    """"25 phút" rather than "1509 s"."""
    if seconds < 60:
        return str(w("dur.s", n=round(seconds)))
    if seconds < 3600:
        return str(w("dur.min", n=round(seconds / 60)))
    return str(w("dur.h", n=int(seconds // 3600), m=round(seconds % 3600 / 60)))


def watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    query = f"?site={args.site}" if args.site else ""
    console = Console()
    try:
        opener = _opener(args)
    except (OSError, ValueError) as exc:
        print(f"fleet service {args.url}: login refused or unreachable ({exc})")
        return 2
    if args.once:
        if not console.is_terminal:
            console = Console(width=200)  # a pipe or a log: do not squeeze the columns
        found = _get_rows(opener, args.url, query)
        if args.site and not found:
            # An empty table for a mistyped site looks like a site with no station: say so.
            sites = sorted({r["site"] for r in _get_rows(opener, args.url, "")})
            raise UserError("fleet.unknown_site", site=args.site,
                            sites=", ".join(sites) or t("fleet.no_sites", lang_of(args.lang)))
        console.print(table(found, args.site, args.lang))
        return 0
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    with Live(table([], args.site, args.lang), console=console, refresh_per_second=4) as live:
        while True:
            try:
                for event, data in _stream(f"{args.url}/events{query}", opener):
                    if event == "snapshot":
                        rows = {(r["site"], r["station"]): r for r in data}
                    elif event == "station":
                        rows[(data["site"], data["station"])] = data
                    live.update(table([rows[k] for k in sorted(rows)], args.site, args.lang))
            except KeyboardInterrupt:
                return 0
            except OSError as exc:
                live.console.print(f"[yellow]fleet service: {exc}; retrying[/]")
                time.sleep(2)


# -- send
def parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text) if text[:1] in "[{0123456789-" else text
    except ValueError:
        return text


def _call(opener: Any, url: str, body: dict[str, Any] | None = None,
          csrf: str = "") -> tuple[int, Any]:
    """One request to the service: its status and JSON answer (errors included)."""
    headers = {"Content-Type": "application/json", "X-Requested-With": "fleet",
               "X-CSRF-Token": csrf}
    req = urllib.request.Request(url, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with opener.open(req, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def send(args: argparse.Namespace) -> int:
    """The command goes to the fleet service, which checks, audits, publishes and tracks it
    exactly as for the page; this waits by asking the service for the job's state."""
    from selfcheck.central.fleet.actions import EXPIRED
    from selfcheck.mqtt.commands import FINAL

    lang = lang_of(args.lang)
    old = [opt for opt in OLD_SEND_OPTIONS + OLD_SEND_FLAGS
           if getattr(args, f"old_{opt[2:].replace('-', '_')}", None)]
    if old:
        print(t("fleet.send_old_options", lang, options=", ".join(old), url=args.url),
              file=sys.stderr, flush=True)
    values = {}
    for pair in args.args:
        key, eq, value = pair.partition("=")
        if not eq:
            print(f"argument {pair!r}: expected KEY=VALUE")
            return 2
        values[key] = parse_value(value)
    try:
        opener = _opener(args)
        status, me = _call(opener, f"{args.url}/api/me")
    except (OSError, ValueError) as exc:
        print(f"not sent: fleet service {args.url}: login refused or unreachable ({exc})")
        return 2
    if status != 200:
        print(f"not sent: fleet service {args.url}: HTTP {status} (log in with --login NAME)")
        return 2
    if not isinstance(me, dict) or not isinstance(me.get("csrf"), str):
        raise UserError("fleet.bad_answer", code=3, url=args.url, reason="/api/me")
    site, _, station = args.station.rpartition("/")
    if not site:
        found = _site_of(station, opener, args.url)
        if found is None:
            print(f"station {station!r}: give it as SITE/STATION (the fleet service at "
                  f"{args.url} does not know it, or knows it at more than one site)")
            return 2
        site = found
    body: dict[str, Any] = {"site": site, "station": station, "name": args.command,
                            "args": values, "expires_s": args.expires}
    if args.cmd_id:
        body["cmd_id"] = args.cmd_id
    try:
        status, answer = _call(opener, f"{args.url}/api/command", body, me["csrf"])
    except OSError as exc:
        # Sent or not is unknown: the same --cmd-id again is safe (a repeat is not redone).
        raise UserError("fleet.unreachable", code=3, url=args.url,
                        reason=getattr(exc, "reason", None) or exc) from None
    except ValueError as exc:
        raise UserError("fleet.bad_answer", code=3, url=args.url, reason=exc) from None
    if status == 200 and not (isinstance(answer, dict) and answer.get("cmd_ids")):
        raise UserError("fleet.bad_answer", code=3, url=args.url, reason="/api/command")
    if status != 200:
        why = answer if isinstance(answer, dict) else {}
        detail = f"{why.get('field')}: {why.get('reason')}" if why.get("field") \
            else why.get("error", f"HTTP {status}")
        print(f"not sent: {detail}")
        return 2
    cmd_id = answer["cmd_ids"][0]
    print(f"sent {args.command} to {site}/{station} as {cmd_id}", flush=True)
    for away in answer.get("away", []):
        print(f"station {away['station']} is {away['state']}: it gets the command when it is "
              f"back, if before it expires", flush=True)
    deadline, shown, trouble = time.monotonic() + args.timeout, "", ""
    while time.monotonic() < deadline:
        try:
            status, jobs = _call(opener, f"{args.url}/api/commands?cmd_id={cmd_id}")
        except OSError as exc:
            # A service restarting: the command is stored, ask again until the deadline.
            trouble = str(getattr(exc, "reason", None) or exc)
            time.sleep(0.5)
            continue
        except ValueError as exc:
            print(t("fleet.send_lost", lang, cmd_id=cmd_id, url=args.url, reason=exc))
            return 3
        if status == 200 and not (isinstance(jobs, list)
                                  and all(isinstance(j, dict) for j in jobs)):
            print(t("fleet.send_lost", lang, cmd_id=cmd_id, url=args.url,
                    reason="/api/commands"))
            return 3
        trouble = ""
        job = jobs[0] if status == 200 and jobs else {}
        state = job.get("state", "")
        if state and state != shown:
            shown = state
            extra = f": {job['reason']}" if job.get("reason") else ""
            print(f"{time.strftime('%H:%M:%S')} {cmd_id} {args.command} {state}{extra}",
                  flush=True)
            if job.get("result"):
                print(json.dumps(job["result"], ensure_ascii=False, indent=2))
        if state in FINAL or state == EXPIRED:
            return 0 if state == "succeeded" else 1
        time.sleep(0.5)  # the service's job list is the one source: asked twice a second
    if trouble:
        print(t("fleet.send_lost", lang, cmd_id=cmd_id, url=args.url, reason=trouble))
        return 3
    print(f"no final state within {args.timeout:.0f} s (station offline? the command "
          f"stays valid until it expires)")
    return 3


def _site_of(station: str, opener: Any, url: str) -> str | None:
    try:
        status, rows = _call(opener, f"{url}/api/stations")
    except OSError as exc:
        raise UserError("fleet.unreachable", code=3, url=url,
                        reason=getattr(exc, "reason", None) or exc) from None
    except ValueError as exc:
        raise UserError("fleet.bad_answer", code=3, url=url, reason=exc) from None
    if status != 200 or not isinstance(rows, list):
        return None
    sites = [r["site"] for r in rows if r["station"] == station]
    return sites[0] if len(sites) == 1 else None

"""`selfcheck fleet`: the operators' tools.

  selfcheck fleet serve ...             run the fleet-state service (its own process)
  selfcheck fleet [--site S]            live table of every station (from the service)
  selfcheck fleet send STATION CMD k=v  send a command and wait for its final state
  selfcheck fleet user add NAME ...     an operator of the web page (password from a prompt
                                        or a file)
  selfcheck fleet user remove NAME      remove one (its sessions end at once)
  selfcheck fleet user disable NAME     keep the name, refuse its logins and end its sessions
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfcheck.cli import broker_options
from selfcheck.cli.errors import UserError, lang_of, t
from selfcheck.mqtt import security
from selfcheck.system.sdnotify import notify

DEFAULT_URL = "http://127.0.0.1:9108"


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
    s.add_argument("--open", action="append", default=[], metavar="[SITE=]HH:MM-HH:MM",
                   help="opening hours (default all day); repeat with SITE= per site")
    s.add_argument("--tz", default="Asia/Ho_Chi_Minh",
                   help="time zone of the opening hours and the statistics")
    s.add_argument("--no-login", action="store_true",
                   help="serve the page without logins (only on a loopback address)")
    s.add_argument("--names", type=Path, metavar="FILE",
                   help="TOML with [sites] CODE = \"name\" and [stations] \"SITE/ID\" = "
                   "\"name\": human names shown beside the codes")
    s.add_argument("--stats-db", help="central store URL for the statistics page (default: "
                   "--db, where the circulation lives)")
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

    c = verbs.add_parser("send", help="send a command to a station and wait for the result")
    c.add_argument("station", help="STATION or SITE/STATION")
    c.add_argument("command", help="out_of_service, in_service, reload_config, "
                   "set_offline_policy, send_diagnostics, restart")
    c.add_argument("args", nargs="*", metavar="KEY=VALUE",
                   help="arguments, e.g. message_vi='Bảo trì' policy=none force=true")
    c.add_argument("--broker", type=BrokerAddress.parse, default=BrokerAddress())
    c.add_argument("--expires", type=float, default=300, help="seconds until it expires")
    c.add_argument("--timeout", type=float, default=60, help="seconds to wait for the result")
    c.add_argument("--cmd-id", help="reuse an id (a repeat returns the stored result)")
    c.add_argument("--user", default="operator",
                   help="broker username of this operator (with --password-file)")
    broker_options.add_arguments(c)
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
                           hours=OpeningHours(default, per_site, args.tz), client_id=args.id,
                           security=broker.security, login=not args.no_login, names=names,
                           tls=(str(args.tls_cert), str(args.tls_key)) if args.tls_cert
                           else None, secure_cookie=args.secure_cookie,
                           stats_url=args.stats_db, tz=args.tz)
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
    from selfcheck.central.fleet.schema import metadata

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(url)
    metadata.create_all(engine)
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
        _auth(args.db).add_user(args.name, password, args.role, sites, replace=args.replace)
    except ValueError as exc:
        print(f"user not added: {exc}")
        return 2
    print(f"user {args.name}: {args.role}, " + (f"sites {', '.join(sites)}" if sites
                                                  else "every site"))
    return 0


def user_remove(args: argparse.Namespace) -> int:
    if not _auth(args.db).remove_user(args.name):
        print(f"user {args.name}: no such user")
        return 2
    print(f"user {args.name}: removed, sessions ended")
    return 0


def user_disable(args: argparse.Namespace) -> int:
    if not _auth(args.db).disable_user(args.name):
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
        password = args.login_password_file.read_text(encoding="utf-8").strip("\r\n") \
            if args.login_password_file else __import__("getpass").getpass("password: ")
        req = urllib.request.Request(
            f"{args.url}/api/login", data=json.dumps({"name": args.login,
                                                       "password": password}).encode(),
            headers={"Content-Type": "application/json", "X-Requested-With": "fleet"})
        opener.open(req, timeout=10).close()
    return opener


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


def send(args: argparse.Namespace) -> int:
    from selfcheck.central.fleet import actions
    from selfcheck.mqtt.commands import FINAL, CommandRes, res_topic
    from selfcheck.mqtt.connection import connect_properties, make_client
    from selfcheck.mqtt.messages import MessageError, decode

    site, _, station = args.station.rpartition("/")
    if not site:
        site = _site_of(station)
        if site is None:
            print(f"station {station!r}: give it as SITE/STATION (the fleet service at "
                  f"{DEFAULT_URL} does not know it)")
            return 2
    values = {}
    for pair in args.args:
        key, eq, value = pair.partition("=")
        if not eq:
            print(f"argument {pair!r}: expected KEY=VALUE")
            return 2
        values[key] = parse_value(value)
    try:
        req = actions.build(args.command, values, by=args.user, expires_s=args.expires,
                            cmd_id=args.cmd_id)
    except MessageError as exc:
        print(f"not sent: {exc}")
        return 2
    try:
        broker = broker_options.from_args(args, args.user)
    except ValueError as exc:
        print(f"not sent: {exc}")
        return 2
    cmd_id = req.cmd_id
    done = threading.Event()
    final: list[str] = []
    subscribed = threading.Event()
    # With a login the broker forces client id = username; without, any unique id does.
    client = make_client(args.user if broker.security.username
                         else f"fleet-send-{uuid.uuid4().hex[:12]}")
    security.apply(client, broker.address, broker.security)

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        c.subscribe(res_topic(site, station, cmd_id), qos=1)

    def on_message(c: Any, u: Any, m: Any) -> None:
        try:
            res = decode(m.payload, CommandRes)
        except MessageError as exc:
            print(f"malformed answer: {exc}")
            return
        assert isinstance(res, CommandRes)
        extra = f": {res.reason}" if res.reason else ""
        print(f"{res.at:%H:%M:%S} {res.cmd_id} {res.name} {res.state}{extra}", flush=True)
        if res.result:
            print(json.dumps(res.result, ensure_ascii=False, indent=2))
        if res.state in FINAL:
            final.append(res.state)
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    client.connect(broker.address.host, broker.address.port, keepalive=15, clean_start=True,
                   properties=connect_properties(0))
    client.loop_start()
    try:
        if not subscribed.wait(10):
            print(f"broker {broker} did not answer")
            return 2
        topic, payload, props = actions.message(site, station, args.command, req,
                                                args.expires)
        client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)
        print(f"sent {args.command} to {site}/{station} as {cmd_id}", flush=True)
        if not done.wait(args.timeout):
            print(f"no final state within {args.timeout:.0f} s (station offline? the command "
                  f"stays valid until it expires)")
            return 3
        return 0 if final[0] == "succeeded" else 1
    finally:
        client.disconnect()
        client.loop_stop()


def _site_of(station: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{DEFAULT_URL}/api/stations", timeout=3) as resp:
            rows = json.load(resp)
    except OSError:
        return None
    sites = [r["site"] for r in rows if r["station"] == station]
    return sites[0] if len(sites) == 1 else None

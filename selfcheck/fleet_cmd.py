"""`selfcheck fleet`: the operators' tools.

  selfcheck fleet serve ...             run the fleet-state service (its own process)
  selfcheck fleet [--site S]            live table of every station (from the service)
  selfcheck fleet send STATION CMD k=v  send a command and wait for its final state
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

from mqtt import security
from selfcheck.errors import UserError, lang_of, t
from selfcheck.sdnotify import notify

DEFAULT_URL = "http://127.0.0.1:9108"


def register(sub: argparse._SubParsersAction) -> None:
    from mqtt.connection import BrokerAddress

    p = sub.add_parser("fleet", help="watch and steer the stations (operators)")
    p.add_argument("--url", default=DEFAULT_URL, help="the fleet service (default %(default)s)")
    p.add_argument("--site", help="only this site")
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--lang", choices=["vi", "en"], default="vi", help="the table's language")
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
    s.add_argument("--tz", default="Asia/Ho_Chi_Minh", help="time zone of the opening hours")
    security.add_arguments(s)
    s.set_defaults(func=serve)

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
    security.add_arguments(c)
    c.set_defaults(func=send)


# -- serve
def serve(args: argparse.Namespace) -> int:
    from central.fleet.metrics import OpeningHours
    from central.fleet.service import FleetService

    default, per_site = "00:00-24:00", {}
    for spec in args.open:
        site, eq, hours = spec.rpartition("=")
        if eq:
            per_site[site] = hours
        else:
            default = hours
    try:
        login = security.from_args(args, args.id, args.broker)
    except ValueError as exc:
        print(f"fleet service not started: {exc}")
        return 2
    host, _, port = args.http.rpartition(":")
    if args.db.startswith("sqlite:///"):
        from pathlib import Path

        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    service = FleetService(args.broker, args.db, http=(host or "127.0.0.1", int(port)),
                           hours=OpeningHours(default, per_site, args.tz), client_id=args.id,
                           security=login)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    print(f"fleet ready {service.url}", flush=True)
    notify("READY=1")  # systemd Type=notify
    stop.wait()
    service.stop()
    return 0


# -- the live table
def _stream(url: str) -> Iterator[tuple[str, Any]]:
    """(event, data) from the service's server-sent events."""
    with urllib.request.urlopen(url, timeout=60) as resp:
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

    from central.fleet.i18n import t as tr

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
            f"{r['outbox_age_s']} s" if r["outbox_age_s"] else "–",
            f"{r['temp_c']:.1f}" if r["temp_c"] is not None else "–", r["version"] or "–",
            f"{w('event.' + ev.get('kind', ''))} {ev.get('at', '')[11:19]}" if ev else "–",
            f"[red]{w('order.cell', gaps=r['order_gaps'], late=r['order_late'])}[/]"
            if r.get("order_gaps") or r.get("order_late") else "–",
            " ".join(f"[bold red]{w('alert.' + a)}[/]" for a in r["alerts"]) or "[green]–[/]")
    return t


def _get_rows(url: str, query: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/api/stations{query}", timeout=10) as resp:
            rows: list[dict[str, Any]] = json.load(resp)
    except urllib.error.HTTPError as exc:  # before OSError: it is one
        raise UserError("fleet.bad_answer", code=3, url=url, reason=f"HTTP {exc.code}") from None
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserError("fleet.unreachable", code=3, url=url, reason=reason) from None
    except ValueError as exc:
        raise UserError("fleet.bad_answer", code=3, url=url, reason=exc) from None
    return rows


def watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    query = f"?site={args.site}" if args.site else ""
    console = Console()
    if args.once:
        if not console.is_terminal:
            console = Console(width=200)  # a pipe or a log: do not squeeze the columns
        found = _get_rows(args.url, query)
        if args.site and not found:
            # An empty table for a mistyped site looks like a site with no station: say so.
            sites = sorted({r["site"] for r in _get_rows(args.url, "")})
            raise UserError("fleet.unknown_site", site=args.site,
                            sites=", ".join(sites) or t("fleet.no_sites", lang_of(args.lang)))
        console.print(table(found, args.site, args.lang))
        return 0
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    with Live(table([], args.site, args.lang), console=console, refresh_per_second=4) as live:
        while True:
            try:
                for event, data in _stream(f"{args.url}/events{query}"):
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
    from mqtt.commands import FINAL, CommandReq, CommandRes, parse_args, req_topic, res_topic
    from mqtt.connection import connect_properties, make_client, publish_properties
    from mqtt.messages import MessageError, decode, encode

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
        parse_args(args.command, values)
    except MessageError as exc:
        print(f"not sent: {exc}")
        return 2
    try:
        login = security.from_args(args, args.user, args.broker)
    except ValueError as exc:
        print(f"not sent: {exc}")
        return 2
    now = dt.datetime.now(dt.UTC)
    cmd_id = args.cmd_id or uuid.uuid4().hex
    req = CommandReq(cmd_id=cmd_id, issued_at=now,
                     expires_at=now + dt.timedelta(seconds=args.expires), args=values)
    done = threading.Event()
    final: list[str] = []
    subscribed = threading.Event()
    # With a login the broker forces client id = username; without, any unique id does.
    client = make_client(args.user if login.username else f"fleet-send-{uuid.uuid4().hex[:12]}")
    security.apply(client, args.broker, login)

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
    client.connect(args.broker.host, args.broker.port, keepalive=15, clean_start=True,
                   properties=connect_properties(0))
    client.loop_start()
    try:
        if not subscribed.wait(10):
            print(f"broker {args.broker} did not answer")
            return 2
        props = publish_properties(MessageExpiryInterval=max(1, int(args.expires)))
        client.publish(req_topic(site, station, args.command), encode(req), qos=1,
                       properties=props).wait_for_publish(10)
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

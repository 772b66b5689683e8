"""The fleet-state service: reads every station's status, state, health, events, command
results and reported config from the broker, keeps the last known state (memory + central
store), and serves it to operators: Prometheus metrics, a JSON snapshot, and a live web page
fed by server-sent events. Beside that it reads, from the same central database, how many order
gaps and late transactions the bridges recorded per station (for reconciliation)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from selfcheck.central.fleet import actions, guard
from selfcheck.central.fleet.auth import Auth
from selfcheck.central.fleet.db import FleetStore
from selfcheck.central.fleet.metrics import OpeningHours, registry
from selfcheck.central.fleet.state import ILS_ALERTS, FleetState, Station
from selfcheck.central.fleet.stats import Stats
from selfcheck.central.fleet.web import Hub, WebServer
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt import retained as retain_rules
from selfcheck.mqtt.commands import CommandRes
from selfcheck.mqtt.connection import BrokerAddress, connect_properties, make_client
from selfcheck.mqtt.rejections import OnceLog
from selfcheck.mqtt.security import ClientSecurity, apply
from selfcheck.mqtt.telemetry import (
    FLEET_SUBSCRIPTIONS,
    BridgeIls,
    ConfigReported,
    Event,
    Health,
    State,
)

log = logging.getLogger(__name__)

# Which model each channel may carry: a message on the wrong channel is refused.
EXPECTED: dict[str, tuple[type[messages.Message], ...]] = {
    "status": (messages.Status,), "state": (State,), "tele": (Health,), "evt": (Event,),
    "cmd": (CommandRes,), "config": (ConfigReported,),
}


class FleetService:
    def __init__(self, broker: BrokerAddress, db_url: str, *, http: tuple[str, int] | None =
                 ("127.0.0.1", 0), hours: OpeningHours | None = None,
                 client_id: str = "central-fleet-1", flush_s: float = 1.0,
                 security: ClientSecurity | None = None, login: bool = False,
                 names: dict[str, Any] | None = None, tls: tuple[str, str] | None = None,
                 secure_cookie: bool = False, stats_url: str | None = None,
                 tz: str = "Asia/Ho_Chi_Minh", tick_s: float = 5.0, order_s: float = 10.0,
                 updates: Path | None = None) -> None:
        self.broker = broker
        self.state = FleetState(hours=hours)  # offline while the site is closed: no alert
        self.store = FleetStore(db_url, flush_s=flush_s)
        self.loaded = self.store.load(self.state)
        self.hub = Hub()
        self.registry = registry(self.state, hours or OpeningHours())
        # Users live in the store whether or not logins are asked for, so that `selfcheck
        # fleet user add` works before the first start with logins.
        self.auth = Auth(self.store.engine)
        # Branch names for the statistics; the staff calls are the fleet's own events.
        self.stats = Stats(stats_url or db_url, tz, names=names, events_url=db_url)
        # The central's own tables (order gaps, wrong PINs and clocks, stock-takes) are in its
        # store: --stats-db when the fleet tables are kept apart, else beside them.
        self.central = self.stats.engine if stats_url and stats_url != db_url \
            else self.store.engine
        self.web = WebServer(
            http, self.state, self.hub, self.registry, auth=self.auth if login else None,
            commander=self.send_command, names=names, details=self.store.details,
            stats=self.stats, persist=self.store.station, tls=tls,
            secure_cookie=secure_cookie, updates=updates,
            central_db=self.central) if http else None
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="fleet-tick", daemon=True)
        self.connected = threading.Event()
        self._once = OnceLog(log)
        self._order_s = order_s
        self._order = threading.Thread(target=self._watch_order, name="fleet-order",
                                       daemon=True)
        self._client = make_client(client_id)
        self._retained = retain_rules.Sweeper(self._client, log)  # bounds what stations keep
        apply(self._client, broker, security or ClientSecurity())  # refuses clear text off-host
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self.connected.clear()
        self._client.on_message = self._on_message

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    def start(self) -> None:
        self.store.start()
        if self.web:
            self.web.start()
        # A clean session: the retained status/state/config replay on every connect, and what
        # was missed while down (events) is not worth a backlog.
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=15,
                                   clean_start=True, properties=connect_properties(0))
        self._client.loop_start()
        self._order.start()
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self._order.join(10)
        self._client.disconnect()
        self._client.loop_stop()
        if self.web:
            self.web.stop()
        self.store.stop()
        self.stats.close()

    def _tick(self) -> None:
        """Alerts that come with time alone (an outbox getting old), and commands that
        expired unanswered."""
        while not self._stop.wait(self._tick_s):
            now = time.time()
            with self.state.lock:
                changed = self.state.tick(now)
                rows = [rec.row(now) for rec in changed]
                for rec in changed:
                    self.store.station(rec)
            for row in rows:
                self.hub.publish("station", row)
            self.expire_commands(now)

    def expire_commands(self, now: float | None = None) -> list[dict[str, Any]]:
        """Mark the commands past their expiry with no answer as expired (stored, and told to
        the screens); those marked."""
        now = time.time() if now is None else now
        with self.state.lock:
            done = [c for c in self.state.commands.values() if actions.expired(c, now)]
            for c in done:
                c["state"] = actions.EXPIRED
            done = [dict(c) for c in done]
        for c in done:
            self.store.command(c["cmd_id"], c["site"], c["station"], c["name"], c["state"],
                               None, expires=c.get("expires_at"), by=c.get("by"),
                               args=c.get("args"))
            self.hub.publish("command", c)
        return done

    def send_command(self, site: str, station: str, name: str, args: dict[str, Any],
                     by: str, *, expires_s: float = actions.DEFAULT_EXPIRES_S,
                     cmd_id: str | None = None) -> str:
        """Publish an operator command (the page's and `selfcheck fleet send`'s one way); its
        id. Raises MessageError on arguments the command does not take, or an id already
        used for another station."""
        req = actions.build(name, args, by=by, expires_s=expires_s, cmd_id=cmd_id)
        topic, payload, props = actions.message(site, station, name, req, expires_s)
        entry: dict[str, Any] = {
                 "cmd_id": req.cmd_id, "name": name, "state": actions.WAITING, "site": site,
                 "station": station, "by": by, "args": args,
                 "at": req.issued_at.isoformat(), "expires_at": req.expires_at.timestamp()}
        with self.state.lock:
            old = self.state.commands.get(req.cmd_id)
            if old is not None and (old["site"], old["station"]) != (site, station):
                raise messages.MessageError("cmd_id", "already used for another station")
            self.state.commands[req.cmd_id] = entry
            while len(self.state.commands) > 5000:  # keep the recent ones
                self.state.commands.pop(next(iter(self.state.commands)))
        self.store.command(req.cmd_id, site, station, name, actions.WAITING, None,
                           expires=entry["expires_at"], by=by, args=args)
        self._client.publish(topic, payload, qos=1, properties=props)
        self.hub.publish("command", entry)
        return req.cmd_id

    def refresh_order(self) -> None:
        """Take the order gap counts from the central's database and tell the screens."""
        counts = self.store.order_counts(self.central)
        if counts is None:
            return
        now = time.time()
        changed = self.state.set_order(counts)
        held = guard.signals(self.central, now)  # wrong PINs, wrong clocks
        if held is not None:
            changed += [r for r in guard.apply(self.state, held, now) if r not in changed]
        for rec in changed:
            with self.state.lock:
                row = rec.row(now)
            self.hub.publish("station", row)

    def _watch_order(self) -> None:
        while True:
            try:
                self.refresh_order()
            except Exception:  # the database may be briefly unavailable: next round
                log.exception("order gaps not read; retrying")
            if self._stop.wait(self._order_s):
                return

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker refused the fleet service: %s", rc)
            return
        client.subscribe(retain_rules.subscriptions([*FLEET_SUBSCRIPTIONS, topics.FLEET_ILS]))
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        # paho's network thread: whatever one station sends, it must not end here, or the
        # service would stop hearing every station.
        try:
            self._receive(m)
        except Exception as exc:
            self._rejected(m, "error", f"{type(exc).__name__}: {exc}", trace=True)

    def _receive(self, m: paho.MQTTMessage) -> None:
        if m.topic.startswith(topics.CENTRAL_ROOT + "/"):
            self._receive_ils(m)
            return
        if self._retained.take(m.topic, bytes(m.payload), bool(m.retain)):
            return  # a retained message where none belongs: deleted, not a station speaking
        try:
            where = topics.parse(m.topic)
            if not m.payload:
                return  # a cleared retained message
            expected = EXPECTED.get(where.channel)
            if expected is None:
                raise messages.MessageError("topic", f"channel {where.channel[:40]!r} unknown")
            msg = messages.decode(m.payload, *expected)
        except (messages.MessageError, topics.TopicError) as exc:
            self._rejected(m, getattr(exc, "field", "topic"), str(exc))
            return
        self.take(where.site, where.station, where.channel, where.name, msg,
                  retained=bool(m.retain))

    def _receive_ils(self, m: paho.MQTTMessage) -> None:
        """A bridge's report on the library system: the console's banner."""
        try:
            bridge = topics.parse_bridge_ils(m.topic)
            decoded = messages.decode(m.payload, BridgeIls) if m.payload else None
            msg = decoded if isinstance(decoded, BridgeIls) else None
            if msg is not None and msg.bridge != bridge:
                raise messages.MessageError("bridge", "not the bridge of the topic")
        except (messages.MessageError, topics.TopicError) as exc:
            self._rejected(m, getattr(exc, "field", "topic"), str(exc))
            return
        with self.state.lock:
            self.state.counters.messages["ils"] += 1
        if self.state.apply_ils(bridge, msg):
            if msg is not None and msg.state in ILS_ALERTS:
                log.warning("bridge %s: library system %s", bridge, msg.state)
            self.hub.publish("ils", self.state.ils_rows())

    def _rejected(self, m: paho.MQTTMessage, field: str, detail: str, *,
                  trace: bool = False) -> None:
        with self.state.lock:
            self.state.counters.rejected[field] += 1
            count = self.state.counters.rejected[field]
        self._once.note(field, count, "rejected %s: %s", m.topic[:200], detail[:300],
                        trace=trace)

    def take(self, site: str, station: str, channel: str, name: str,
             msg: messages.Message, *, retained: bool = False) -> None:
        """`retained`: the broker's replay on our (re)connect, not a station speaking now."""
        now = time.time()
        with self.state.lock:
            self.state.counters.messages[channel] += 1
            rec: Station | None = self.state.apply(site, station, channel, name, msg, now,
                                                   retained=retained)
            row = rec.row(now) if rec is not None else None
            if rec is not None:
                self.store.station(rec)
                if isinstance(msg, Health) and rec.history:
                    self.store.health(site, station, rec.history[-1])
            cmd = dict(self.state.commands[msg.cmd_id]) if isinstance(msg, CommandRes) \
                and msg.cmd_id in self.state.commands else None
        if rec is None:
            return
        if isinstance(msg, Event):
            self.store.event(site, station, msg.kind, msg.at.timestamp(),
                             msg.model_dump(mode="json", by_alias=True, exclude_none=True))
        elif isinstance(msg, CommandRes):
            self.store.command(msg.cmd_id, site, station, msg.name, msg.state, msg.reason,
                               expires=(cmd or {}).get("expires_at"), by=(cmd or {}).get("by"),
                               args=(cmd or {}).get("args"))
            if cmd is not None:
                self.hub.publish("command", cmd)
        assert row is not None
        self.hub.publish("station", row)

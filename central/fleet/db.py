"""Keeps the fleet state in the central store: loaded at start (so a stale retained will is
recognised after a restart of the service too) and written behind, in batches, by one thread,
so that hundreds of stations' telemetry costs one commit a second, not one per message."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.exc import DBAPIError

from selfcheck.central.engine import open_engine
from selfcheck.central.fleet.events_bound import (
    KEEP_EVENTS_ROWS,
    KEEP_EVENTS_S,
    PRUNE_EVERY_S,
    prune_due,
)
from selfcheck.central.fleet.schema import (
    ensure,
    fleet_alerts,
    fleet_audit,
    fleet_commands,
    fleet_events,
    fleet_health,
    fleet_stations,
)
from selfcheck.central.fleet.state import HEALTH_EVERY_S as HEALTH_PERIOD_S
from selfcheck.central.fleet.state import Alert, FleetState, Station
from selfcheck.central.schema import order_gaps

log = logging.getLogger(__name__)

KEEP_HEALTH_S = 7 * 86_400
HEALTH_EVERY_S = 300.0
COMMANDS_LOADED = 5000  # the most recent sent commands known again after a restart
# The audit log is kept for a bounded time and a bounded number of rows, whichever is reached
# first: enough for a year's questions, not a table that grows for ever.
KEEP_AUDIT_S = 400 * 86_400
KEEP_AUDIT_ROWS = 500_000
# Alerts whose inputs are not stored (the station's clock against ours, the central's order
# counts): restored as they were, acknowledgement included, until those are known again.
JUDGED_LATER = ("clock_skew", "order_gap")


def _j(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value is not None else None


def _l(text: str | None) -> Any:
    return json.loads(text) if text else None


class FleetStore:
    def __init__(self, url: str, *, flush_s: float = 1.0, keep_rows: int = KEEP_EVENTS_ROWS,
                 keep_s: float = KEEP_EVENTS_S, prune_s: float = PRUNE_EVERY_S) -> None:
        self.engine = open_engine(url)
        ensure(self.engine)
        self._flush_s = flush_s
        self._dirty: dict[tuple[str, str], Station] = {}
        self._events: list[dict[str, Any]] = []
        self._commands: dict[str, dict[str, Any]] = {}
        self._alerts: dict[tuple[str, str, str, float], dict[str, Any]] = {}
        self._health: list[dict[str, Any]] = []
        self._health_at: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-writer", daemon=True)
        self.writes = 0
        self.keep_rows, self.keep_s, self._prune_s = keep_rows, keep_s, prune_s
        self.keep_audit_s, self.keep_audit_rows = KEEP_AUDIT_S, KEEP_AUDIT_ROWS
        self._pruned: float | None = None
        self.events_pruned = 0

    def load(self, state: FleetState) -> int:
        with self.engine.connect() as conn:
            rows = conn.execute(select(fleet_stations)).mappings().all()
            alerts = conn.execute(select(fleet_alerts).where(
                fleet_alerts.c.ended.is_(None))).mappings().all()
            commands = conn.execute(select(fleet_commands).order_by(
                fleet_commands.c.updated.desc()).limit(COMMANDS_LOADED)).mappings().all()
        with state.lock:
            # So that the results of commands sent before the restart are still taken.
            for c in reversed(commands):
                state.commands.setdefault(c["cmd_id"], dict(
                    cmd_id=c["cmd_id"], site=c["site"], station=c["station"], name=c["name"],
                    state=c["state"], reason=c["reason"], expires_at=c["expires"],
                    by=c["by"], args=_l(c["args"])))
            for r in rows:
                rec = state.get(r["site"], r["station"])
                rec.online, rec.session, rec.version = r["online"], r["session"], r["version"]
                rec.last_seen, rec.changed = r["last_seen"], r["changed"] or 0.0
                rec.state, rec.health = _l(r["state"]), _l(r["health"])
                rec.config, rec.last_event = _l(r["config"]), _l(r["last_event"])
                rec.health_every_s = HEALTH_PERIOD_S  # a dead one is silent from the start
            for a in alerts:
                rec = state.get(a["site"], a["station"])
                rec.active[a["kind"]] = Alert(a["kind"], a["since"], a["acked_by"], a["acked_at"])
                if a["kind"] in JUDGED_LATER:
                    rec.pending.add(a["kind"])
        return len(rows)

    def start(self) -> None:
        self.prune(time.time())
        self._thread.start()

    def prune(self, now: float) -> int:
        """Events beyond the bound in days and, per station, in rows; health samples beyond
        theirs. The events removed."""
        e = fleet_events.c
        removed = 0
        with self.engine.begin() as conn:
            removed += conn.execute(delete(fleet_events).where(
                e.received < now - self.keep_s)).rowcount or 0
            over = conn.execute(select(e.site, e.station).group_by(e.site, e.station).having(
                func.count() > self.keep_rows)).all()
            for site, station in over:
                # The id of the newest row past the bound: it and older ones go.
                edge = conn.execute(select(e.id).where(e.site == site, e.station == station)
                                    .order_by(e.id.desc()).offset(self.keep_rows)
                                    .limit(1)).scalar()
                if edge is not None:
                    removed += conn.execute(delete(fleet_events).where(
                        e.site == site, e.station == station, e.id <= edge)).rowcount or 0
            conn.execute(delete(fleet_health).where(fleet_health.c.at < now - KEEP_HEALTH_S))
            a = fleet_audit.c
            conn.execute(delete(fleet_audit).where(a.at < now - self.keep_audit_s))
            edge = conn.execute(select(a.id).order_by(a.id.desc()).offset(
                self.keep_audit_rows).limit(1)).scalar()
            if edge is not None:
                conn.execute(delete(fleet_audit).where(a.id <= edge))
        self._pruned = now
        self.events_pruned += removed
        return removed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.flush()
        self.engine.dispose()

    def order_counts(self, central: Engine | None = None
                     ) -> dict[tuple[str, str], tuple[int, int, float]] | None:
        """Per station, the central's recorded order gaps and late transactions and when the
        newest was recorded, from the central's store (`central`, default this database);
        None when the central's tables are not there."""
        c = order_gaps.c
        query = (select(c.site, c.station, c.kind, func.count(), func.max(c.recorded_at))
                 .group_by(c.site, c.station, c.kind))
        try:
            with (central or self.engine).connect() as conn:
                rows = conn.execute(query).all()
        except DBAPIError as exc:  # a fleet database without the central's tables
            log.debug("order gaps not readable: %s", exc)
            return None
        out: dict[tuple[str, str], tuple[int, int, float]] = {}
        for site, station, kind, count, newest in rows:
            gaps, late, last = out.get((site, station), (0, 0, 0.0))
            if newest.tzinfo is None:  # SQLite gives them back naive, in UTC
                newest = newest.replace(tzinfo=dt.UTC)
            if kind == "gap":
                gaps += count
            else:
                late += count
            out[(site, station)] = (gaps, late, max(last, newest.timestamp()))
        return out

    # -- called from the MQTT thread
    def station(self, rec: Station) -> None:
        """Called with the state lock held (the alerts are read here)."""
        alerts = [(a, a.cleared_at) for a in rec.ended]
        if rec.alerts_dirty:
            alerts += [(a, None) for a in rec.active.values()]
        rec.ended.clear()
        rec.alerts_dirty = False
        with self._lock:
            self._dirty[rec.key] = rec
            for a, ended in alerts:
                self._alerts[(rec.site, rec.station, a.kind, a.since)] = dict(
                    site=rec.site, station=rec.station, kind=a.kind, since=a.since,
                    acked_by=a.acked_by, acked_at=a.acked_at, ended=ended)

    def event(self, site: str, station: str, kind: str, at: float, body: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(dict(site=site, station=station, kind=kind, at=at,
                                     received=time.time(), body=_j(body)))

    def health(self, site: str, station: str, sample: dict[str, Any]) -> None:
        """Keep one sample per station every HEALTH_EVERY_S."""
        with self._lock:
            if sample["at"] - self._health_at.get((site, station), 0.0) < HEALTH_EVERY_S:
                return
            self._health_at[(site, station)] = sample["at"]
            self._health.append(dict(site=site, station=station, at=sample["at"],
                                     sample=_j(sample)))

    def command(self, cmd_id: str, site: str, station: str, name: str, state: str,
                reason: str | None, *, expires: float | None = None, by: str | None = None,
                args: dict[str, Any] | None = None) -> None:
        """A sent command or its new state (what a result does not say is kept from before)."""
        with self._lock:
            old = self._commands.get(cmd_id, {})
            self._commands[cmd_id] = dict(
                cmd_id=cmd_id, site=site, station=station, name=name, state=state,
                reason=reason, updated=time.time(), expires=expires or old.get("expires"),
                by=by or old.get("by"), args=_j(args) if args is not None else old.get("args"))

    def details(self, site: str, station: str, limit: int = 50) -> dict[str, Any]:
        """A station's recent events and commands, for its detail view."""
        with self.engine.connect() as conn:
            events = conn.execute(select(fleet_events).where(
                fleet_events.c.site == site, fleet_events.c.station == station).order_by(
                fleet_events.c.id.desc()).limit(limit)).mappings().all()
            commands = conn.execute(select(fleet_commands).where(
                fleet_commands.c.site == site, fleet_commands.c.station == station).order_by(
                fleet_commands.c.updated.desc()).limit(30)).mappings().all()
            health = conn.execute(select(fleet_health.c.sample).where(
                fleet_health.c.site == site, fleet_health.c.station == station,
                fleet_health.c.at > time.time() - 86_400).order_by(
                fleet_health.c.at)).scalars().all()
        return {"health": [_l(h) for h in health],
                "events": [dict(kind=e["kind"], at=e["at"], received=e["received"],
                                body=_l(e["body"])) for e in events],
                "commands": [dict({k: v for k, v in c.items() if k not in ("args", "expires")},
                                  args=_l(c["args"]), expires_at=c["expires"])
                             for c in commands]}

    # -- the writer
    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            try:
                self.flush()
                now = time.time()
                if prune_due(self._pruned, now, self._prune_s):  # while running, not only at start
                    self.prune(now)
            except Exception:  # the database may be briefly unavailable: keep the batch
                log.exception("fleet state write failed; retrying")

    def flush(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            events, self._events = self._events, []
            commands, self._commands = self._commands, {}
            alerts, self._alerts = self._alerts, {}
            health, self._health = self._health, []
        if not (dirty or events or commands or alerts or health):
            return
        try:
            with self.engine.begin() as conn:
                if dirty:
                    keys = list(dirty)
                    for site in {k[0] for k in keys}:
                        conn.execute(delete(fleet_stations).where(
                            fleet_stations.c.site == site,
                            fleet_stations.c.station.in_([k[1] for k in keys if k[0] == site])))
                    conn.execute(insert(fleet_stations), [self._row(r) for r in dirty.values()])
                if events:
                    conn.execute(insert(fleet_events), events)
                if commands:
                    conn.execute(delete(fleet_commands).where(
                        fleet_commands.c.cmd_id.in_(list(commands))))
                    conn.execute(insert(fleet_commands), list(commands.values()))
                if health:
                    conn.execute(insert(fleet_health), health)
                if alerts:
                    for site, station, kind, since in alerts:
                        conn.execute(delete(fleet_alerts).where(
                            fleet_alerts.c.site == site, fleet_alerts.c.station == station,
                            fleet_alerts.c.kind == kind, fleet_alerts.c.since == since))
                    conn.execute(insert(fleet_alerts), list(alerts.values()))
        except Exception:
            with self._lock:  # put them back for the next try; newer changes win
                self._dirty = {**dirty, **self._dirty}
                self._events = events + self._events
                self._commands = {**commands, **self._commands}
                self._alerts = {**alerts, **self._alerts}
                self._health = health + self._health
            raise
        self.writes += 1

    @staticmethod
    def _row(rec: Station) -> dict[str, Any]:
        return dict(site=rec.site, station=rec.station, online=rec.online, session=rec.session,
                    version=rec.version, last_seen=rec.last_seen, changed=rec.changed,
                    state=_j(rec.state), health=_j(rec.health), config=_j(rec.config),
                    last_event=_j(rec.last_event))

"""The fleet's last known state, in memory: pure logic (no MQTT, no database), so the rules
(which status wins, which alerts hold) test without a broker."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from selfcheck.central.fleet.events_bound import EventBucket
from selfcheck.central.fleet.hours import OpeningHours
from selfcheck.mqtt import messages
from selfcheck.mqtt.commands import CommandRes
from selfcheck.mqtt.telemetry import BridgeIls, ConfigReported, Event, Health, State

OUTBOX_OLD_S = 600.0
OUTBOX_MANY = 50  # waiting transactions: the central has not answered for a while
HOT_C = 80.0
ORDER_RECENT_S = 86_400.0  # an order gap or late transaction recorded within this: an alert
CLOCK_SKEW_S = 30.0  # station clock vs ours (receive time of its health): receipts, due dates
HISTORY = 120  # health samples kept per station for the detail view
# A station sends tele/health every period (60 s by default): the period is learnt from the
# gap between two, and a station not heard from for twice that and a margin is silent, whatever
# its retained status says (a station behind a dead link keeps "online" until the broker drops
# it, and a broker restart may never deliver its will).
HEALTH_EVERY_S = 60.0
HEALTH_EVERY_MIN_S, HEALTH_EVERY_MAX_S = 5.0, 900.0
SILENT_FACTOR = 2.0
SILENT_MARGIN_S = 30.0

# Lower is more urgent: the page puts stations in this order, then the oldest alert first.
SEVERITY = {
    "staff_needed": 0, "security_write_failed": 0, "offline": 1, "reader_fault": 1,
    "card_reader_fault": 1, "silent": 1, "paper_out": 2, "outbox_old": 2, "hot": 2,
    "clock_skew": 3, "paper_low": 3, "order_gap": 3, "out_of_service": 4,
    "pin_guessing": 0, "tx_clock": 3,  # from the central's database (fleet/guard.py)
    "ils_down": 0, "ils_login_refused": 0,  # every station of the bridge's sites is stuck
}
# A bridge's verdict on the library system and the alert it holds.
ILS_ALERTS = {"down": "ils_down", "login refused": "ils_login_refused"}
ILS_ENDED = 50
# Raised by an event, not by a condition the station reports: nothing clears them but an
# operator (or, for a security write, staff skipping it at the station).
LATCHED = ("staff_needed", "security_write_failed")


@dataclass
class Alert:
    kind: str
    since: float
    acked_by: str | None = None
    acked_at: float | None = None
    cleared_at: float | None = None

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": SEVERITY.get(self.kind, 5), "since": self.since,
                "acked_by": self.acked_by, "acked_at": self.acked_at}


@dataclass
class Station:
    site: str
    station: str
    online: bool | None = None
    session: int = 0
    version: str | None = None
    last_seen: float | None = None
    changed: float = 0.0  # when any of this changed (for writers and screens)
    state: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    last_event: dict[str, Any] | None = None
    staff_at: float | None = None  # last staff_needed event (received)
    # From the central's order_gaps (reconciliation): how many gaps were given up and how many
    # transactions came after their gap, and when the newest was recorded.
    order_gaps: int = 0
    order_late: int = 0
    order_last: float | None = None
    skew_s: float | None = None  # station clock minus ours, from its last health message
    health_at: float | None = None  # when its last health message arrived
    # Its health period, once learnt from two messages (or assumed for a station restored from
    # the store): until then silence is not judged.
    health_every_s: float | None = None
    # Alerts restored from the store whose condition is not known again yet (its inputs are not
    # stored): kept, with their acknowledgement, until it is.
    pending: set[str] = field(default_factory=set)
    guard: set[str] = field(default_factory=set)  # pin_guessing, tx_clock (fleet/guard.py)
    active: dict[str, Alert] = field(default_factory=dict)
    ended: list[Alert] = field(default_factory=list)  # cleared or acknowledged, to be written
    alerts_dirty: bool = False  # the active alerts changed since they were last written
    history: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY))
    hours: OpeningHours | None = field(default=None, repr=False)  # its site's, shared

    @property
    def key(self) -> tuple[str, str]:
        return self.site, self.station

    def outbox_age(self, now: float) -> float | None:
        oldest = (self.state or {}).get("outbox_oldest_at")
        if not oldest or not (self.state or {}).get("outbox_pending"):
            return None
        return max(0.0, now - dt.datetime.fromisoformat(oldest).timestamp())

    def conditions(self, now: float) -> list[str]:
        """The alerts that hold while the station reports them (not the latched ones)."""
        out = []
        # Stations switched off for the night are expected: no alert while the site is closed
        # (once it opens, one still off is raised, since the opening).
        if self.closed(now):
            pass
        elif self.online is False:
            out.append("offline")
        elif self.silent(now):
            out.append("silent")
        st = self.state or {}
        if st.get("service") == "out_of_service":
            out.append("out_of_service")
        if st.get("pad_ok") is False:
            out.append("reader_fault")
        if st.get("card_ok") is False:
            out.append("card_reader_fault")
        if st.get("paper") in ("low", "out"):
            out.append(f"paper_{st['paper']}")
        age = self.outbox_age(now)
        if (age is not None and age > OUTBOX_OLD_S) or (st.get("outbox_pending") or 0) \
                >= OUTBOX_MANY:
            out.append("outbox_old")
        h = self.health or {}
        temp = h.get("cpu_temp_c")
        if temp is not None and temp >= HOT_C:
            out.append("hot")
        if self.order_last is not None and now - self.order_last < ORDER_RECENT_S:
            out.append("order_gap")
        # Measured against our clock (the health message's time on arrival), or the kernel's
        # own estimate; "not synced" alone is common on a healthy Pi after boot.
        offset = h.get("clock_offset_s")
        if (self.skew_s is not None and abs(self.skew_s) > CLOCK_SKEW_S) \
                or (offset is not None and abs(offset) > CLOCK_SKEW_S):
            out.append("clock_skew")
        out.extend(sorted(self.guard))
        return out

    def closed(self, now: float) -> bool:
        """Its site is outside its opening hours."""
        return self.hours is not None and not self.hours.is_open(self.site, now)

    def silent(self, now: float) -> bool:
        """Not heard from within its health period and a margin, though not said offline."""
        return self.last_seen is not None and self.health_every_s is not None and \
            now - self.last_seen > self.health_every_s * SILENT_FACTOR + SILENT_MARGIN_S

    def alerts(self, now: float) -> list[str]:
        return self.conditions(now) + [k for k in LATCHED if k in self.active]

    def raise_alert(self, kind: str, now: float) -> bool:
        if kind in self.active:
            return False
        self.active[kind] = Alert(kind, now)
        self.alerts_dirty = True
        return True

    def refresh(self, now: float) -> bool:
        """Bring the active alerts in line with the conditions; True if any changed."""
        held = set(self.conditions(now))
        changed = False
        for kind in held - set(self.active):
            changed |= self.raise_alert(kind, now)
        for kind in [k for k in self.active
                     if k not in held and k not in LATCHED and k not in self.pending]:
            alert = self.active.pop(kind)
            alert.cleared_at = now
            self.ended.append(alert)
            changed = True
        return changed

    def ack(self, kind: str, user: str, now: float) -> bool:
        alert = self.active.get(kind)
        if alert is None or alert.acked_at is not None:
            return False
        alert.acked_by, alert.acked_at = user, now
        self.alerts_dirty = True
        if kind in LATCHED:  # acknowledged means dealt with: gone
            self.active.pop(kind)
            alert.cleared_at = now
            self.ended.append(alert)
        return True

    def row(self, now: float) -> dict[str, Any]:
        """What screens show: one flat row."""
        st, h = self.state or {}, self.health or {}
        age = self.outbox_age(now)
        info = sorted((a.info() for a in self.active.values()),
                      key=lambda a: (a["severity"], a["since"]))
        return {
            "site": self.site, "station": self.station, "online": self.online,
            "session": self.session, "version": self.version, "last_seen": self.last_seen,
            "silent": self.online is not False and self.silent(now),
            "closed": self.closed(now),
            "service": st.get("service"), "service_message": st.get("service_message"),
            "pad_ok": st.get("pad_ok"), "card_ok": st.get("card_ok"),
            "printer": st.get("printer"), "paper": st.get("paper"),
            "outbox": st.get("outbox_pending"), "outbox_age_s": round(age) if age else None,
            "policy": st.get("offline_policy"), "config_version": st.get("config_version"),
            "temp_c": h.get("cpu_temp_c"), "uptime_s": h.get("uptime_s"),
            "skew_s": round(self.skew_s, 1) if self.skew_s is not None else None,
            "last_event": self.last_event, "order_gaps": self.order_gaps,
            "order_late": self.order_late, "alerts": [a["kind"] for a in info],
            "alert_info": info,
        }


@dataclass
class BridgeIlsRec:
    """One bridge's last report on the library system (`bridge.ils/1`) and its alert."""

    bridge: str
    state: str = "gone"
    since: float | None = None  # the bridge's own since, else when we heard it
    ils: str = ""
    detail: str | None = None
    received: float = 0.0
    alert: Alert | None = None
    ended: list[Alert] = field(default_factory=list)

    def take(self, msg: BridgeIls, now: float) -> bool:
        """Take a report; True if anything changed. The alert follows the state: raised on
        down or login refused, cleared when ok (or gone: nobody checks, nothing is known)."""
        since = msg.since.timestamp() if msg.since else now
        if (msg.state, msg.ils, msg.detail) == (self.state, self.ils, self.detail) \
                and (msg.since is None or since == self.since):
            return False  # the same retained report again (our reconnect)
        self.state, self.ils, self.detail, self.received = msg.state, msg.ils, msg.detail, now
        self.since = since
        kind = ILS_ALERTS.get(msg.state)
        if self.alert is not None and self.alert.kind != kind:
            self.alert.cleared_at = now
            self.ended.append(self.alert)
            del self.ended[:-ILS_ENDED]  # not written anywhere yet: the recent ones only
            self.alert = None
        if kind is not None and self.alert is None:
            self.alert = Alert(kind, since)
        return True

    def ack(self, kind: str, user: str, now: float) -> bool:
        if self.alert is None or self.alert.kind != kind or self.alert.acked_at is not None:
            return False
        self.alert.acked_by, self.alert.acked_at = user, now
        return True

    def row(self) -> dict[str, Any]:
        return {"bridge": self.bridge, "state": self.state, "since": self.since,
                "ils": self.ils, "detail": self.detail, "received": self.received,
                "alert": self.alert.info() if self.alert else None}


@dataclass
class Counters:
    messages: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    stale_wills: int = 0
    # Command results for no command this service sent to that station, dropped.
    unknown_results: int = 0
    events_dropped: collections.Counter[str] = field(
        default_factory=collections.Counter)  # over the station's share, by "site/station"


class FleetState:
    def __init__(self, events: EventBucket | None = None,
                 hours: OpeningHours | None = None) -> None:
        self.events = events or EventBucket()
        self.hours = hours
        self.stations: dict[tuple[str, str], Station] = {}
        self.commands: dict[str, dict[str, Any]] = {}
        self.bridges: dict[str, BridgeIlsRec] = {}  # their reports on the library system
        self.counters = Counters()
        self.lock = threading.RLock()

    def get(self, site: str, station: str) -> Station:
        key = (site, station)
        rec = self.stations.get(key)
        if rec is None:
            rec = self.stations[key] = Station(site, station, hours=self.hours)
        return rec

    def apply(self, site: str, station: str, channel: str, name: str, msg: messages.Message,
              now: float | None = None, *, retained: bool = False) -> Station | None:
        """Take one decoded message; the changed station, or None if it changed nothing.
        `retained`: the broker's replay of a retained message (our (re)connect), which says
        nothing about when the station was last heard from."""
        now = time.time() if now is None else now
        with self.lock:
            rec = self.get(site, station)
            heard: float | None = now
            if isinstance(msg, messages.Status):
                if msg.session < rec.session:
                    self.counters.stale_wills += 1  # a will (or birth) from an older session
                    return None
                if (msg.session, msg.online, msg.version) == (
                        rec.session, rec.online, rec.version):
                    return None  # the same retained status again (our restart, a replay)
                rec.session, rec.online, rec.version = msg.session, msg.online, msg.version
                if retained or not msg.online:  # a will is the broker speaking, not the station
                    heard = None
            elif isinstance(msg, State):
                body = msg.model_dump(mode="json", by_alias=True)
                # Retained: replayed on every connect of ours. Its own time, on our clock, says
                # when the station last spoke; the same snapshot again says nothing new.
                heard = None if body == rec.state else \
                    min(now, msg.at.timestamp() - (rec.skew_s or 0.0))
                rec.state = body
                rec.version = msg.version
            elif isinstance(msg, Health):
                if rec.health_at is not None:
                    # The gap since the last one, but a gap after an outage is not the period:
                    # at most doubled at a time (a longer period set on purpose is learnt soon).
                    gap = now - rec.health_at
                    if rec.health_every_s is not None:
                        gap = min(gap, 2 * rec.health_every_s)
                    rec.health_every_s = min(HEALTH_EVERY_MAX_S, max(HEALTH_EVERY_MIN_S, gap))
                rec.health_at = now
                rec.pending.discard("clock_skew")
                rec.health = msg.model_dump(mode="json", by_alias=True)
                rec.skew_s = msg.at.timestamp() - now
                rec.history.append({"at": now, "temp_c": msg.cpu_temp_c,
                                    "outbox": msg.outbox_pending, "load1": msg.load1,
                                    "disk_free_pct": msg.disk_free_pct,
                                    "skew_s": round(rec.skew_s, 1)})
            elif isinstance(msg, Event):
                if not self.events.take(site, station, now):
                    self.counters.events_dropped[f"{site}/{station}"] += 1
                    return None
                rec.last_event = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
                if msg.kind in LATCHED:
                    rec.raise_alert(msg.kind, now)
                elif msg.kind == "security_write_skipped":
                    alert = rec.active.pop("security_write_failed", None)
                    if alert is not None:  # staff dealt with it at the station
                        alert.cleared_at, alert.acked_by = now, "station"
                        rec.ended.append(alert)
            elif isinstance(msg, ConfigReported):
                body = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
                heard = None if retained or body == rec.config else now  # retained, as state
                rec.config = body
            elif isinstance(msg, CommandRes):
                # Only for a command we sent to this very station: anything else would put jobs
                # no operator sent into the operators' history (and push real ones off it).
                sent = self.commands.get(msg.cmd_id)
                if sent is None or (sent.get("site"), sent.get("station")) != (site, station):
                    self.counters.unknown_results += 1
                    return None
                self.commands[msg.cmd_id] = dict(
                    sent, **msg.model_dump(mode="json", by_alias=True, exclude_none=True),
                    site=site, station=station)
            else:
                return None
            if heard is not None and (rec.last_seen is None or heard > rec.last_seen):
                rec.last_seen = heard
            rec.refresh(now)
            rec.changed = now
            return rec

    def tick(self, now: float | None = None) -> list[Station]:
        """Alerts that depend on time alone (an outbox getting old): the stations changed."""
        now = time.time() if now is None else now
        with self.lock:
            changed = [rec for rec in self.stations.values() if rec.refresh(now)]
            for rec in changed:
                rec.changed = now
            return changed

    def ack(self, site: str, station: str, kind: str, user: str,
            now: float | None = None) -> Station | None:
        now = time.time() if now is None else now
        with self.lock:
            rec = self.stations.get((site, station))
            if rec is None or not rec.ack(kind, user, now):
                return None
            rec.changed = now
            return rec

    def set_order(self, counts: dict[tuple[str, str], tuple[int, int, float]],
                  now: float | None = None) -> list[Station]:
        """Take the central's order gap counts per station (gaps, late, newest recorded);
        the stations whose counts changed (their alerts brought in line)."""
        now = time.time() if now is None else now
        changed = []
        with self.lock:
            for key in set(counts) | {k for k, r in self.stations.items()
                                      if r.order_gaps or r.order_late}:
                gaps, late, last = counts.get(key, (0, 0, None))
                rec = self.get(*key)
                if (rec.order_gaps, rec.order_late, rec.order_last) != (gaps, late, last):
                    rec.order_gaps, rec.order_late, rec.order_last = gaps, late, last
                    rec.refresh(now)
                    changed.append(rec)
            for rec in self.stations.values():  # the counts are known again: judge the alert
                if "order_gap" in rec.pending:
                    rec.pending.discard("order_gap")
                    if rec.refresh(now) and rec not in changed:
                        changed.append(rec)
        return changed

    def apply_ils(self, bridge: str, msg: BridgeIls | None,
                  now: float | None = None) -> bool:
        """Take a bridge's report (None: its retained report was deleted); True if changed."""
        now = time.time() if now is None else now
        with self.lock:
            if msg is None:
                rec = self.bridges.pop(bridge, None)
                if rec is not None and rec.alert is not None:
                    rec.alert.cleared_at = now
                return rec is not None
            return self.bridges.setdefault(bridge, BridgeIlsRec(bridge)).take(msg, now)

    def ack_ils(self, bridge: str, kind: str, user: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self.lock:
            rec = self.bridges.get(bridge)
            return rec is not None and rec.ack(kind, user, now)

    def ils_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [rec.row() for _, rec in sorted(self.bridges.items())]

    def rows(self, site: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            return [rec.row(now) for key, rec in sorted(self.stations.items())
                    if site is None or key[0] == site]

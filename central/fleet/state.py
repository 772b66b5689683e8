"""The fleet's last known state, in memory: pure logic (no MQTT, no database), so the rules
(which status wins, which alerts hold) test without a broker."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mqtt import messages
from mqtt.commands import CommandRes
from mqtt.telemetry import ConfigReported, Event, Health, State

OUTBOX_OLD_S = 600.0
STAFF_EVENT_S = 600.0
HOT_C = 80.0
ORDER_RECENT_S = 86_400.0  # an order gap or late transaction recorded within this: an alert


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

    @property
    def key(self) -> tuple[str, str]:
        return self.site, self.station

    def outbox_age(self, now: float) -> float | None:
        oldest = (self.state or {}).get("outbox_oldest_at")
        if not oldest or not (self.state or {}).get("outbox_pending"):
            return None
        return max(0.0, now - dt.datetime.fromisoformat(oldest).timestamp())

    def alerts(self, now: float) -> list[str]:
        out = []
        if self.online is False:
            out.append("offline")
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
        if age is not None and age > OUTBOX_OLD_S:
            out.append("outbox_old")
        if self.staff_at is not None and now - self.staff_at < STAFF_EVENT_S:
            out.append("staff_needed")
        temp = (self.health or {}).get("cpu_temp_c")
        if temp is not None and temp >= HOT_C:
            out.append("hot")
        if self.order_last is not None and now - self.order_last < ORDER_RECENT_S:
            out.append("order_gap")
        return out

    def row(self, now: float) -> dict[str, Any]:
        """What screens show: one flat row."""
        st, h = self.state or {}, self.health or {}
        age = self.outbox_age(now)
        return {
            "site": self.site, "station": self.station, "online": self.online,
            "session": self.session, "version": self.version, "last_seen": self.last_seen,
            "service": st.get("service"), "pad_ok": st.get("pad_ok"), "paper": st.get("paper"),
            "outbox": st.get("outbox_pending"), "outbox_age_s": round(age) if age else None,
            "policy": st.get("offline_policy"), "config_version": st.get("config_version"),
            "temp_c": h.get("cpu_temp_c"), "uptime_s": h.get("uptime_s"),
            "last_event": self.last_event, "order_gaps": self.order_gaps,
            "order_late": self.order_late, "alerts": self.alerts(now),
        }


@dataclass
class Counters:
    messages: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    stale_wills: int = 0


class FleetState:
    def __init__(self) -> None:
        self.stations: dict[tuple[str, str], Station] = {}
        self.commands: dict[str, dict[str, Any]] = {}
        self.counters = Counters()
        self.lock = threading.RLock()

    def get(self, site: str, station: str) -> Station:
        key = (site, station)
        rec = self.stations.get(key)
        if rec is None:
            rec = self.stations[key] = Station(site, station)
        return rec

    def apply(self, site: str, station: str, channel: str, name: str, msg: messages.Message,
              now: float | None = None) -> Station | None:
        """Take one decoded message; the changed station, or None if it changed nothing."""
        now = time.time() if now is None else now
        with self.lock:
            rec = self.get(site, station)
            if isinstance(msg, messages.Status):
                if msg.session < rec.session:
                    self.counters.stale_wills += 1  # a will (or birth) from an older session
                    return None
                if (msg.session, msg.online, msg.version) == (
                        rec.session, rec.online, rec.version):
                    return None  # the same retained status again (our restart, a replay)
                rec.session, rec.online, rec.version = msg.session, msg.online, msg.version
            elif isinstance(msg, State):
                rec.state = msg.model_dump(mode="json", by_alias=True)
                rec.version = msg.version
            elif isinstance(msg, Health):
                rec.health = msg.model_dump(mode="json", by_alias=True)
            elif isinstance(msg, Event):
                rec.last_event = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
                if msg.kind == "staff_needed":
                    rec.staff_at = now
            elif isinstance(msg, ConfigReported):
                rec.config = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
            elif isinstance(msg, CommandRes):
                self.commands[msg.cmd_id] = dict(
                    msg.model_dump(mode="json", by_alias=True, exclude_none=True),
                    site=site, station=station)
                if len(self.commands) > 5000:  # keep the recent ones
                    self.commands.pop(next(iter(self.commands)))
            else:
                return None
            if not (isinstance(msg, messages.Status) and not msg.online):
                rec.last_seen = now  # a will is the broker speaking, not the station
            rec.changed = now
            return rec

    def set_order(self, counts: dict[tuple[str, str], tuple[int, int, float]]
                  ) -> list[Station]:
        """Take the central's order gap counts per station (gaps, late, newest recorded);
        the stations whose counts changed."""
        changed = []
        with self.lock:
            for key in set(counts) | {k for k, r in self.stations.items()
                                      if r.order_gaps or r.order_late}:
                gaps, late, last = counts.get(key, (0, 0, None))
                rec = self.get(*key)
                if (rec.order_gaps, rec.order_late, rec.order_last) != (gaps, late, last):
                    rec.order_gaps, rec.order_late, rec.order_last = gaps, late, last
                    changed.append(rec)
        return changed

    def rows(self, site: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            return [rec.row(now) for key, rec in sorted(self.stations.items())
                    if site is None or key[0] == site]

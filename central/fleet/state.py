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
            "last_event": self.last_event, "alerts": self.alerts(now),
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

    def rows(self, site: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            return [rec.row(now) for key, rec in sorted(self.stations.items())
                    if site is None or key[0] == site]

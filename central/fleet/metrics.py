"""Prometheus metrics of the fleet, computed from the fleet state at scrape time (a custom
collector: no per-message bookkeeping, and a station's series vanish with the station)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from selfcheck.central.fleet.hours import OpeningHours
from selfcheck.central.fleet.state import FleetState

__all__ = ["FleetCollector", "OpeningHours", "registry"]

PAPER_STATES = ("ok", "low", "out", "none")
ILS_STATES = ("ok", "down", "login refused", "gone")
L = ["site", "station"]


class FleetCollector(Collector):
    def __init__(self, state: FleetState, hours: OpeningHours) -> None:
        self.state = state
        self.hours = hours

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        g = {name: GaugeMetricFamily(f"selfcheck_station_{name}", doc, labels=L) for name, doc in (
            ("up", "1 while the station is connected (its status says online)"),
            ("last_seen_timestamp_seconds", "when the station last sent anything"),
            ("outbox_pending", "transactions waiting for the central's ack"),
            ("outbox_oldest_age_seconds", "age of the oldest transaction waiting (0: none)"),
            ("reader_ok", "1 while the book pad answers"),
            ("card_reader_ok", "1 while the card reader is available"),
            ("in_service", "0 while an operator has put the station out of service"),
            ("cpu_temperature_celsius", "CPU temperature"),
            ("session", "connection counter of the station's last birth"),
        )}
        paper = GaugeMetricFamily("selfcheck_station_paper", "receipt paper state (1 = current)",
                                  labels=[*L, "state"])
        info = GaugeMetricFamily("selfcheck_station_info", "app version", labels=[*L, "version"])
        tx = CounterMetricFamily("selfcheck_station_transactions",
                                 "transactions by kind and outcome, as counted by the station "
                                 "since its app started", labels=[*L, "kind", "outcome"])
        order = GaugeMetricFamily(
            "selfcheck_station_order_gaps", "recorded for reconciliation by the central: gaps "
            "given up after the order wait (kind=gap) and transactions applied after their gap "
            "(kind=late)", labels=[*L, "kind"])
        site_open = GaugeMetricFamily("selfcheck_site_open", "1 during the site's opening hours",
                                      labels=["site"])
        ils_state = GaugeMetricFamily(
            "selfcheck_fleet_ils_state", "each bridge's report on the library system (1 = "
            "current; gone: the bridge stopped or died)", labels=["bridge", "state"])
        ils_since = GaugeMetricFamily("selfcheck_fleet_ils_state_since_seconds", "when the "
                                      "bridge's current report began (Unix time)",
                                      labels=["bridge"])
        ils_alert = GaugeMetricFamily(
            "selfcheck_fleet_ils_alert", "1 while a bridge reports the library system down or "
            "refusing its login", labels=["bridge", "kind", "acked"])
        alert = GaugeMetricFamily(
            "selfcheck_station_alert", "1 for each alert a station holds (staff_needed, "
            "security_write_failed, silent, ...); acked=1 once an operator acknowledged it",
            labels=[*L, "kind", "acked"])
        with self.state.lock:
            for rec in self.state.stations.values():
                for a in rec.active.values():
                    alert.add_metric([rec.site, rec.station, a.kind,
                                      "1" if a.acked_at else "0"], 1.0)
            for b in self.state.bridges.values():
                for s in ILS_STATES:
                    ils_state.add_metric([b.bridge, s.replace(" ", "_")],
                                         1.0 if b.state == s else 0.0)
                if b.since is not None:
                    ils_since.add_metric([b.bridge], b.since)
                if b.alert is not None:
                    ils_alert.add_metric([b.bridge, b.alert.kind,
                                          "1" if b.alert.acked_at else "0"], 1.0)
            stations = list(self.state.stations.values())
            counters = self.state.counters
            msgs, rejected, stale = dict(counters.messages), dict(counters.rejected), \
                counters.stale_wills
            unknown, dropped = counters.unknown_results, dict(counters.events_dropped)
        sites = set()
        for rec in stations:
            key = [rec.site, rec.station]
            sites.add(rec.site)
            st, h = rec.state or {}, rec.health or {}
            g["up"].add_metric(key, 1.0 if rec.online else 0.0)
            if rec.last_seen is not None:
                g["last_seen_timestamp_seconds"].add_metric(key, rec.last_seen)
            if st:
                g["outbox_pending"].add_metric(key, st.get("outbox_pending", 0))
                g["outbox_oldest_age_seconds"].add_metric(key, rec.outbox_age(now) or 0.0)
                g["reader_ok"].add_metric(key, 1.0 if st.get("pad_ok") else 0.0)
                g["card_reader_ok"].add_metric(key, 0.0 if st.get("card_ok") is False else 1.0)
                g["in_service"].add_metric(key, 0.0 if st.get("service") == "out_of_service"
                                           else 1.0)
                for p in PAPER_STATES:
                    paper.add_metric([*key, p], 1.0 if st.get("paper") == p else 0.0)
            if h.get("cpu_temp_c") is not None:
                g["cpu_temperature_celsius"].add_metric(key, h["cpu_temp_c"])
            g["session"].add_metric(key, rec.session)
            if rec.version:
                info.add_metric([*key, rec.version], 1.0)
            # Zero too, so that the first gap is a rise an alert rule can see.
            order.add_metric([*key, "gap"], rec.order_gaps)
            order.add_metric([*key, "late"], rec.order_late)
            for name, value in (h.get("tx") or {}).items():
                kind, _, outcome = name.partition(".")
                tx.add_metric([*key, kind, outcome], value)
        for site in sorted(sites):
            site_open.add_metric([site], 1.0 if self.hours.is_open(site, now) else 0.0)
        yield from g.values()
        yield from (paper, info, tx, order, site_open, ils_state, ils_since, ils_alert, alert)
        m = CounterMetricFamily("selfcheck_fleet_messages", "messages taken", labels=["channel"])
        for channel, n in msgs.items():
            m.add_metric([channel], n)
        yield m
        r = CounterMetricFamily("selfcheck_fleet_rejected", "malformed messages refused",
                                labels=["field"])
        for where, n in rejected.items():
            r.add_metric([where], n)
        yield r
        yield CounterMetricFamily("selfcheck_fleet_unknown_results", "command results dropped: "
                                  "no command of ours to that station", value=unknown)
        d = CounterMetricFamily("selfcheck_fleet_events_dropped", "events over the station's "
                                "share, neither stored nor shown", labels=L)
        for where, n in dropped.items():
            d.add_metric(where.split("/", 1), n)
        yield d
        yield CounterMetricFamily("selfcheck_fleet_stale_wills",
                                  "statuses ignored as older than the last birth", value=stale)


def registry(state: FleetState, hours: OpeningHours) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(state, hours))
    return reg

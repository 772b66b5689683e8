"""The central bridge's own Prometheus endpoint (`selfcheck central --metrics HOST:PORT`): the
library system's health and the bridge's counters. The fleet service has its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from selfcheck.central.guard_metrics import GuardCollector

if TYPE_CHECKING:
    from selfcheck.central.bridge import Bridge
    from selfcheck.central.ils_health import IlsHealth


class BridgeCollector(Collector):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        c = self.bridge.counters
        for name, value, doc in (
                ("applied", c.applied, "transactions applied"),
                ("repeats", c.repeats, "repeated transactions answered from the stored result"),
                ("unanswered", c.unanswered, "left for the station to send again"),
                ("requests", c.requests, "station requests answered"),
                ("rejected", c.rejected, "malformed or misaddressed messages")):
            yield CounterMetricFamily(f"selfcheck_bridge_{name}", doc, value=value)
        # The outside parts this bridge needs, for alerts: each fault is also said once in
        # the log, in the IT person's words (selfcheck.system.faults).
        bridge = self.bridge.broker_watch.fault.changes
        yield GaugeMetricFamily(
            "selfcheck_broker_up", "1 while the bridge is connected to the broker and "
            "subscribed", value=1.0 if self.bridge.connected.is_set() else 0.0)
        yield CounterMetricFamily("selfcheck_broker_changes", "times the bridge's broker "
                                  "connection went down or came back", value=bridge)
        store = self.bridge.store
        yield GaugeMetricFamily(
            "selfcheck_store_up", "1 unless the bridge's last use of its database failed "
            "(down, disk full, not writable)", value=0.0 if store.is_up is False else 1.0)
        faults = GaugeMetricFamily("selfcheck_store_fault", "1 for the database's current "
                                   "fault", labels=["fault"])
        for kind in ("down", "full", "readonly"):
            faults.add_metric([kind], 1.0 if store.reason == f"store.{kind}" else 0.0)
        yield faults
        throttled = CounterMetricFamily(
            "selfcheck_bridge_throttled", "messages over their station's share, left for the "
            "station to send again", labels=["station"])
        for station, n in sorted(dict(self.bridge.throttle.refused).items()):
            throttled.add_metric([station], n)
        yield throttled
        over = CounterMetricFamily(
            "selfcheck_bridge_over_share", "times a station went over its share (each run of "
            "refusals logged once)", labels=["station"])
        for station, n in sorted(dict(self.bridge.throttle.runs).items()):
            over.add_metric([station], n)
        yield over
        yield CounterMetricFamily(
            "selfcheck_bridge_shed", "costly requests (PIN checks, offline-list pages, "
            "accounts) of a station with too many waiting, left unanswered", value=c.shed)
        # Per-station order, as this bridge process saw it since it started (the central's
        # database keeps the gaps themselves: central report, the fleet).
        o = self.bridge.order.counters
        for name, value, doc in (
                ("held", o.held, "transactions held until their predecessor was applied"),
                ("released", o.released, "held transactions applied after their gap filled "
                 "or was given up"),
                ("gaps", o.gaps, "gaps given up after the order wait (recorded)"),
                ("late", o.late, "transactions applied after their gap was given up "
                 "(recorded)"),
                ("refused", o.refused, "not held: the station's held limit was reached; the "
                 "station sends them again")):
            yield CounterMetricFamily(f"selfcheck_bridge_order_{name}", doc, value=value)


def serve(address: str, health: IlsHealth, bridge: Bridge) -> CollectorRegistry:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT")
    registry = CollectorRegistry()
    registry.register(health)
    registry.register(BridgeCollector(bridge))
    registry.register(GuardCollector(bridge))  # wrong PINs and wrong clocks, per station
    start_http_server(int(port), host or "127.0.0.1", registry=registry)
    return registry

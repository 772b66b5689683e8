"""The central bridge's own Prometheus endpoint (`selfcheck central --metrics HOST:PORT`): the
library system's health and the bridge's counters. The fleet service has its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

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
        throttled = CounterMetricFamily(
            "selfcheck_bridge_throttled", "messages over their station's share, left for the "
            "station to send again", labels=["station"])
        for station, n in sorted(dict(self.bridge.throttle.refused).items()):
            throttled.add_metric([station], n)
        yield throttled
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
    start_http_server(int(port), host or "127.0.0.1", registry=registry)
    return registry

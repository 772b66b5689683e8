"""Per station, what a stolen station's credentials leave behind, for Prometheus (served
with the bridge's metrics, `selfcheck central --metrics`): wrong PINs and pauses over the
wrong-PIN budget (central/pin_guard.py, from the database: every bridge's), and transactions
applied at the central's time because their station's clock was wrong (central/tx_clock.py,
this bridge process's). deploy/prometheus/selfcheck-alerts.yml turns them into alerts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from selfcheck.central import pin_guard

if TYPE_CHECKING:
    from selfcheck.central.bridge import Bridge

log = logging.getLogger(__name__)


class GuardCollector(Collector):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        wrong = CounterMetricFamily(
            "selfcheck_central_wrong_pins", "wrong PINs given by a station, over every card",
            labels=["site", "station"])
        paused = GaugeMetricFamily(
            "selfcheck_central_pin_paused", "1 while a station's PIN checks pause: it went "
            "over its wrong-PIN budget", labels=["site", "station"])
        now = dt.datetime.now(dt.UTC)
        try:
            rows = pin_guard.station_counts(self.bridge.backend.engine)
        except SQLAlchemyError as exc:  # the scrape still gets the rest
            log.warning("wrong-PIN counts not read: %s", exc)
            rows = []
        for r in rows:
            until = pin_guard.aware(r["paused_until"])
            wrong.add_metric([r["site"], r["station"]], r["total"])
            paused.add_metric([r["site"], r["station"]],
                              1.0 if until is not None and until > now else 0.0)
        yield wrong
        yield paused
        clock = CounterMetricFamily(
            "selfcheck_central_tx_clock_wrong", "transactions dated by their station far in "
            "the past or ahead, applied at the central's time (recorded for reconciliation)",
            labels=["site", "station"])
        for (site, station), n in sorted(dict(self.bridge.ledger.clock_wrong).items()):
            clock.add_metric([site, station], n)
        yield clock

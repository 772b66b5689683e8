"""Tell the operators' console how the library system is: each bridge keeps its IlsHealth
verdict retained on `lib/central/v1/{bridge}/ils`, sent on each change and on every
(re)connect. The Last Will (and a clean stop) replace it with `gone`, so that a bridge that
died is never left showing `ok`.

It rides on the bridge's own MQTT client (the bridge's credentials may publish there): the
will is set before that client connects, and the bridge's connect callback is chained, not
replaced."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from selfcheck.central.ils_health import IlsHealth
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.telemetry import BridgeIls

log = logging.getLogger(__name__)


class IlsReporter:
    def __init__(self, client: paho.Client, bridge_id: str, health: IlsHealth) -> None:
        self.topic = topics.bridge_ils(bridge_id)  # TopicError on an id the contract refuses
        self.bridge_id = bridge_id
        self.health = health
        self._client = client
        self._lock = threading.Lock()  # one report at a time: the newest is the last sent
        self._gone = False  # after a clean stop nothing may bring back an old verdict
        client.will_set(self.topic, self._payload("gone", None, ""), qos=1, retain=True)
        # paho types its callbacks for every API version; this client is VERSION2.
        chained: Callable[..., Any] | None = client.on_connect

        def on_connect(c: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:
            if chained is not None:
                chained(c, userdata, flags, rc, props)
            if not rc.is_failure:
                self.publish()

        client.on_connect = on_connect
        health.on_change = lambda verdict, since: self.publish()

    def _payload(self, state: str, since: float | None, detail: str) -> bytes:
        return messages.encode(BridgeIls.model_validate({
            "bridge": self.bridge_id, "state": state, "ils": self.health.name[:500],
            "since": dt.datetime.fromtimestamp(since, dt.UTC) if since else None,
            "detail": detail[:500] or None}))

    def publish(self) -> None:
        """The current verdict (nothing before the first check: it comes with the change)."""
        verdict, since = self.health.latest()
        if verdict is None:
            return
        with self._lock:
            if self._gone:
                return
            self._client.publish(self.topic, self._payload(verdict.state, since, verdict.detail),
                                 qos=1, retain=True)

    def gone(self, timeout_s: float = 3.0) -> None:
        """A clean stop: say so before disconnecting (a normal disconnect sends no will)."""
        with self._lock:
            self._gone = True
            info = self._client.publish(self.topic, self._payload("gone", None, ""), qos=1,
                                        retain=True)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):  # not connected: the broker still has the will
            log.warning("library system report not withdrawn; the broker's will will do it")

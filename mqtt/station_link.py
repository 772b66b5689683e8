"""A station's MQTT connection: persistent session, birth and last will with the session
counter, transaction acks, and request/response with MQTT 5 correlation data."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import paho.mqtt.client as paho

from selfcheck.mqtt import hops, messages, topics
from selfcheck.mqtt.broker_state import BrokerWatch
from selfcheck.mqtt.connection import (
    BrokerAddress,
    connect_properties,
    make_client,
    publish_properties,
)
from selfcheck.mqtt.rejections import OnceLog
from selfcheck.mqtt.security import ClientSecurity, apply

log = logging.getLogger(__name__)

REQUEST_EXPIRY_S = 10


class StationLink:
    def __init__(
        self,
        site: str,
        station: str,
        broker: BrokerAddress,
        *,
        version: str,
        next_session: Callable[[], int],
        on_ack: Callable[[messages.AckTx], None],
        on_connected: Callable[[bool], None] = lambda up: None,
        mode: Callable[[], str] = lambda: "selfcheck",
        keepalive_s: int = 15,
        security: ClientSecurity | None = None,
        channels: tuple[str, ...] = (),
        on_channel: Callable[[str, bytes], None] = lambda channel, payload: None,
    ) -> None:
        self.site, self.station, self.broker = site, station, broker
        self._root = topics.root(site, station)
        self._version = version
        self._next_session = next_session
        self._on_ack = on_ack
        self._on_connected = on_connected
        self._mode = mode
        self._keepalive = keepalive_s
        # Extra channels under the root (commands, desired config) go to `on_channel`.
        self._channels = channels
        self._on_channel = on_channel
        self.session = 0
        self.connected = threading.Event()
        self.rejected = 0  # malformed messages received
        self._once = OnceLog(log)
        self._loop_thread: threading.Thread | None = None
        self._pending: dict[bytes, tuple[Future[messages.Message], float]] = {}
        self._pending_lock = threading.Lock()
        self._client = make_client(station)
        apply(self._client, broker, security or ClientSecurity())  # refuses clear text off-host
        # Not reached, certificate or login refused: said once each, and when it is back.
        self.broker_watch = BrokerWatch(self._client, broker, f"{site}/{station}", log)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message

    # -- lifecycle
    def start(self) -> None:
        self._arm_will()
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self._keepalive,
                                   clean_start=False, properties=connect_properties())
        self._client.loop_start()
        # paho forgets its thread when it ends: keep it, to see that it ended
        self._loop_thread = self._client._thread

    def stop(self) -> None:
        if self.connected.is_set():
            info = self._client.publish(f"{self._root}/status", self._status(False), qos=1,
                                        retain=True)
            info.wait_for_publish(2)
        self._loop_thread = None  # ending now is no fault
        self._client.disconnect()
        self._client.loop_stop()

    def _status(self, online: bool) -> bytes:
        return messages.encode(messages.Status(online=online, session=self.session,
                                               version=self._version, mode=self._mode()))

    def _arm_will(self) -> None:
        # A new session number for every connect; the will carries it so that the central
        # can ignore a will older than the last birth.
        self.session = self._next_session()
        self._client.will_set(f"{self._root}/status", self._status(False), qos=1, retain=True)

    def _connected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                   props: Any = None) -> None:
        self.broker_watch.connected(rc)
        if rc.is_failure:
            return
        client.subscribe([(f"{self._root}/ack/tx", 1), (f"{self._root}/res/+", 1),
                          (f"{self._root}/status", 1),
                          *((f"{self._root}/{c}", 1) for c in self._channels)])
        client.publish(f"{self._root}/status", self._status(True), qos=1, retain=True)
        self.connected.set()
        self._on_connected(True)

    def _disconnected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                      props: Any = None) -> None:
        self.connected.clear()
        if self._loop_thread is not None:  # not our own stop
            self.broker_watch.disconnected(rc)
        self._arm_will()
        self._on_connected(False)

    # -- publishing
    def publish(self, channel: str, payload: bytes, *, qos: int = 1,
                retain: bool = False) -> bool:
        """Publish under the station root if connected; False (nothing queued) if not."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(f"{self._root}/{channel}", payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def send(self, topic: str, payload: bytes) -> bool:
        """QoS 1 publish if connected; False (nothing queued) if not."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=1)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def request(self, name: str, msg: messages.Message,
                timeout_s: float = REQUEST_EXPIRY_S) -> Future[messages.Message]:
        """Send `req/{name}`; the future gets the `res/{name}` model or an exception."""
        future: Future[messages.Message] = Future()
        correlation = uuid.uuid4().bytes
        now = time.monotonic()
        with self._pending_lock:
            for key, (old, deadline) in list(self._pending.items()):
                if deadline < now:
                    del self._pending[key]
                    old.cancel()
            self._pending[correlation] = (future, now + timeout_s)
        props = publish_properties(ResponseTopic=topics.res(self.site, self.station, name),
                                   CorrelationData=correlation,
                                   MessageExpiryInterval=max(1, int(timeout_s)))
        if not self.connected.is_set():
            future.set_exception(ConnectionError("not connected to the broker"))
        else:
            self._client.publish(topics.req(self.site, self.station, name),
                                 messages.encode(msg), qos=1, properties=props)
        return future

    # -- receiving (paho's network thread)
    def _check_status(self, payload: bytes) -> None:
        # An old connection's will can land after our birth (session takeover) and, being
        # retained, would leave the broker saying "offline": say "online" again.
        status = messages.decode(payload, messages.Status)
        assert isinstance(status, messages.Status)
        if not status.online and status.session < self.session and self.connected.is_set():
            self._client.publish(f"{self._root}/status", self._status(True), qos=1, retain=True)

    def loop_alive(self) -> bool:
        """False once paho's network thread has ended while it should run: no more acks,
        answers or commands would arrive (the station's watchdog stops on it)."""
        thread = self._loop_thread
        return thread is None or thread.is_alive()

    def _message(self, client: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        # paho's network thread: an exception escaping here would end it (and leave the
        # message unacknowledged, to come back at every reconnect), so nothing escapes.
        try:
            self._receive(m)
        except Exception:
            self.rejected += 1
            log.exception("message on %s could not be handled; acknowledged and dropped",
                          m.topic[:200])

    def _receive(self, m: paho.MQTTMessage) -> None:
        try:
            channel = m.topic[len(self._root) + 1:]
            if channel == "ack/tx":
                ack = messages.decode(m.payload, messages.AckTx)
                assert isinstance(ack, messages.AckTx)
                if hops.HOOKS:  # the benchmark's breakdown only (mqtt/hops.py)
                    hops.mark("station_received", ack.msg_id, m.timestamp)
                self._on_ack(ack)
            elif channel.startswith("res/"):
                correlation = getattr(m.properties, "CorrelationData", None)
                with self._pending_lock:
                    entry = self._pending.pop(correlation, None) if correlation else None
                if entry is None:
                    return  # an answer nobody waits for any more (timed out)
                try:
                    entry[0].set_result(messages.decode(m.payload))
                except messages.MessageError as exc:
                    entry[0].set_exception(exc)
                    raise
            elif channel == "status":
                self._check_status(bytes(m.payload))
            else:
                self._on_channel(channel, bytes(m.payload))
        except messages.MessageError as exc:
            self.rejected += 1
            self._once.note(exc.field, self.rejected, "rejected message on %s: %s",
                            m.topic[:200], exc)

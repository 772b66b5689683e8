"""paho-mqtt client set-up shared by stations, bridges and tools: MQTT 5, TCP_NODELAY."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_S = 86_400


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        """'host:port' or 'mqtt://host:port'."""
        text = text.removeprefix("mqtt://")
        host, _, port = text.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"broker {text[:80]!r}: expected HOST:PORT")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"broker {text[:80]!r}: port {int(port)} is not 1-65535")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    # Without it a request/response round trip waits on Nagle: tens of ms instead of about one.
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(client_id: str, *, max_inflight: int = 100,
                manual_ack: bool = False) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5, manual_ack=manual_ack)
    client.on_socket_open = _nodelay
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    return client


def connect_properties(session_expiry_s: int = SESSION_EXPIRY_S) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    return props


def publish_properties(**values: Any) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for key, value in values.items():
        setattr(props, key, value)
    return props

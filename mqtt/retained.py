"""Which station channels may keep a retained message, and the fleet service's clean-up of the
others.

Mosquitto cannot refuse the retain flag per topic (its access rules know the topic, not the
flag), and `retain_available false` would also take away the retained `status` every station
needs. So the broker bounds what a station can publish (exact topics, one level deep: see
deploy/mosquitto/make-credentials), and the consumer that hears a station's telemetry, events
and command results deletes any retained message there as soon as it sees one: it subscribes
to those channels with Retain As Published, so a retained message is recognised whether it is
replayed on (re)connect or published while the service listens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from selfcheck.mqtt import topics

# The contract's retained channels (DESIGN.md, MQTT contract): everything else is live only.
KEPT = frozenset({"status", "state", "config/reported", "config/desired"})

# Channels a station publishes that the fleet service reads and may clean (the rest of what a
# station publishes, tx/ and req/, goes to the bridges' shared group, which Mosquitto never
# sends retained messages, and the station's rights allow only six such topics).
CLEANED = ("tele/+", "evt/+", "cmd/res/+")

# How many stations' first offence is remembered for the log, so that a flood from many
# topics logs once per station and the memory of it stays bounded.
_REMEMBERED = 10_000


def channel_of(topic: str) -> str | None:
    """`status`, `evt/reader`, ... for a station topic; None for anything else."""
    try:
        where = topics.parse(topic)
    except topics.TopicError:
        return None
    return f"{where.channel}/{where.name}" if where.name else where.channel


def misplaced(topic: str, payload: bytes, retain: bool) -> bool:
    """True for a retained message on a station channel that is not meant to keep one (an
    empty payload is a deletion, never misplaced)."""
    if not retain or not payload:
        return False
    channel = channel_of(topic)
    return channel is not None and channel not in KEPT


def subscriptions(filters: Iterable[str], qos: int = 1) -> list[tuple[str, SubscribeOptions]]:
    """`filters` with the options that let `Sweeper` see the retain flag: Retain As Published
    on the cleaned channels, the default elsewhere (where the flag keeps meaning "replayed on
    (re)connect")."""
    cleaned = tuple(f"/{c}" for c in CLEANED)
    return [(f, SubscribeOptions(qos=qos, retainAsPublished=f.endswith(cleaned)))
            for f in filters]


class Sweeper:
    """Deletes misplaced retained messages (publishes an empty retained message on their
    topic) and logs the first one of each station."""

    def __init__(self, client: paho.Client, log: logging.Logger) -> None:
        self._client = client
        self._log = log
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.deleted = 0

    def take(self, topic: str, payload: bytes, retain: bool) -> bool:
        """True when the message was a misplaced retained one: deleted, and not to be read."""
        if not misplaced(topic, payload, retain):
            return False
        self._client.publish(topic, b"", qos=1, retain=True)
        station = "/".join(topic.split("/")[2:4])
        with self._lock:
            self.deleted += 1
            first = station not in self._logged and len(self._logged) < _REMEMBERED
            if first:
                self._logged.add(station)
        if first:
            self._log.warning("station %s keeps retained messages where none belong (first: "
                              "%s, %d bytes): deleting them", station, topic[:200], len(payload))
        return True

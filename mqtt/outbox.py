"""The station outbox publisher: every transaction is sent until its `ack/tx` comes back.

The rows live in the station journal (an OutboxStore); this class only decides when to send.
Sending twice is harmless (the central dedupes by msg_id); never sending is not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class OutboxStore(Protocol):
    def pending(self) -> list[tuple[str, str, bytes]]:
        """(msg_id, topic, payload) of every unacknowledged row, oldest first."""
        ...

    def delete(self, msg_id: str) -> bool: ...


Send = Callable[[str, bytes], bool]  # topic, payload -> handed to a connected client
CATCH_UP_S = 1.0  # an older row not sent for this long goes out again before a new one


class Outbox:
    def __init__(self, store: OutboxStore, send: Send, *, resend_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # resend_after_s has no default here: the station's settings own it.
        self._store = store
        self._send = send
        self._resend_after = resend_after_s
        self._clock = clock
        self._sent_at: dict[str, float] = {}
        self._lock = threading.Lock()  # guards _sent_at only; never held while sending

    def submit(self, msg_id: str, topic: str, payload: bytes) -> None:
        """Send a row just written to the journal, after the older rows still waiting for
        their ack that have not gone out in the last second: the central applies a station's
        transactions in seq order, so an older one lost on the way (sent while no bridge was
        subscribed, say) would hold this one up until its next resend."""
        now = self._clock()
        with self._lock:
            sent = dict(self._sent_at)
        for older, older_topic, older_payload in self._store.pending():
            if older == msg_id:
                break
            at = sent.get(older)
            if at is None or now - at >= CATCH_UP_S:
                self._try(older, older_topic, older_payload)
        self._try(msg_id, topic, payload)

    def _try(self, msg_id: str, topic: str, payload: bytes) -> None:
        # Only hand a message to paho while connected: paho would queue it in memory anyway
        # and a later retry would then send it twice.
        if self._send(topic, payload):
            with self._lock:
                self._sent_at[msg_id] = self._clock()

    def on_connected(self) -> None:
        """A new connection: whatever is pending may have been lost on the way."""
        with self._lock:
            self._sent_at.clear()
        for msg_id, topic, payload in self._store.pending():
            self._try(msg_id, topic, payload)

    def on_ack(self, msg_id: str) -> bool:
        with self._lock:
            self._sent_at.pop(msg_id, None)
        return self._store.delete(msg_id)

    def resend_due(self) -> int:
        """Send again what has waited too long for its ack (or was never sent). Returns count."""
        now = self._clock()
        with self._lock:
            sent = dict(self._sent_at)
        count = 0
        for msg_id, topic, payload in self._store.pending():
            at = sent.get(msg_id)
            if at is None or now - at >= self._resend_after:
                self._try(msg_id, topic, payload)
                count += 1
        return count

"""The station's telemetry: the retained `state` snapshot (published when it changes),
`tele/health` every period, and `evt/{kind}` for faults and alerts.

Events raised while offline are kept (bounded) and sent on reconnect, so an operator learns
what happened during an outage. Nothing here sees a card number, a name or a PIN.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable

from selfcheck.mqtt import messages
from selfcheck.mqtt.telemetry import Event, EventKind, Health, State

Publish = Callable[..., bool]  # (channel, payload, qos=, retain=) -> sent

STAFF_FAILURES = 3  # failures within STAFF_WINDOW_S that call for staff
STAFF_WINDOW_S = 600.0
MAX_BUFFERED_EVENTS = 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StationTelemetry:
    def __init__(self, publish: Publish, *, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._publish = publish
        self.period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_state: State | None = None  # as last published on this connection
        self._buffer: collections.deque[Event] = collections.deque(maxlen=MAX_BUFFERED_EVENTS)
        self._next_health = 0.0
        self._failures: collections.deque[float] = collections.deque()
        self._staff_called = -STAFF_WINDOW_S
        self._offline_since: float | None = None
        self._ever_connected = False
        self.tx: collections.Counter[str] = collections.Counter()
        self._kinds: dict[str, str] = {}  # msg_id -> kind, until its ack
        self.published = collections.Counter[str]()

    # -- state
    def state(self, snapshot: State) -> bool:
        """Publish the snapshot if it differs from the last one sent (the time aside)."""
        with self._lock:
            last = self._last_state
            if last is not None and last.model_copy(update={"at": snapshot.at}) == snapshot:
                return False
            if not self._publish("state", messages.encode(snapshot), qos=1, retain=True):
                return False
            self._last_state = snapshot
            self.published["state"] += 1
            return True

    # -- health
    def health_due(self) -> bool:
        return self._clock() >= self._next_health

    def health(self, reading: Health) -> bool:
        self._next_health = self._clock() + self.period_s
        sent = self._publish("tele/health", messages.encode(reading), qos=0)
        if sent:
            self.published["health"] += 1
        return sent

    # -- events
    def event(self, kind: EventKind, severity: str = "warning", detail: str | None = None,
              item_id: str | None = None, title: str | None = None) -> None:
        evt = Event(kind=kind, at=_now(), severity=severity,
                    detail=detail, item_id=item_id, title=title and title[:500])
        with self._lock:
            self._buffer.append(evt)
        self.flush()

    def flush(self) -> None:
        """Send buffered events, oldest first, while the link takes them."""
        with self._lock:
            while self._buffer:
                evt = self._buffer[0]
                if not self._publish(f"evt/{evt.kind}", messages.encode(evt), qos=1):
                    return
                self._buffer.popleft()
                self.published["evt"] += 1

    def failure(self, what: str) -> None:
        """A failure a reader met (tag unreadable, security write failed): several close
        together raise `staff_needed`, at most once per window."""
        now = self._clock()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > STAFF_WINDOW_S:
            self._failures.popleft()
        if len(self._failures) >= STAFF_FAILURES and now - self._staff_called > STAFF_WINDOW_S:
            self._staff_called = now
            self.event("staff_needed", "critical",
                       f"{len(self._failures)} failures in {int(STAFF_WINDOW_S / 60)} min, "
                       f"last: {what}")

    # -- connection
    def connected(self, up: bool) -> None:
        if not up:
            with self._lock:
                self._last_state = None  # republish the snapshot on the next connection
            if self._ever_connected and self._offline_since is None:
                self._offline_since = self._clock()
                self.event("offline", "warning", "lost the connection to the broker")
            return
        self._next_health = 0.0  # a fresh health reading right after (re)connecting
        if self._offline_since is not None:
            gone = self._clock() - self._offline_since
            self._offline_since = None
            self.event("online", "info", f"back online after {gone:.0f} s")
        self._ever_connected = True
        self.flush()

    # -- transaction outcomes (by kind and result; never by patron)
    def recorded(self, msg_id: str, kind: str) -> None:
        with self._lock:
            self._kinds[msg_id] = kind

    def acked(self, ack: messages.AckTx) -> None:
        with self._lock:
            kind = self._kinds.pop(ack.msg_id, "unknown")
            self.tx[f"{kind}.{'ok' if ack.ok else 'refused'}"] += 1

    def tx_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.tx)

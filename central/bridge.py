"""The central bridge: takes station transactions and requests from a shared subscription,
applies them through the ledger (exactly once, in each station's order: central/ledger.py)
to the backend in batches, and answers after the commit.

Messages are acknowledged to the broker (manual PUBACK) only after their batch committed, so a
bridge killed mid-batch leaves them to the broker to deliver again; the ledger's dedupe rows
make that harmless.

A station is trusted with no reader on its word: the backend applies the central's PIN rules
to every patron check (central/pin_rules.py), a successful one opens a session for that reader
at that station, and the account, online loans and renewals need it (central/sessions.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from selfcheck.central.backend import BackendUnavailable, LocalBackend, RemoteBackend, Tx
from selfcheck.central.ledger import Admitted, Ledger, key_of
from selfcheck.central.sessions import IDLE, Sessions
from selfcheck.central.throttle import (
    STATION_BURST,
    STATION_RATE_PER_S,
    StationThrottle,
    Verdict,
)
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import (
    BrokerAddress,
    connect_properties,
    make_client,
    publish_properties,
)
from selfcheck.mqtt.rejections import OnceLog
from selfcheck.mqtt.security import ClientSecurity, apply

log = logging.getLogger(__name__)

ORDER_CHECK_S = 1.0  # how often a bridge looks for gaps that have waited long enough


@dataclass
class BridgeCounters:
    applied: int = 0
    repeats: int = 0
    unanswered: int = 0  # the backend could not answer now; the station sends them again
    requests: int = 0
    rejected: int = 0
    throttled: int = 0  # over the station's share: left for the station to send again
    batches: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # refusals in acks, by reason
    rejections: dict[str, int] = field(default_factory=dict)  # rejected messages, by field

    def summary(self) -> str:
        """One line for logs and systemd's STATUS=."""
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items()))
        return (f"applied {self.applied}, repeats {self.repeats}, requests {self.requests}, "
                f"unanswered {self.unanswered}, rejected {self.rejected}"
                + (f" ({rejected})" if rejected else "")
                + (f", throttled {self.throttled}" if self.throttled else ""))


class Bridge:
    def __init__(self, backend: LocalBackend | RemoteBackend, broker: BrokerAddress, *,
                 client_id: str = "central-bridge-1", batch_max: int = 500,
                 security: ClientSecurity | None = None, order_wait_s: float = 30.0,
                 order: bool = True, station_rate_per_s: float = STATION_RATE_PER_S,
                 station_burst: int = STATION_BURST,
                 session_idle: dt.timedelta = IDLE) -> None:
        # First of all: refuse clear text off this machine before touching anything else.
        self._client = make_client(client_id, manual_ack=True)
        apply(self._client, broker, security or ClientSecurity())
        self.backend = backend
        self.broker = broker
        self.counters = BridgeCounters()
        # The backend's database is the central's: the ledger keeps its rows there too, and
        # the patron sessions every bridge of the group shares.
        self.sessions = Sessions(backend.engine, session_idle)
        self.ledger = Ledger(backend.engine, backend, owner=client_id,
                             order_wait_s=order_wait_s, sessions=self.sessions)
        self.order = self.ledger.order
        self.throttle = StationThrottle(station_rate_per_s, station_burst)
        self.rejection_log = OnceLog(log)
        self._rejections_lock = threading.Lock()
        # False: whatever arrives is applied at once, as before per-station order; only the
        # benchmark's baseline uses it (it breaks invariant 6).
        self.ordered = order
        self.connected = threading.Event()
        self._batch_max = batch_max
        self._inbox: queue.Queue[paho.MQTTMessage | None] = queue.Queue()
        # Manual acks (make_client above): PUBACK only after the batch committed (module doc).
        # Back soon after a broker restart, like the stations: a bridge away for paho's default
        # two minutes leaves every station's transactions to the offline policy.
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._connected
        self._client.on_subscribe = self._subscribed
        self._client.on_disconnect = lambda *a: self.connected.clear()
        self._client.on_message = self._received
        self._worker = threading.Thread(target=self._run, name="bridge-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()
        # No session kept for a bridge: Mosquitto goes on queueing a shared subscription's
        # share for a member whose session outlives it, so a dead bridge would swallow a part
        # of the traffic until it came back (measured: a third of it, in the SIGKILL test).
        # Without a session its in-flight messages are dropped at once and the others go to
        # the live bridges; the station outbox sends the dropped ones again.
        props = connect_properties(session_expiry_s=0)
        props.ReceiveMaximum = 2 * self._batch_max
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=15,
                                   clean_start=True, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
        self._worker.join(10)

    def _connected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                   props: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker refused the bridge: %s", rc)
            return
        client.subscribe([(topics.BRIDGE_TX, 1), (topics.BRIDGE_REQ, 1)])

    def _subscribed(self, client: paho.Client, userdata: Any, mid: int, codes: Any,
                    props: Any = None) -> None:
        # Connected is only worth saying once the broker hands us the stations' messages.
        if all(not getattr(c, "is_failure", False) for c in codes):
            self.connected.set()
        else:
            log.warning("broker refused the bridge's subscriptions: %s", codes)

    # -- the worker: one batch at a time, commit, then answer and PUBACK
    def _run(self) -> None:
        due_at = 0.0
        while True:
            if self.ordered and time.monotonic() >= due_at:  # gaps that waited long enough
                due_at = time.monotonic() + ORDER_CHECK_S
                self._guarded(self._release_due)
            try:
                first = self._inbox.get(timeout=ORDER_CHECK_S)
            except queue.Empty:
                continue
            if first is None:
                return
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                batch.append(more)
            self._guarded(self._handle, batch)

    def _guarded(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception:  # never let one bad batch stop the bridge
            log.exception("bridge step %s failed; left unacknowledged for redelivery",
                          getattr(step, "__name__", step))

    def _release_due(self) -> None:
        released = self.ledger.release_due()
        if released:
            self._apply(released)

    def _handle(self, batch: list[paho.MQTTMessage]) -> None:
        # Each message is decoded on its own: a bad one is rejected (and acknowledged, so that
        # the broker does not deliver it again) without touching the others of the batch.
        txs: list[tuple[paho.MQTTMessage, Tx]] = []
        for m in batch:
            try:
                tx = self._intake(m)
            except (messages.MessageError, topics.TopicError) as exc:
                self._reject(m, getattr(exc, "field", "topic"), str(exc))
                continue
            except Exception as exc:  # a fault on one request must not stop the batch
                self._reject(m, "error", f"{type(exc).__name__}: {exc}", trace=True)
                continue
            if tx is None:
                self._client.ack(m.mid, m.qos)
            else:
                txs.append((m, tx))
        if txs:
            self._take(txs)

    def _received(self, client: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        """On paho's network thread: a message over its station's share is dropped here,
        before the worker's queue, so that a flood costs the other stations as little as it
        can; the rest go to the worker."""
        try:
            over = self._over_share(m, topics.parse(m.topic))
        except Exception:  # a bad topic: the worker rejects it with its reason
            over = False
        if not over:
            self._inbox.put(m)

    def _over_share(self, m: paho.MQTTMessage, where: topics.Parsed) -> bool:
        """Drop, undecoded, a message over its station's share (PUBACKed unanswered: a
        transaction comes back from the station's outbox, a request times out there)."""
        verdict = self.throttle.take(where.site, where.station, where.channel)
        if verdict is Verdict.OK:
            return False
        self.counters.throttled += 1
        if verdict is Verdict.STARTED:
            log.warning("station %s/%s is over its share of %s (%d messages at once, %g/s "
                        "after); its messages are left for it to send again",
                        where.site, where.station, where.channel[:8], self.throttle.burst,
                        self.throttle.rate,
                        extra={"station": where.station})
        self._client.ack(m.mid, m.qos)
        return True

    def _intake(self, m: paho.MQTTMessage) -> Tx | None:
        """The transaction a message carries; a request is answered here (None)."""
        where = topics.parse(m.topic)
        if where.channel == "tx":
            tx = messages.decode_tx(m.payload, where.name)  # the topic's kind only
            if (tx.site, tx.station) != (where.site, where.station):
                raise messages.MessageError("station", "does not match the topic")
            return tx
        if where.channel != "req":
            raise messages.MessageError("topic", f"channel {where.channel[:40]!r} unknown")
        try:
            self._answer(m, where)
        except BackendUnavailable as exc:  # no answer: the station goes offline
            self.counters.unanswered += 1
            log.warning("request %s unanswered: %s", m.topic, exc)
        return None

    def _take(self, txs: list[tuple[paho.MQTTMessage, Tx]]) -> None:
        """Admit in each station's order, apply, then PUBACK. A later transaction waits (held
        in the database, so PUBACKed now and out of the receive window) until its predecessor
        is in; one not applied and not answered is PUBACKed too, so that the broker does not
        hold it in flight: the station's outbox sends it again (same msg_id)."""
        try:
            admitted = (self.ledger.admit([tx for _, tx in txs]) if self.ordered
                        else Admitted(ready=[tx for _, tx in txs]))
            self._apply(admitted.ready)
        except BackendUnavailable as exc:  # nobody's fault: the outboxes send them again
            log.warning("batch of %d unanswered: %s", len(txs), exc)
            for m, _ in txs:
                self.counters.unanswered += 1
                self._client.ack(m.mid, m.qos)
            return
        except Exception as exc:
            if len(txs) == 1:
                m, _ = txs[0]
                self._reject(m, "backend", f"{type(exc).__name__}: {exc}", trace=True)
                return
            # One of them made the whole batch fail: take them one by one, so that the
            # others are still answered and only the culprit is set aside.
            log.warning("batch of %d failed (%s: %s); taking them one by one", len(txs),
                        type(exc).__name__, exc)
            for one in txs:
                self._take([one])
            return
        for m, _ in txs:
            self._client.ack(m.mid, m.qos)

    def _apply(self, ready: list[Tx]) -> None:
        """Apply, answer after the commit, then whatever that lets through from the held."""
        while ready:
            acks = self.ledger.apply(ready)
            self.counters.batches += 1
            for tx, ack in zip(ready, acks, strict=True):
                if ack is None:
                    self.counters.unanswered += 1
                    continue
                if ack.repeat:
                    self.counters.repeats += 1
                else:
                    self.counters.applied += 1
                if not ack.ok and ack.reason:
                    self.counters.reasons[ack.reason] = \
                        self.counters.reasons.get(ack.reason, 0) + 1
                log.debug("answered %s: %s", tx.schema_, "ok" if ack.ok else ack.reason,
                          extra={"station": tx.station, "msg_id": tx.msg_id, "seq": tx.seq})
                self._client.publish(topics.ack_tx(tx.site, tx.station), messages.encode(ack),
                                     qos=1)
            ready = self.ledger.release({key_of(tx) for tx in ready}) if self.ordered else []

    def _reject(self, m: paho.MQTTMessage, reason: str, detail: str, *,
                trace: bool = False) -> None:
        """Count a message that will never be applied, say so, and PUBACK it: a poison
        message must not come back at every redelivery."""
        with self._rejections_lock:
            self.counters.rejected += 1
            self.counters.rejections[reason] = self.counters.rejections.get(reason, 0) + 1
            count = self.counters.rejections[reason]
        self.rejection_log.note(reason, count, "rejected %s (%s): %s", m.topic[:200], reason,
                                detail[:300], trace=trace)
        self._client.ack(m.mid, m.qos)

    def _answer(self, m: paho.MQTTMessage, where: topics.Parsed) -> None:
        props: Properties | None = getattr(m, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None)
        # Answer only on the asking station's own res/ topic, whatever the request says.
        if reply_to != topics.res(where.site, where.station, where.name):
            raise messages.MessageError("ResponseTopic", f"{reply_to!r} is not the station's")
        model = messages.REQUESTS.get(where.name)
        if model is None:
            raise messages.MessageError("topic", f"no request named {where.name!r}")
        req = messages.decode(m.payload, model[0])
        res: messages.Message
        if isinstance(req, messages.PatronCheckReq):
            res = self.backend.check_patron(req.card_id, pin=req.pin, site=where.site)
            if res.ok and res.patron_ref:
                self.sessions.open(where.site, where.station, res.patron_ref,
                                   dt.datetime.now(dt.UTC))
        elif isinstance(req, messages.AccountReq):
            # Only the reader this station checked, while their session lasts: nothing is
            # said of a reference it merely holds, not even whether it exists.
            if self.sessions.use(where.site, where.station, req.patron_ref,
                                 dt.datetime.now(dt.UTC)):
                res = self.backend.account(req.patron_ref)
            else:
                res = messages.AccountRes(ok=False, reason="no_session")
        elif isinstance(req, messages.OfflineListReq):
            res = self.backend.offline_list(where.site, req.page)
        else:  # a name in REQUESTS with no branch here: a programming error
            raise AssertionError(f"request {where.name} has no handler")
        self.counters.requests += 1
        out = publish_properties(CorrelationData=getattr(props, "CorrelationData", b""))
        self._client.publish(reply_to, messages.encode(res), qos=1, properties=out)

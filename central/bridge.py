"""The central bridge: takes station transactions and requests from a shared subscription,
applies them through the ledger (exactly once, in each station's order: central/ledger/)
to the backend in batches, and answers after the commit.

Messages are acknowledged to the broker (manual PUBACK) only after their batch committed, so a
bridge killed mid-batch leaves them to the broker to deliver again; the ledger's dedupe rows
make that harmless.

The costly requests (PIN checks, offline-list pages, accounts) run beside the worker, on a
small pool that takes the stations in turn (central/costly.py): the worker, and so every
station's transactions and plain patron checks, never waits behind them, and one station's
never wait in front of another's. Each message takes what it costs from its station's share
(central/throttle.py).

A station is trusted with no reader on its word: the backend applies the central's PIN rules
to every patron check (central/pin_rules.py), a successful one opens a session for that reader
at that station, and the account, online loans and renewals need it (central/sessions.py).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from selfcheck.central import offline_policy, stocktake, tagging
from selfcheck.central.backend import (
    BackendUnavailable,
    ItemLookup,
    LocalBackend,
    RemoteBackend,
    Tx,
)
from selfcheck.central.costly import (
    COSTLY,
    TX_COST,
    FairPool,
    pool_size,
    request_cost,
    share_cost,
)
from selfcheck.central.ledger import Ledger, key_of
from selfcheck.central.sessions import IDLE, Sessions
from selfcheck.central.throttle import (
    STATION_BURST,
    STATION_RATE_PER_S,
    StationThrottle,
    Verdict,
)
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
from selfcheck.system.faults import Fault

log = logging.getLogger(__name__)

ORDER_CHECK_S = 1.0  # how often a bridge looks for gaps that have waited long enough


@dataclass
class BridgeCounters:
    received: int = 0  # messages taken in from the broker
    applied: int = 0
    repeats: int = 0
    unanswered: int = 0  # the backend could not answer now; the station sends them again
    requests: int = 0
    rejected: int = 0
    throttled: int = 0  # over the station's share: left for the station to send again
    over_share: int = 0  # runs of such refusals (each one logged once)
    shed: int = 0  # costly requests of a station with too many waiting: left unanswered
    batches: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # refusals in acks, by reason
    rejections: dict[str, int] = field(default_factory=dict)  # rejected messages, by field

    def summary(self) -> str:
        """One line for logs and systemd's STATUS=."""
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items()))
        return (f"applied {self.applied}, repeats {self.repeats}, requests {self.requests}, "
                f"unanswered {self.unanswered}, rejected {self.rejected}"
                + (f" ({rejected})" if rejected else "")
                + (f", throttled {self.throttled}" if self.throttled else "")
                + (f", shed {self.shed}" if self.shed else ""))


class Bridge:
    def __init__(self, backend: LocalBackend | RemoteBackend, broker: BrokerAddress, *,
                 client_id: str = "central-bridge-1", batch_max: int = 500,
                 security: ClientSecurity | None = None, order_wait_s: float = 30.0,
                 order: bool = True, station_rate_per_s: float = STATION_RATE_PER_S,
                 station_burst: int = STATION_BURST,
                 session_idle: dt.timedelta = IDLE, cost_shares: bool = True,
                 costly_workers: int | None = None) -> None:
        """cost_shares False: every message costs 1 and everything runs on the one worker in
        arrival order (the benchmark's baseline only)."""
        # First of all: refuse clear text off this machine before touching anything else.
        self._client = make_client(client_id, manual_ack=True)
        apply(self._client, broker, security or ClientSecurity())
        self.broker_watch = BrokerWatch(self._client, broker, client_id, log)
        self.backend = backend
        self.tagging_isil: str | None = None  # owner ISIL for tags of items with none set
        # A SIP2 or Koha backend is asked about items (tagging, stock-takes); the embedded
        # store's catalogue is the library system itself.
        self.items: ItemLookup | None = None if isinstance(backend, LocalBackend) or \
            not isinstance(backend, ItemLookup) else backend
        # The database the ledger writes to (the store itself, or the SIP2/Koha dedupe rows):
        # an outage is said once, and once when it ends, whatever step meets it.
        self.store = Fault(log, "store.up",
                           store=backend.engine.url.render_as_string(hide_password=True))
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
        # A library system that does not answer leaves every batch unanswered: its state is
        # said once per change by the central's check (ils_health); here at most once a minute.
        self.unanswered_log = OnceLog(log)
        self._rejections_lock = threading.Lock()
        # The costly requests' threads count too (requests, unanswered, shed).
        self._counts_lock = threading.Lock()
        self.cost_shares = cost_shares
        workers = costly_workers or pool_size(remote=not isinstance(backend, LocalBackend),
                                              connections=getattr(backend, "connections", None))
        self.costly = FairPool(workers) if cost_shares else None
        self._shedding: set[str] = set()  # stations in a run of shed requests (logged once)
        # False: whatever arrives is applied at once, as before per-station order; only the
        # benchmark's baseline uses it (it breaks invariant 6).
        self.ordered = order
        self.connected = threading.Event()
        self._batch_max = batch_max
        # SimpleQueue: the C one, a cheaper hand-off from paho's thread on every message.
        self._inbox: queue.SimpleQueue[paho.MQTTMessage | None] = queue.SimpleQueue()
        # Manual acks (make_client above): PUBACK only after the batch committed (module doc).
        # Back soon after a broker restart, like the stations: a bridge away for paho's default
        # two minutes leaves every station's transactions to the offline policy.
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._connected
        self._client.on_subscribe = self._subscribed
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._received
        self._worker = threading.Thread(target=self._run, name="bridge-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()
        if self.costly is not None:
            self.costly.start()
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
        if self.costly is not None:
            self.costly.stop()
        self._inbox.put(None)
        self._worker.join(10)

    def _connected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                   props: Any = None) -> None:
        self.broker_watch.connected(rc)
        if rc.is_failure:
            return
        client.subscribe([(topics.BRIDGE_TX, 1), (topics.BRIDGE_REQ, 1)])

    def _disconnected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                      props: Any = None) -> None:
        self.connected.clear()
        self.broker_watch.disconnected(rc)

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
        except Exception as exc:  # never let one bad batch stop the bridge
            if self._outage(exc):
                return
            log.exception("bridge step %s failed; left unacknowledged for redelivery",
                          getattr(step, "__name__", step))

    def _outage(self, exc: BaseException) -> bool:
        """True for a database that cannot be used now (down, full, read-only), which is
        said once (store_fault) rather than as a traceback at every step; the stations send
        again what was not answered."""
        key = store_fault(exc)
        if key is None:
            return False
        self.store.down(key, reason=first_line(exc))
        return True

    def _release_due(self) -> None:
        released = self.ledger.release_due()
        # Asked every second, it sees a database come back; but it only reads, so a full or
        # read-only one is cleared only by a write that worked (_take).
        if self.store.reason not in ("store.full", "store.readonly"):
            self.store.up()
        if released:
            self._apply(released)

    def _handle(self, batch: list[paho.MQTTMessage]) -> None:
        taken = time.monotonic()
        txs = [(m, tx) for m in batch if (tx := self._take_in(m)) is not None]
        if hops.HOOKS:  # the benchmark's breakdown only (mqtt/hops.py)
            for m, tx in txs:
                hops.mark("bridge_received", tx.msg_id, m.timestamp)
                hops.mark("bridge_taken", tx.msg_id, taken)
        if txs:
            self._take(txs)

    def _take_in(self, m: paho.MQTTMessage) -> Tx | None:
        """The transaction a message carries, else None once it is dealt with (a request
        answered, a bad message rejected) and PUBACKed. Each message is decoded on its own: a
        bad one is rejected (and acknowledged, so that the broker does not deliver it again)
        without touching the others of its batch."""
        try:
            tx = self._intake(m)
        except (messages.MessageError, topics.TopicError) as exc:
            self._reject(m, getattr(exc, "field", "topic"), str(exc))
            return None
        except Exception as exc:  # a fault on one request must not stop the batch
            if self._outage(exc):  # unanswered: the station asks again or works offline
                self._count("unanswered")
                self._client.ack(m.mid, m.qos)
                return None
            self._reject(m, "error", f"{type(exc).__name__}: {exc}", trace=True)
            return None
        if tx is None:
            self._client.ack(m.mid, m.qos)
        return tx

    def _serve(self, m: paho.MQTTMessage) -> None:
        """A costly request, on the pool: answered (or rejected) and PUBACKed."""
        self._take_in(m)

    def _received(self, client: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        """On paho's network thread: a message over its station's share is dropped here,
        before any queue, so that a flood costs the other stations as little as it can; the
        costly requests go to the pool, the rest to the worker."""
        self.counters.received += 1  # this thread only
        try:
            where = topics.parse(m.topic)
        except Exception:  # a bad topic: the worker rejects it with its reason
            self._inbox.put(m)
            return
        cost = TX_COST
        if self.cost_shares and where.channel == "req":
            cost = request_cost(where.name, m.payload)
        if self._over_share(m, where, share_cost(where.name, cost)):
            return
        if self.costly is not None and where.channel == "req" and cost >= COSTLY:
            self._to_pool(m, where, cost)
        else:
            self._inbox.put(m)

    def _over_share(self, m: paho.MQTTMessage, where: topics.Parsed, cost: int) -> bool:
        """Drop, undecoded, a message over its station's share (PUBACKed unanswered: a
        transaction comes back from the station's outbox, a request times out there)."""
        verdict = self.throttle.take(where.site, where.station, where.channel, cost)
        if verdict is Verdict.OK:
            return False
        with self._counts_lock:
            self.counters.throttled += 1
            if verdict is Verdict.STARTED:
                self.counters.over_share += 1
        if verdict is Verdict.STARTED:
            log.warning("station %s/%s is over its share of %s (a cost of %d at once, %g a "
                        "second after; this one costs %d); its messages are left for it to "
                        "send again", where.site, where.station, where.channel[:8],
                        self.throttle.burst, self.throttle.rate, cost,
                        extra={"station": where.station})
        self._client.ack(m.mid, m.qos)
        return True

    def _to_pool(self, m: paho.MQTTMessage, where: topics.Parsed, cost: int) -> None:
        """Queue a costly request behind its station's own; one of a station with too many
        waiting is PUBACKed unanswered (its request times out at the station)."""
        assert self.costly is not None
        station = f"{where.site}/{where.station}"
        if self.costly.submit(station, cost, functools.partial(self._serve, m)):
            self._shedding.discard(station)  # network thread only: no lock needed
            return
        with self._counts_lock:
            self.counters.shed += 1
        if station not in self._shedding:
            self._shedding.add(station)
            log.warning("station %s has %d costly requests waiting; its next ones are left "
                        "unanswered", station, self.costly.per_station,
                        extra={"station": where.station})
        self._client.ack(m.mid, m.qos)

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def _intake(self, m: paho.MQTTMessage) -> Tx | None:
        """The transaction a message carries; a request is answered here (None)."""
        where = topics.parse(m.topic)
        if where.channel == "tx" and where.name == "tagged":
            self._tagged(m, where)  # a tag written: recorded outside the circulation order
            return None
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
            self._count("unanswered")
            self.unanswered_log.note("request", self.counters.unanswered,
                                     "request %s unanswered: %s", m.topic[:200], exc)
        return None

    def _take(self, txs: list[tuple[paho.MQTTMessage, Tx]]) -> None:
        """Admit in each station's order, apply, then PUBACK. A later transaction waits (held
        in the database, so PUBACKed now and out of the receive window) until its predecessor
        is in; one not applied and not answered is PUBACKed too, so that the broker does not
        hold it in flight: the station's outbox sends it again (same msg_id)."""
        try:
            if not self.ordered:
                self._apply([tx for _, tx in txs])
            else:
                # Admitted and applied in one commit where the ledger can (the embedded
                # store): then nothing held meanwhile follows on from this batch, and no
                # release is due after it.
                admitted, acks = self.ledger.admit_apply([tx for _, tx in txs])
                self._answer_txs(admitted.ready, acks)
                if not self.ledger.admits_with_apply:
                    self._apply(self.ledger.release({key_of(tx) for tx in admitted.ready}))
        except BackendUnavailable as exc:  # nobody's fault: the outboxes send them again
            self.unanswered_log.note("batch", self.counters.unanswered + len(txs),
                                     "batch of %d unanswered: %s", len(txs), exc)
            for m, _ in txs:
                self._count("unanswered")
                self._client.ack(m.mid, m.qos)
            return
        except Exception as exc:
            if self._outage(exc):  # not the messages' fault: the outboxes send them again
                for m, _ in txs:
                    self._count("unanswered")
                    self._client.ack(m.mid, m.qos)
                return
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
        self.store.up()
        for m, _ in txs:
            self._client.ack(m.mid, m.qos)

    def _apply(self, ready: list[Tx]) -> None:
        """Apply, answer after the commit, then whatever that lets through from the held."""
        while ready:
            self._answer_txs(ready, self.ledger.apply(ready))
            ready = self.ledger.release({key_of(tx) for tx in ready}) if self.ordered else []

    def _answer_txs(self, ready: list[Tx], acks: list[messages.AckTx | None]) -> None:
        """Publish the acks of transactions whose ledger rows have committed."""
        if hops.HOOKS:  # the benchmark's breakdown only (mqtt/hops.py)
            for tx in ready:
                hops.mark("ledger_committed", tx.msg_id)
        if ready:
            self.counters.batches += 1
        for tx, ack in zip(ready, acks, strict=True):
            if ack is None:
                self._count("unanswered")
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
            payload = messages.encode(ack)
            if hops.HOOKS:  # handed to paho: what follows is paho's, the broker's, the wire's
                hops.mark("ack_published", tx.msg_id)
            self._client.publish(topics.ack_tx(tx.site, tx.station), payload, qos=1)

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
            res = self.backend.check_patron(req.card_id, pin=req.pin, site=where.site,
                                            station=where.station)
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
            # Only to the stations the central marked (central/offline_policy.py).
            res = offline_policy.answer(self.backend, where.site, where.station, req.page)
        elif isinstance(req, messages.StocktakeReq | messages.StocktakeSeenReq):
            # Staff taking stock: the central's catalogue; on loan, the library system's word
            # too on the items seen. Both of these are costly requests, on the pool
            # (central/costly.py), so the library system's time is never the worker's.
            res = stocktake.answer(self.backend.engine, where.site, where.station, req,
                                   library=self.items)
        elif isinstance(req, messages.ItemReq):
            # Unanswered (BackendUnavailable) when the library system cannot say.
            res = tagging.lookup(self.backend.engine, req.item_id, self.tagging_isil,
                                 library=self.items)
        else:  # a name in REQUESTS with no branch here: a programming error
            raise AssertionError(f"request {where.name} has no handler")
        self._count("requests")
        out = publish_properties(CorrelationData=getattr(props, "CorrelationData", b""))
        self._client.publish(reply_to, messages.encode(res), qos=1, properties=out)


    def _tagged(self, m: paho.MQTTMessage, where: topics.Parsed) -> None:
        """Record a tag a station wrote (central/tagging.py) and answer on ack/tx after the
        commit, so that the station's tagging outbox lets go of it."""
        tx = messages.decode(m.payload, messages.TxTagged)
        assert isinstance(tx, messages.TxTagged)
        if (tx.site, tx.station) != (where.site, where.station):
            raise messages.MessageError("station", "does not match the topic")
        ack = tagging.record(self.backend.engine, tx)
        self._count("repeats" if ack.repeat else "applied")
        self._client.publish(topics.ack_tx(tx.site, tx.station), messages.encode(ack), qos=1)


def store_fault(exc: BaseException) -> str | None:
    """The faults key for a database error that is the database's state, not the message's:
    it cannot be reached, its disk is full, it may not be written; None for anything else.

    Only those: a lock waited on too long, a deadlock, a missing table or a constraint is
    one batch's or one transaction's trouble, which the caller splits and rejects. Said as
    "store down", it would leave a transaction that always fails unanswered (and sent again)
    for ever, blocking the others of its batch, and make the log say down and up in turn."""
    from sqlalchemy import exc as sa

    if isinstance(exc, OSError):  # the SQLite file's folder itself
        if exc.errno == errno.ENOSPC:
            return "store.full"
        return "store.readonly" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) \
            else None
    if not isinstance(exc, sa.DBAPIError):
        return None
    orig = exc.orig
    if exc.connection_invalidated:  # SQLAlchemy saw the connection itself go
        return "store.down"
    import sqlite3

    if isinstance(orig, sqlite3.Error):
        return _sqlite_fault(orig)
    return _postgres_fault(orig)


# SQLite's primary result codes (the low byte of the extended ones).
_SQLITE_FAULTS = {13: "store.full",  # SQLITE_FULL: database or disk is full
                  8: "store.readonly",  # SQLITE_READONLY: attempt to write a readonly database
                  14: "store.readonly",  # SQLITE_CANTOPEN: unable to open database file
                  3: "store.readonly"}  # SQLITE_PERM: access permission denied
# PostgreSQL's SQLSTATEs of the server's state rather than the statement's (class 08, the
# connection, is taken whole).
_POSTGRES_FAULTS = {"57P01": "store.down",  # admin_shutdown: the server is stopping
                    "57P02": "store.down",  # crash_shutdown
                    "57P03": "store.down",  # cannot_connect_now: starting up
                    "53300": "store.down",  # too_many_connections
                    "53100": "store.full",  # disk_full
                    "25006": "store.readonly",  # read_only_sql_transaction: a standby
                    "42501": "store.readonly"}  # insufficient_privilege


def _sqlite_fault(orig: BaseException) -> str | None:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_FAULTS.get(code & 0xFF)
    text = str(orig).lower()  # a Python without the codes on its errors: their words
    if "database or disk is full" in text:
        return "store.full"
    if "readonly database" in text or "unable to open database file" in text:
        return "store.readonly"
    return None


def _postgres_fault(orig: BaseException | None) -> str | None:
    try:
        import psycopg
    except ImportError:  # no PostgreSQL driver: not its error either
        return None
    if not isinstance(orig, psycopg.Error):
        return None
    state = orig.sqlstate
    if state is None:
        # No SQLSTATE: the client's own words, about a connection that failed or was lost
        # ("connection refused", "server closed the connection unexpectedly", "the
        # connection is closed"), unless the connection is still there and fine.
        if not isinstance(orig, psycopg.OperationalError):
            return None
        pgconn = orig.pgconn
        alive = pgconn is not None and pgconn.status == psycopg.pq.ConnStatus.OK
        return None if alive else "store.down"
    if state.startswith("08"):  # connection_exception and its kinds
        return "store.down"
    return _POSTGRES_FAULTS.get(state)


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # the driver's words, without SQLAlchemy's SQL echo
    text = str(orig if orig is not None else exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]

"""What a station's message costs the bridge, and the pool that runs the costly requests
fairly between stations.

A transaction or a plain patron check is a few queries; a PIN check is a key derivation
(central/pin.py: about 50 ms of one core), an offline-list page counts the whole list and
hashes fifty card numbers, an account is several queries (dozens of requests on SIP2). On the
bridge's one worker, in arrival order, a station with stolen credentials sending PIN checks
or list pages made every other station wait behind it: seconds, then tens of seconds.

So the costly requests run beside the worker, on a small pool, and the pool takes its
stations in turn (deficit round robin: each turn is worth QUANTUM, a request is served when
its station's turn still has its cost left). A station's requests queue behind its own only,
never in front of another station's; a station with PER_STATION requests waiting has the
next ones refused (the bridge PUBACKs them unanswered, and the station's request times out,
as over its share: central/throttle.py). One station's requests run one at a time: a flood
never holds more than one of the pool's threads, and a card's wrong PINs from one station are
counted in turn.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Costs, in about a millisecond of the bridge's time (measured on the sample store with 2,000
# patrons: a transaction or a patron check well under 1 ms, an account about 1 ms, an offline
# page 2.5-3.5 ms, a PIN's key derivation 40-60 ms). They are also what a request takes from
# its station's share (central/throttle.py), but for an offline-list page (OFFLINE_PAGE_SHARE):
# a PIN check every few seconds stays within a station's rate, a whole list within its burst.
# The stock-take and item costs are estimates (staff tools, a few stations at most).
TX_COST = 1
PATRON_COST = 1
ACCOUNT_COST = 2
ITEM_COST = ACCOUNT_COST  # a tag's item looked up: a few queries, but a staff tool's flood
OFFLINE_PAGE_COST = 4
STOCKTAKE_COST = 8  # a batch of sightings rebuilds its stock-take's whole report
PIN_COST = 50
COSTLY = ACCOUNT_COST  # from this cost up, a request goes to the pool, not the worker
QUANTUM = PIN_COST  # a station's turn: one PIN check, or a dozen list pages
PER_STATION = 32  # a station's requests waiting in the pool; more is a flood
# What an offline-list page takes from its station's share: a whole list is fetched page
# after page, and at its bridge cost a list past ~25,000 patrons emptied the station's
# burst midway, so that the station started again from page 1 and never got it (its patron
# checks refused meanwhile). The pool still weighs a page at OFFLINE_PAGE_COST.
OFFLINE_PAGE_SHARE = 1

_COSTS = {"account": ACCOUNT_COST, "offline-list": OFFLINE_PAGE_COST, "item": ITEM_COST,
          "stocktake": STOCKTAKE_COST, "stocktake-seen": STOCKTAKE_COST}


def request_cost(name: str, payload: bytes | bytearray) -> int:
    """What a station's request costs, from its topic's name and a look at its payload: a
    patron check with a PIN derives a key. An unreadable payload costs what its topic says
    (the bridge rejects it later, with its reason)."""
    if name == "patron":
        try:
            body = json.loads(payload)
        except ValueError:
            return PATRON_COST
        return PIN_COST if isinstance(body, dict) and body.get("pin") else PATRON_COST
    return _COSTS.get(name, PATRON_COST)


def share_cost(name: str, cost: int) -> int:
    """What a request of `cost` takes from its station's share (central/throttle.py)."""
    return OFFLINE_PAGE_SHARE if name == "offline-list" else cost


def pool_size(cpus: int | None = None, *, remote: bool = False,
              connections: int | None = None) -> int:
    """The embedded store: half the cores, at least one and at most four; the other half
    stays with the transactions and the network thread (a key derivation holds a core,
    without the GIL). A library system (SIP2, Koha) does the work itself and the threads
    mostly wait for it: twice the cores, two to eight, but one fewer than the backend's
    `connections` to it (at least one): the transaction worker always finds one free."""
    n = cpus if cpus is not None else (os.cpu_count() or 1)
    if remote:
        size = max(2, min(8, 2 * n))
        return size if connections is None else max(1, min(size, connections - 1))
    return max(1, min(4, n // 2))


Job = Callable[[], None]


@dataclass
class _Queue:
    jobs: collections.deque[tuple[int, Job]] = field(default_factory=collections.deque)
    deficit: int = 0
    in_turn: bool = False
    running: bool = False  # one of its jobs is running: none other of its runs meanwhile


class FairPool:
    """`workers` threads taking stations' jobs in turn, at most one of a station's at a
    time; `submit` refuses a job of a station with `per_station` jobs waiting already."""

    def __init__(self, workers: int, *, per_station: int = PER_STATION,
                 quantum: int = QUANTUM, name: str = "bridge-costly") -> None:
        if workers < 1 or per_station < 1 or quantum < 1:
            raise ValueError("costly pool: workers, per_station and quantum must be >= 1")
        self.per_station = per_station
        self.quantum = quantum
        self._cond = threading.Condition()
        # Stations with jobs waiting or running; the ring holds those that have one waiting
        # and none running, in turn order.
        self._queues: dict[str, _Queue] = {}
        self._ring: collections.deque[str] = collections.deque()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
                         for n in range(workers)]

    def start(self) -> FairPool:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """The jobs waiting are dropped (their messages were not PUBACKed: the broker gives
        them to another bridge, or to this one again); running ones finish."""
        with self._cond:
            self._stopping = True
            self._queues.clear()
            self._ring.clear()
            self._cond.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout_s)

    def submit(self, station: str, cost: int, job: Job) -> bool:
        """Queue `job` behind `station`'s own; False (and not queued) over its bound."""
        with self._cond:
            if self._stopping:
                return False
            q = self._queues.get(station)
            if q is None:
                q = self._queues[station] = _Queue()
            elif len(q.jobs) >= self.per_station:
                return False
            q.jobs.append((max(1, cost), job))
            if len(q.jobs) == 1 and not q.running:  # it takes its turn again
                self._ring.append(station)
                self._cond.notify()
            return True

    def waiting(self, station: str | None = None) -> int:
        with self._cond:
            if station is not None:
                q = self._queues.get(station)
                return len(q.jobs) if q else 0
            return sum(len(q.jobs) for q in self._queues.values())

    def _next(self) -> tuple[str, Job]:
        """The next job and its station, by turns; called with the lock held and a station in
        the ring. The station leaves the ring until its job is done (_done)."""
        while True:
            station = self._ring[0]
            q = self._queues[station]
            if not q.in_turn:  # a station's turn starts: it may spend a quantum more
                q.in_turn = True
                q.deficit += self.quantum
            cost, job = q.jobs[0]
            if q.deficit < cost:  # its turn is spent: the next station's
                q.in_turn = False
                self._ring.rotate(-1)
                continue
            q.deficit -= cost
            q.jobs.popleft()
            q.running = True
            self._ring.popleft()
            return station, job

    def _done(self, station: str) -> None:
        """Its job done: the station takes its place in the ring again, at the front while
        its turn lasts (its credit kept), else at the back; called with the lock held."""
        q = self._queues.get(station)
        if q is None:  # stopped meanwhile
            return
        q.running = False
        if not q.jobs:  # nothing waiting: no credit kept for later (a burst gets none)
            del self._queues[station]
            return
        if q.in_turn and q.deficit >= q.jobs[0][0]:
            self._ring.appendleft(station)
        else:
            q.in_turn = False
            self._ring.append(station)
        self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ring and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                station, job = self._next()
            try:
                job()
            except Exception:  # a job says what went wrong itself; the pool goes on
                log.exception("costly request failed")
            finally:
                with self._cond:
                    self._done(station)

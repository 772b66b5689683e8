"""`selfcheck chaos`: stations, two bridges and a broker, killed and cut off on a seeded
schedule, then checked: nothing lost, nothing doubled, nothing applied out of order, and every
outcome a reader was shown agrees with the store.

Each station is a real headless station process (`selfcheck station --headless --events`)
with its own reader card and its own books, so the store's final state can be computed from
that station's journaled transactions alone. Readers borrow and return (offline too: returns
under the offline policy, loans against the offline list); meanwhile stations are killed right
after a transaction went out (so while it waits for its ack), bridges and the broker are killed
and started again, and the broker is away for one longer outage. At the end everything is
started again and drained, and the checks read the station journals and the central store.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation

if TYPE_CHECKING:
    from selfcheck.central.backends.store import CirculationStore

SITE = "chaos-lib"
BOOKS = 6  # per station: its own, so its journal alone decides where they end up
FINAL = ("done", "refused", "offline", "unconfirmed")
BRIDGES = ("central-bridge-1", "central-bridge-2")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chaos", help="kill stations, bridges and the broker on a seeded "
                       "schedule, then check nothing was lost, doubled or reordered")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stations", type=int, default=3)
    p.add_argument("--visits", type=int, default=12, help="reader visits per station")
    p.add_argument("--db", help="central database URL (default: a SQLite file in the "
                   "workdir); a postgresql:// database must be empty")
    p.add_argument("--outage", type=float, default=60.0, metavar="SECONDS",
                   help="how long the broker is away once, mid-run")
    p.add_argument("--kills", type=int, default=2,
                   help="kills of each kind (station, bridge, broker)")
    p.add_argument("--order-wait", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--workdir", type=Path, help="journals, logs and the store (default: temp)")
    p.set_defaults(func=run)


@dataclass
class Report:
    seed: int
    stations: int
    transactions: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    outage_s: float = 0.0
    backlog: int = 0  # transactions in the outboxes when the broker came back
    backlog_applied_s: float | None = None  # broker back -> every outbox empty
    shown: Counter[str] = field(default_factory=Counter)  # outcomes readers saw, by status
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)
    wrong_state: list[str] = field(default_factory=list)
    gaps: int = 0
    late: int = 0
    undone: int = 0  # loans made after the reader was told no, checked back in by the station
    drained: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.drained and not (self.lost or self.doubled or self.out_of_order
                                     or self.disagree or self.wrong_state)

    def as_json(self) -> str:
        out = dataclasses.asdict(self)
        out["kills"] = dict(self.kills)
        out["shown"] = dict(self.shown)
        out["ok"] = self.ok
        for name in ("lost", "doubled", "out_of_order", "disagree", "wrong_state"):
            out[name] = {"count": len(out[name]), "first": out[name][:5]}
        return json.dumps(out, ensure_ascii=False)


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = workdir
        self.db = args.db or f"sqlite:///{workdir / 'central.db'}"
        self.report = Report(seed=args.seed, stations=args.stations)
        self.broker = Broker(workdir / "broker")
        self.bridges: dict[str, CentralProcess] = {}
        self.stations: list[HeadlessStation] = []
        self.journals: list[Path] = []
        self.up: list[threading.Event] = []
        self.events: list[list[dict[str, Any]]] = []  # every event of every run of a station
        self.paused = threading.Event()  # set: readers wait (backlog being measured)
        self.finished = threading.Event()  # every reader has made all its visits
        self.faults_over = threading.Event()
        self._readers_left = args.stations
        self._lock = threading.Lock()

    # -- the parts
    def bridge(self, name: str, *, sample: bool = False) -> CentralProcess:
        return CentralProcess(self.broker.address, self.db, client_id=name, sample=sample,
                              sample_patrons=self.args.stations + 1,
                              sample_items=self.args.stations * BOOKS + 10,
                              log=self.workdir / f"{name}.log",
                              order_wait_s=self.args.order_wait)

    def station_config(self, n: int) -> Path:
        journal = self.workdir / f"st-{n + 1}.db"
        self.journals.append(journal)
        cfg = self.workdir / f"st-{n + 1}.toml"
        # Every other station also lends offline, against the list it fetched.
        cfg.write_text(
            f'site = "{SITE}"\nstation = "st-{n + 1}"\nbroker = "{self.broker.address}"\n'
            f'journal = "{journal}"\nack_timeout_s = 3\ninactivity_s = 600\n'
            f'resend_after_s = 5\noffline_loans = {"true" if n % 2 else "false"}\n')
        return cfg

    def start(self) -> None:
        self.broker.start()
        first = self.bridge(BRIDGES[0], sample=True).start(60)
        self.bridges[BRIDGES[0]] = first
        self.bridges[BRIDGES[1]] = self.bridge(BRIDGES[1]).start(60)
        for n in range(self.args.stations):
            st = HeadlessStation(self.station_config(n), log=self.workdir / f"st-{n + 1}.log")
            history: list[dict[str, Any]] = []
            st.on_event = history.append
            self.stations.append(st.start(90))
            self.events.append(history)
            self.up.append(threading.Event())
            self.up[-1].set()

    def stop(self) -> None:
        for st in self.stations:
            st.stop()
        for b in self.bridges.values():
            b.stop()
        self.broker.stop()

    # -- readers
    def reader(self, n: int) -> None:
        rng = random.Random(f"{self.args.seed}-{n}")
        books = [f"49{n * BOOKS + b + 1:06d}" for b in range(BOOKS)]
        lent: set[str] = set()  # what this reader has at home, as the screens said
        made = 0
        # At least --visits each, and on until the last fault is over: faults need traffic.
        while made < self.args.visits or not self.faults_over.is_set():
            made += 1
            while self.paused.is_set():
                time.sleep(0.1)
            self.up[n].wait()
            try:
                self.visit(self.stations[n], rng, n, books, lent)
            except (TimeoutError, OSError):  # the station was killed under the reader
                self.up[n].wait()
        with self._lock:
            self._readers_left -= 1
            if self._readers_left == 0:
                self.finished.set()

    def visit(self, st: HeadlessStation, rng: random.Random, n: int, books: list[str],
              lent: set[str]) -> None:
        """A reader borrows some of the station's books that are in, or returns some that
        are out (as the screens told them), one at a time, then leaves."""
        loan = rng.random() < 0.55 if lent and len(lent) < len(books) else not lent
        mark = st.mark()
        st.send(f"card TN{n + 1:05d}" if loan else "touch return")
        try:
            st.wait_for(lambda e: e.get("mode") in ("borrow", "return"), 8, after=mark)
        except TimeoutError:  # no answer to the card and no offline list: the reader goes
            if st.alive():
                st.send("touch cancel")
            return
        pool = sorted(set(books) - lent) if loan else sorted(lent)
        for book in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
            m = st.mark()
            st.send(f"place {book}")

            def outcome(e: dict[str, Any], book: str = book) -> bool:
                return e.get("item") == book and e.get("status") in FINAL
            try:
                shown = st.wait_for(outcome, 15, after=m)["status"]
            except TimeoutError:
                if not st.alive():
                    raise
                continue
            finally:
                if st.alive():
                    st.send(f"lift {book}")
            if shown in ("done", "offline"):
                (lent.add if loan else lent.discard)(book)
        m = st.mark()
        st.send("touch done", "touch finish")
        try:
            st.wait_for(lambda e: e.get("mode") == "idle", 10, after=m)
        except TimeoutError:
            st.send("touch cancel")

    def log(self, what: str) -> None:
        with open(self.workdir / "chaos.log", "a") as f:
            f.write(f"{time.time():.3f} {what}\n")

    # -- faults
    def kill_station(self) -> None:
        """Kill a station right after a transaction went out: it waits for its ack."""
        n = self.rng.randrange(len(self.stations))
        st = self.stations[n]
        try:
            st.wait_for(lambda e: e.get("status") == "waiting", 10, after=st.mark())
        except TimeoutError:
            pass
        self.up[n].clear()
        st.kill()
        self.report.kills["station"] += 1
        time.sleep(self.rng.uniform(0.2, 1.5))
        st.start(60)
        self.up[n].set()

    def kill_bridge(self) -> None:
        name = self.rng.choice(BRIDGES)
        self.bridges[name].kill()
        self.report.kills["bridge"] += 1
        time.sleep(self.rng.uniform(0.5, 4.0))
        self.bridges[name] = self.bridge(name).start(60)

    def kill_broker(self, away_s: float, *, as_loan_goes_out: bool = False) -> None:
        """With `as_loan_goes_out`: the moment a station's loan is on its way, so that the
        central may commit it while its ack dies with the broker."""
        if as_loan_goes_out:
            marks = [len(history) for history in self.events]  # every run of a station
            end = time.monotonic() + 10
            while time.monotonic() < end and not any(
                    e.get("event") == "tx" and e.get("kind") == "loan"
                    and e.get("status") == "waiting" for n, st in enumerate(self.stations)
                    for e in self.events[n][marks[n]:]):
                time.sleep(0.001)
            time.sleep(self.rng.uniform(0.0, 0.02))
        self.broker.kill()
        self.report.kills["broker"] += 1
        time.sleep(away_s)
        self.broker.start()

    def faults(self) -> None:
        plan = ["station", "bridge", "broker"] * self.args.kills + ["outage"]
        self.rng.shuffle(plan)
        for fault in plan:
            time.sleep(self.rng.uniform(1.0, 4.0))
            if fault == "station":
                self.kill_station()
            elif fault == "bridge":
                self.kill_bridge()
            elif fault == "broker":
                self.kill_broker(self.rng.uniform(0.5, 3.0), as_loan_goes_out=True)
            else:
                self.log("outage starts")
                self.kill_broker(self.args.outage)
                self.log("outage ends")
                self.report.outage_s = self.args.outage
                self.report.backlog_applied_s = self.measure_backlog()

    def measure_backlog(self) -> float | None:
        """From the broker's return until every station's outbox is empty (readers wait)."""
        self.paused.set()
        start = time.monotonic()
        self.report.backlog = sum(outbox_depth(j) for j in self.journals)
        try:
            while time.monotonic() - start < 120 + self.args.order_wait:
                if sum(outbox_depth(j) for j in self.journals) == 0:
                    return round(time.monotonic() - start, 2)
                time.sleep(0.05)
            return None
        finally:
            self.paused.clear()

    # -- the end
    def drain(self) -> bool:
        for n, st in enumerate(self.stations):
            if not st.alive():
                st.start(60)
                self.up[n].set()
        deadline = time.monotonic() + 120 + self.args.order_wait
        while time.monotonic() < deadline:
            if sum(outbox_depth(j) for j in self.journals) == 0:
                return True
            time.sleep(0.2)
        return False

    def save_events(self) -> None:
        for n, history in enumerate(self.events):
            (self.workdir / f"st-{n + 1}.events").write_text(
                "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in history))

    def check(self) -> None:
        from selfcheck.central.backends.store import CirculationStore

        store = CirculationStore(self.db)
        try:
            check_store(store, self.journals, self.events, self.report)
        finally:
            store.close()


def outbox_depth(journal: Path) -> int:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def journal_counts(journal: Path) -> tuple[str, int]:
    """The journal's id and the last sequence number it gave."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        ident = db.execute("SELECT journal FROM identity").fetchone()
        seq = db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
    return (ident[0] if ident else "") or "", int(seq[0]) if seq else 0


def check_store(store: CirculationStore, journals: list[Path],
                events: list[list[dict[str, Any]]], report: Report) -> None:
    """Lost, doubled, out of order, screen against store, and each book's final state."""
    from sqlalchemy import select

    from selfcheck.central.ledger import gaps as order_gaps
    from selfcheck.central.schema import circulation, processed, reconciliation
    from selfcheck.mqtt.messages import AckTx

    with store.engine.connect() as conn:
        rows = conn.execute(select(processed.c.station, processed.c.journal, processed.c.seq,
                                   processed.c.msg_id, processed.c.kind,
                                   processed.c.result)).all()
        effects = conn.execute(select(circulation.c.station, circulation.c.msg_id)
                               .order_by(circulation.c.id)).all()
        reconciled = set(conn.execute(select(reconciliation.c.msg_id)).scalars())
        # loan msg_id -> the compensating return that went through
        undone = set(conn.execute(select(reconciliation.c.compensates).where(
            reconciliation.c.reason == "compensated")).scalars())
    by_station: dict[str, list[Any]] = {}
    for r in rows:
        by_station.setdefault(r.station, []).append(r)
    on_loan = store.on_loan()
    for n, path in enumerate(journals):
        station = f"st-{n + 1}"
        journal, last = journal_counts(path)
        mine = [r for r in by_station.get(station, []) if r.journal == journal]
        report.transactions += last
        seqs = Counter(r.seq for r in mine)
        report.lost += [f"{station} seq {s}" for s in range(1, last + 1) if s not in seqs]
        report.doubled += [f"{station} seq {s}" for s, c in seqs.items() if c > 1]
        # Effects in the order the store made them must follow the journal's order.
        seq_of = {r.msg_id: r.seq for r in mine}
        applied = [seq_of[e.msg_id] for e in effects
                   if e.station == station and e.msg_id in seq_of]
        report.out_of_order += [f"{station} seq {b} after {a}" for a, b in
                                itertools.pairwise(applied) if b < a]
        # The screen against the store.
        results = {r.msg_id: AckTx.model_validate_json(r.result) for r in mine}
        shown: dict[str, dict[str, Any]] = {}
        for e in events[n]:
            if e.get("event") == "tx" and e.get("status") in FINAL:
                shown[e["msg_id"]] = e
        for msg_id, e in shown.items():
            report.shown[f"{e['kind']} {e['status']}"] += 1
            ack = results.get(msg_id)
            if ack is None:
                report.lost.append(f"{station} {e['kind']} {msg_id} shown {e['status']}")
                continue
            said_yes = e["status"] in ("done", "offline")
            if said_yes and not ack.ok and msg_id not in reconciled:
                report.disagree.append(f"{station} {msg_id}: shown {e['status']}, refused")
            if not said_yes and ack.ok and e["kind"] == "loan":
                if msg_id in undone:  # lent after all, then checked back in: as shown
                    report.undone += 1
                else:
                    report.disagree.append(f"{station} {msg_id}: shown {e['status']}, lent")
        # Each book where this station's transactions, in seq order, leave it.
        expected: dict[str, bool] = {}
        for r in sorted(mine, key=lambda r: r.seq):
            ack = results[r.msg_id]
            if ack.ok and r.kind in ("loan", "return"):
                expected[ack.item_id] = r.kind == "loan"
        for item, lent in expected.items():
            if (item in on_loan) != lent:
                report.wrong_state.append(f"{item}: store {'on loan' if item in on_loan else 'in'}"
                                          f", journal order says {'on loan' if lent else 'in'}")
    gaps = order_gaps(store.engine)
    report.gaps = sum(1 for g in gaps if g["kind"] == "gap")
    report.late = sum(1 for g in gaps if g["kind"] == "late")


def chaos(args: argparse.Namespace, workdir: Path) -> Report:
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    run_ = Run(args, workdir)
    try:
        run_.start()
        readers = [threading.Thread(target=run_.reader, args=(n,), daemon=True)
                   for n in range(args.stations)]
        for t in readers:
            t.start()
        run_.faults()
        run_.faults_over.set()
        for t in readers:
            t.join()
        for name, b in list(run_.bridges.items()):
            if not b.alive():
                run_.bridges[name] = run_.bridge(name).start(60)
        run_.report.drained = run_.drain()
    finally:
        run_.stop()
    run_.save_events()
    run_.check()
    run_.report.seconds = round(time.monotonic() - started, 1)
    return run_.report


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="selfcheck-chaos-"))
    report = chaos(args, workdir)
    print(report.as_json())
    return 0 if report.ok else 1

"""Per-station order: the central's effect equals applying each station's journaled
transactions in seq order, whatever arrives first (DESIGN.md invariant 6)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.ledger import Ledger, gaps
from selfcheck.central.ledger.order import HELD_MAX
from selfcheck.central.sample import load_sample
from selfcheck.central.schema import processed
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxReturn
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)
JOURNAL = "0" * 31 + "1"


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CirculationStore]:
    with fresh_db(request.param, tmp_path) as url:
        s = CirculationStore(url)
        s.create()
        load_sample(s, 20, 5)
        yield s
        s.close()


class Txs:
    """One station's transactions, numbered as its journal numbers them."""

    def __init__(self, store: CirculationStore, station: str = "st-1",
                 journal: str | None = JOURNAL) -> None:
        self.ref = store.ref_of("TN00001")
        self.station, self.journal = station, journal
        self.seq = itertools.count(1)

    def loan(self, item: str) -> TxLoan:
        return TxLoan(msg_id=uuid7(), seq=next(self.seq), journal=self.journal, site="s",
                      station=self.station, at=NOW, item_id=item, patron_ref=self.ref,
                      deadline=NOW + dt.timedelta(hours=1))

    def ret(self, item: str, offline: bool = False) -> TxReturn:
        return TxReturn(msg_id=uuid7(), seq=next(self.seq), journal=self.journal, site="s",
                        station=self.station, at=NOW, item_id=item, offline=offline)


def run(store: CirculationStore, order: Ledger, *txs: TxLoan | TxReturn,
        now: dt.datetime = NOW) -> list[str]:
    """What a bridge does with a batch: admit, apply, release; the msg_ids applied."""
    admitted = order.admit(list(txs), now)
    ready, applied = admitted.ready, []
    while ready:
        order.apply(ready, now)
        applied += [t.msg_id for t in ready]
        ready = order.release({(t.site, t.station, t.journal or "") for t in ready}, now)
    return applied


def test_a_return_that_comes_after_the_next_loan_is_applied_before_it(
        store: CirculationStore) -> None:
    order, st = Ledger(store.engine, store), Txs(store)
    loan1, ret2, loan3 = st.loan("49000001"), st.ret("49000001", offline=True), \
        st.loan("49000001")
    assert run(store, order, loan1) == [loan1.msg_id]
    assert run(store, order, loan3) == []  # held: seq 2 has not come
    assert order.held_count() == 1
    assert store.on_loan() == {"49000001": st.ref}
    assert run(store, order, ret2) == [ret2.msg_id, loan3.msg_id]
    assert store.on_loan() == {"49000001": st.ref}  # returned, then borrowed again
    assert order.held_count() == 0 and order.gaps() == []
    kinds = [r["kind"] for r in store.history(["49000001"])]
    assert kinds == ["loan", "return", "loan"]


def test_a_batch_in_any_order_is_applied_in_seq_order(store: CirculationStore) -> None:
    order, st = Ledger(store.engine, store), Txs(store)
    txs = [st.loan("49000002"), st.ret("49000002"), st.loan("49000002"), st.ret("49000002")]
    applied = run(store, order, *reversed(txs))
    assert applied == [t.msg_id for t in txs]
    assert store.on_loan() == {}


def test_a_gap_that_never_fills_is_given_up_after_the_wait_and_recorded(
        store: CirculationStore) -> None:
    order, st = Ledger(store.engine, store, order_wait_s=30), Txs(store)
    loan1, lost2, ret3 = st.loan("49000003"), st.loan("49000004"), st.ret("49000003")
    run(store, order, loan1)
    assert run(store, order, ret3) == []
    assert order.release_due(NOW + dt.timedelta(seconds=29)) == []  # still inside the wait
    released = order.release_due(NOW + dt.timedelta(seconds=31))
    assert [t.msg_id for t in released] == [ret3.msg_id]
    applied(store, released, NOW)
    (gap,) = order.gaps()
    assert (gap["kind"], gap["first_seq"], gap["last_seq"]) == ("gap", 2, 2)
    # The missing one comes at last: applied then, and recorded as late.
    assert run(store, order, lost2) == [lost2.msg_id]
    late = [g for g in order.gaps() if g["kind"] == "late"]
    assert [(g["first_seq"], g["msg_id"]) for g in late] == [(2, lost2.msg_id)]
    assert store.on_loan() == {"49000004": st.ref}
    # A repeat of it is only a repeat, not late again.
    assert run(store, order, lost2) == [lost2.msg_id]
    assert len(order.gaps()) == 2


def test_each_journal_and_station_has_its_own_numbers(store: CirculationStore) -> None:
    order = Ledger(store.engine, store)
    a, b, new = Txs(store, "st-a"), Txs(store, "st-b"), Txs(store, "st-a", journal="f" * 32)
    a1, b1, new1 = a.loan("49000005"), b.loan("49000006"), new.loan("49000007")
    assert sorted(run(store, order, a1, b1, new1)) == sorted([a1.msg_id, b1.msg_id,
                                                             new1.msg_id])
    with store.engine.connect() as conn:
        rows = conn.execute(select(processed.c.station, processed.c.journal, processed.c.seq)
                            .order_by(processed.c.station, processed.c.journal)).all()
    assert [tuple(r) for r in rows] == [("st-a", JOURNAL, 1), ("st-a", "f" * 32, 1),
                                        ("st-b", JOURNAL, 1)]


def test_a_repeat_of_a_station_message_id_from_another_station_is_not_a_repeat(
        store: CirculationStore) -> None:
    a, b = Txs(store, "st-a"), Txs(store, "st-b")
    mine = a.loan("49000008")
    theirs = b.ret("49000008").model_copy(update={"msg_id": mine.msg_id})
    (ack,) = applied(store, [mine], NOW)
    assert ack.ok and not ack.repeat
    (other,) = applied(store, [theirs], NOW)
    assert other.ok and not other.repeat  # applied as its own: the book is back
    assert store.on_loan() == {}


def test_a_station_that_skips_numbers_cannot_fill_the_database(
        store: CirculationStore) -> None:
    order, st = Ledger(store.engine, store), Txs(store)
    next(st.seq)  # seq 1 never comes
    txs = [st.ret("49000009") for _ in range(HELD_MAX + 5)]
    admitted = order.admit(txs, NOW)
    assert len(admitted.held) == HELD_MAX and admitted.ready == []
    assert order.order.counters.refused == 5


# -- the whole path: a station process, a bridge killed and started again

def station_config(path: Path, broker: Broker, journal: Path) -> Path:
    path.write_text(
        f'site = "order-lib"\nstation = "st-order"\nbroker = "{broker.address}"\n'
        f'journal = "{journal}"\nack_timeout_s = 2\ninactivity_s = 600\n')
    return path


def visit(st: HeadlessStation, start: str, mode: str, book: str, outcome: str
          ) -> dict[str, object]:
    """One reader at the station: start, one book on the pad, its outcome, and away."""
    n = st.mark()
    st.send(start)
    st.wait_for(lambda e: e.get("mode") == mode, after=n)
    st.send(f"place {book}")
    event = st.wait_for(lambda e: e.get("item") == book and e.get("status") == outcome,
                        after=n)
    m = st.mark()
    st.send(f"lift {book}", "touch done", "touch finish")
    st.wait_for(lambda e: e.get("mode") == "idle", after=m)
    return event


@pytest.mark.slow
def test_loan_return_offline_then_loan_again_leaves_the_book_on_loan(
        tmp_path: Path, broker: Broker) -> None:
    """Borrow; the only bridge dies; return (accepted offline); the bridge is back; borrow
    again: the book is on loan, the store applied the three in seq order."""
    db = f"sqlite:///{tmp_path / 'central.db'}"
    book = "49000001"
    central = CentralProcess(broker.address, db, sample_items=5, sample_patrons=2).start()
    try:
        cfg = station_config(tmp_path / "station.toml", broker, tmp_path / "journal.db")
        with HeadlessStation(cfg, log=tmp_path / "station.log") as st:
            st.wait_for(lambda e: e.get("online") is True)
            loan1 = visit(st, "card TN00001", "borrow", book, "done")
            central.kill()
            ret2 = visit(st, "touch return", "return", book, "offline")  # no answer in time
            central = CentralProcess(broker.address, db, sample=False).start()
            loan3 = visit(st, "card TN00001", "borrow", book, "done")
            n = st.mark()
            st.send("drain")
            st.wait_for(lambda e: e.get("event") == "drained", 60, after=n)

    finally:
        central.stop()  # the one started last
    assert (loan1["seq"], ret2["seq"], loan3["seq"]) == (1, 2, 3)
    store = CirculationStore(db)
    try:
        assert book in store.on_loan()
        assert [r["kind"] for r in store.history([book])] == ["loan", "return", "loan"]
        assert gaps(store.engine) == []
    finally:
        store.close()

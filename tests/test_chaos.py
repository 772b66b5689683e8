"""`selfcheck chaos`: a short seeded run on SQLite and PostgreSQL, and the checks it makes
shown to catch what they are there for."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.sample import load_sample
from selfcheck.central.schema import circulation, processed
from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.lab.chaos import SITE, Report, chaos, check_store
from selfcheck.mqtt import topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxLoan, TxReturn
from tests.conftest import applied
from tests.dbs import KINDS, fresh_db

NOW = dt.datetime.now(dt.UTC)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_chaos_run_loses_doubles_and_reorders_nothing(kind: str,
                                                              tmp_path: Path) -> None:
    with fresh_db(kind, tmp_path) as url:
        args = argparse.Namespace(seed=7, stations=3, visits=4, db=url, outage=6.0, kills=1,
                                  order_wait=10.0)
        report = chaos(args, tmp_path / "run")
    print(report.as_json())
    assert report.ok, report.as_json()
    assert report.transactions >= 6
    assert report.kills == {"station": 1, "bridge": 1, "broker": 2}  # one is the outage
    assert report.backlog_applied_s is not None


def journal_with(path: Path, store: CirculationStore, kinds: list[str]
                 ) -> tuple[Journal, list[TxLoan | TxReturn]]:
    """A station journal holding these transactions (on book 49000001), as st-1 made them."""
    journal = Journal(path)
    ref = store.ref_of("TN00001")
    made: list[TxLoan | TxReturn] = []
    for kind in kinds:
        def build(seq: int, kind: str = kind) -> TxLoan | TxReturn:
            common = dict(msg_id=uuid7(), seq=seq, journal=journal.journal_id, site=SITE,
                          station="st-1", at=NOW, item_id="49000001")
            if kind == "loan":
                return TxLoan(patron_ref=ref, deadline=NOW + dt.timedelta(hours=1), **common)
            return TxReturn(**common)
        made.append(journal.add(kind, topics.tx(SITE, "st-1", kind), build))
    for tx in made:
        journal.delete(tx.msg_id)  # acked
    return journal, made


def test_the_checks_catch_a_lost_and_a_reordered_transaction(tmp_path: Path) -> None:
    store = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    load_sample(store, 10, 2)
    journal, txs = journal_with(tmp_path / "st-1.db", store, ["loan", "return", "loan"])
    journal.close()
    applied(store, txs, NOW)
    events = [[{"event": "tx", "msg_id": t.msg_id, "kind": "loan" if isinstance(t, TxLoan)
                else "return", "status": "done", "item": t.item_id} for t in txs]]
    clean = Report(seed=0, stations=1)
    check_store(store, [tmp_path / "st-1.db"], events, clean)
    assert clean.transactions == 3 and clean.ok is False  # not drained: the run says so
    clean.drained = True
    assert clean.ok, clean.as_json()

    # The store made the first loan's effect last: out of order.
    with store.engine.begin() as conn:
        conn.execute(update(circulation).where(circulation.c.msg_id == txs[0].msg_id)
                     .values(id=99))
    reordered = Report(seed=0, stations=1, drained=True)
    check_store(store, [tmp_path / "st-1.db"], events, reordered)
    assert reordered.out_of_order and not reordered.ok

    # A transaction the screen showed and the journal numbered never reached the store.
    with store.engine.begin() as conn:
        conn.execute(delete(processed).where(processed.c.msg_id == txs[2].msg_id))
    lost = Report(seed=0, stations=1, drained=True)
    check_store(store, [tmp_path / "st-1.db"], events, lost)
    assert lost.lost == ["st-1 seq 3", f"st-1 loan {txs[2].msg_id} shown done"]
    store.close()


def test_the_checks_catch_a_screen_that_disagrees_with_the_store(tmp_path: Path) -> None:
    store = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    load_sample(store, 10, 2)
    journal, txs = journal_with(tmp_path / "st-1.db", store, ["loan"])
    journal.close()
    applied(store, txs, NOW)  # lent
    events = [[{"event": "tx", "msg_id": txs[0].msg_id, "kind": "loan",
                "status": "unconfirmed", "item": "49000001"}]]  # ...but told it was not
    report = Report(seed=0, stations=1, drained=True)
    check_store(store, [tmp_path / "st-1.db"], events, report)
    assert len(report.disagree) == 1 and not report.ok
    store.close()

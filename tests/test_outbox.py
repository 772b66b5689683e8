"""The outbox sends a station's transactions in journal order: an older one still waiting for
its ack goes out again before a new one, so that the central never waits on a lost one."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.mqtt import topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxReturn, encode
from selfcheck.mqtt.outbox import CATCH_UP_S, Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def add(journal: Journal) -> TxReturn:
    topic = topics.tx("s", "st-1", "return")
    return journal.add("return", topic, lambda seq: TxReturn(
        msg_id=uuid7(), seq=seq, journal=journal.journal_id, site="s", station="st-1",
        at=dt.datetime.now(dt.UTC), item_id=f"4900000{seq}"))


def test_a_new_transaction_goes_out_after_the_older_unacked_ones(tmp_path: Path) -> None:
    journal, clock = Journal(tmp_path / "j.db"), Clock()
    sent: list[int] = []
    up = [True]

    def send(topic: str, payload: bytes) -> bool:
        if up[0]:
            sent.append(TxReturn.model_validate_json(payload).seq)
        return up[0]

    outbox = Outbox(journal, send, resend_after_s=10, clock=clock)
    one, two = add(journal), add(journal)
    outbox.submit(one.msg_id, "t", encode(one))
    outbox.submit(two.msg_id, "t", encode(two))
    assert sent == [1, 2]  # seq 1 went out just now: not again
    clock.now += CATCH_UP_S + 0.1  # seq 1 and 2 got no ack (dropped on the way, say)
    three = add(journal)
    outbox.submit(three.msg_id, "t", encode(three))
    assert sent == [1, 2, 1, 2, 3]
    outbox.on_ack(one.msg_id)
    clock.now += CATCH_UP_S + 0.1
    up[0] = False  # the broker is away: nothing is handed over, nothing counted as sent
    four = add(journal)
    outbox.submit(four.msg_id, "t", encode(four))
    up[0] = True
    five = add(journal)
    outbox.submit(five.msg_id, "t", encode(five))
    assert sent[5:] == [2, 3, 4, 5]
    journal.close()


def test_a_journal_has_an_id_and_keeps_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    ident = journal.journal_id
    assert ident is not None and len(ident) == 32
    add(journal)
    journal.close()
    again = Journal(tmp_path / "j.db")
    assert again.journal_id == ident
    again.close()
    assert Journal(tmp_path / "other.db").journal_id != ident


def test_a_journal_from_before_ids_keeps_none(tmp_path: Path) -> None:
    """Its numbers already run under no id at the central: a new id would restart them."""
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    old.execute("INSERT INTO counters VALUES ('seq', 41)")
    old.commit()
    old.close()
    journal = Journal(tmp_path / "old.db")
    assert journal.journal_id is None
    assert add(journal).seq == 42 and add(journal).journal is None
    journal.close()


def test_each_transaction_says_below_which_seq_the_central_has_acked_them_all(
        tmp_path: Path) -> None:
    """`acked_below`: the lowest seq still waiting in the outbox when it was journalled, for
    the central after a restore of its store (central/ledger/order.py); in the payload as stored."""
    journal = Journal(tmp_path / "j.db")
    one = add(journal)
    assert one.acked_below == 1  # nothing before it
    two = add(journal)
    assert two.acked_below == 1  # 1 still waits
    journal.delete(one.msg_id)
    three = add(journal)
    assert three.acked_below == 2
    journal.delete(two.msg_id)
    journal.delete(three.msg_id)
    four = add(journal)
    assert four.acked_below == 4
    assert [TxReturn.model_validate_json(p).acked_below
            for _, _, p in journal.pending()] == [4]
    assert b'"acked_below":4' in encode(four)
    journal.close()

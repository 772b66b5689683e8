"""The ledger in front of every backend: repeats answered from the stored ack without reaching
the backend, claims shared by several bridges on one database, claims settled by what the
backend says of the unanswered ones, and backends that keep no ledger of their own."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select

from selfcheck.central.backend import Claim, Outcome, Tx
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.ledger import Ledger, open_db, open_engine, refused_offline
from selfcheck.central.schema import processed, sip2_claims
from selfcheck.lab.standins.sip2_server import Item, Library, Patron, running
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import AckTx, TxLoan, TxReturn

NOW = dt.datetime.now(dt.UTC)
seq = iter(range(1, 10**6))


def ret(item: str, **kw: Any) -> TxReturn:
    return TxReturn(**{"msg_id": uuid7(), "seq": next(seq), "site": "s", "station": "st-1",
                       "at": NOW, "item_id": item, **kw})


class Remote:
    """A remote backend that says yes to everything, records what it was given, and can be
    held up (its next call waits for `hold`) or made to give no answer (`down`, `unsure`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lease = dt.timedelta(seconds=30)
        self.calls: list[list[tuple[str, Claim]]] = []
        self.entered = threading.Event()
        self.hold: threading.Event | None = None
        self.down = self.unsure = False
        self.refuse = False

    def apply(self, batch: Sequence[Tx], now: dt.datetime,
              claims: Sequence[Claim]) -> Outcome:
        self.calls.append([(tx.msg_id, c) for tx, c in zip(batch, claims, strict=True)])
        hold, self.hold = self.hold, None
        if hold is not None:
            self.entered.set()
            assert hold.wait(10)
        acks: list[AckTx | None] = [
            None if c == "busy" or self.down else
            AckTx(msg_id=tx.msg_id, ok=not self.refuse, item_id=tx.item_id,
                  reason="refused" if self.refuse else None)
            for tx, c in zip(batch, claims, strict=True)]
        return Outcome(acks, {i for i, a in enumerate(acks) if a is None} if self.unsure
                       else set())

    def check_patron(self, *a: Any, **k: Any) -> Any:
        raise NotImplementedError

    account = offline_list = check_patron

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = open_db(f"sqlite:///{tmp_path / 'central.db'}")
    yield e
    e.dispose()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_repeat_never_reaches_the_backend(engine: Engine) -> None:
    remote = Remote(engine)
    ledger = Ledger(engine, remote)
    tx = ret("1")
    first, copy = ledger.apply([tx, tx])  # a second copy in one batch: the first answers
    (later,) = ledger.apply([tx])
    assert remote.calls == [[(tx.msg_id, "new")]]
    assert first and not first.repeat and copy and copy.repeat and later and later.repeat
    # Keyed by station: another station's message with the same msg_id is not a repeat.
    (theirs,) = ledger.apply([tx.model_copy(update={"station": "st-2"})])
    assert theirs and not theirs.repeat and len(remote.calls) == 2
    assert count(engine, processed) == 2 and count(engine, sip2_claims) == 0


def test_claims_are_shared_by_the_bridges_of_the_group(engine: Engine) -> None:
    """Bridge A is at work on a message when B gets its redelivery: B sends nothing and gives
    no answer; once A has committed, B answers the next resend from the stored ack."""
    remote = Remote(engine)
    a, b = Ledger(engine, remote, owner="a"), Ledger(engine, remote, owner="b")
    tx, other = ret("1"), ret("2", station="st-2")
    remote.hold = hold = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        at_a = pool.submit(a.apply, [tx])
        assert remote.entered.wait(10)
        with engine.connect() as conn:
            assert conn.execute(select(sip2_claims.c.owner)).scalars().all() == ["a"]
        busy, fresh = b.apply([tx, other])
        hold.set()
        (done,) = at_a.result(10)
    assert busy is None and fresh is not None and not fresh.repeat
    assert remote.calls[1] == [(tx.msg_id, "busy"), (other.msg_id, "new")]
    assert done is not None and not done.repeat
    (again,) = b.apply([tx])
    assert again is not None and again.repeat and len(remote.calls) == 2
    assert count(engine, sip2_claims) == 0 and count(engine, processed) == 2


def test_claims_after_no_answer(engine: Engine) -> None:
    """Surely not sent: the claim goes, the next attempt is new. Maybe sent: the claim stays
    with its lease run out, so the next attempt (by any bridge) is told to ask first."""
    remote = Remote(engine)
    ledger = Ledger(engine, remote)
    tx = ret("1")
    remote.down = True
    assert ledger.apply([tx]) == [None] and count(engine, sip2_claims) == 0
    remote.unsure = True
    assert ledger.apply([tx]) == [None] and count(engine, sip2_claims) == 1
    remote.down = remote.unsure = False
    (ack,) = Ledger(engine, remote, owner="other").apply([tx])
    assert ack is not None and ack.ok
    assert [c for call in remote.calls for _, c in call] == ["new", "new", "taken_over"]
    assert count(engine, sip2_claims) == 0


def test_an_offline_refusal_is_recorded_for_reconciliation(engine: Engine) -> None:
    remote = Remote(engine)
    remote.refuse = True
    ledger = Ledger(engine, remote)
    online, offline = ret("1"), ret("2", offline=True)
    ledger.apply([online, offline])
    ledger.apply([offline])  # a repeat records nothing new
    rows = refused_offline(engine)
    assert [(r["msg_id"], r["reason"]) for r in rows] == [(offline.msg_id, "refused")]
    assert ledger.reconciliation(site="s") == rows and ledger.reconciliation(site="x") == []


def test_a_repeat_is_answered_from_the_ledger_with_the_sip2_backend(engine: Engine) -> None:
    lib = Library(patrons={"DG0001": Patron("Nguyễn Văn An")},
                  items={"39000001": Item("Truyện Kiều")})
    with running(lib) as (_server, proxy):
        backend = Sip2Backend(Sip2Config.parse(
            f"sip2://sc:secret@127.0.0.1:{proxy.port}?institution=tv-test&timeout=3"), engine)
        sent: list[int] = []
        send = backend.apply
        backend.apply = lambda batch, now, claims: (  # type: ignore[method-assign]
            sent.append(len(batch)), send(batch, now, claims))[1]
        try:
            ref = backend.check_patron("DG0001").patron_ref
            assert ref is not None
            tx = TxLoan(msg_id=uuid7(), seq=next(seq), site="s", station="st-1", at=NOW,
                        item_id="39000001", patron_ref=ref,
                        deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))
            ledger = Ledger(engine, backend)
            first, copy = ledger.apply([tx, tx])
            (again,) = Ledger(engine, backend, owner="b").apply([tx])  # another bridge
        finally:
            backend.close()
    assert first is not None and first.ok and not first.repeat
    assert copy is not None and copy.repeat and again is not None and again.repeat
    assert again.due == first.due and again.title == first.title == "Truyện Kiều"
    assert sent == [1] and lib.count("11", "39000001") == 1


def test_backends_keep_no_ledger_and_migrate_nothing(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    backend = Sip2Backend(Sip2Config.parse("sip2://sc:secret@127.0.0.1:1?institution=x"), engine)
    backend.close()
    assert inspect(engine).get_table_names() == []  # whoever starts the bridge migrates
    code = ("import sys, selfcheck.central.backends.sip2.backend, "
            "selfcheck.central.backends.koha.backend;"
            "print(sorted(m for m in sys.modules if m in ('selfcheck.central.backends.store',"
            " 'selfcheck.central.batch', 'alembic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

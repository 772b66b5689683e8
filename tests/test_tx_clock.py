"""A transaction's own time against the central's clock, over the real broker and `selfcheck
central` as a process: dated year 1, year 9999 or ten years ahead, a loan is applied at the
central's time (its due date from today), recorded for reconciliation with the station's time,
shown in `central report`, and counted per station for the alerts. A loan done offline two
days ago keeps its own time."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.engine import open_engine
from selfcheck.central.fleet import guard
from selfcheck.central.fleet.state import FleetState
from selfcheck.central.ledger import refused_offline
from selfcheck.central.schema import loans
from selfcheck.central.tx_clock import ClockBounds, judge
from selfcheck.cli import main
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import applied, wait_until

SITE, STATION = "thu-vien-hn", "st-a"
UTC = dt.UTC
NOW = dt.datetime.now(UTC)
WRONG = {  # item -> the station's time
    "39000001": dt.datetime(1, 1, 1, tzinfo=UTC),
    "39000002": dt.datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    "39000003": NOW.replace(year=NOW.year + 10),
}
RIGHT = {"39000004": NOW - dt.timedelta(days=2)}  # an offline loan from before an outage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[tuple[str, str]]:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    metrics = f"127.0.0.1:{_free_port()}"
    proc = CentralProcess(broker.address, db, log=tmp_path / "central.log")
    proc.args += ["--metrics", metrics]
    try:
        proc.start()
        yield db, metrics
    finally:
        proc.stop()


def test_the_bounds() -> None:
    bounds = ClockBounds(past=dt.timedelta(days=30), future=dt.timedelta(minutes=5))
    assert judge(NOW - dt.timedelta(days=29), NOW, bounds) is None
    assert judge(NOW + dt.timedelta(minutes=4), NOW, bounds) is None
    assert judge(NOW - dt.timedelta(days=31), NOW, bounds) == "clock_past"
    assert judge(NOW + dt.timedelta(minutes=6), NOW, bounds) == "clock_future"
    assert judge(WRONG["39000001"], NOW, bounds) == "clock_past"
    assert judge(WRONG["39000002"], NOW, bounds) == "clock_future"


def test_a_wrong_station_clock_is_applied_on_ours_and_reported(
        broker: Broker, central: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Fault: a loan dated year 1, 9999 or ten years ahead was applied as dated (due dates
    and history with it)."""
    db, metrics = central
    store = CirculationStore(db)
    ref = store.ref_of("DG0001")
    acks: dict[str, messages.AckTx] = {}
    link = StationLink(SITE, STATION, broker.address, version="t", next_session=lambda: 1,
                       on_ack=lambda a: acks.update({a.msg_id: a}))
    link.start()
    try:
        assert link.connected.wait(10)
        sent: dict[str, str] = {}
        for seq, (item, at) in enumerate({**WRONG, **RIGHT}.items(), start=1):
            tx = messages.TxLoan(msg_id=uuid7(), seq=seq, site=SITE, station=STATION, at=at,
                                 offline=True, item_id=item, patron_ref=ref,
                                 deadline=NOW + dt.timedelta(minutes=5))
            sent[item] = tx.msg_id
            assert link.send(topics.tx(SITE, STATION, "loan"), messages.encode(tx))
        wait_until(lambda: set(sent.values()) <= set(acks), 30, "the acks")
    finally:
        link.stop()
    assert all(acks[m].ok for m in sent.values())
    with store.engine.connect() as conn:
        made = {r.item_id: r for r in conn.execute(select(loans))}
    store.close()
    after = dt.datetime.now(UTC)
    for item in WRONG:  # our time, and a due date counted from today
        loaned = made[item].loaned_at.replace(tzinfo=UTC)
        assert NOW - dt.timedelta(minutes=1) <= loaned <= after, item
        assert acks[sent[item]].due is not None
        assert abs((acks[sent[item]].due - after.date()).days) <= 31
    assert made["39000004"].loaned_at.replace(tzinfo=UTC) == RIGHT["39000004"]  # kept
    reader = CirculationStore(db)
    try:
        rows = {r["item_id"]: r for r in refused_offline(reader.engine)}
    finally:
        reader.close()
    assert set(rows) == set(WRONG)  # only the wrong ones, for staff to follow up
    assert rows["39000001"]["reason"] == "clock_past"
    assert rows["39000003"]["reason"] == "clock_future"
    assert rows["39000002"]["station_at"].year == 9999
    assert main(["central", "report", "--db", db, "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "0001-01-01" in out and "9999-12-31" in out
    assert "3 transaction(s) dated by a wrong station clock" in out
    assert "0 refused offline transaction(s)" in out  # applied, not refused
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert (f'selfcheck_central_tx_clock_wrong_total{{site="{SITE}",station="{STATION}"}} 3.0'
            in text)
    fleet = FleetState()  # the fleet's alert, from the central's database as it reads it
    engine = open_engine(db)
    try:
        now = dt.datetime.now(UTC).timestamp()
        held = guard.signals(engine, now)
    finally:
        engine.dispose()
    assert held == {(SITE, STATION): {"tx_clock"}}
    guard.apply(fleet, held, now)
    assert fleet.stations[(SITE, STATION)].alerts(now) == ["tx_clock"]


def test_an_offline_loan_refused_and_dated_wrong_is_one_row_with_both(
        store: CirculationStore) -> None:
    """The reconciliation row of an offline loan refused on arrival keeps its refusal, and
    carries the station's wrong time too (one row per transaction)."""
    ref = store.ref_of("DG0001")
    tx = messages.TxLoan(msg_id=uuid7(), seq=1, site=SITE, station=STATION,
                         at=WRONG["39000001"], offline=True, item_id="39000007",
                         patron_ref=ref, deadline=NOW + dt.timedelta(minutes=5))
    (ack,) = applied(store, [tx])
    assert ack is not None and not ack.ok
    (row,) = refused_offline(store.engine)
    assert (row["reason"], row["station_at"].year) == (ack.reason, 1)
    assert row["at"].replace(tzinfo=UTC) >= NOW  # applied, and recorded, on our clock


def test_an_online_loan_from_a_clock_far_behind_keeps_its_wait(
        store: CirculationStore) -> None:
    """Fault: `at` was moved to the central's time but not the deadline, still on the
    station's clock: every online loan of a station 40 days behind was refused as late."""
    ref = store.ref_of("DG0001")
    behind = dt.datetime.now(UTC) - dt.timedelta(days=40)

    def loan(seq: int, item: str, wait: dt.timedelta) -> messages.TxLoan:
        return messages.TxLoan(msg_id=uuid7(), seq=seq, site=SITE, station=STATION, at=behind,
                               offline=False, item_id=item, patron_ref=ref,
                               deadline=behind + wait)

    waits, gave_up = loan(1, "39000001", dt.timedelta(seconds=20)), \
        loan(2, "39000002", dt.timedelta(seconds=-1))
    acks = applied(store, [waits, gave_up])
    assert acks[0].ok, acks[0].reason  # within its 20 s, on our clock
    assert (acks[1].ok, acks[1].reason) == (False, "late")  # its station had given up on it
    with store.engine.connect() as conn:
        assert {r.item_id for r in conn.execute(select(loans))} >= {"39000001"}

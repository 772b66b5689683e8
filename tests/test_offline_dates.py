"""Dates are the day it happened: a loan or return taken offline on Saturday and applied on
Monday reaches the library system dated Saturday, through a real Mosquitto and the central
bridge, over SIP2 (no block = Y, against lab/standins/sip2_server.py, which reads the dates as
Koha's SIP server does) and on the embedded store."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.schema import loans
from selfcheck.lab.broker import Broker
from selfcheck.lab.standins.sip2_server import (
    FINE_PER_DAY,
    LOAN_DAYS,
    Item,
    Library,
    Patron,
    running,
)
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import wait_until
from tests.test_sip2_backend import make

SITE, STATION = "tv-tinh", "st-off"
NOW = dt.datetime.now(dt.UTC)
SATURDAY = NOW - dt.timedelta(days=2)  # taken offline; the central hears of it today


def local18(when: dt.datetime) -> str:
    return when.astimezone().strftime("%Y%m%d    %H%M%S")


def local_day(when: dt.datetime) -> dt.date:
    return when.astimezone().date()


def loan(seq: int, item: str, ref: str, at: dt.datetime, offline: bool) -> messages.TxLoan:
    return messages.TxLoan(msg_id=uuid7(), seq=seq, site=SITE, station=STATION, at=at,
                           item_id=item, patron_ref=ref, offline=offline,
                           deadline=at + dt.timedelta(seconds=30))


def ret(seq: int, item: str, at: dt.datetime, offline: bool) -> messages.TxReturn:
    return messages.TxReturn(msg_id=uuid7(), seq=seq, site=SITE, station=STATION, at=at,
                             item_id=item, offline=offline)


class Station:
    """The station's link: sends transactions, collects their acks."""

    def __init__(self, broker: Broker) -> None:
        self.acks: dict[str, messages.AckTx] = {}
        self.link = StationLink(SITE, STATION, broker.address, version="t",
                                next_session=lambda: 1,
                                on_ack=lambda a: self.acks.update({a.msg_id: a}))
        self.link.start()
        assert self.link.connected.wait(10)

    def send(self, *txs: messages.TxLoan | messages.TxReturn) -> list[messages.AckTx]:
        for tx in txs:
            kind = "loan" if isinstance(tx, messages.TxLoan) else "return"
            assert self.link.send(topics.tx(SITE, STATION, kind), messages.encode(tx))
        wait_until(lambda: all(tx.msg_id in self.acks for tx in txs), 20, "the acks")
        return [self.acks[tx.msg_id] for tx in txs]


@pytest.fixture
def station(broker: Broker) -> Iterator[Station]:
    s = Station(broker)
    yield s
    s.link.stop()


def test_the_sip2_frames_carry_no_block_and_the_local_day() -> None:
    """Koha reads 09 and 11 dates by position as its own local time: in Vietnam (UTC+7) a
    return at 06:30 on Sunday sent in UTC would be taken for one on Saturday."""
    sunday_0630 = dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.UTC)
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Ho_Chi_Minh"
    time.tzset()
    try:
        checkin = m.checkin("tv", "39000001", "tang-1", sunday_0630, no_block=True)
        checkout = m.checkout("tv", "DG0001", "39000001", sunday_0630, no_block=True)
        online = m.checkin("tv", "39000001", "tang-1", sunday_0630)
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    day = "20261122    063000"
    assert checkin.fixed == "Y" + day + day
    assert checkout.fixed == "YY" + day + day  # renewal policy, no block, both dates
    assert online.fixed == "N" + day + day


def sip2_library() -> Library:
    due = local_day(SATURDAY)  # both loans fall due on Saturday
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An")},
        items={"39000001": Item("Truyện Kiều"), "39000002": Item("Số đỏ", hold_queue=1),
               "39000003": Item("Dế Mèn phiêu lưu ký", charged_to="DG0001", due=due),
               "39000004": Item("Tắt đèn", charged_to="DG0001", due=due)})


@pytest.fixture
def sip2(tmp_path: Path, broker: Broker) -> Iterator[tuple[Sip2Backend, Library]]:
    lib = sip2_library()
    with running(lib) as (_server, proxy):
        backend = make(tmp_path, proxy)
        bridge = Bridge(backend, broker.address)
        bridge.start()
        assert bridge.connected.wait(10)
        yield backend, lib
        bridge.stop()
        backend.close()


def sent(lib: Library, item: str) -> Any:
    """The 11 or 09 for `item` as the server parsed our frame."""
    (req,) = [r for r in lib.circulation if r.item_identifier == item]
    return req


def test_an_offline_return_reaches_sip2_dated_the_day_it_happened(
        sip2: tuple[Sip2Backend, Library], station: Station) -> None:
    _, lib = sip2
    now = dt.datetime.now(dt.UTC)
    offline, online = station.send(ret(1, "39000003", SATURDAY, offline=True),
                                   ret(2, "39000004", now, offline=False))
    assert offline.ok and online.ok
    req = sent(lib, "39000003")
    assert (req.no_block, req.transaction_date, req.return_date) == (
        "Y", local18(SATURDAY), local18(SATURDAY))
    assert lib.items["39000003"].returned_on == local_day(SATURDAY)
    req = sent(lib, "39000004")
    assert req.no_block == "N" and lib.items["39000004"].returned_on == local_day(now)
    # Returned on its due date: no fine. The one brought back today is two days late.
    assert lib.patrons["DG0001"].fines == [("Trả sách quá hạn: Tắt đèn", 2 * FINE_PER_DAY)]


def test_an_offline_loan_reaches_sip2_with_no_block_and_its_day(
        sip2: tuple[Sip2Backend, Library], station: Station) -> None:
    backend, lib = sip2
    ref = backend.check_patron("DG0001").patron_ref
    assert ref
    plain, held = station.send(loan(1, "39000001", ref, SATURDAY, offline=True),
                               loan(2, "39000002", ref, SATURDAY, offline=True))
    assert plain.ok and held.ok  # no block: the reader has the books, the hold waits
    for item in ("39000001", "39000002"):
        req = sent(lib, item)
        assert (req.no_block, req.transaction_date, req.nb_due_date) == (
            "Y", local18(SATURDAY), local18(SATURDAY))
        it = lib.items[item]
        assert it.charged_to == "DG0001"
        assert it.due == local_day(SATURDAY) + dt.timedelta(days=LOAN_DAYS)


def test_the_store_lends_and_returns_offline_as_of_the_day_it_happened(
        store: CirculationStore, bridge: Bridge, station: Station) -> None:
    ref = store.ref_of("DG0001")  # adult: 14 days
    # the online loan below needs the session a patron check opens (central/sessions.py)
    check = station.link.request("patron", messages.PatronCheckReq(card_id="DG0001")).result(10)
    assert isinstance(check, messages.PatronCheckRes) and check.patron_ref == ref
    sunday = NOW - dt.timedelta(days=1)
    acks = station.send(loan(1, "39000001", ref, SATURDAY, offline=True),
                        loan(2, "39000002", ref, SATURDAY, offline=True),
                        ret(3, "39000002", sunday, offline=True),
                        # now, not when the module was imported: within its deadline and
                        # the session the check above opened
                        loan(4, "39000003", ref, dt.datetime.now(dt.UTC), offline=False))
    assert [(a.ok, a.reason) for a in acks] == [(True, None)] * 4
    assert acks[0].due == SATURDAY.date() + dt.timedelta(days=14)
    with store.engine.connect() as conn:
        rows = {r.item_id: r for r in conn.execute(select(loans))}
    assert rows["39000001"].due == SATURDAY.date() + dt.timedelta(days=14)
    loaned_at = rows["39000001"].loaned_at
    assert loaned_at.replace(tzinfo=loaned_at.tzinfo or dt.UTC) == SATURDAY
    assert rows["39000003"].due == dt.datetime.now(dt.UTC).date() + dt.timedelta(days=14)
    assert "39000002" not in rows
    (back,) = [r for r in store.history(["39000002"]) if r["kind"] == "return"]
    assert back["at"].replace(tzinfo=back["at"].tzinfo or dt.UTC) == sunday

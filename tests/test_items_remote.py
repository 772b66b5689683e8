"""Item look-ups through the library system (tagging's req/item, stock-takes' on loan) when
the central runs on SIP2 or Koha: against the pysip2 server (lab/standins/sip2_server.py, answering
17 as Koha's SIP server does) and the Koha stand-in (lab/standins/koha_standin.py, matching loosely
as Koha does), over one library; the central's catalogue is an older import of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, insert

from selfcheck.central import stocktake, tagging
from selfcheck.central.backend import BackendUnavailable
from selfcheck.central.backends.koha.backend import KohaBackend
from selfcheck.central.backends.sip2 import messages as m
from selfcheck.central.backends.sip2.backend import Sip2Backend
from selfcheck.central.backends.sip2.client import Sip2Config
from selfcheck.central.bridge import Bridge
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.ledger import open_db
from selfcheck.central.schema import items
from selfcheck.central.stocktake import Stocktakes
from selfcheck.lab.broker import Broker
from selfcheck.lab.standins.koha_standin import Fault, KohaExtra, KohaStandIn, koha_running
from selfcheck.lab.standins.sip2_server import FaultProxy, Item, Library, Patron, running
from selfcheck.mqtt import messages
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.station_link import StationLink
from tests.test_koha_backend import make as make_koha
from tests.test_sip2_backend import make as make_sip2

SITE = "tv-tinh"
TODAY = dt.date.today()
SHELF = messages.Place(kind="shelf", value="A1")


def library() -> Library:
    return Library(
        patrons={"DG0001": Patron("Nguyễn Văn An")},
        items={"39000001": Item("Truyện Kiều"),
               "3900012": Item("Lão Hạc"),  # a barcode inside another's
               "39000120": Item("Số đỏ"),
               "39000010": Item("Chí Phèo", charged_to="DG0001",
                                due=TODAY + dt.timedelta(days=7)),
               # Koha's SIP2: lost before charged (12); the loan shows by its due date only
               "39000011": Item("Vợ nhặt", charged_to="DG0001",
                                due=TODAY - dt.timedelta(days=40), lost=True),
               "39000012": Item("Tắt đèn", damaged=True, home="TVHUYEN")})


def catalogue(engine: Engine) -> None:
    """The central's import: older than the library system (its titles too), and with a
    book the library system has since withdrawn (39000099)."""
    rows = [{"item_id": i, "title": f"(cũ) {i}", "sort_bin": "A1", "home_site": SITE,
             "not_for_loan": i == "39000120"}
            for i in ("39000001", "3900012", "39000120", "39000010", "39000011",
                      "39000099")]
    with engine.begin() as conn:
        conn.execute(insert(items), rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seen(sid: str, ids: list[str]) -> messages.StocktakeSeenReq:
    return messages.StocktakeSeenReq(
        stocktake_id=sid, batch_id=uuid7(), at=dt.datetime.now(dt.UTC),
        tags=[messages.SeenEntry(uid=f"E0040150{n:08X}", item_id=i)
              for n, i in enumerate(ids)])


def take_stock(engine: Engine, backend: Sip2Backend | None,
               ids: list[str]) -> tuple[messages.StocktakeSeenRes, str]:
    opened = stocktake.answer(engine, SITE, "st-1",
                              messages.StocktakeReq(action="open", place=SHELF),
                              library=backend)
    assert isinstance(opened, messages.StocktakeRes) and opened.stocktake is not None
    sid = opened.stocktake.stocktake_id
    res = stocktake.answer(engine, SITE, "st-1", seen(sid, ids), library=backend)
    assert isinstance(res, messages.StocktakeSeenRes) and res.ok
    return res, sid


# -- SIP2
@pytest.fixture
def sip(tmp_path: Path) -> Iterator[tuple[Sip2Backend, Library, FaultProxy]]:
    lib = library()
    with running(lib) as (_server, proxy):
        backend = make_sip2(tmp_path, proxy)
        catalogue(backend.engine)
        yield backend, lib, proxy
        backend.close()


def test_sip2_unknown_item_as_koha_answers_it(
        sip: tuple[Sip2Backend, Library, FaultProxy]) -> None:
    backend, _, _ = sip
    reply = backend.pool.call(m.item_information("tv-test", "39999999",
                                                 dt.datetime.now(dt.UTC)), idempotent=True)
    # Koha: "010101", the barcode echoed, an empty title, and no screen message
    assert (reply.fixed[:6], reply.get("AB"), reply.get("AJ"), reply.all("AF")) == (
        "010101", "39999999", "", [])
    assert m.item(reply).known is False
    damaged = m.item(backend.pool.call(m.item_information(
        "tv-test", "39000012", dt.datetime.now(dt.UTC)), idempotent=True))
    # also 01, but a known item: its title and its home branch (AQ)
    assert (damaged.circulation_status, damaged.known, damaged.permanent_location,
            damaged.text.screen) == ("01", True, "TVHUYEN", ("Item is damaged",))


def test_sip2_tagging_asks_the_library_system(
        sip: tuple[Sip2Backend, Library, FaultProxy]) -> None:
    backend, _, _ = sip
    engine = backend.engine
    tagging.set_parts(engine, "39000001", 3, owner_isil="VN-HN0001")
    res = tagging.lookup(engine, "39000001", "VN-DEFAULT", library=backend)
    assert (res.ok, res.title, res.parts_in_item, res.owner_isil, res.home_site) == (
        True, "Truyện Kiều", 3, "VN-HN0001", SITE)  # the title the library system has now
    # not for loan: SIP2 does not say, the catalogue does
    nfl = tagging.lookup(engine, "39000120", library=backend)
    assert (nfl.title, nfl.not_for_loan, nfl.owner_isil) == ("Số đỏ", True, None)
    # a barcode that is the start of another's is its own item
    assert tagging.lookup(engine, "3900012", library=backend).title == "Lão Hạc"
    # known to the library system, not imported yet: still tagged, as one part
    new = tagging.lookup(engine, "39000012", "VN-DEFAULT", library=backend)
    assert (new.ok, new.title, new.parts_in_item, new.owner_isil, new.home_site) == (
        True, "Tắt đèn", 1, "VN-DEFAULT", None)
    # in the old import, gone from the library system: refused
    gone = tagging.lookup(engine, "39000099", library=backend)
    assert (gone.ok, gone.reason) == (False, "unknown_item")
    assert tagging.lookup(engine, "3900000", library=backend).reason == "unknown_item"
    # the embedded path, unchanged: the catalogue's
    assert tagging.lookup(engine, "39000099").ok


def test_sip2_stocktake_asks_whether_seen_items_are_on_loan(
        sip: tuple[Sip2Backend, Library, FaultProxy]) -> None:
    backend, lib, _ = sip
    engine = backend.engine
    res, sid = take_stock(engine, backend, ["39000001", "39000010", "39000011", "X1"])
    # the central's loans table knows none of these loans (made at a desk)
    assert {b.item_id: b.verdict for b in res.books} == {
        "39000001": "found", "39000010": "on_loan", "39000011": "on_loan", "X1": "unknown"}
    assert res.stocktake is not None and res.stocktake.on_loan == 2
    report = Stocktakes(engine, backend).report(sid)
    assert (report.on_loan_from, report.note) == ("library", None)
    assert sorted(x.item_id or "" for x in report.of("on_loan")) == ["39000010", "39000011"]
    # the console asks no library system: what the station was told, kept with the sightings
    console = Stocktakes(engine).report(sid)
    assert (console.counts()["on_loan"], console.on_loan_from) == (2, "library")
    # the next stack costs the library system its own books, not every book seen again
    before = len(lib.asked)
    more = stocktake.answer(engine, SITE, "st-2", seen(sid, ["3900012", "39000120"]),
                            library=backend)
    assert isinstance(more, messages.StocktakeSeenRes) and more.stocktake is not None
    assert more.stocktake.on_loan == 2 and more.stocktake.seen == 6
    assert sorted(lib.asked[before:]) == ["3900012", "39000120"]


def test_sip2_down(tmp_path: Path) -> None:
    backend = Sip2Backend(Sip2Config.parse(
        f"sip2://sc:secret@127.0.0.1:{free_port()}?institution=tv-test&timeout=1&pool=2"),
        open_db(f"sqlite:///{tmp_path / 'c.db'}"))
    try:
        catalogue(backend.engine)
        assert backend.item_info("39000001") is None
        with pytest.raises(BackendUnavailable):  # unanswered: the station's "no answer"
            tagging.lookup(backend.engine, "39000001", library=backend)
        res, sid = take_stock(backend.engine, backend, ["39000001", "39000010"])
        assert [b.verdict for b in res.books] == ["found", "found"]  # the loans table's
        report = Stocktakes(backend.engine, backend).report(sid)
        assert report.on_loan_from == "fallback"
        assert report.note is not None and "did not answer" in report.note
    finally:
        backend.close()


# -- Koha
@pytest.fixture
def koha(tmp_path: Path) -> Iterator[tuple[KohaBackend, Library, KohaStandIn]]:
    lib = library()
    with running(lib) as (_server, proxy), \
            koha_running(lib, KohaExtra(not_for_loan={"39000001"})) as standin:
        backend = make_koha(tmp_path, standin, proxy, branches=f"{SITE}:TVTINH")
        catalogue(backend.engine)
        yield backend, lib, standin
        backend.close()
        assert standin.violations == []


def test_koha_tagging_asks_koha_by_exact_barcode(
        koha: tuple[KohaBackend, Library, KohaStandIn]) -> None:
    backend, _, standin = koha
    engine = backend.engine
    res = tagging.lookup(engine, "39000001", library=backend)
    assert (res.ok, res.title, res.home_site, res.not_for_loan) == (
        True, "Truyện Kiều", SITE, True)  # Koha's not-for-loan, the site of its branch
    # Koha's list would give "39000120" too for "3900012" (LIKE '%3900012%')
    assert tagging.lookup(engine, "3900012", library=backend).title == "Lão Hạc"
    # ... and every 390000xx for "3900000": none is it
    assert tagging.lookup(engine, "3900000", library=backend).reason == "unknown_item"
    assert tagging.lookup(engine, "39000099", library=backend).reason == "unknown_item"
    item_queries = [q for t, q in standin.queries if t == "/items"]
    assert item_queries and all(q.get("_match") == "exact" for q in item_queries
                                if "external_id" in q)


def test_koha_stocktake_and_koha_down(
        koha: tuple[KohaBackend, Library, KohaStandIn], monkeypatch: pytest.MonkeyPatch,
        broker: Broker) -> None:
    backend, _, standin = koha
    engine = backend.engine
    res, sid = take_stock(engine, backend, ["39000001", "39000010", "3900012"])
    assert {b.item_id: b.verdict for b in res.books} == {
        "39000001": "found", "39000010": "on_loan", "3900012": "found"}
    assert Stocktakes(engine, backend).report(sid).on_loan_from == "library"
    standin.faults.append(Fault(route="/items", status=503, times=1000))
    assert backend.item_info("39000001") is None
    with pytest.raises(BackendUnavailable):
        tagging.lookup(engine, "39000001", library=backend)
    # what Koha said of the books seen is kept with them
    assert Stocktakes(engine, backend).report(sid).on_loan_from == "library"
    monkeypatch.setattr(stocktake, "SAID_FOR_S", 0.0)  # and minutes later, a stack: unasked
    late = stocktake.answer(engine, SITE, "st-1", seen(sid, ["39000011"]), library=backend)
    assert isinstance(late, messages.StocktakeSeenRes)
    assert [b.verdict for b in late.books] == ["found"]  # the loans table's word
    report = Stocktakes(engine, backend).report(sid)
    assert report.on_loan_from == "fallback" and report.note is not None
    assert "1 of the books seen" in report.note
    assert [x.item_id for x in report.of("on_loan")] == ["39000010"]
    console = Stocktakes(engine).report(sid)
    assert (console.on_loan_from, console.counts()["on_loan"]) == ("partial", 1)
    # the operators' page says so, in both languages
    svc = FleetService(broker.address, engine.url.render_as_string(hide_password=False),
                       flush_s=0.2)
    svc.start()
    try:
        en = requests.get(f"{svc.url}/stocktake/{sid}?lang=en", timeout=10).text
        assert "For 1 of the books seen the library system was not asked" in en
        vi = requests.get(f"{svc.url}/stocktake/{sid}", timeout=10).text
        assert "Với 1 cuốn đã quét, hệ thống thư viện chưa được hỏi" in vi
    finally:
        svc.stop()
    standin.faults.clear()


def test_bridge_answers_item_requests_through_the_library_system(
        tmp_path: Path, broker: Broker,
        sip: tuple[Sip2Backend, Library, FaultProxy]) -> None:
    """req/item and req/stocktake-seen through the bridge (its pool of costly requests);
    the library system down: req/item is left unanswered, as for the other requests."""
    backend, _, _ = sip
    bridge = Bridge(backend, broker.address)
    bridge.start()
    link = StationLink(SITE, "st-1", broker.address, version="t", next_session=lambda: 1,
                       on_ack=lambda a: None)
    link.start()
    try:
        assert bridge.connected.wait(10) and link.connected.wait(10)
        res = link.request("item", messages.ItemReq(item_id="39000001")).result(10)
        assert isinstance(res, messages.ItemRes) and res.title == "Truyện Kiều"
        res = link.request("item", messages.ItemReq(item_id="39000099")).result(10)
        assert isinstance(res, messages.ItemRes) and res.reason == "unknown_item"
        opened = link.request("stocktake", messages.StocktakeReq(action="open", place=SHELF)
                              ).result(10)
        assert isinstance(opened, messages.StocktakeRes) and opened.stocktake is not None
        got = link.request("stocktake-seen", seen(opened.stocktake.stocktake_id,
                                                  ["39000010"])).result(10)
        assert isinstance(got, messages.StocktakeSeenRes)
        assert [b.verdict for b in got.books] == ["on_loan"]
        # the library system gone: none of the connections the pool had, and no new one
        backend.pool.close()
        backend.pool.cfg = dataclasses.replace(backend.pool.cfg, port=free_port())
        before = bridge.counters.unanswered
        with pytest.raises(FutureTimeout):
            link.request("item", messages.ItemReq(item_id="39000001"), 3).result(3)
        assert bridge.counters.unanswered == before + 1
    finally:
        link.stop()
        bridge.stop()

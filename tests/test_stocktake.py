"""Taking stock of a shelf through the real station: the 3M 810 simulator speaking its frames
on a socket, the station runtime with its pad driver from config, a real Mosquitto, the
central bridge and the embedded store.

Shelf A1 holds S01..S12 in the catalogue; S11 and S12 are on loan. Staff at station one count
a first stack and pause; station two takes the same shelf up, counts while the central is
away (the batch waits in its stock-take journal and goes when a bridge is back), then the rest,
and closes. The report: 7 found, 3 missing (S08..S10), 2 misplaced (B01, B02 from shelf B2),
1 on loan but seen (S12; S11, on loan and not seen, is not missing), 1 unknown tag.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.stocktake import Stocktakes
from selfcheck.drivers.pad.simulators import SIMULATORS, PadSimulator
from selfcheck.drivers.tags import iso28560_3
from selfcheck.kiosk.runtime.devices import open_devices
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.runtime.stocktake import StationStocktake
from selfcheck.kiosk.settings import load_settings
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages

SITE = "thu-vien-dev"
SLIX_BYTES = 112
SHELF = messages.Place(kind="shelf", value="A1")


def uid(item_id: str) -> bytes:
    return bytes.fromhex(f"E004015{sum(map(ord, item_id)) * 7919 % 0xFFFFFFFFF:09X}")


def memory(item_id: str) -> bytes:
    return iso28560_3.encode(item_id, owner_isil="VN-HN0001").ljust(SLIX_BYTES, b"\x00")


@pytest.fixture
def central(tmp_path: Path) -> CirculationStore:
    store = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    store.create()
    store.add_rules([{"category": "adult", "loan_days": 14, "max_loans": 5}])
    store.add_patrons([{"card_id": "DG0001", "name": "Nguyễn Văn An", "category": "adult"}])
    shelf = [{"item_id": f"S{n:02d}", "title": f"Sách kệ A1 số {n}", "sort_bin": "A1",
              "call_number": f"895.9 N{n:02d}", "home_site": SITE} for n in range(1, 13)]
    other = [{"item_id": f"B{n:02d}", "title": f"Sách kệ B2 số {n}", "sort_bin": "B2",
              "call_number": f"100 B{n:02d}", "home_site": SITE} for n in range(1, 4)]
    store.add_items(shelf + other)
    now = dt.datetime.now(dt.UTC)
    ref = store.ref_of("DG0001")
    store.add_loans([{"item_id": i, "patron_ref": ref, "loaned_at": now,
                      "due": now.date() + dt.timedelta(days=14)} for i in ("S11", "S12")])
    return store


def config(path: Path, station: str, broker: Broker, sim: PadSimulator, journal: Path) -> Path:
    path.write_text(
        f'site = "{SITE}"\nstation = "{station}"\nbroker = "{broker.address}"\n'
        f'journal = "{journal}"\npad = "3m810"\npad_url = "{sim.url}"\n'
        'pad_options = { timeout = 1.0 }\ncard_reader = "sim"\nresend_after_s = 1.0\n',
        encoding="utf-8")
    return path


async def until(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stack(sim: PadSimulator, st: StationStocktake, items: list[str]) -> None:
    """Lay a stack on the pad, wait until the station has seen every tag, lift it."""
    for i in items:
        sim.place(uid(i), memory(i))
    uids = {uid(i).hex().upper() for i in items}
    await until(lambda: st.run.on_pad == len(items) and uids <= set(st.run.books))
    sim.clear()
    await until(lambda: st.run.on_pad == 0)


def run_station(cfg: Path, scenario: Callable[[StationRuntime], object]) -> None:
    settings = load_settings(cfg)
    pad, card = open_devices(settings.config.devices)

    async def main() -> None:
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        try:
            await until(lambda: rt.view().online)
            await scenario(rt)  # type: ignore[misc]
        finally:
            rt.stop()
            await task

    try:
        asyncio.run(main())
    finally:
        pad.close()


def test_a_shelf_taken_stock_of_over_two_stations(tmp_path: Path, broker: Broker,
                                                  central: CirculationStore) -> None:
    bridge = Bridge(central, broker.address, client_id="central-bridge-1")
    bridge.start()
    assert bridge.connected.wait(10)
    stocktake_id = ""

    async def first(rt: StationRuntime) -> None:
        nonlocal stocktake_id
        st = rt.stocktake
        places = await asyncio.to_thread(st.places)
        assert places is not None and places.ok
        assert [(p.place.kind, p.place.value, p.items) for p in places.places] == [
            ("shelf", "A1", 12), ("shelf", "B2", 3), ("collection", SITE, 15)]
        res = await asyncio.to_thread(st.begin, SHELF)
        assert res is not None and res.ok and res.stocktake is not None
        assert res.stocktake.expected == 12 and res.stocktake.seen == 0
        stocktake_id = res.stocktake.stocktake_id
        assert st.active
        await stack(sim1, st, ["S01", "S02", "S03", "S04", "B01"])
        await until(lambda: st.run.waiting == 0 and st.unsent == 0)
        verdicts = {b.item_id: (b.verdict, b.title) for b in st.run.books.values()}
        assert verdicts["S01"] == ("found", "Sách kệ A1 số 1")
        assert verdicts["B01"] == ("misplaced", "Sách kệ B2 số 1")
        # The same books again (a stack laid twice): nothing new is sent or counted.
        await stack(sim1, st, ["S01", "S02"])
        assert st.info is not None and st.info.seen == 5
        assert await asyncio.to_thread(st.pause)
        assert not st.active
        assert not central.history(), "no loan or return came of the stock-take"

    with SIMULATORS["3m810"](listen="127.0.0.1:0") as sim1:
        run_station(config(tmp_path / "one.toml", "st-one", broker, sim1,
                           tmp_path / "one.db"), first)
    assert Stocktakes(central.engine).report(stocktake_id).status == "paused"

    async def second(rt: StationRuntime) -> None:
        nonlocal bridge
        st = rt.stocktake
        places = await asyncio.to_thread(st.places)
        assert places is not None
        assert [g.stocktake_id for g in places.going] == [stocktake_id]
        res = await asyncio.to_thread(st.begin, SHELF)  # the paused one, taken up
        assert res is not None and res.stocktake is not None
        assert res.stocktake.stocktake_id == stocktake_id and res.stocktake.seen == 5
        # The central goes away: the stack is journaled and waits.
        await asyncio.to_thread(bridge.stop)
        await stack(sim2, st, ["S05", "S06", "S07"])
        await asyncio.sleep(1.5)  # a resend or two, unanswered
        assert st.unsent == 1 and st.run.waiting == 3
        bridge = Bridge(central, broker.address, client_id="central-bridge-2")
        bridge.start()
        assert await asyncio.to_thread(bridge.connected.wait, 10)
        await until(lambda: st.unsent == 0 and st.run.waiting == 0)
        await stack(sim2, st, ["S12", "B02", "X999"])
        await until(lambda: st.unsent == 0 and st.run.waiting == 0)
        verdicts = {b.item_id: b.verdict for b in st.run.books.values()}
        assert verdicts == {"S05": "found", "S06": "found", "S07": "found",
                            "S12": "on_loan", "B02": "misplaced", "X999": "unknown"}
        closed = await asyncio.to_thread(st.close)
        assert closed is not None and closed.ok and closed.stocktake is not None
        assert closed.stocktake.status == "closed"

    try:
        with SIMULATORS["3m810"](listen="127.0.0.1:0") as sim2:
            run_station(config(tmp_path / "two.toml", "st-two", broker, sim2,
                               tmp_path / "two.db"), second)
    finally:
        bridge.stop()

    report = Stocktakes(central.engine).report(stocktake_id)
    assert report.status == "closed" and report.closed_at is not None
    assert report.counts() == {"found": 7, "missing": 3, "misplaced": 2, "on_loan": 1,
                               "unknown": 1}
    assert sorted(x.item_id for x in report.of("missing")) == ["S08", "S09", "S10"]
    assert sorted(x.item_id for x in report.of("misplaced")) == ["B01", "B02"]
    assert [x.item_id for x in report.of("on_loan")] == ["S12"]
    assert report.stations == ["st-one", "st-two"]
    assert {x.item_id: x.station for x in report.of("found")}["S05"] == "st-two"
    rows = list(csv.DictReader(io.StringIO(report.csv())))
    assert len(rows) == 14
    assert [r["item_id"] for r in rows[:3]] == ["S08", "S09", "S10"]
    assert {r["verdict"] for r in rows} == {"found", "missing", "misplaced", "on_loan",
                                            "unknown"}
    b02 = next(r for r in rows if r["item_id"] == "B02")
    assert (b02["verdict"], b02["shelf"], b02["station"]) == ("misplaced", "B2", "st-two")
    assert next(r for r in rows if r["item_id"] == "X999")["tag_uid"] == uid("X999").hex().upper()

    # The operators' console, over real HTTP, from the same central database.
    svc = FleetService(broker.address, central.url, flush_s=0.2)
    svc.start()
    try:
        listing = requests.get(f"{svc.url}/stocktake", timeout=10)
        assert listing.status_code == 200 and "Kệ A1" in listing.text
        assert "Đã kết thúc" in listing.text
        page = requests.get(f"{svc.url}/stocktake/{stocktake_id}?lang=en", timeout=10)
        assert page.status_code == 200
        assert "Missing (not seen, not on loan): 3" in page.text
        assert "Misplaced (belongs elsewhere): 2" in page.text
        assert "On loan but on the shelf (a return never recorded): 1" in page.text
        assert "Tags not in the catalogue: 1" in page.text
        vi = requests.get(f"{svc.url}/stocktake/{stocktake_id}", timeout=10).text
        assert "Thiếu (không thấy, không đang mượn): 3" in vi and "Sách kệ A1 số 8" in vi
        got = requests.get(f"{svc.url}/stocktake/{stocktake_id}.csv", timeout=10)
        assert got.headers["content-type"].startswith("text/csv")
        assert got.content.decode("utf-8-sig") == report.csv()
        assert requests.get(f"{svc.url}/stocktake/{stocktake_id[:-1]}0.csv",
                            timeout=10).status_code == 404
        api = requests.get(f"{svc.url}/api/stocktakes", timeout=10).json()
        assert [(a["stocktake_id"], a["missing"], a["misplaced"]) for a in api] == [
            (stocktake_id, 3, 2)]
    finally:
        svc.stop()


def test_stocktake_words_in_both_languages() -> None:
    """The station's and the console's stock-take texts: the same keys in vi and en, the
    same placeholders, Vietnamese with its diacritics and the glossary's words."""
    import re
    import string

    from selfcheck.central.fleet.stocktake_page import TEXTS as CONSOLE
    from selfcheck.kiosk.i18n import catalog

    def fields(text: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    for vi, en in ((catalog("vi", "stocktake"), catalog("en", "stocktake")),
                   (CONSOLE.texts("vi"), CONSOLE.texts("en"))):
        assert set(vi) == set(en) and len(vi) > 20
        for key in vi:
            assert fields(vi[key]) == fields(en[key]), key
            assert not re.search(r"(?i)\b(khoá|huỷ|xoá|hoà)\b", vi[key]), key
        assert all(re.search(r"[ạ-ỹà-ýđăâêôơư]", vi[k]) for k in vi if k != "lang.switch"
                   and not vi[k].startswith(("UID", "CSV"))), "Vietnamese without diacritics"
    assert "khay đặt sách" in catalog("vi", "stocktake")["hint"]  # the glossary's book pad


def test_places_repeats_and_closing_at_the_central(central: CirculationStore) -> None:
    """The central alone: a call-number range and a branch's collection as places, a batch
    sent twice counted once (and answered alike), a closed stock-take taking nothing more."""
    from selfcheck.central.stocktake import answer
    from selfcheck.mqtt.ids import uuid7

    def ask(req: messages.Message, station: str = "st-one") -> messages.Message:
        return answer(central.engine, SITE, station, req)

    calls = ask(messages.StocktakeReq(action="open", place=messages.Place(
        kind="calls", value="895.9 N03", upto="895.9 N05")))
    assert isinstance(calls, messages.StocktakeRes) and calls.stocktake is not None
    assert calls.stocktake.expected == 3  # N03, N04, N05
    backwards = ask(messages.StocktakeReq(action="open", place=messages.Place(
        kind="calls", value="895.9 N05", upto="895.9 N03")))
    assert isinstance(backwards, messages.StocktakeRes) and backwards.reason == "bad_request"
    empty = ask(messages.StocktakeReq(action="open", place=messages.Place(kind="shelf",
                                                                          value="Z9")))
    assert isinstance(empty, messages.StocktakeRes) and empty.reason == "empty_place"
    whole = ask(messages.StocktakeReq(action="open", place=messages.Place(
        kind="collection", value=SITE)))
    assert isinstance(whole, messages.StocktakeRes) and whole.stocktake is not None
    assert whole.stocktake.expected == 15
    sid = calls.stocktake.stocktake_id
    batch = messages.StocktakeSeenReq(
        stocktake_id=sid, batch_id=uuid7(), at=dt.datetime.now(dt.UTC),
        tags=[messages.SeenEntry(uid=uid(i).hex().upper(), item_id=i)
              for i in ("S03", "S04", "S06")])
    first, again = ask(batch), ask(batch, "st-two")
    assert isinstance(first, messages.StocktakeSeenRes) and first.stocktake is not None
    assert isinstance(again, messages.StocktakeSeenRes) and again.stocktake is not None
    assert [b.verdict for b in first.books] == ["found", "found", "misplaced"]
    assert first.books == again.books and again.stocktake.seen == first.stocktake.seen == 3
    closed = ask(messages.StocktakeReq(action="close", stocktake_id=sid))
    assert isinstance(closed, messages.StocktakeRes) and closed.stocktake is not None
    assert (closed.stocktake.found, closed.stocktake.missing,
            closed.stocktake.misplaced) == (2, 1, 1)
    late = ask(batch.model_copy(update={"batch_id": uuid7()}))
    assert isinstance(late, messages.StocktakeSeenRes) and late.reason == "closed"
    assert Stocktakes(central.engine).report(sid).counts()["found"] == 2
    reopen = ask(messages.StocktakeReq(action="open", stocktake_id=sid))
    assert isinstance(reopen, messages.StocktakeRes) and reopen.reason == "closed"


def test_a_call_number_range_typed_at_the_station() -> None:
    """The keys staff type a range with, and the range checked as the central checks it."""
    from selfcheck.kiosk.stocktake import CALL_MAX, call_key, call_range

    typed = ""
    for ch in " 895.9  @-n0é1":  # a leading space, a second space and signs not taken
        typed = call_key(typed, ch)
    assert typed == "895.9 N01"
    assert call_key(typed, None) == "895.9 N0" and call_key("", None) == ""
    assert call_key("1" * CALL_MAX, "2") == "1" * CALL_MAX
    assert call_range(" 895.9 n03 ", "895.9 N05") == ("895.9 N03", "895.9 N05")
    assert call_range("895.9", "") == ("895.9", "895.9")  # To empty: From alone
    assert call_range("", "895.9") == "need_from"
    assert call_range("895.9 N05", "895.9 n03") == "order"  # the central's bad_request
    rng = call_range("895.9 N03", "895.9 N05")
    assert isinstance(rng, tuple)
    assert messages.Place(kind="calls", value=rng[0], upto=rng[1]).upto == "895.9 N05"

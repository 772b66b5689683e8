"""Tagging the collection at a station in staff mode: the real station runtime, the 3M 810 pad
simulator speaking its frames over a socket at 19,200 baud, a real Mosquitto, the bridge and
the central store on SQLite. 100 books tagged, with the five ways it must not go wrong."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from selfcheck.central import tagging
from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.schema import tagged_items
from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.m810 import M810Pad
from selfcheck.drivers.pad.simulators import M810Simulator
from selfcheck.drivers.tags import decode_tag, iso28560_3
from selfcheck.kiosk import core
from selfcheck.kiosk import staff_tagging as st
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.lab.broker import Broker

SITE = "thu-vien-tinh"
STAFF = "NV-0001"
ISIL = "VN-HN0001"
BOOKS = 100
BLANK = bytes(36)


def barcode(n: int) -> str:
    return f"TV{n:06d}"


def uid(n: int) -> bytes:
    return bytes.fromhex(f"E0040150{n:08X}")


@pytest.fixture
def catalogue(store: CirculationStore) -> CirculationStore:
    store.add_items([{"item_id": barcode(n), "title": f"Sách số {n}",
                      "home_site": "chi-nhanh-1" if n % 2 else "chi-nhanh-2"}
                     for n in range(1, BOOKS + 1)])
    store.add_items([{"item_id": "TVBO0001", "title": "Bộ bách khoa (2 tập)",
                      "home_site": "chi-nhanh-1"}])
    tagging.set_parts(store.engine, "TVBO0001", 2)
    return store


@pytest.fixture
def sim() -> Iterator[M810Simulator]:
    with M810Simulator(listen="127.0.0.1:0") as s:
        yield s


SHOW: list[Callable[[], object]] = []  # what a time-out shows of the desk


async def until(check: Callable[[], object], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {[s() for s in SHOW]}")
        await asyncio.sleep(0.01)


def rows(store: CirculationStore) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(tagged_items))]


def test_staff_tag_100_books_with_the_five_refusals(
        tmp_path: Path, broker: Broker, bridge: Bridge, catalogue: CirculationStore,
        sim: M810Simulator) -> None:
    settings = StationSettings(site=SITE, station="st-tag", broker=str(broker.address),
                               journal=tmp_path / "station.db", staff_cards=[STAFF],
                               owner_isil=ISIL, ack_timeout_s=2)
    pad = M810Pad(sim.url, timeout=0.3, reconnect_window=2.0)
    card = SimulatedCardReader()
    bridges = [bridge]
    timings: list[float] = []

    async def scenario() -> None:
        began = dt.datetime.now().astimezone()
        rt = StationRuntime(settings, pad, card)
        task = asyncio.ensure_future(rt.run())
        desk = rt.tagging
        view = desk.view
        SHOW[:] = [view]
        await until(lambda: rt.view().online, "online")
        card.present(STAFF)
        await until(lambda: rt.view().mode is core.Mode.STAFF, "staff mode")
        rt.feed(core.Touch("staff_tagging"))
        assert rt.view().mode is core.Mode.TAGGING and desk.active
        assert view().phase == "scan" and view().message == "tagging.scan"

        async def tag(n: int, code: str | None = None) -> None:
            code = code or barcode(n)
            done = view().session
            began = time.monotonic()
            card.present(code)
            await until(lambda: view().phase == "place", f"{code} looked up")
            sim.place(uid(n), BLANK, 0x00)
            await until(lambda: view().session == done + 1, f"{code} tagged")
            timings.append(time.monotonic() - began)
            sim.lift(uid(n))
            await until(lambda: view().on_pad == 0, "book lifted")

        # 1. a barcode the library system does not know: refused, nothing written
        sim.place(uid(900), BLANK, 0x00)
        card.present("KHONG-CO-999")
        await until(lambda: view().message == "tagging.unknown", "unknown refused")
        assert view().phase == "scan" and desk.sounds[-1] is False
        assert sim.tag(uid(900)).memory == bytearray(BLANK)  # type: ignore[union-attr]
        sim.lift(uid(900))
        await until(lambda: view().on_pad == 0, "lifted")

        for n in range(1, 41):
            await tag(n)

        # 2. two tags at once: refused until one is lifted; neither written meanwhile
        card.present(barcode(41))
        await until(lambda: view().phase == "place", "looked up")
        sim.place(uid(41), BLANK, 0x00)
        sim.place(uid(901), BLANK, 0x00)
        await until(lambda: view().message == "tagging.too_many", "two tags refused")
        assert sim.tag(uid(41)).memory == bytearray(BLANK)  # type: ignore[union-attr]
        assert sim.tag(uid(901)).memory == bytearray(BLANK)  # type: ignore[union-attr]
        sim.lift(uid(901))
        await until(lambda: view().session == 41, "tagged once alone")
        sim.lift(uid(41))
        await until(lambda: view().on_pad == 0, "lifted")

        # 3. a tag that already holds data: shown, not written without staff's yes
        other = iso28560_3.encode("CU-0001", owner_isil="VN-HN0002")
        sim.place(uid(42), other + bytes(-len(other) % 4), 0x07)
        await until(lambda: view().on_pad == 1, "old tag read")
        card.present(barcode(42))
        await until(lambda: view().phase == "confirm", "asked to confirm")
        assert view().holds == "CU-0001" and view().message == "tagging.holds_data"
        desk.press("cancel")
        assert view().phase == "scan"
        assert bytes(sim.tag(uid(42)).memory).startswith(other)  # type: ignore[union-attr]
        card.present(barcode(42))  # again, and this time staff say yes
        await until(lambda: view().phase == "confirm", "asked again")
        desk.press("overwrite")
        await until(lambda: view().session == 42, "overwritten on staff's yes")
        data = decode_tag(bytes(sim.tag(uid(42)).memory))  # type: ignore[union-attr]
        assert (data.primary_item_id, data.owner_isil) == (barcode(42), ISIL)
        sim.lift(uid(42))
        await until(lambda: view().on_pad == 0, "lifted")

        # 4. a write that does not read back right, then one the pad refuses: said, and
        # nothing recorded until a retry verifies
        sim.garble_block_writes = 1
        card.present(barcode(43))
        await until(lambda: view().phase == "place", "looked up")
        sim.place(uid(43), BLANK, 0x00)
        await until(lambda: view().message == "tagging.failed_verify", "verify mismatch said")
        assert desk.sounds[-1] is False and view().session == 42
        desk.press("retry")
        await until(lambda: view().session == 43, "retried and verified")
        sim.lift(uid(43))
        sim.fail_block_writes = 50  # more than the driver's retries
        card.present(barcode(44))
        await until(lambda: view().phase == "place", "looked up")
        sim.place(uid(44), BLANK, 0x00)
        await until(lambda: view().message == "tagging.failed_write", "write failure said")
        sim.fail_block_writes = 0
        desk.press("retry")
        await until(lambda: view().session == 44, "retried")
        sim.lift(uid(44))
        await until(lambda: view().on_pad == 0, "lifted")

        # a set of two parts: both tags at once, numbered 1 and 2
        card.present("TVBO0001")
        await until(lambda: view().phase == "place", "set looked up")
        sim.place(uid(800), BLANK, 0x00)
        await until(lambda: view().message == "tagging.place_parts", "asks for the 2nd part")
        sim.place(uid(801), BLANK, 0x00)
        await until(lambda: view().session == 45, "set tagged")
        parts = [decode_tag(bytes(sim.tag(uid(k)).memory))  # type: ignore[union-attr]
                 for k in (800, 801)]
        assert [(p.part_number, p.parts_in_item) for p in parts] == [(1, 2), (2, 2)]
        sim.lift(uid(800))
        sim.lift(uid(801))

        for n in range(45, 96):
            await tag(n)

        # 5. the central away: looked up in vain, tagged as one part, queued, sent when back
        bridges[0].stop()
        for n in range(96, BOOKS + 1):
            await tag(n)
        assert view().queued >= 5 and len(desk.store.pending()) >= 5
        assert all(d.offline for d in view().last[:5])
        again = Bridge(catalogue, broker.address, client_id="central-bridge-2")
        again.start()
        bridges[0] = again
        await until(lambda: view().queued == 0, "queue reported", timeout_s=30)
        assert desk.store.pending() == []
        # this hour's and today's counts: all of them, unless the clock passed the hour (or
        # midnight) meanwhile
        now = dt.datetime.now().astimezone()
        hour = view().hour == BOOKS + 1 if now.hour == began.hour else view().hour <= BOOKS
        day = view().today == BOOKS + 1 if now.date() == began.date() else view().today <= BOOKS
        assert view().session == BOOKS + 1 and hour and day, view()
        assert all(d.recorded for d in view().last)
        rt.feed(core.Touch("staff_exit"))
        assert rt.view().mode is core.Mode.STAFF and not desk.active
        rt.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        bridges[0].stop()
        pad.close()
    tagged = rows(catalogue)
    assert len(tagged) == BOOKS + 2  # a row per tag: the set has two
    assert {r["item_id"] for r in tagged} == {barcode(n) for n in range(1, BOOKS + 1)} | {
        "TVBO0001"}
    by_item = {r["item_id"]: r for r in tagged}
    assert by_item[barcode(42)]["overwrote"] is True
    assert by_item[barcode(41)]["overwrote"] is False
    assert all(by_item[barcode(n)]["offline"] for n in range(96, BOOKS + 1))
    assert not any(by_item[barcode(n)]["offline"] for n in range(1, 96))
    assert {r["staff_ref"] for r in tagged} == {core.staff_ref(STAFF)}
    assert "KHONG-CO-999" not in by_item
    report = {p.branch: p for p in tagging.progress(catalogue.engine)}
    assert report["chi-nhanh-1"].tagged == 51  # 50 odd barcodes and the set
    second = report["chi-nhanh-2"]  # the sample catalogue has one more book there
    assert second.tagged == 50 and second.percent == pytest.approx(100 * 50 / second.items)
    out = io.StringIO()
    assert tagging.export_csv(catalogue.engine, out) == BOOKS + 2
    assert out.getvalue().splitlines()[0].startswith("tagged_at,item_id,tag_uid")
    per_book = sorted(timings)[len(timings) // 2]
    print(f"tagging: median {per_book * 1000:.0f} ms per book, "
          f"{60 / per_book:.0f} books a minute (scan to verified, 3M 810 at 19,200 baud)")


def test_the_desk_refuses_and_counts_without_io() -> None:
    ids = iter(f"m{n}" for n in range(100))
    desk = st.TaggingDesk(st.TaggingConfig(owner_isil=ISIL), lambda: next(ids))
    now = dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC)
    earlier = [now - dt.timedelta(hours=2), now - dt.timedelta(days=1)]
    desk.start("staff-x", [e for e in earlier if e.date() == now.date()])
    assert desk.handle(st.Barcode("  \x07"), now) == [st.Sound(False)]
    assert desk.handle(st.Barcode("B1"), now) == [st.LookUp("B1")]
    assert desk.handle(st.ItemLooked("OLD", st.ItemInfo("OLD")), now) == []  # stale answer
    assert desk.handle(st.ItemLooked("B1", st.ItemInfo("B1", parts_in_item=1)), now) == []
    from selfcheck.drivers.seen import SeenTag, TagUid
    a, b = SeenTag(TagUid("E004000000000001"), None, "blank"), \
        SeenTag(TagUid("E004000000000002"), None, "blank")
    assert desk.handle(st.Tags((a, b)), now) == [st.Sound(False)]
    [write] = desk.handle(st.Tags((a,)), now)
    assert isinstance(write, st.WriteTags) and write.owner_isil == ISIL
    assert not write.overwrite and write.writes == (st.TagWrite(a.uid, 1),)
    actions = desk.handle(st.Written("B1", (st.TagResult(a.uid, True),)), now)
    assert isinstance(actions[0], st.RecordTagged) and actions[-1] == st.Sound(True)
    v = desk.view(now)
    assert (v.session, v.hour, v.today, v.queued) == (1, 1, 2, 1)
    desk.handle(st.Acked("m0"), now)
    assert desk.view(now).last[0].recorded and desk.view(now).queued == 0


def test_central_report_tagging_prints_progress_and_exports_csv(
        store: CirculationStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.cli import main
    from selfcheck.mqtt import messages
    from selfcheck.mqtt.ids import uuid7

    at = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    tx = messages.TxTagged(msg_id=uuid7(), site="s", station="st", at=at, item_id="39000011",
                           tag_uid="E004015000000001", staff_ref="staff-0123456789")
    assert not tagging.record(store.engine, tx).repeat
    assert tagging.record(store.engine, tx).repeat  # the outbox sent it twice: one row
    unknown = tx.model_copy(update={"msg_id": uuid7(), "item_id": "KHONG-CO"})
    tagging.record(store.engine, unknown)
    out = tmp_path / "tagged.csv"
    code = main(["central", "report", "--db", store.url, "--tagging", "--csv", str(out),
                 "--lang", "vi"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "chi nhánh" in printed and "đã gắn thẻ" in printed
    branch = next(ln.split() for ln in printed.splitlines() if ln.startswith("chi-nhanh-2"))
    assert branch[2] == "1"  # its one sample book is tagged
    assert "Đã xuất 2 thẻ" in printed
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and lines[1].split(",")[1] == "39000011"
    assert lines[2].split(",")[-1] == "False"  # not in the catalogue: flagged


def test_the_broker_acl_lets_a_station_send_its_tagging_topics(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Under the production profile a station publishes only the topics spelt out for it:
    tx/tagged and req/item are among them, and reach the bridges' group."""
    import subprocess

    from selfcheck.mqtt import topics
    from tests.conftest import wait_until
    from tests.test_broker_acl import MAKE_CREDENTIALS as make
    from tests.test_broker_acl import ROLES, login, payloads, subscribe
    from tests.test_broker_security import Peer

    base = tmp_path_factory.mktemp("tag-creds")
    (base / "roles").write_text(ROLES)
    subprocess.run([str(make), str(base / "roles"), str(base / "out")], check=True,
                   capture_output=True)
    creds = base / "out"
    broker = Broker(tmp_path_factory.mktemp("tag-broker"), secure=creds).start()
    peers: list[Peer] = []
    try:
        bridge = login(broker, creds, peers, "central-bridge-1")
        subscribe(bridge, topics.BRIDGE_TX, topics.BRIDGE_REQ)
        station = login(broker, creds, peers, "st-a")
        root = "lib/v1/site-1/st-a"
        station.publish(topics.tagged("site-1", "st-a"), b"tagged")
        station.publish(f"{root}/req/item", b"item")
        station.publish(f"{root}/tx/other", b"refused")  # not spelt out: dropped
        station.publish(f"{root}/tx/loan", b"marker")  # routed after the ones above
        wait_until(lambda: b"marker" in payloads(bridge), 10, "the marker")
        assert sorted(payloads(bridge)) == [b"item", b"marker", b"tagged"]
    finally:
        for p in peers:
            p.close()
        broker.stop()


def test_every_tagging_text_is_in_both_languages() -> None:
    import re

    from selfcheck.kiosk.i18n import LOCALE_DIR
    from selfcheck.system.i18n import Catalog

    catalog = Catalog(LOCALE_DIR, "tagging")
    vi, en = catalog.texts("vi"), catalog.texts("en")
    assert vi.keys() == en.keys()
    root = Path(__file__).resolve().parent.parent
    used = set()
    for source in ("kiosk/staff_tagging.py", "kiosk/ui/tagging.py"):
        used |= set(re.findall(r'"(tagging\.[a-z_]*[a-z])"', (root / source).read_text()))
    used |= {f"tagging.failed_{p}" for p in ("write", "verify", "gone")}
    used |= {f"tagging.{b}" for b in ("overwrite", "retry", "cancel", "back")}
    assert used <= vi.keys(), used - vi.keys()
    # every Vietnamese sentence carries its marks (an unaccented copy would read wrong)
    assert all(any(ord(c) > 127 for c in text) for key, text in vi.items()
               if key != "tagging.title" and len(text) > 12), "Vietnamese without diacritics"
    assert st.text("tagging.too_many", "vi", have=2, need=1).startswith("Có 2 thẻ")


def test_the_tagging_outbox_keeps_its_rows_across_a_restart(tmp_path: Path) -> None:
    from selfcheck.kiosk.runtime.tagging import TaggingStore, store_path

    path = store_path(tmp_path / "station.db")
    assert str(path).endswith("station.db.tagging")
    first = TaggingStore(path)
    first.add("m1", "t", b"one", "TV000001", 1, 100.0)
    first.add("m2", "t", b"two", "TVBO0001", 2, 101.0)  # a set's second part
    first.close()
    again = TaggingStore(path)
    assert [m for m, _, _ in again.pending()] == ["m1", "m2"]
    assert again.items_since(0) == [100.0]  # an item counts once, by its first part
    assert again.delete("m1") and not again.delete("m1")
    assert [m for m, _, _ in again.pending()] == ["m2"]
    again.close()

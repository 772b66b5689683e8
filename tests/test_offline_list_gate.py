"""The offline allow-list goes only to the stations the central marked (`selfcheck central
--offline-list SITE[/STATION]`), whatever a station's own `offline_loans` says: over the real
broker and `selfcheck central` as a process. A station not marked is answered not_offline with
nothing of the site's list, and a real station takes that calmly: no list kept, one log line,
no asking again at once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.station_link import StationLink
from tests.conftest import wait_until

SITE = "thu-vien-hn"
CARDS = ("DG0001", "DG0002", "DG0003", "DG0005", "DG0006")  # central/sample.py


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[str]:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    proc = CentralProcess(broker.address, db, offline_list=(f"{SITE}/st-a",),
                          log=tmp_path / "central.log")
    try:
        proc.start()
        yield db
    finally:
        proc.stop()


def _ask(broker: Broker, station: str, page: int = 1) -> messages.OfflineListRes:
    link = StationLink(SITE, station, broker.address, version="t", next_session=lambda: 1,
                       on_ack=lambda a: None)
    link.start()
    try:
        assert link.connected.wait(10)
        res = link.request("offline-list", messages.OfflineListReq(page=page)).result(15)
    finally:
        link.stop()
    assert isinstance(res, messages.OfflineListRes)
    return res


def _listed(res: messages.OfflineListRes) -> set[str]:
    hashes = {e.card_hash for e in res.entries}
    return {c for c in CARDS if messages.card_hash(res.salt, c) in hashes}


def test_only_the_marked_station_gets_the_list(broker: Broker, central: str) -> None:
    served = _ask(broker, "st-a")
    assert served.ok is None and served.reason is None and _listed(served)
    for station in ("st-b", "st-c"):  # same site, not marked: nothing of the list
        refused = _ask(broker, station)
        assert (refused.ok, refused.reason, refused.entries) == (False, "not_offline", [])
        assert refused.salt != served.salt and not _listed(refused)
        assert refused.valid_until <= refused.generated_at  # nothing to lend against
        assert _ask(broker, station, page=2).ok is False  # no page of it either


def test_a_site_mark_serves_every_station_of_that_site(broker: Broker, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    for marks, st_b_served in (((SITE,), True), ((), False)):  # (): the CLI's default
        proc = CentralProcess(broker.address, db, offline_list=marks).start()
        try:
            assert bool(_listed(_ask(broker, "st-b"))) is st_b_served
            assert (_ask(broker, "st-a").ok is None) is st_b_served
        finally:
            proc.stop()
    # central.env's setting, for the systemd unit
    monkeypatch.setenv("SELFCHECK_OFFLINE_LIST", f"other-site {SITE}/st-b")
    proc = CentralProcess(broker.address, db, offline_list=()).start()
    try:
        assert _listed(_ask(broker, "st-b"))
        assert _ask(broker, "st-a").reason == "not_offline"
    finally:
        proc.stop()


def test_a_station_not_marked_keeps_no_list_and_does_not_ask_again_at_once(
        broker: Broker, central: str, tmp_path: Path) -> None:
    asked: list[float] = []
    spy = make_client("test-spy")
    spy.on_message = lambda c, u, m: asked.append(time.monotonic())
    spy.connect(broker.address.host, broker.address.port)
    spy.subscribe(f"lib/v1/{SITE}/st-b/req/offline-list", qos=1)
    spy.loop_start()
    journal = tmp_path / "st-b.db"
    cfg = tmp_path / "st-b.toml"
    cfg.write_text(f'site = "{SITE}"\nstation = "st-b"\nbroker = "{broker.address}"\n'
                   f'journal = "{journal}"\noffline_loans = true\noffline_list_s = 60\n')
    log = tmp_path / "st-b.log"
    station = HeadlessStation(cfg, log=log).start(60)
    try:
        wait_until(lambda: "offline list refused" in log.read_text(), 30, "the refusal logged")
        first = len(asked)
        assert first >= 1
        # An absence is checked over a window, not waited for: a tight loop would have asked
        # dozens of times in it (the station's own retry after a failure is a minute).
        time.sleep(3)
        assert len(asked) == first
    finally:
        station.stop()
        spy.loop_stop()
        spy.disconnect()
    assert log.read_text().count("offline list refused") == 1
    with sqlite3.connect(journal) as db:  # no hash of any reader on its disk
        assert db.execute("SELECT count(*) FROM offline_list").fetchone() == (0,)

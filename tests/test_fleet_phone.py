"""The operators' page on a phone (390 x 844 CSS px, Chromium headless with touch emulation)
against a real Mosquitto and the real fleet service: the first station that needs someone is on
the first screen with its acknowledge button, every touch target is at least 44 px each way,
a silent station reads "not heard from" with its time, and a closed site's stations read closed,
not alerting. Measured with getBoundingClientRect, in both languages."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfcheck.central.fleet.db import FleetStore
from selfcheck.central.fleet.hours import OpeningHours
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import FleetState
from selfcheck.lab.bench.browser import CHROMIUM, Browser
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import messages
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.telemetry import Event, Health, State
from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: scripts/bootstrap "
                                "installs Debian's chromium")

# A province's network: a dozen branches, so the site chips alone would fill a phone's screen.
SITES = {"tv-hn": "Thư viện Hà Nội", "tv-hd": "Thư viện Hải Dương", "tv-hp": "Thư viện Hải Phòng",
         "tv-nd": "Thư viện Nam Định", "tv-tb": "Thư viện Thái Bình", "tv-dem": "Thư viện Đêm",
         "tv-hy": "Thư viện Hưng Yên", "tv-nb": "Thư viện Ninh Bình", "tv-bn": "Thư viện Bắc Ninh",
         "tv-vp": "Thư viện Vĩnh Phúc", "tv-ha": "Thư viện Hà Nam", "tv-qn": "Thư viện Quảng Ninh"}
STATIONS = 4 * len(SITES) + 1  # and the silent one
PHONE = (390, 844)
TOUCH_PX = 44
# Every control an operator can touch on the stations view (not those of closed dialogs).
TARGETS = """[...document.querySelectorAll('button, select, input, a[href], .chip')]
  .filter(e => e.offsetParent !== null && !e.closest('[hidden], dialog:not([open])'))
  .map(e => { const r = e.getBoundingClientRect();
    return {what: e.outerHTML.slice(0, 90), w: r.width, h: r.height}; })"""


def _state(now: dt.datetime, **kw: Any) -> State:
    base: dict[str, Any] = dict(at=now, version="0.1.0", pad_ok=True, card_ok=True,
                                paper="ok", outbox_pending=0, offline_policy="returns",
                                config_version=1)
    return State(**{**base, **kw})


def _status(online: bool, session: int = 1) -> messages.Status:
    return messages.Status(online=online, session=session, version="0.1.0", mode="selfcheck")


@pytest.fixture
def console(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    db = f"sqlite:///{tmp_path / 'central.db'}"
    # A station last heard from ten minutes ago whose status still says online, from the store
    # (the service assumes the usual health period for it): silent from the start.
    store, fs = FleetStore(db), FleetState()
    heard = time.time() - 600
    for msg in (_status(True, 7), _state(dt.datetime.fromtimestamp(heard, dt.UTC))):
        rec = fs.apply("tv-hp", "im-lang", "x", "", msg, heard)
        assert rec is not None
        store.station(rec)
    store.flush()
    svc = FleetService(broker.address, db, flush_s=0.2, tick_s=0.2, names={
        "sites": SITES, "stations": {"tv-hn/quay-1": "Quầy 1 tầng trệt"}},
        hours=OpeningHours(per_site={"tv-dem": "closed"}))
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


def _publish(broker: Broker) -> None:
    """Four stations a site; one reader waiting for staff at the last-sorted site, the
    night library's stations switched off (its site is closed) and a paper warning."""
    client = make_client(f"phone-test-{time.monotonic_ns()}")
    client.connect(broker.address.host, broker.address.port)
    client.loop_start()
    now = dt.datetime.now(dt.UTC)
    try:
        n = 0
        for site in SITES:
            for i in range(1, 5):
                n += 1
                root = f"lib/v1/{site}/quay-{i}"
                off = site == "tv-dem"
                kw = {"paper": "low"} if (site, i) == ("tv-hd", 2) else {}
                for suffix, msg, retain in (
                        ("status", _status(not off, n), True),
                        ("state", _state(now, **kw), True),
                        ("tele/health", Health(at=now, uptime_s=3600, cpu_temp_c=50.0), False)):
                    client.publish(f"{root}/{suffix}", messages.encode(msg), qos=1,
                                   retain=retain).wait_for_publish(5)
        client.publish("lib/v1/tv-tb/quay-3/evt/staff_needed", messages.encode(Event(
            kind="staff_needed", at=now, severity="critical")), qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _shots() -> Path:
    return Path("/tmp/shots22b")


def test_the_phone_page_puts_attention_first_with_thumb_sized_targets(
        tmp_path: Path, broker: Broker, console: FleetService) -> None:
    _publish(broker)
    def alerted(site: str, station: str, kind: str) -> bool:
        rec = console.state.stations.get((site, station))
        return rec is not None and kind in rec.active

    wait_until(lambda: len(console.state.stations) == STATIONS
               and alerted("tv-tb", "quay-3", "staff_needed")
               and alerted("tv-hp", "im-lang", "silent"), 20, "the fleet with its alerts")
    b = Browser(tmp_path / "profile", *PHONE)
    try:
        for lang, staff, silent, closed in (
                ("vi", "cần thủ thư", "không nhận được tin từ", "đóng cửa"),
                ("en", "staff needed", "not heard from since", "closed")):
            b.go(f"{console.url}/?lang={lang}")
            b.wait(f"document.querySelectorAll('#rows tr').length === {STATIONS}",
                   what="the stations")
            b.wait("document.querySelector('#rows tr [data-ack]')", what="an ack button")
            assert b.js("window.innerWidth") == PHONE[0]
            # The first station needing attention, all of it (its button too), on the first
            # screen.
            first = b.js("""(() => { const tr = document.querySelector('#rows tr');
                const r = tr.getBoundingClientRect(),
                      a = tr.querySelector('[data-ack]').getBoundingClientRect();
                return {id: tr.id, top: r.top, bottom: r.bottom, ack_bottom: a.bottom,
                        text: tr.innerText}; })()""")
            assert first["id"] == "st-tv-tb/quay-3" and staff in first["text"], first
            print(f"{lang}: first station needing attention top {first['top']:.0f} px, its "
                  f"acknowledge button's bottom {first['ack_bottom']:.0f} px, its card's bottom "
                  f"{first['bottom']:.0f} px")
            assert first["bottom"] <= PHONE[1] and first["ack_bottom"] <= PHONE[1], first
            # Every control a thumb may touch: 44 px each way, nothing wider than the screen.
            small = [t for t in b.js(TARGETS) if t["h"] < TOUCH_PX or t["w"] < TOUCH_PX]
            assert not small, small
            assert b.js("document.documentElement.scrollWidth") <= PHONE[0]
            # The silent station says since when; the closed site's do not ask for anyone.
            quiet = b.text("#st-tv-hp\\/im-lang")
            assert silent in quiet and ":" in quiet.split(silent)[1][:4], quiet
            # Its alert counts from when it was last heard (ten minutes), not from when noticed.
            assert "10" in b.text('#st-tv-hp\\/im-lang [data-alert="silent"] .age'), quiet
            night = b.text("#st-tv-dem\\/quay-1")
            assert closed in night.lower(), night
            assert b.js("document.getElementById('st-tv-dem/quay-1').className").find(
                "attn") == -1
            _shots().mkdir(parents=True, exist_ok=True)
            b.screenshot(_shots() / f"phone-390-{lang}.png")
            b.screenshot(_shots() / f"phone-390-{lang}-full.png", full=True)
        # The filters are there, one touch away.
        b.click("#filters-toggle")
        b.wait("document.getElementById('f-state').offsetParent !== null", what="the filters")
        b.type("#f-state", "attention")
        b.wait("document.querySelectorAll('#rows tr').length === 3", what="three to see")
        # The statistics' choices stay in view on a phone (only the stations' filters fold).
        b.click('[data-view="stats"]')
        b.wait("document.getElementById('s-period').offsetParent !== null", what="stats choices")
        small = [t for t in b.js(TARGETS) if t["h"] < TOUCH_PX or t["w"] < TOUCH_PX]
        assert not small, small
        b.click('[data-view="stations"]')
        b.size(1280, 800)
        for lang in ("vi", "en"):
            b.go(f"{console.url}/?lang={lang}")
            b.wait(f"document.querySelectorAll('#rows tr').length === {STATIONS}",
                   what="the stations")
            b.screenshot(_shots() / f"desktop-1280-{lang}.png")
    finally:
        b.close()


def test_an_alert_moves_one_row_and_rebuilds_none_of_the_others(
        tmp_path: Path, broker: Broker, console: FleetService) -> None:
    # On a thousand-station page, rebuilding every row for each alert took most of a second on
    # a loaded machine: a new order moves the changed row and keeps the rest as they are.
    _publish(broker)
    wait_until(lambda: len(console.state.stations) == STATIONS, 20, "the fleet")
    b = Browser(tmp_path / "profile", 1280, 800)
    try:
        b.go(f"{console.url}/?lang=en")
        b.wait(f"document.querySelectorAll('#rows tr').length === {STATIONS}",
               what="the stations")
        b.js("""(() => {
            for (const tr of document.querySelectorAll('#rows tr')) tr.dataset.kept = '1';
            window.added = 0;
            new MutationObserver(ms => { for (const m of ms) window.added += m.addedNodes.length; })
              .observe(document.getElementById('rows'), {childList: true});
        })()""")
        client = make_client(f"phone-test-{time.monotonic_ns()}")
        client.connect(broker.address.host, broker.address.port)
        client.loop_start()
        try:
            client.publish("lib/v1/tv-hd/quay-4/evt/staff_needed", messages.encode(Event(
                kind="staff_needed", at=dt.datetime.now(dt.UTC), severity="critical")),
                qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
        b.wait("document.querySelectorAll('#rows [data-alert=\"staff_needed\"]').length === 2",
               what="the second staff call shown")
        order = b.js("[...document.querySelectorAll('#rows tr')].map(t => t.id)")
        assert set(order[:2]) == {"st-tv-hd/quay-4", "st-tv-tb/quay-3"}, order[:3]
        rebuilt = b.js("[...document.querySelectorAll('#rows tr')].filter(t => !t.dataset.kept)"
                       ".map(t => t.id)")
        assert rebuilt == ["st-tv-hd/quay-4"], rebuilt  # only the station that changed
        assert b.js("window.added") <= 2  # its new row, put in place once (and a move)
    finally:
        b.close()

"""Operators see the order gaps: `selfcheck central report` lists them, the fleet service shows
them per station (page, API, metrics) from the central's database, and each bridge counts what
it held, released and gave up in its own metrics."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.central.bridge import Bridge
from selfcheck.central.fleet.service import FleetService
from selfcheck.central.fleet.state import ORDER_RECENT_S, FleetState
from selfcheck.central.ledger import Ledger, gaps
from selfcheck.central.metrics import BridgeCollector
from selfcheck.central.sample import load_sample
from selfcheck.cli import main
from selfcheck.lab.broker import Broker
from selfcheck.mqtt import topics
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.ids import uuid7
from selfcheck.mqtt.messages import TxReturn, encode
from tests.conftest import applied, wait_until
from tests.dbs import KINDS, fresh_db
from tests.test_order import NOW, Txs, run

WAIT = dt.timedelta(seconds=31)  # past the order wait of 30 s
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CirculationStore]:
    with fresh_db(request.param, tmp_path) as url:
        s = CirculationStore(url)
        s.create()
        load_sample(s, 20, 5)
        yield s
        s.close()


def give_up_gap(store: CirculationStore, order: Ledger, st: Txs, *missing: int,
                at: dt.datetime = NOW) -> list[Any]:
    """A loan, `missing` transactions that do not come, a return: the gap is given up after
    the wait. The missing ones, to send late."""
    run(store, order, st.loan("49000003"), now=at)
    lost = [st.ret("49000009") for _ in missing]
    assert run(store, order, st.ret("49000003"), now=at) == []  # held behind the gap
    applied(store, order.release_due(at + WAIT), at + WAIT)
    return lost


def test_report_lists_gaps_and_late_transactions_with_a_count(
        store: CirculationStore, capsys: pytest.CaptureFixture[str]) -> None:
    order = Ledger(store.engine, store)
    st = Txs(store, station="quay-2")
    lost2, _ = give_up_gap(store, order, st, 2, 3)
    run(store, order, lost2, now=NOW + 2 * WAIT)  # seq 2 after all: applied, late
    url = store.engine.url.render_as_string(hide_password=False)
    assert main(["central", "report", "--db", url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    gap = next(ln for ln in lines if " gap " in ln)
    assert gap.split()[2:] == ["s", "quay-2", st.journal[:8], "gap", "2-3", "-"]
    late = next(ln for ln in lines if " late " in ln)
    assert late.split()[2:] == ["s", "quay-2", st.journal[:8], "late", "2", lost2.msg_id]
    assert "0 refused offline transaction(s)" in out
    assert "1 order gap(s) given up, 1 late transaction(s) applied out of order" in out
    # --site and --since narrow it, as they do the refused ones
    assert main(["central", "report", "--db", url, "--site", "other"]) == 0
    assert "0 order gap(s) given up, 0 late" in capsys.readouterr().out
    assert main(["central", "report", "--db", url, "--since",
                 str((NOW + dt.timedelta(days=1)).date())]) == 0
    assert "0 order gap(s) given up, 0 late" in capsys.readouterr().out


def test_fleet_state_counts_order_gaps_and_alerts_while_recent() -> None:
    state = FleetState()
    now = 1_800_000_000.0
    state.get("s", "quay-1")
    changed = state.set_order({("s", "quay-2"): (2, 1, now - 60)}, now)
    assert [r.station for r in changed] == ["quay-2"]
    rows = {r["station"]: r for r in state.rows(now=now)}
    assert (rows["quay-2"]["order_gaps"], rows["quay-2"]["order_late"]) == (2, 1)
    assert "order_gap" in rows["quay-2"]["alerts"]
    assert (rows["quay-1"]["order_gaps"], rows["quay-1"]["alerts"]) == (0, [])
    assert state.set_order({("s", "quay-2"): (2, 1, now - 60)}, now) == []  # nothing new
    later = now + ORDER_RECENT_S
    state.tick(later)
    assert "order_gap" not in state.rows(now=later)[1]["alerts"]  # counted, no longer alerting
    assert state.rows(now=later)[1]["order_gaps"] == 2


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if url.endswith("stations") else body


@pytest.fixture
def fleet(store: CirculationStore, broker: Broker) -> Iterator[FleetService]:
    """The fleet service on the central's database, where quay-2 had a gap given up."""
    give_up_gap(store, Ledger(store.engine, store), Txs(store, station="quay-2"), 2,
                at=dt.datetime.now(dt.UTC) - WAIT)
    svc = FleetService(broker.address, store.engine.url.render_as_string(hide_password=False),
                       flush_s=0.2, order_s=0.2)
    svc.start()
    yield svc
    svc.stop()


def station_row(fleet: FleetService, station: str) -> dict[str, Any]:
    rows = get(f"{fleet.url}/api/stations")
    return next((r for r in rows if r["station"] == station), {})


@pytest.mark.slow
def test_fleet_service_shows_order_gaps_from_the_central_database(
        store: CirculationStore, fleet: FleetService) -> None:
    wait_until(lambda: station_row(fleet, "quay-2").get("order_gaps") == 1,
               what="the gap in the fleet")
    quay2 = station_row(fleet, "quay-2")
    assert quay2["order_late"] == 0 and "order_gap" in quay2["alerts"]
    metrics = get(f"{fleet.url}/metrics")
    assert 'selfcheck_station_order_gaps{kind="gap",site="s",station="quay-2"} 1.0' in metrics
    # a second station's gap while the service runs: it shows up without a restart
    give_up_gap(store, Ledger(store.engine, store), Txs(store, station="quay-3"), 2,
                at=dt.datetime.now(dt.UTC))
    wait_until(lambda: station_row(fleet, "quay-3").get("order_gaps") == 1,
               what="the new gap in the fleet")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: scripts/bootstrap installs "
                    "Debian's chromium for this test")
def test_fleet_page_shows_the_order_gap_alert(tmp_path: Path,
                                                     fleet: FleetService) -> None:
    wait_until(lambda: station_row(fleet, "quay-2").get("order_gaps") == 1,
               what="the gap in the fleet")
    assert CHROMIUM is not None
    base = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000", "--dump-dom"]
    for lang, words in (("en", ("transactions out of order",)),
                        ("vi", ("giao dịch sai thứ tự",))):
        dom = subprocess.run([*base, f"{fleet.url}/?stop_after=1&lang={lang}"],
                             capture_output=True, text=True, timeout=90).stdout
        for text in words:
            assert text in dom, (lang, text)


@pytest.mark.slow
def test_bridge_metrics_count_held_released_and_given_up(tmp_path: Path,
                                                         broker: Broker) -> None:
    """A seq 2 alone: held, then after the order wait applied and its gap counted."""
    store = CirculationStore(f"sqlite:///{tmp_path / 'central.db'}")
    load_sample(store, 20, 5)
    bridge = Bridge(store, broker.address, order_wait_s=0.5)
    registry = CollectorRegistry()
    registry.register(BridgeCollector(bridge))
    bridge.start()
    client = make_client("test-order-metrics")
    try:
        assert bridge.connected.wait(10)
        client.connect(broker.address.host, broker.address.port)
        client.loop_start()
        seq2 = TxReturn(msg_id=uuid7(), seq=2, journal="0" * 32, site="s", station="st-9",
                        at=dt.datetime.now(dt.UTC), item_id="49000001")
        client.publish(topics.tx("s", "st-9", "return"), encode(seq2), qos=1).wait_for_publish(10)
        wait_until(lambda: bridge.order.counters.gaps == 1, what="the gap given up")
        text = generate_latest(registry).decode()
        for name, value in (("held", 1), ("released", 1), ("gaps", 1), ("late", 0)):
            assert f"selfcheck_bridge_order_{name}_total {value:.1f}" in text, name
        assert [g["kind"] for g in gaps(store.engine)] == ["gap"]
    finally:
        client.disconnect()
        client.loop_stop()
        bridge.stop()
        store.close()

"""Out of service in the self-check core (events in, no I/O), and the fleet rules alone."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from selfcheck.central.fleet.metrics import OpeningHours
from selfcheck.central.fleet.state import FleetState
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.health import HealthProbe
from selfcheck.mqtt import messages
from selfcheck.mqtt.telemetry import State
from tests.test_core import _ack, borrow_session, make, tag

_n = itertools.count(1)


def test_out_of_service_when_idle_shows_the_message_in_the_screen_language() -> None:
    sc = make()
    sc.handle(core.SetService(False, "Bảo trì", "Maintenance"), 1)
    view = sc.view(1)
    assert view.mode is core.Mode.OUT_OF_SERVICE and view.service_message == "Bảo trì"
    sc.handle(core.Touch("lang"), 2)
    assert sc.view(2).service_message == "Maintenance"
    # nothing a reader does starts anything
    assert sc.handle(core.CardRead("DG0001"), 3) == []
    assert sc.handle(core.Touch("return"), 3) == []
    assert sc.handle(core.TagsPresent((tag("E001"),)), 3) == []
    sc.handle(core.Touch("cancel"), 3)
    sc.handle(core.Tick(), 1000)
    assert sc.mode is core.Mode.OUT_OF_SERVICE
    sc.handle(core.SetService(True), 4)
    assert sc.mode is core.Mode.IDLE and sc.view(4).service_message is None
    assert sc.view(4).lang == "vi"


def test_message_falls_back_to_the_other_language() -> None:
    sc = make(default_lang="en")
    sc.handle(core.SetService(False, "Chỉ tiếng Việt", None), 1)
    assert sc.view(1).service_message == "Chỉ tiếng Việt"


def test_out_of_service_waits_for_the_readers_session_to_end() -> None:
    sc = make()
    borrow_session(sc)
    sc.handle(core.SetService(False, None, "Closing"), 2)
    assert sc.mode is core.Mode.BORROW and sc.closing and sc.busy
    actions = sc.handle(core.TagsPresent((tag("E001"),)), 3)
    assert len(actions) == 1  # the session goes on normally
    (rec,) = actions
    assert isinstance(rec, core.RecordTx)
    sc.handle(core.Recorded(rec.msg_id), 3)
    sc.handle(_ack(rec.msg_id, True), 3.5)  # answered: the summary may open
    sc.handle(core.Touch("finish"), 4)
    assert sc.mode is core.Mode.SUMMARY
    sc.handle(core.Touch("done"), 5)
    assert sc.mode is core.Mode.OUT_OF_SERVICE and not sc.closing
    assert sc.view(5).service_message == "Closing"


def test_back_in_service_cancels_a_pending_close() -> None:
    sc = make()
    borrow_session(sc)
    sc.handle(core.SetService(False), 2)
    sc.handle(core.SetService(True), 3)
    sc.handle(core.Touch("cancel"), 4)
    assert sc.mode is core.Mode.IDLE


def test_session_timeout_also_closes() -> None:
    sc = make(inactivity_s=10)
    borrow_session(sc)
    sc.handle(core.SetService(False), 2)
    sc.handle(core.Tick(), 100)
    assert sc.mode is core.Mode.OUT_OF_SERVICE


# -- fleet rules
def _status(online: bool, session: int) -> messages.Status:
    return messages.Status(online=online, session=session, version="1", mode="selfcheck")


def test_a_will_from_an_older_session_is_ignored() -> None:
    fs = FleetState()
    assert fs.apply("s", "a", "status", "", _status(True, 4), now=10)
    assert fs.apply("s", "a", "status", "", _status(True, 5), now=11)  # reconnected
    assert fs.apply("s", "a", "status", "", _status(False, 4), now=12) is None  # old will
    rec = fs.stations[("s", "a")]
    assert (rec.online, rec.session, rec.last_seen) == (True, 5, 11)
    assert fs.counters.stale_wills == 1
    assert fs.apply("s", "a", "status", "", _status(False, 5), now=13)  # its own will
    assert fs.stations[("s", "a")].online is False
    assert fs.stations[("s", "a")].last_seen == 11  # the will is the broker, not the station
    assert fs.apply("s", "a", "status", "", _status(False, 5), now=14) is None  # replay


def test_alerts_from_state() -> None:
    fs = FleetState()
    now = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)
    st = State(at=now, version="1", pad_ok=False, paper="out", outbox_pending=2,
               outbox_oldest_at=now - dt.timedelta(minutes=11), offline_policy="returns",
               config_version=0)
    fs.apply("s", "a", "status", "", _status(True, 1), now=now.timestamp())
    rec = fs.apply("s", "a", "state", "", st, now=now.timestamp())
    assert rec is not None
    assert rec.alerts(now.timestamp()) == ["reader_fault", "paper_out", "outbox_old"]
    assert round(rec.row(now.timestamp())["outbox_age_s"]) == 660


def test_opening_hours_in_local_time() -> None:
    hours = OpeningHours("07:00-21:00", {"night": "22:00-06:00"}, tz="Asia/Ho_Chi_Minh")
    at = dt.datetime(2026, 5, 4, 1, 30, tzinfo=dt.UTC).timestamp()  # 08:30 in Hanoi
    assert hours.is_open("any", at) and not hours.is_open("night", at)
    at = dt.datetime(2026, 5, 4, 16, 0, tzinfo=dt.UTC).timestamp()  # 23:00 in Hanoi
    assert not hours.is_open("any", at) and hours.is_open("night", at)


# -- health readings from a fake /sys and /proc
def test_health_probe_reads_a_pi(tmp_path: Path) -> None:
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61234\n")
    fw = tmp_path / "sys/devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text("50005\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 4000000 kB\nMemAvailable: 1000000 kB\n")
    (tmp_path / "proc/uptime").write_text("1234.5 99.0\n")
    (tmp_path / "proc/loadavg").write_text("0.42 0.3 0.2 1/100 999\n")
    r = HealthProbe(tmp_path, root=tmp_path, vcgencmd="", adjtimex=False).read()
    assert (r.cpu_temp_c, r.throttled, r.mem_available_pct) == (61.234, 0x50005, 25.0)
    assert (r.os_uptime_s, r.load1) == (1234.5, 0.42)
    assert r.disk_free_pct is not None and r.clock_offset_s is None


def test_health_probe_on_a_machine_without_any(tmp_path: Path) -> None:
    vcgencmd = tmp_path / "vcgencmd"
    vcgencmd.write_text("#!/bin/sh\necho throttled=0x0\n")
    vcgencmd.chmod(0o755)
    r = HealthProbe(tmp_path, root=tmp_path, vcgencmd=str(vcgencmd), adjtimex=False).read()
    assert r.cpu_temp_c is None and r.throttled == 0 and r.mem_available_pct is None

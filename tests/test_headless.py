"""`selfcheck station --headless`: the station without a screen, driven by commands and
reporting its transactions as JSON lines; killed and started again on the same journal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from selfcheck.kiosk.runtime.journal import Journal
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation
from selfcheck.lab.standins.koha_standin import KohaExtra, koha_running
from selfcheck.lab.standins.sip2_server import running
from tests.conftest import ROOT
from tests.test_koha_backend import library


def test_importing_the_headless_station_loads_no_kivy() -> None:
    code = ("import sys, selfcheck.kiosk.runtime.headless, selfcheck.cli.station; "
            "sys.exit(any(m == 'kivy' or m.startswith('kivy.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_offline_return_reported_then_kept_across_a_kill(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    journal = tmp_path / "journal.db"
    # A broker nobody listens on: returns are accepted under the offline policy.
    cfg.write_text(f'site = "s"\nstation = "st-h"\nbroker = "127.0.0.1:9"\n'
                   f'journal = "{journal}"\nack_timeout_s = 1\n')
    st = HeadlessStation(cfg, log=tmp_path / "station.log").start()
    ready = st.wait_for(lambda e: e.get("event") == "ready")
    st.send("touch return")
    st.wait_for(lambda e: e.get("mode") == "return")
    st.send("place 49000001", "wave hello")
    done = st.tx("49000001", "offline")
    assert (done["seq"], done["kind"]) == (1, "return")
    bad = st.wait_for(lambda e: e.get("event") == "error")
    assert bad["command"] == "wave hello"
    st.kill()  # SIGKILL: the journal keeps the return until the central's ack
    again = HeadlessStation(cfg, log=tmp_path / "station.log").start()
    assert again.wait_for(lambda e: e.get("event") == "ready")["journal"] == ready["journal"]
    again.send("quit")
    assert again.proc is not None and again.proc.wait(30) == 0
    kept = Journal(journal)
    assert kept.depth()[0] == 1 and kept.seq_of(done["msg_id"]) == 1
    kept.close()


def test_the_loan_question_buttons_are_commands() -> None:
    from selfcheck.kiosk import core
    from selfcheck.kiosk.runtime.headless import BUTTONS, Commands

    fed: list[object] = []

    class Runtime:
        feed = fed.append

    commands = Commands(Runtime(), None, None, None, lambda: None)  # type: ignore[arg-type]
    commands.do("touch loan_yes")
    commands.do("touch loan_no")
    assert {"loan_yes", "loan_no"} <= BUTTONS
    assert fed == [core.Touch("loan_yes"), core.Touch("loan_no")]


def test_a_rental_charge_asked_on_screen_through_koha(tmp_path: Path, broker: Broker) -> None:
    """Koha asks for RENTALCHARGE: the station shows the question, the reader's yes sends a
    new loan with it confirmed and Koha lends; a no sends nothing and Koha lends nothing.
    ADDITIONAL_MATERIALS is for staff: a refusal that sends the reader to the desk."""
    lib = library()
    rental = KohaExtra(rental={"39000002": "5000.000000", "39000004": "5000.000000"},
                       materials={"39000003": "1 CD"})
    with running(lib) as (_server, proxy), koha_running(lib, rental) as koha:
        central = CentralProcess(broker.address, f"sqlite:///{tmp_path / 'central.db'}",
                                 sample=False, log=tmp_path / "central.log")
        for name, text in {"koha": koha.x.password, "sip2": "secret"}.items():
            (tmp_path / name).write_text(text + "\n")
            (tmp_path / name).chmod(0o600)
        central.args += [
            "--ils", f"koha+http://{koha.x.user}@127.0.0.1:{koha.port}?timeout=2"
            "&currency=VND&library=TVTINH",
            "--ils-secret-file", str(tmp_path / "koha"),
            "--ils-circulation", f"sip2://sc@127.0.0.1:{proxy.port}"
            "?institution=tv-test&location=tang-1",
            "--ils-password-file", str(tmp_path / "sip2")]
        cfg = tmp_path / "station.toml"
        cfg.write_text(f'site = "tv-tinh"\nstation = "st-q"\nbroker = "{broker.address}"\n'
                       f'journal = "{tmp_path / "journal.db"}"\ninactivity_s = 600\n')
        central.start()
        st = HeadlessStation(cfg, log=tmp_path / "station.log").start(60)
        try:
            st.wait_for(lambda e: e.get("event") == "screen" and e.get("online") is True)
            st.send("card DG0001")
            st.wait_for(lambda e: e.get("mode") == "borrow")
            st.send("place 39000002")
            asked = st.tx("39000002", "asking")
            assert asked["reason"] == "needs_confirmation"
            assert asked["confirm"] == {"code": "rental_charge", "amount": 5000,
                                        "currency": "VND", "currency_exponent": 0}
            st.wait_for(lambda e: e.get("mode") == "confirm_loan")
            assert lib.items["39000002"].charged_to is None  # nothing lent before the yes
            st.send("touch loan_yes")
            done = st.tx("39000002", "done")
            assert done["msg_id"] != asked["msg_id"] and done["seq"] == asked["seq"] + 1
            assert lib.items["39000002"].charged_to == "DG0001"
            st.send("place 39000004")
            st.tx("39000004", "asking")
            st.send("touch loan_no")
            no = st.tx("39000004", "refused")
            assert no["reason"] == "needs_confirmation"
            st.send("place 39000003")
            assert st.tx("39000003", "refused")["reason"] == "needs_staff"
            st.send("touch finish")
            st.wait_for(lambda e: e.get("mode") == "summary")
            st.send("drain")
            st.wait_for(lambda e: e.get("event") == "drained")
        finally:
            st.stop()
            central.stop()
        assert lib.items["39000004"].charged_to is None
        assert lib.items["39000003"].charged_to is None
        assert koha.count("POST", "/checkouts") == 1
        assert koha.violations == []
        kept = Journal(tmp_path / "journal.db")
        try:
            assert kept.depth()[0] == 0
        finally:
            kept.close()


def test_drain_stops_once_and_exits_0(tmp_path: Path) -> None:
    """`drain` with nothing pending: one `drained`, exit 0, no traceback (the loop used to go
    on asking the journal it had just closed)."""
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "s"\nstation = "st-d"\nbroker = "127.0.0.1:9"\n'
                   f'journal = "{tmp_path / "journal.db"}"\n')
    log = tmp_path / "station.log"
    st = HeadlessStation(cfg, log=log).start()
    st.send("drain")
    assert st.proc is not None and st.proc.wait(30) == 0, log.read_text()
    st.wait_for(lambda e: e.get("event") == "drained")
    assert [e["event"] for e in st.events].count("drained") == 1
    assert "Traceback" not in log.read_text()


def test_real_devices_say_that_standard_input_is_not_read(tmp_path: Path) -> None:
    """With a real pad and card reader, typed commands would go nowhere: said once, at start,
    in the station's language."""
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "s"\nstation = "st-r"\nbroker = "127.0.0.1:9"\nlang = "vi"\n'
                   f'journal = "{tmp_path / "journal.db"}"\n'
                   'pad = "3m810"\npad_url = "loop://"\n'
                   'card_reader = "barcode-serial"\ncard_url = "loop://"\n')
    log = tmp_path / "station.log"
    st = HeadlessStation(cfg, log=log).start()
    st.send("card 123")
    st.stop()
    text = log.read_text()
    assert text.count("Không đọc đầu vào chuẩn: khay đặt sách và đầu đọc thẻ là thiết bị "
                      "thật") == 1, text
    sim = tmp_path / "sim.toml"
    sim.write_text(f'site = "s"\nstation = "st-s"\nbroker = "127.0.0.1:9"\nlang = "vi"\n'
                   f'journal = "{tmp_path / "sim.db"}"\n')
    st = HeadlessStation(sim, log=tmp_path / "sim.log").start()
    st.send("quit")
    assert st.proc is not None and st.proc.wait(30) == 0
    assert "Không đọc đầu vào chuẩn" not in (tmp_path / "sim.log").read_text()

"""`selfcheck doctor` against real parts: the production broker profile (TLS and passwords), a
3M 810 pad simulator over a pty, a network printer simulator, a serial barcode reader behind a
socket, and the SIP2 test server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.cli import main
from selfcheck.drivers.pad.simulators import M810Simulator
from selfcheck.drivers.printer.simulator import PrinterSimulator
from selfcheck.drivers.printer.status import Paper
from selfcheck.lab.broker import Broker, free_port
from selfcheck.lab.standins.sip2_server import Library, running
from tests.conftest import ROOT
from tests.test_station_devices import LineSource

MAKE_CREDENTIALS = ROOT / "deploy" / "mosquitto" / "make-credentials"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("creds")
    (base / "roles").write_text("station st-a site-1\nbridge central-bridge-1\n")
    subprocess.run([str(MAKE_CREDENTIALS), str(base / "roles"), str(base / "out")], check=True,
                   capture_output=True)
    return base / "out"


@pytest.fixture(scope="module")
def sbroker(creds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("sbroker"), secure=creds).start()
    yield b
    b.stop()


def station_config(tmp_path: Path, creds: Path, broker: Broker, *, pad_url: str,
                   printer_port: int, card_url: str, password: str | None = None,
                   lang: str = "en") -> Path:
    secret = tmp_path / "st-a.pass"
    secret.write_text(password or (creds / "secrets" / "st-a.pass").read_text())
    secret.chmod(0o600)
    cfg = tmp_path / "station.toml"
    cfg.write_text(
        f'site = "site-1"\nstation = "st-a"\nlang = "{lang}"\n'
        f'broker = "localhost:{broker.port}"\ntls = true\nca_file = "{creds / "ca.crt"}"\n'
        f'password_file = "{secret}"\njournal = "{tmp_path / "st.db"}"\n'
        f'pad = "3m810"\npad_url = "{pad_url}"\n'
        f'card_reader = "barcode-serial"\ncard_url = "{card_url}"\n'
        f'printer_transport = "network"\nprinter_url = "127.0.0.1:{printer_port}"\n'
        f'printer_options = {{ status = "dle-eot" }}\n')
    return cfg


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out.splitlines()


def test_station_all_well(tmp_path: Path, creds: Path, sbroker: Broker,
                          capsys: pytest.CaptureFixture[str]) -> None:
    card = LineSource()
    with M810Simulator(pty=True) as pad, PrinterSimulator() as printer:
        cfg = station_config(tmp_path, creds, sbroker, pad_url=pad.url,
                             printer_port=printer.port, card_url=card.url)
        # root may open any port; the pad's pty makes the serial check show.
        code, lines = doctor(capsys, "--config", str(cfg), "--station-user", "root")
    card.close()
    assert code == 0, lines
    assert len(lines) == 8 and all(ln.startswith("ok ") for ln in lines[:7]), lines
    assert lines[1] == f"ok      broker localhost:{sbroker.port}: connected as st-a"
    assert lines[2] == f"ok      station journal {tmp_path / 'st.db'}: its folder can be written"
    assert lines[3].startswith(f"ok      book pad 3m810 {pad.url}: answers (")
    assert lines[5].endswith("answers, paper: ok")
    assert lines[6] == f"ok      serial ports for root: root may open {pad.url}"
    assert lines[7] == "All 7 checks passed."


def test_station_problems_in_vietnamese(tmp_path: Path, creds: Path, sbroker: Broker,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with PrinterSimulator(paper=Paper.LOW) as printer:
        cfg = station_config(tmp_path, creds, sbroker, password="wrong",
                             pad_url=f"socket://127.0.0.1:{free_port()}",
                             printer_port=printer.port,
                             card_url=f"socket://127.0.0.1:{free_port()}", lang="vi")
        code, lines = doctor(capsys, "--config", str(cfg))
    assert code == 1, lines
    assert lines[0].startswith("ổn      cấu hình")
    assert lines[1].startswith(f"LỖI     máy chủ MQTT localhost:{sbroker.port}: từ chối kết nối")
    assert "password_file" in lines[1]
    assert lines[2].startswith("ổn      nhật ký trạm")
    assert lines[3].startswith("LỖI     khay đặt sách 3m810") and "pad_url" in lines[3]
    assert lines[4].startswith("LỖI     đầu đọc thẻ barcode-serial") and "card_url" in lines[4]
    assert lines[5].startswith("LỖI     máy in network") and "giấy: low" in lines[5]
    assert lines[6] == "4 trong 6 mục kiểm tra có lỗi."


def test_station_tls_without_the_ca(tmp_path: Path, creds: Path, sbroker: Broker,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with PrinterSimulator() as printer:
        cfg = station_config(tmp_path, creds, sbroker, pad_url="loop://",
                             printer_port=printer.port, card_url="loop://")
    cfg.write_text("\n".join(ln for ln in cfg.read_text().splitlines()
                             if not ln.startswith("ca_file")) + "\n")
    _, lines = doctor(capsys, "--config", str(cfg))
    assert lines[1].startswith("PROBLEM broker") and "TLS failed" in lines[1], lines


def test_station_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text('lang = "en"\ninactivity = 3\n')
    code, lines = doctor(capsys, "--config", str(cfg))
    assert code == 2
    assert lines == [f"PROBLEM config {cfg}: unknown key 'inactivity'; did you mean "
                     "'inactivity_s'?"]


def test_central(tmp_path: Path, creds: Path, sbroker: Broker,
                 capsys: pytest.CaptureFixture[str]) -> None:
    lib = Library()
    db = tmp_path / "central.db"
    pw = tmp_path / "bridge.pass"
    pw.write_text((creds / "secrets" / "central-bridge-1.pass").read_text())
    pw.chmod(0o600)
    ils_pw, wrong_pw = tmp_path / "ils.pass", tmp_path / "wrong.pass"
    for f, text in ((ils_pw, "secret\n"), (wrong_pw, "nope\n")):
        f.write_text(text)
        f.chmod(0o600)
    common = ["--central", "--lang", "en", "--broker", str(sbroker.plain_address),
              "--password-file", str(pw), "--db", f"sqlite:///{db}"]
    with running(lib) as (server, _proxy):
        url = f"sip2://sc@127.0.0.1:{server.port}?institution=tv-test&timeout=2"
        common += ["--ils", url]
        code, lines = doctor(capsys, *common, "--ils-password-file", str(ils_pw))
        assert code == 1 and "central store" in lines[1] and "central migrate" in lines[1]
        assert lines[0].endswith("connected as central-bridge-1"), lines
        assert lines[2].endswith("answers (login and status ok)"), lines
        assert main(["central", "migrate", "--db", f"sqlite:///{db}"]) == 0
        capsys.readouterr()
        code, lines = doctor(capsys, *common, "--ils-password-file", str(wrong_pw))
        assert code == 1, lines
        assert lines[1].startswith("ok      central store")
        assert lines[2].startswith("PROBLEM library system") and "refused the login" in lines[2]
        code, lines = doctor(capsys, *common, "--ils-password-file", str(ils_pw))
        assert code == 0 and lines[-1] == "All 3 checks passed.", lines


def test_station_doctor_leaves_a_running_station_alone(tmp_path: Path, creds: Path,
                                                       sbroker: Broker,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """The broker makes the client id the login name: a doctor logging in as the station
    would take the station's session and drop it. With the station's journal open (the
    station runs), the doctor only checks that the broker answers, and opens no device."""
    import threading

    from selfcheck.kiosk.runtime.journal import Journal
    from selfcheck.mqtt import security
    from selfcheck.mqtt.connection import connect_properties, make_client
    from selfcheck.mqtt.security import ClientSecurity

    cfg = station_config(tmp_path, creds, sbroker, pad_url="loop://", printer_port=free_port(),
                         card_url="loop://")
    journal = Journal(tmp_path / "st.db")  # what the running station holds open
    station = make_client("st-a")
    security.apply(station, sbroker.address, ClientSecurity(
        username="st-a", password=(creds / "secrets" / "st-a.pass").read_text().strip(),
        tls=True, ca_file=creds / "ca.crt"))
    connected, dropped = threading.Event(), []
    station.on_connect = lambda *a: connected.set()
    station.on_disconnect = lambda c, u, f, rc, p=None: dropped.append(rc)
    station.connect("localhost", sbroker.port, properties=connect_properties(0))
    station.loop_start()
    try:
        assert connected.wait(10)
        code, lines = doctor(capsys, "--config", str(cfg))
        assert lines[1].startswith(f"ok      broker localhost:{sbroker.port}: answers (TLS ok);")
        assert "station is running" in lines[1]
        assert all(ln.startswith("skipped ") and "running station" in ln
                   for ln in lines[3:6]), lines
        assert code == 0, lines
        # A round trip after the doctor: a takeover would have closed this connection first.
        sent = station.publish("lib/v1/site-1/st-a/status", b"{}", qos=1)
        sent.wait_for_publish(10)
        assert sent.is_published() and dropped == [], dropped
    finally:
        station.disconnect()
        station.loop_stop()
        journal.close()
    # The station stopped: the doctor logs in as it, to check its password too.
    _, lines = doctor(capsys, "--config", str(cfg))
    assert lines[1] == f"ok      broker localhost:{sbroker.port}: connected as st-a"


def test_station_journal_folder_and_serial_ports(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Root passes any access test: the journal's folder is tried with a real write, here
    under a plain file, where nothing can be made."""
    (tmp_path / "not-a-folder").write_text("")
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "s"\nstation = "st-1"\nlang = "en"\nbroker = "127.0.0.1:9"\n'
                   f'journal = "{tmp_path / "not-a-folder" / "st.db"}"\n'
                   'pad = "3m810"\npad_url = "/dev/ttyS9"\n')
    code, lines = doctor(capsys, "--config", str(cfg), "--station-user", "nobody")
    assert code == 1
    journal = next(ln for ln in lines if "station journal" in ln)
    assert journal.startswith("PROBLEM") and "cannot be written in" in journal, journal
    serial = next(ln for ln in lines if "serial ports" in ln)
    assert serial == ("PROBLEM serial ports for nobody: nobody is not in the dialout group, so "
                      "it cannot open /dev/ttyS9. Run `sudo usermod -aG dialout nobody`, then "
                      "restart the station.")
    code, lines = doctor(capsys, "--config", str(cfg), "--station-user", "no-such-user-x",
                         "--lang", "vi")
    serial = next(ln for ln in lines if "cổng nối tiếp" in ln)
    assert serial.startswith("LỖI") and "không có người dùng no-such-user-x" in serial


def central_args(tmp_path: Path, creds: Path, sbroker: Broker, db: str) -> list[str]:
    pw = tmp_path / "bridge.pass"
    pw.write_text((creds / "secrets" / "central-bridge-1.pass").read_text())
    pw.chmod(0o600)
    return ["--central", "--lang", "en", "--broker", str(sbroker.plain_address),
            "--password-file", str(pw), "--db", db]


def test_central_store_not_migrated(tmp_path: Path, creds: Path, sbroker: Broker,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from selfcheck.central import migrations
    from selfcheck.central.engine import open_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    migrations.upgrade(engine, "0007")
    engine.dispose()
    code, lines = doctor(capsys, *central_args(tmp_path, creds, sbroker, url))
    assert code == 1
    assert lines[1].startswith("PROBLEM central store")
    assert f"at revision 0007, but this code needs {migrations.head()}" in lines[1]
    assert "selfcheck central migrate" in lines[1]


def test_central_store_that_cannot_be_written(tmp_path: Path, creds: Path, sbroker: Broker,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A PostgreSQL database that takes no writes (a standby, or read-only by setting)."""
    from sqlalchemy import create_engine, text

    from selfcheck.central.engine import open_engine
    from selfcheck.central.ledger import open_db
    from tests.dbs import PG_ADMIN, fresh_db

    with fresh_db("postgresql", tmp_path) as url:
        open_db(url).dispose()
        args = central_args(tmp_path, creds, sbroker, url)
        code, lines = doctor(capsys, *args)
        assert code == 0 and lines[1].startswith("ok      central store"), lines
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {url.rsplit('/', 1)[1]} "
                              "SET default_transaction_read_only = on"))
        admin.dispose()
        code, lines = doctor(capsys, *args)
        assert code == 1
        assert lines[1].startswith("PROBLEM central store") and "cannot be written" in lines[1]
        assert "read-only transaction" in lines[1]
        open_engine(url).dispose()

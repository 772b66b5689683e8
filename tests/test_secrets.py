"""Secrets stay out of argv, unit files and configs: the library system's, the broker's and the
SMTP relay's passwords come from files only the service's user can read."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from selfcheck.drivers.printer.config import PrinterConfigError
from selfcheck.drivers.printer.mail import load_mail_config
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess
from selfcheck.lab.standins.sip2_server import Item, Library, running
from selfcheck.mqtt import messages, topics
from selfcheck.mqtt.connection import make_client
from selfcheck.mqtt.ids import uuid7
from selfcheck.system.secrets import read_password
from tests.conftest import ROOT

ILS_PASSWORD = "Kz7-ils-Qp3w9"  # distinctive, so that finding it anywhere means a leak


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o700 | 0o001])
def test_password_files_open_to_others_are_refused(tmp_path: Path, mode: int) -> None:
    f = secret_file(tmp_path / "broker.pass", "pw", mode)
    with pytest.raises(ValueError, match=r"open to group or others .* chmod 600"):
        read_password(f, "password_file")


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_password_files_are_read(tmp_path: Path, mode: int) -> None:
    assert read_password(secret_file(tmp_path / "p", "pw", mode)) == "pw"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfcheck.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, env={**os.environ, **env})


def test_central_refuses_passwords_in_argv_and_open_files(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/c.db"
    out = _cli("central", "--db", db, "--ils", f"sip2://sc:{ILS_PASSWORD}@127.0.0.1:1"
               "?institution=x")
    assert out.returncode == 2
    assert "a password in the URL shows in `ps`" in out.stderr
    assert "--ils-password-file" in out.stderr
    assert ILS_PASSWORD not in out.stderr + out.stdout
    out = _cli("central", "--db", db, "--ils", "sip2://sc@127.0.0.1:1?institution=x"
               "&terminal_password=tp")
    assert out.returncode == 2 and "shows in `ps`" in out.stderr
    out = _cli("central", "--db", db, "--ils", "sip2://sc@127.0.0.1:1?institution=x")
    assert out.returncode == 2 and "user 'sc' needs --ils-password-file" in out.stderr
    open_file = secret_file(tmp_path / "ils.pass", ILS_PASSWORD, 0o644)
    out = _cli("central", "--db", db, "--ils", "sip2://sc@127.0.0.1:1?institution=x",
               "--ils-password-file", str(open_file))
    assert out.returncode == 2
    assert f"--ils-password-file: {open_file} is open to group or others" in out.stderr
    broker_pass = secret_file(tmp_path / "broker.pass", "pw", 0o640)
    out = _cli("central", "--db", db, "--password-file", str(broker_pass))
    assert out.returncode == 2 and "--password-file:" in out.stderr
    out = _cli("central", "--db", db, SELFCHECK_PASSWORD_FILE=str(broker_pass))  # env form
    assert out.returncode == 2 and "--password-file:" in out.stderr
    assert not (tmp_path / "c.db").exists()  # refused before touching anything


@pytest.mark.parametrize("via_env", [False, True])
def test_central_logs_in_to_sip2_with_the_file_and_ps_shows_no_password(
        tmp_path: Path, via_env: bool) -> None:
    lib = Library(items={"49000001": Item("Sách thử", charged_to="DG0001")},
                  password=ILS_PASSWORD)
    secret = secret_file(tmp_path / "ils.pass", ILS_PASSWORD)
    with running(lib) as (server, _proxy), Broker(tmp_path / "broker") as broker:
        url = f"sip2://{lib.user}@127.0.0.1:{server.port}?institution=tv-test&location=q1"
        central = CentralProcess(broker.address, f"sqlite:///{tmp_path / 'dedupe.db'}",
                                 sample=False, log=tmp_path / "central.log")
        if via_env:  # the unit's way for the URL: SELFCHECK_ILS from central.env
            os.environ["SELFCHECK_ILS"] = url
            os.environ["SELFCHECK_ILS_PASSWORD_FILE"] = str(secret)
        else:
            central.args += ["--ils", url, "--ils-password-file", str(secret)]
        try:
            central.start()
        finally:
            os.environ.pop("SELFCHECK_ILS", None)
            os.environ.pop("SELFCHECK_ILS_PASSWORD_FILE", None)
        try:
            acks: list[messages.AckTx] = []
            subscribed = threading.Event()
            st = make_client("st-1")
            st.on_subscribe = lambda *a: subscribed.set()
            got = threading.Event()

            def on_ack(c: object, u: object, m: Any) -> None:
                acks.append(messages.decode(m.payload, messages.AckTx))  # type: ignore[arg-type]
                got.set()

            st.on_message = on_ack
            st.connect(broker.address.host, broker.address.port)
            st.subscribe(topics.ack_tx("site-1", "st-1"), qos=1)
            st.loop_start()
            assert subscribed.wait(5)
            tx = messages.TxReturn(msg_id=uuid7(), seq=1, site="site-1", station="st-1",
                                   at=dt.datetime.now(dt.UTC), item_id="49000001")
            # Resent until acked, as the station outbox does: the bridge may not have
            # subscribed yet when "central ready" is printed (the dedupe makes resends safe).
            for _ in range(15):
                st.publish(topics.tx("site-1", "st-1", "return"), messages.encode(tx), qos=1)
                got.wait(1)
                if acks:
                    break
            assert acks, "no ack of the return"
            st.disconnect()
            st.loop_stop()
            # applied by the library system, so the login with the file's password worked
            assert acks[0].ok, acks[0]
            assert lib.count("09", "49000001") == 1 and lib.items["49000001"].charged_to is None
            assert central.proc is not None
            pid = central.proc.pid
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert "--ils" in argv or via_env  # the right process
            ps = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True,
                                text=True, check=True).stdout
            assert any(line.split(None, 1)[0] == str(pid) for line in ps.splitlines()[1:])
            assert ILS_PASSWORD not in argv and ILS_PASSWORD not in ps
            assert ILS_PASSWORD not in (tmp_path / "central.log").read_text()
        finally:
            central.stop()


def test_smtp_password_from_a_private_file(tmp_path: Path) -> None:
    f = secret_file(tmp_path / "smtp.pass", "smtp-pw-Z9")
    cfg = load_mail_config({"host": "smtp.lan", "sender": "a@b.vn", "username": "kiosk",
                            "password_file": str(f)})
    assert cfg.password == "smtp-pw-Z9"
    assert "smtp-pw-Z9" not in repr(cfg)
    f.chmod(0o644)
    with pytest.raises(PrinterConfigError, match="open to group or others"):
        load_mail_config({"host": "smtp.lan", "sender": "a@b.vn", "password_file": str(f)})
    with pytest.raises(PrinterConfigError, match="not both"):
        load_mail_config({"host": "smtp.lan", "sender": "a@b.vn", "password": "x",
                          "password_file": str(f)})


def test_station_refuses_an_open_broker_password_file(tmp_path: Path) -> None:
    from selfcheck.kiosk.settings import StationSettings

    f = secret_file(tmp_path / "broker.pass", "pw", 0o644)
    # The password is read once, with the settings: an open file stops the station at start.
    with pytest.raises(ValidationError, match="open to group or others"):
        StationSettings(broker="localhost:1883", password_file=f, journal=tmp_path / "j.db")
    f.chmod(0o600)
    settings = StationSettings(broker="localhost:1883", password_file=f,
                               journal=tmp_path / "j.db")
    assert settings.config.broker.security.password == "pw"
    with pytest.raises(ValidationError, match="open to group or others"):
        StationSettings(broker="localhost:1883", journal=tmp_path / "j.db",
                        receipt_mail={"host": "smtp.lan", "sender": "a@b.vn",
                                      "password_file": str(secret_file(tmp_path / "s", "x",
                                                                       0o640))})


def test_units_and_env_example_hold_no_secret() -> None:
    central = (ROOT / "systemd" / "selfcheck-central@.service").read_text()
    fleet = (ROOT / "systemd" / "selfcheck-fleet.service").read_text()
    for unit, creds in ((central, ("broker-password", "ils-password")),
                        (fleet, ("broker-password",))):
        exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
        assert "/etc/selfcheck/secrets" not in exec_start  # the service reads systemd's copy
        for name in creds:
            assert f"LoadCredential={name}:/etc/selfcheck/secrets/" in unit
            assert f"%d/{name}" in exec_start
    assert "--ils-password-file %d/ils-password" in central
    env = (ROOT / "deploy" / "central" / "central.env.example").read_text()
    ils = [ln for ln in env.splitlines() if "SELFCHECK_ILS=" in ln]
    assert ils and all("sip2://" not in ln or ":" not in ln.split("//")[1].split("@")[0]
                       for ln in ils)  # no USER:PASSWORD@



def test_help_and_docs_do_not_invite_a_password_where_it_is_refused() -> None:
    """`central --help` showed sip2://USER:PASSWORD@..., which the central refuses; the
    security notes said nothing of the fleet page's logins."""
    out = subprocess.run([sys.executable, "-m", "selfcheck.cli", "central", "--help"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    help_text = " ".join(out.split())
    assert "USER:PASSWORD@" not in help_text
    assert "sip2://USER@HOST:PORT?institution=ID" in help_text
    assert "password goes in --ils-password-file" in help_text
    notes = " ".join((ROOT / "docs" / "security.md").read_text().split())
    assert ("The fleet page (`selfcheck fleet serve --http`) asks every operator to log in"
            in notes)

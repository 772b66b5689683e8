"""deploy/: the shell scripts parse and pass shellcheck, the Pi provisioning dry run shows every
step and changes nothing, the udev rules are well formed, the station example config loads."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from selfcheck.kiosk.settings import load_settings
from tests.conftest import ROOT

SCRIPTS = [ROOT / "deploy" / "pi" / "provision.sh", ROOT / "deploy" / "central" / "setup.sh",
           ROOT / "deploy" / "mosquitto" / "make-credentials", ROOT / "scripts" / "bootstrap",
           ROOT / "scripts" / "bench-compare"]
PROVISION = ROOT / "deploy" / "pi" / "provision.sh"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck missing: scripts/bootstrap installs it from Debian")
    out = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def _provision(*args: str) -> str:
    out = subprocess.run(["bash", str(PROVISION), "--dry-run", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_provision_dry_run_shows_every_step_and_changes_nothing() -> None:
    watched = [Path("/etc/selfcheck"), Path("/opt/selfcheck"),
               Path("/etc/udev/rules.d/99-selfcheck.rules"),
               Path("/etc/systemd/system/selfcheck-station.service")]
    before = {p: p.exists() for p in watched}
    text = _provision("--card-reader", "uart", "--read-only-root", "--data-device",
                      "LABEL=selfcheck-data")
    for step in ("useradd --system", "usermod -aG video kiosk", "usermod -aG render kiosk",
                 "usermod -aG input kiosk", "usermod -aG dialout kiosk",
                 "usermod -aG plugdev kiosk", "python3 -m venv /opt/selfcheck/.venv",
                 "/etc/udev/rules.d/99-selfcheck.rules", "enable_uart=1",
                 "dtoverlay=disable-bt", "remove from /boot/firmware/cmdline.txt: console=serial0",
                 "consoleblank=0", "dtoverlay=vc4-kms-v3d", "journald.conf.d/selfcheck.conf",
                 "systemctl disable getty@tty1.service",
                 "systemctl enable selfcheck-station.service",
                 "/var/lib/selfcheck ext4 defaults,noatime,commit=5,nofail",
                 "/var/lib/selfcheck/journal /var/log/journal none "
                 "bind,nofail,x-systemd.requires=var-lib-selfcheck.mount",
                 "mount /var/lib/selfcheck", "overlayroot", "auto_initramfs=1",
                 "dtparam=watchdog=on", "/etc/systemd/system.conf.d/selfcheck-watchdog.conf",
                 "/etc/overlayroot.local.conf", "/etc/selfcheck/station.toml"):
        assert step in text, step
    assert "blacklist" not in text  # the UART reader needs the kernel NFC modules left alone
    assert {p: p.exists() for p in watched} == before
    usb = _provision("--card-reader", "usb")
    assert "/etc/modprobe.d/selfcheck-nfc-blacklist.conf" in usb
    assert "enable_uart" not in usb and "overlayroot" not in usb


def test_provision_refuses_bad_options() -> None:
    for args in (["--card-reader", "bluetooth"], ["--read-only-root"], ["--bogus"], ["--mkfs"]):
        out = subprocess.run(["bash", str(PROVISION), "--dry-run", *args], capture_output=True,
                             text=True)
        assert out.returncode == 2 and "provision:" in out.stderr, args


# udev 252 (Debian 12) has no `udevadm verify`: check the grammar of udev(7) ourselves.
UDEV_KEY = re.compile(
    r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_.:/-]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<val>[^"]*)"$')
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM",
              "SUBSYSTEMS", "DRIVER", "DRIVERS", "ATTR", "ATTRS", "ENV", "TAG", "TAGS", "TEST",
              "PROGRAM", "RESULT", "CONST", "SYSCTL"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "ENV", "TAG", "RUN", "ATTR",
               "LABEL", "GOTO", "IMPORT", "OPTIONS", "SECLABEL", "SYSCTL"}


def test_udev_rules_are_well_formed() -> None:
    groups = {"dialout", "plugdev", "input", "lp", "video", "render"}
    lines = (ROOT / "deploy" / "pi" / "99-selfcheck.rules").read_text().splitlines()
    rules = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(rules) >= 8
    for n, rule in enumerate(rules, 1):
        parts = [p.strip() for p in rule.split(",")]
        ops = []
        for part in parts:
            m = UDEV_KEY.match(part)
            assert m, f"rule {n}: cannot parse {part!r}"
            key, op = m["key"], m["op"]
            assert key in (MATCH_KEYS if op in ("==", "!=") else ASSIGN_KEYS), f"{n}: {part}"
            if key == "GROUP":
                assert m["val"] in groups, f"rule {n}: group {m['val']} is not the kiosk's"
            if key == "MODE":
                assert re.fullmatch(r"0[0-7]{3}", m["val"]) and m["val"][-1] == "0"
            ops.append(op)
        assert any(o in ("==", "!=") for o in ops), f"rule {n} matches every device"
        assert any(o not in ("==", "!=") for o in ops), f"rule {n} does nothing"


# -- the station's one config file

def _example(tmp_path: Path) -> Path:
    """deploy/station.example.toml with its /etc and /var paths moved into tmp_path."""
    (tmp_path / "etc" / "secrets").mkdir(parents=True)
    (tmp_path / "etc" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "etc" / "secrets" / "broker.pass").write_text("s3cret\n")
    (tmp_path / "etc" / "secrets" / "broker.pass").chmod(0o600)
    text = (ROOT / "deploy" / "station.example.toml").read_text()
    text = text.replace("/etc/selfcheck/", f"{tmp_path}/etc/")
    text = text.replace("/var/lib/selfcheck/", f"{tmp_path}/var/")
    cfg = tmp_path / "station.toml"
    cfg.write_text(text)
    return cfg


def test_station_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("SELFCHECK_")]:
        monkeypatch.delenv(key)
    s = load_settings(_example(tmp_path))
    assert (s.site, s.station, s.tls, s.pad, s.card_reader) == (
        "thu-vien-hn", "quay-1", True, "3m810", "nfc")
    sec = s.config.broker.security
    assert sec.username == "quay-1" and sec.password == "s3cret" and sec.tls
    assert "s3cret" not in repr(s) and "s3cret" not in repr(sec)  # never in a log line


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFCHECK_LANG", "en")
    monkeypatch.setenv("SELFCHECK_STATION", "quay-9")
    s = load_settings(_example(tmp_path))
    assert (s.lang, s.station) == ("en", "quay-9")


@pytest.mark.parametrize(("line", "key"), [
    ('lang = "fr"', "lang"),
    ('afi_on_loan = 0x28', "afi_on_loan"),
    ('station = "Quay 1"', "station"),
    ('broker = "no-port"', "broker"),
    ('ack_timeout_s = -1', "ack_timeout_s"),
    ('colour = "blue"', "colour"),
    ('ca_file = "/nowhere/ca.crt"', "ca_file"),
    ('tls = false', "broker"),  # clear text to a remote broker
    ('pad_url = ""', "pad_url"),
])
def test_bad_config_names_the_key(tmp_path: Path, line: str, key: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("SELFCHECK_")]:
        monkeypatch.delenv(k)
    cfg = _example(tmp_path)
    name = line.split(" =")[0]
    kept = [ln for ln in cfg.read_text().splitlines() if not ln.startswith(f"{name} =")]
    cfg.write_text("\n".join([*kept, line]) + "\n")
    with pytest.raises(ValidationError) as err:
        load_settings(cfg)
    assert key in str(err.value), str(err.value)


def test_station_command_prints_the_bad_key(tmp_path: Path) -> None:
    cfg = _example(tmp_path)
    cfg.write_text(cfg.read_text().replace('lang = "vi"', 'lang = "fr"'))
    out = subprocess.run([sys.executable, "-m", "selfcheck.cli",
                          "station", "--config", str(cfg), "--offscreen"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "is not valid" in out.stderr and "'lang'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "pydantic" not in out.stderr


def test_make_credentials_twice_writes_the_same_file(tmp_path: Path) -> None:
    # A second run with the same roles and passwords changes nothing (setup.sh runs it on every
    # upgrade); a changed password gets a new salt and hash, the others stay.
    roles = tmp_path / "roles"
    roles.write_text("station st-a site-1\nstation st-b site-1\nbridge central-bridge-1\n")
    out = tmp_path / "out"
    make = [str(ROOT / "deploy/mosquitto/make-credentials"), str(roles), str(out)]
    subprocess.run(make, check=True, capture_output=True)
    first = (out / "dynamic-security.json").read_bytes()
    subprocess.run(make, check=True, capture_output=True)
    assert (out / "dynamic-security.json").read_bytes() == first

    (out / "secrets/st-b.pass").write_text("a-new-password-for-st-b\n")
    subprocess.run(make, check=True, capture_output=True)

    def salts(raw: bytes) -> dict[str, str]:
        return {c["username"]: c["salt"] for c in json.loads(raw)["clients"]}

    before, after = salts(first), salts((out / "dynamic-security.json").read_bytes())
    assert before["st-a"] == after["st-a"]
    assert before["central-bridge-1"] == after["central-bridge-1"]
    assert before["st-b"] != after["st-b"]

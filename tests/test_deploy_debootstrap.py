"""deploy/pi/provision.sh run for real, twice, in a fresh Debian bookworm root made by
debootstrap: what it installs and writes is checked, and the second run changes nothing.

Slow (a few hundred MB from the Debian mirror and PyPI, many minutes), so it runs only with
SELFCHECK_DEBOOTSTRAP_TEST=1, as root, with debootstrap installed (scripts/bootstrap):

    SELFCHECK_DEBOOTSTRAP_TEST=1 .venv/bin/pytest tests/test_deploy_debootstrap.py

The debootstrapped base is cached as var/debootstrap/bookworm.tar; each run unpacks a fresh
copy. Where a Raspberry Pi OS image differs from plain Debian in ways provision.sh relies on,
the root is made to look like one: /boot/firmware with config.txt and cmdline.txt, the
hciuart unit, `uname -m` saying aarch64. udevadm is a logging shim and systemctl drops
`--now`: a chroot runs neither udevd nor systemd.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SELFCHECK_DEBOOTSTRAP_TEST") != "1",
                       reason="slow, downloads a Debian root: SELFCHECK_DEBOOTSTRAP_TEST=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and chroot need root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None,
                       reason="debootstrap missing: scripts/bootstrap installs it"),
    pytest.mark.timeout(3600),
]

CACHE = ROOT / "var" / "debootstrap" / "bookworm.tar"
MIRROR = os.environ.get("SELFCHECK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIP_CA = "etc/selfcheck-test-pip-ca.pem"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=1 rootfstype=ext4 rootwait\n"


def _base() -> Path:
    if not CACHE.exists():
        work = CACHE.with_suffix(".d")
        shutil.rmtree(work, ignore_errors=True)
        # Raspberry Pi OS Lite has systemd, udev and python3; minbase has none of them.
        subprocess.run(["debootstrap", "--variant=minbase", "--include=systemd,udev,python3",
                        "bookworm", str(work), MIRROR], check=True, capture_output=True)
        subprocess.run(["tar", "-C", str(work), "-cf", str(CACHE), "."], check=True)
        shutil.rmtree(work)
    return CACHE


def _chroot(root: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # A clean environment: the host's (paths to its files, its pip settings) means nothing
    # inside the root.
    env = ["HOME=/root", "LANG=C.UTF-8", f"PATH={PATH}"]
    if (root / PIP_CA).exists():
        env += [f"{k}=/{PIP_CA}" for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    return subprocess.run(["chroot", str(root), "env", "-i", *env, *cmd], text=True,
                          capture_output=True, check=check, timeout=1800)


@pytest.fixture
def pi_root(tmp_path: Path) -> Iterator[Path]:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(_base())], check=True)
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text("# Raspberry Pi OS\n")
    (boot / "cmdline.txt").write_text(CMDLINE)
    (root / "lib/systemd/system/hciuart.service").write_text(
        "[Unit]\nDescription=Bluetooth UART (stub)\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n")
    for path, text in (("usr/local/bin/uname",
                        '#!/bin/sh\n[ "$1" = -m ] && { echo aarch64; exit 0; }\n'
                        'exec /bin/uname "$@"\n'),
                       ("usr/local/sbin/udevadm",
                        '#!/bin/sh\necho "udevadm $*" >> /var/log/udevadm-shim.log\n'),
                       # No systemd runs in a chroot: enabling works; starting, stopping and
                       # reloading are only logged.
                       ("usr/local/bin/systemctl",
                        '#!/bin/sh\necho "systemctl $*" >> /var/log/systemctl-shim.log\n'
                        'case "$1" in daemon-reload|start|stop|restart|reload) exit 0 ;; esac\n'
                        'args=""\nfor a in "$@"; do [ "$a" = --now ] || args="$args $a"; done\n'
                        'exec /bin/systemctl $args\n')):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        (root / path).chmod(0o755)
    subprocess.run(["rsync", "-a", "--exclude", ".venv", "--exclude", ".git", "--exclude",
                    "var", f"{ROOT}/", f"{root}/src/"], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    if os.environ.get("PIP_CERT"):  # a host that reaches PyPI through its own CA
        shutil.copy(os.environ["PIP_CERT"], root / PIP_CA)
    mounts = [("/proc", root / "proc"), ("/dev", root / "dev"), ("/dev/pts", root / "dev/pts")]
    for src, dest in mounts:
        subprocess.run(["mount", "--bind", src, str(dest)], check=True)
    try:
        _chroot(root, "systemctl", "enable", "hciuart.service")
        yield root
    finally:
        for _, dest in reversed(mounts):
            subprocess.run(["umount", "-l", str(dest)], check=False)


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under the places provision.sh writes: type, mode, owner, content."""
    out: dict[str, tuple[object, ...]] = {}
    for top in ("etc", "boot", "var/lib/selfcheck", "opt/selfcheck"):
        for dirpath, dirnames, filenames in os.walk(root / top):
            if dirpath.endswith("/opt/selfcheck"):
                dirnames[:] = [d for d in dirnames if d != ".venv"]
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                rel = str(p.relative_to(root))
                if p.is_symlink():
                    out[rel] = ("link", os.readlink(p))
                elif p.is_file():
                    out[rel] = ("file", st.st_mode, st.st_uid, st.st_gid,
                                hashlib.sha256(p.read_bytes()).hexdigest())
                else:
                    out[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid)
    return out


def test_provision_for_real_twice(pi_root: Path) -> None:
    root = pi_root
    first = _chroot(root, "/src/deploy/pi/provision.sh", "--card-reader", "uart",
                    "--src", "/src", check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # Packages from the distribution.
    for pkg in ("python3-venv", "libegl1", "libgles2", "libgbm1", "libgl1-mesa-dri",
                "libusb-1.0-0", "rsync"):
        assert _chroot(root, "dpkg", "-s", pkg, check=False).returncode == 0, pkg
    # The kiosk user in the groups the devices need.
    groups = _chroot(root, "id", "-nG", "kiosk").stdout.split()
    assert {"video", "render", "input", "dialout", "plugdev", "lp"} <= set(groups), groups
    # The app in its venv, runnable.
    out = _chroot(root, "/opt/selfcheck/.venv/bin/selfcheck", "--help")
    assert "doctor" in out.stdout
    # Config kept private to the kiosk group; files from the tree installed as they are.
    toml = root / "etc/selfcheck/station.toml"
    assert oct(toml.stat().st_mode & 0o777) == "0o640"
    for src, dest in (("deploy/pi/99-selfcheck.rules", "etc/udev/rules.d/99-selfcheck.rules"),
                      ("deploy/pi/journald-selfcheck.conf",
                       "etc/systemd/journald.conf.d/selfcheck.conf"),
                      ("systemd/selfcheck-station.service",
                       "etc/systemd/system/selfcheck-station.service")):
        assert (root / dest).read_bytes() == (ROOT / src).read_bytes(), dest
    config = (root / "boot/firmware/config.txt").read_text().splitlines()
    assert {"enable_uart=1", "dtoverlay=disable-bt", "dtoverlay=vc4-kms-v3d"} <= set(config)
    cmdline = (root / "boot/firmware/cmdline.txt").read_text()
    assert len(cmdline.splitlines()) == 1 and "console=serial0" not in cmdline
    for param in ("consoleblank=0", "vt.global_cursor_default=0", "quiet", "loglevel=3"):
        assert f" {param}" in cmdline, param
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "selfcheck-station.service").is_symlink()
    assert not (wants / "hciuart.service").exists()
    assert not (root / "etc/systemd/system/getty.target.wants/getty@tty1.service").exists()
    assert os.readlink(root / "etc/systemd/system/default.target").endswith(
        "multi-user.target")
    assert "control --reload" in (root / "var/log/udevadm-shim.log").read_text()
    assert "disable --now hciuart.service" in (root / "var/log/systemctl-shim.log").read_text()

    before = _snapshot(root)
    second = _chroot(root, "/src/deploy/pi/provision.sh", "--card-reader", "uart",
                     "--src", "/src", check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed
    assert (root / "boot/firmware/cmdline.txt").read_text() == cmdline


# A second run changes nothing: make-credentials keeps the salt and hash of every password that
# did not change (it once re-salted them all, found by this test).
def test_central_setup_for_real_twice(pi_root: Path) -> None:
    root = pi_root
    (root / "roles").write_text("station st-a site-1\nbridge central-bridge-1\n"
                                "fleet central-fleet\n")
    cmd = ("/src/deploy/central/setup.sh", "--host", "broker.lib", "/roles")
    first = _chroot(root, *cmd, check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for pkg in ("mosquitto", "openssl", "python3-venv", "rsync"):
        assert _chroot(root, "dpkg", "-s", pkg, check=False).returncode == 0, pkg
    assert (root / "etc/mosquitto/mosquitto.conf").read_bytes() == \
        (ROOT / "deploy/mosquitto/secure.conf").read_bytes()
    creds = root / "etc/mosquitto/selfcheck"
    for name in ("ca.crt", "server.crt", "server.key", "dynamic-security.json",
                 "secrets/st-a.pass", "secrets/central-bridge-1.pass"):
        assert (creds / name).is_file(), name
    assert "broker.lib" in _chroot(root, "openssl", "x509", "-noout", "-text", "-in",
                                   "/etc/mosquitto/selfcheck/server.crt").stdout
    secret = root / "etc/selfcheck/secrets/central-bridge-1.pass"
    assert secret.read_bytes() == (creds / "secrets/central-bridge-1.pass").read_bytes()
    assert oct(secret.stat().st_mode & 0o777) == "0o600"  # systemd hands it on (LoadCredential)
    assert (root / "etc/selfcheck/central.env").is_file()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for unit in ("mosquitto.service", "selfcheck-central@1.service", "selfcheck-fleet.service"):
        assert (wants / unit).is_symlink(), unit
    assert "doctor" in _chroot(root, "/opt/selfcheck/.venv/bin/selfcheck", "--help").stdout

    before = _snapshot(root)
    second = _chroot(root, *cmd, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed

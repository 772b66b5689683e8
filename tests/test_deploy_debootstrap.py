"""deploy/pi/provision.sh and deploy/central/setup.sh run for real, twice, in a fresh Debian
bookworm root made by debootstrap: what they install and write is checked, and the second run
changes nothing. provision.sh gets a real data partition (a loop device); setup.sh ends with a
running PostgreSQL and Mosquitto inside the root and `selfcheck doctor --central` green.

Slow (a few hundred MB from the Debian mirror and PyPI, many minutes), so it runs only with
SELFCHECK_DEBOOTSTRAP_TEST=1, as root, with debootstrap installed (scripts/bootstrap):

    SELFCHECK_DEBOOTSTRAP_TEST=1 .venv/bin/pytest tests/test_deploy_debootstrap.py

The debootstrapped base is cached as var/debootstrap/bookworm.tar; each run unpacks a fresh
copy. Where a Raspberry Pi OS image differs from plain Debian in ways provision.sh relies on,
the root is made to look like one: /boot/firmware with config.txt and cmdline.txt, the
hciuart unit, `uname -m` saying aarch64. udevadm is a logging shim and systemctl drops
`--now`: a chroot runs neither udevd nor systemd. policy-rc.d keeps package scripts from
starting daemons in the root; setup.sh, seeing no systemd, starts the ones it needs itself.

The central's daemons would take the host's ports (1883, 5432), so setup.sh runs in a network
namespace of its own, with only a loopback: its packages are fetched beforehand into the
root's apt cache and the app's wheels come from var/debootstrap/wheels (built once from the
project and its dependencies), so the script's apt and pip steps run, offline.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
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
WHEELS = ROOT / "var" / "debootstrap" / "wheels"
MIRROR = os.environ.get("SELFCHECK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIP_CA = "etc/selfcheck-test-pip-ca.pem"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=1 rootfstype=ext4 rootwait\n"


def cached(name: str) -> Callable[[Callable[[], Path]], Callable[[], Path]]:
    """Builds a cache under var/debootstrap/ under a lock of its own: the suite's workers may
    start two of these tests at once, and one must not unpack what the other is writing."""
    def wrap(build: Callable[[], Path]) -> Callable[[], Path]:
        @functools.wraps(build)
        def locked() -> Path:
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            with open(CACHE.parent / f".{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                return build()
        return locked
    return wrap


@cached("bookworm")
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


def _chroot(root: Path, *cmd: str, check: bool = True, netns: str | None = None,
            env_extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # A clean environment: the host's (paths to its files, its pip settings) means nothing
    # inside the root.
    env = ["HOME=/root", "LANG=C.UTF-8", f"PATH={PATH}", *env_extra]
    if (root / PIP_CA).exists():
        env += [f"{k}=/{PIP_CA}" for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, "chroot", str(root), "env", "-i", *env, *cmd], text=True,
                          capture_output=True, check=check, timeout=1800)


@cached("wheels")
def _wheels() -> Path:
    """The project's wheel and its dependencies', for an install with no network."""
    if not (WHEELS / "complete").exists():
        shutil.rmtree(WHEELS, ignore_errors=True)
        subprocess.run([str(ROOT / ".venv" / "bin" / "pip"), "wheel", "-q", "--wheel-dir",
                        str(WHEELS), str(ROOT), "setuptools>=68", "wheel"], check=True,
                       capture_output=True, timeout=1800)
        (WHEELS / "complete").touch()
    return WHEELS


def _kill_in(root: Path, uid: int | None = None) -> None:
    """Ends the daemons started inside ROOT (found by their root directory), or only those of
    user UID there, nothing else."""
    for _ in range(50):
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if os.readlink(proc / "root") == str(root) and (
                            uid is None or proc.stat().st_uid == uid):
                        pids.append(int(proc.name))
                except OSError:
                    continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        subprocess.run(["sleep", "0.1"], check=False)


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
                       # Package scripts start no daemon in the root (Debian's policy-rc.d).
                       ("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n"),
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
        _kill_in(root)
        # Whatever the scripts mounted inside the root (the data partition, the journal's
        # bind), deepest first, then the fixture's own.
        inside = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                                text=True).stdout.split()
        for target in sorted((t for t in inside if t.startswith(f"{root}/")), key=len,
                             reverse=True):
            if target not in {str(dest) for _, dest in mounts}:
                subprocess.run(["umount", "-l", target], check=False)
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


@pytest.fixture
def data_device(tmp_path: Path) -> Iterator[str]:
    """A blank 64 MiB block device (a loop device over a file), as a new data partition."""
    image = tmp_path / "data.img"
    with image.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _mounted_from(path: Path) -> str:
    return subprocess.run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(path)],
                          capture_output=True, text=True).stdout.strip()


# data_device first: its loop device is detached after the root's mounts are gone.
def test_provision_for_real_twice(data_device: str, pi_root: Path) -> None:
    root = pi_root
    data = root / "var/lib/selfcheck"
    # A station that ran before it had its partition: its journal must not end up hidden
    # under the mount.
    data.mkdir(parents=True)
    (data / "journal.db").write_bytes(b"unsent transactions")
    cmd = ("/src/deploy/pi/provision.sh", "--card-reader", "uart", "--read-only-root",
           "--data-device", data_device, "--mkfs", "--time-server", "central.lib",
           "--src", "/src")
    # The app's wheels from the cache first (PyPI still reachable for anything missing).
    shutil.copytree(_wheels(), root / "wheels")
    wheels = ("PIP_FIND_LINKS=/wheels",)
    first = _chroot(root, *cmd, check=False, env_extra=wheels)
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
    # ... and what the unit starts: the current release, the first being that venv, on the
    # data partition, where an update from the central can add and switch releases.
    unit = (ROOT / "systemd/selfcheck-station.service").read_text()
    start = next(ln.split("=", 1)[1].split()[0] for ln in unit.splitlines()
                 if ln.startswith("ExecStart="))
    assert "doctor" in _chroot(root, start, "--help").stdout
    assert (root / "var/lib/selfcheck/releases/current").is_symlink()
    assert 'releases = "/var/lib/selfcheck/releases"' in \
        (root / "etc/selfcheck/station.toml").read_text()
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

    # The data partition: made, in fstab by UUID with nofail, mounted, the folders on it.
    blkid = _chroot(root, "blkid", "-o", "export", data_device).stdout
    assert "TYPE=ext4" in blkid and "LABEL=selfcheck-data" in blkid, blkid
    dev_uuid = next(ln.split("=", 1)[1] for ln in blkid.splitlines() if ln.startswith("UUID="))
    fstab = {ln.split()[1]: ln.split() for ln in (root / "etc/fstab").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    assert fstab["/var/lib/selfcheck"][0] == f"UUID={dev_uuid}"
    assert "nofail" in fstab["/var/lib/selfcheck"][3].split(",")
    bind = fstab["/var/log/journal"]
    assert bind[0] == "/var/lib/selfcheck/journal"
    assert {"bind", "nofail", "x-systemd.requires=var-lib-selfcheck.mount"} <= \
        set(bind[3].split(","))
    verify = _chroot(root, "findmnt", "--verify", "--tab-file", "/etc/fstab", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert _mounted_from(data) == data_device
    assert (data / "journal").stat().st_dev == data.stat().st_dev != root.stat().st_dev
    assert (data / "journal.db").read_bytes() == b"unsent transactions"
    # Hardware watchdog, time from the central, the read-only root as bookworm does it.
    assert "dtparam=watchdog=on" in config and "auto_initramfs=1" in config
    watchdog = (root / "etc/systemd/system.conf.d/selfcheck-watchdog.conf").read_text()
    assert "[Manager]" in watchdog and "RuntimeWatchdogSec=15s" in watchdog
    timesync = (root / "etc/systemd/timesyncd.conf.d/selfcheck.conf").read_text()
    assert "[Time]" in timesync and "NTP=central.lib" in timesync.splitlines()
    assert (root / "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"
            ).is_symlink()
    assert _chroot(root, "dpkg", "-s", "overlayroot", check=False).returncode == 0
    assert (root / "usr/share/initramfs-tools/scripts/init-bottom/overlayroot").is_file()
    assert 'overlayroot="tmpfs:recurse=0"' in \
        (root / "etc/overlayroot.local.conf").read_text().splitlines()
    journald = (root / "etc/systemd/journald.conf.d/selfcheck.conf").read_text()
    assert "SystemMaxUse=64M" in journald and "Storage=persistent" in journald

    before = _snapshot(root)
    second = _chroot(root, *cmd, check=False, env_extra=wheels)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], [(k, before.get(k), after.get(k)) for k in changed]
    assert (root / "boot/firmware/cmdline.txt").read_text() == cmdline

    # The next boot, as far as a chroot shows it: unmounted, the mount point on the root file
    # system holds nothing (a folder made there would be hidden, and the journal's bind left
    # without a source: the emergency shell); mounted from fstab alone, all is back.
    for target in (root / "var/log/journal", data):
        subprocess.run(["umount", str(target)], check=True)
    assert list(data.iterdir()) == []
    for mountpoint in ("/var/lib/selfcheck", "/var/log/journal"):
        _chroot(root, "mount", mountpoint)
    assert _mounted_from(data) == data_device
    assert (root / "var/log/journal").stat().st_ino == (data / "journal").stat().st_ino


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with only a loopback: the root's daemons keep off the host's ports."""
    if shutil.which("ip") is None:
        pytest.skip("ip (iproute2) missing: the central's daemons need a network namespace")
    name = f"selfcheck-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _start_unit(root: Path, netns: str, unit: str, instance: str, credentials: dict[str, str],
                sock_dir: Path) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Runs a unit's ExecStart= as systemd would (its User=, EnvironmentFile=, the credentials
    copied for it into %d, NOTIFY_SOCKET), inside the root: no systemd runs in a chroot."""
    text = (root / "etc/systemd/system" / unit).read_text()
    env = dict(ln.split("=", 1) for ln in (root / "etc/selfcheck/central.env").read_text()
               .splitlines() if "=" in ln and not ln.startswith("#"))
    creds = f"/run/credentials/{unit.replace('@', '-' + instance)}"
    (root / creds.lstrip("/")).mkdir(parents=True)
    for name, source in credentials.items():
        dest = root / creds.lstrip("/") / name
        shutil.copy(root / source.lstrip("/"), dest)
        dest.chmod(0o400)
        shutil.chown(dest, user=int(_chroot(root, "id", "-u", "selfcheck").stdout))
    shutil.chown(root / creds.lstrip("/"), user=int(_chroot(root, "id", "-u", "selfcheck").stdout))
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    line = line.removeprefix("ExecStart=").replace("%i", instance).replace("%d", creds)
    for key, value in env.items():
        line = line.replace("${" + key + "}", value)
    sock_path = sock_dir / f"notify-{instance}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock_path.chmod(0o777)
    sock.settimeout(1)
    envs = [f"{k}={v}" for k, v in env.items()] + [
        "LANG=C.UTF-8", f"PATH={PATH}", f"NOTIFY_SOCKET=/{sock_path.relative_to(root)}"]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "chroot", str(root), "runuser", "-u", "selfcheck", "--",
         "env", "-i", *envs, "sh", "-c", 'cd /var/lib/selfcheck && exec "$@"', "sh",
         *shlex.split(line)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, sock


def _ready(proc: subprocess.Popen[bytes], sock: socket.socket, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if b"READY=1" in sock.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            pass
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
    raise AssertionError("no READY=1")


CENTRAL_PACKAGES = ("mosquitto", "openssl", "python3-venv", "rsync", "postgresql",
                    "postgresql-client")


# A second run changes nothing: make-credentials keeps the salt and hash of every password that
# did not change (it once re-salted them all, found by this test).
def test_central_setup_for_real_twice(pi_root: Path, netns: str) -> None:
    root = pi_root
    (root / "roles").write_text("station st-a site-1\nbridge central-bridge-1\n"
                                "bridge central-bridge-2\nfleet central-fleet\n")
    # What setup.sh downloads, fetched now while there is a network; it runs without one.
    _chroot(root, "apt-get", "update", "-qq")
    _chroot(root, "apt-get", "install", "-y", "-qq", "--download-only", *CENTRAL_PACKAGES)
    shutil.copytree(_wheels(), root / "wheels")
    offline = ("PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheels")
    cmd = ("/src/deploy/central/setup.sh", "--host", "broker.lib", "/roles")

    # A roles file without the second bridge is refused before anything changes.
    (root / "roles-one").write_text("bridge central-bridge-1\nfleet central-fleet\n")
    refused = _chroot(root, "/src/deploy/central/setup.sh", "/roles-one", check=False,
                      netns=netns)
    assert refused.returncode == 2 and "central-bridge-2" in refused.stderr, refused.stderr
    assert not (root / "opt/selfcheck").exists()

    first = _chroot(root, *cmd, check=False, netns=netns, env_extra=offline)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for pkg in CENTRAL_PACKAGES:
        assert _chroot(root, "dpkg", "-s", pkg, check=False).returncode == 0, pkg
    # The doctor's verdict at the end of the script: broker login and the store, both ok.
    doctor = first.stdout[first.stdout.index("== check: selfcheck doctor"):]
    assert "problem" not in doctor.lower() and doctor.lower().count("ok") >= 2, doctor
    plugin = next(ln for ln in _chroot(root, "dpkg", "-L", "mosquitto").stdout.splitlines()
                  if ln.endswith("/mosquitto_dynamic_security.so"))
    conf = (root / "etc/mosquitto/mosquitto.conf").read_text()
    assert f"plugin {plugin}" in conf.splitlines()
    assert conf.replace(f"plugin {plugin}", "") == \
        (ROOT / "deploy/mosquitto/secure.conf").read_text().replace(
            "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "")
    creds = root / "etc/mosquitto/selfcheck"
    for name in ("ca.crt", "server.crt", "server.key", "dynamic-security.json",
                 "secrets/st-a.pass", "secrets/central-bridge-1.pass"):
        assert (creds / name).is_file(), name
    assert "broker.lib" in _chroot(root, "openssl", "x509", "-noout", "-text", "-in",
                                   "/etc/mosquitto/selfcheck/server.crt").stdout
    for name in ("central-bridge-1", "central-bridge-2", "central-fleet"):
        secret = root / f"etc/selfcheck/secrets/{name}.pass"
        assert secret.read_bytes() == (creds / f"secrets/{name}.pass").read_bytes()
        assert oct(secret.stat().st_mode & 0o777) == "0o600"  # systemd hands it on
    assert (root / "etc/selfcheck/central.env").is_file()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for unit in ("mosquitto.service", "postgresql.service", "selfcheck-central@1.service",
                 "selfcheck-central@2.service", "selfcheck-fleet.service"):
        assert (wants / unit).is_symlink(), unit

    # The store the units are given (central.env) is PostgreSQL, migrated, owned by the
    # selfcheck user, who logs in with no password (peer), as the bridges do.
    assert "STORE_URL=postgresql://selfcheck@/selfcheck" in \
        (root / "etc/selfcheck/central.env").read_text().splitlines()
    check = _chroot(root, "runuser", "-u", "selfcheck", "--", "/opt/selfcheck/.venv/bin/selfcheck",
                    "central", "migrate", "--check", "--db", "postgresql://selfcheck@/selfcheck",
                    check=False, netns=netns)
    assert check.returncode == 0, check.stdout + check.stderr
    owner = _chroot(root, "runuser", "-u", "selfcheck", "--", "psql", "-XAt", "selfcheck", "-c",
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'selfcheck'",
                    netns=netns)
    assert owner.stdout.strip() == "selfcheck"
    # The broker runs the secure profile: a bridge's password is let in, no password is not.
    probe = ("import sys, paho.mqtt.client as m\n"
             "c = m.Client(m.CallbackAPIVersion.VERSION2, client_id=sys.argv[1])\n"
             "c.username_pw_set(sys.argv[1], sys.argv[2] or None)\n"
             "rc = []\n"
             "c.on_connect = lambda cl, u, f, r, p: (rc.append(r.value), cl.disconnect())\n"
             "c.connect('127.0.0.1', 1883); c.loop_forever(); print(rc[0])\n")
    password = (creds / "secrets/central-bridge-2.pass").read_text().strip()
    for user, pw, expected in (("central-bridge-2", password, "0"), ("central-bridge-2", "", "")):
        out = _chroot(root, "/opt/selfcheck/.venv/bin/python", "-c", probe, user, pw,
                      check=False, netns=netns)
        code = out.stdout.strip()
        assert (code == "0") == (expected == "0"), (user, out.stdout, out.stderr)

    # The units' command lines work with what the script installed: both bridges and the
    # fleet service start as their units start them and say READY=1 (Type=notify), and each
    # bridge then reports its library-system verdict on the broker, where the fleet may read.
    sock_dir = root / "run/selfcheck-test"
    sock_dir.mkdir(parents=True)
    started = []
    for unit, instance, login in (
            ("selfcheck-central@.service", "1", "central-bridge-1"),
            ("selfcheck-central@.service", "2", "central-bridge-2"),
            ("selfcheck-fleet.service", "fleet", "central-fleet")):
        unit_creds = {"broker-password": f"/etc/selfcheck/secrets/{login}.pass"}
        if unit.startswith("selfcheck-central"):
            unit_creds["ils-password"] = "/etc/selfcheck/secrets/ils.pass"
        started.append(_start_unit(root, netns, unit, instance, unit_creds, sock_dir))
    try:
        for proc, sock in started:
            _ready(proc, sock)
        watch = ("import sys, time, paho.mqtt.client as m\n"
                 "seen = set()\n"
                 "c = m.Client(m.CallbackAPIVersion.VERSION2, client_id='central-fleet')\n"
                 "c.username_pw_set('central-fleet', sys.argv[1])\n"
                 "c.on_connect = lambda cl, u, f, r, p: cl.subscribe('lib/central/v1/+/ils')\n"
                 "c.on_message = lambda cl, u, msg: seen.add(msg.topic.split('/')[3])\n"
                 "c.connect('127.0.0.1', 1883); c.loop_start()\n"
                 "end = time.monotonic() + 30\n"
                 "while len(seen) < 2 and time.monotonic() < end: time.sleep(0.2)\n"
                 "c.loop_stop(); print(' '.join(sorted(seen)))\n")
        fleet_pw = (creds / "secrets/central-fleet.pass").read_text().strip()
        seen = _chroot(root, "/opt/selfcheck/.venv/bin/python", "-c", watch, fleet_pw,
                       netns=netns).stdout.split()
        assert seen == ["central-bridge-1", "central-bridge-2"], seen
    finally:
        for proc, sock in started:
            proc.terminate()
            sock.close()
        for proc, _ in started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    # Whatever of the services outlived runuser (PostgreSQL and Mosquitto keep running).
    _kill_in(root, uid=int(_chroot(root, "id", "-u", "selfcheck").stdout))
    shutil.rmtree(sock_dir)
    shutil.rmtree(root / "run/credentials")

    before = _snapshot(root)
    second = _chroot(root, *cmd, check=False, netns=netns, env_extra=offline)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed

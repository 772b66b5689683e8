"""The station on the Raspberry Pi's architecture: a Debian bookworm arm64 root (debootstrap,
run through qemu-user and binfmt_misc), the app installed in a venv inside it from a wheel
built from this project (as provision.sh installs it on a Pi, with pip), then
`selfcheck station --headless` started in it with simulated devices against a broker and a
central on this host: a loan and a return go through and the central's store has both.

What this does not show (no Pi here): the GPIO/UART card reader, the KMS/DRM panel and touch,
the boot itself (firmware, initramfs, overlayroot, the data partition mounted by systemd). It
shows the aarch64 wheels (Kivy, pydantic-core, psycopg, ...) install and the runtime works on
an aarch64 Python, which is what differs from the x86 development machine.

Slow (a Debian arm64 root and the wheels, then everything emulated, many minutes): runs only
with SELFCHECK_DEBOOTSTRAP_TEST=1, as root, with debootstrap and an aarch64 binfmt handler
(Debian's qemu-user-static and binfmt-support). The root is cached as
var/debootstrap/bookworm-arm64.tar, the wheels in var/debootstrap/wheels-arm64.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.backends.store import CirculationStore
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import CentralProcess, HeadlessStation
from tests.conftest import ROOT
from tests.test_deploy_debootstrap import MIRROR, PATH, _wheels, cached

BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def _binfmt_problem() -> str | None:
    """Why aarch64 programs cannot run here, or None when they can (in a chroot too: the F
    flag makes the kernel hold the interpreter, so the root needs no copy of it)."""
    if not BINFMT.exists():
        return ("no aarch64 binfmt handler: apt-get install qemu-user-static binfmt-support "
                "(a container must also allow binfmt_misc to be mounted)")
    text = BINFMT.read_text()
    if not text.startswith("enabled"):
        return "the aarch64 binfmt handler is disabled"
    flags = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags:")),
                 "")
    if "F" not in flags:
        return "the aarch64 binfmt handler lacks the F flag (qemu-user-static sets it)"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SELFCHECK_DEBOOTSTRAP_TEST") != "1",
                       reason="slow, downloads a Debian arm64 root: SELFCHECK_DEBOOTSTRAP_TEST=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and chroot need root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None,
                       reason="debootstrap missing: scripts/bootstrap installs it"),
    pytest.mark.skipif(_binfmt_problem() is not None, reason=str(_binfmt_problem())),
    pytest.mark.timeout(3600),
]

CACHE = ROOT / "var" / "debootstrap" / "bookworm-arm64.tar"
WHEELS = ROOT / "var" / "debootstrap" / "wheels-arm64"


@cached("bookworm-arm64")
def _base() -> Path:
    if not CACHE.exists():
        work = CACHE.with_suffix(".d")
        shutil.rmtree(work, ignore_errors=True)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        # One stage: with binfmt the root's own maintainer scripts run, emulated.
        subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase",
                        "--include=python3,python3-venv,ca-certificates", "bookworm",
                        str(work), MIRROR], check=True, capture_output=True, timeout=3000)
        subprocess.run(["tar", "-C", str(work), "-cf", str(CACHE), "."], check=True)
        shutil.rmtree(work)
    return CACHE


@cached("wheels-arm64")
def _arm_wheels() -> Path:
    """This project's wheel and its dependencies' for CPython 3.11 on aarch64 (bookworm's
    Python): binary wheels from PyPI, and the pure-Python ones built for the x86 set (a few
    dependencies publish only sources, which build the same on any machine)."""
    if (WHEELS / "complete").exists():
        return WHEELS
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    pip = str(ROOT / ".venv" / "bin" / "pip")
    for wheel in _wheels().glob("*-none-any.whl"):
        if not wheel.name.startswith("selfcheck-"):
            shutil.copy(wheel, WHEELS)
    subprocess.run([pip, "wheel", "-q", "--no-deps", "-w", str(WHEELS), str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    project = next(WHEELS.glob("selfcheck-*.whl"))
    subprocess.run([pip, "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
                    "--implementation", "cp", "--platform", "manylinux2014_aarch64",
                    "--platform", "manylinux_2_17_aarch64", "--platform",
                    "manylinux_2_28_aarch64", "--find-links", str(WHEELS), "-d", str(WHEELS),
                    str(project)], check=True, capture_output=True, timeout=1200)
    (WHEELS / "complete").touch()
    return WHEELS


def _chroot(root: Path, *cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = ["HOME=/root", "LANG=C.UTF-8", f"PATH={PATH}"]
    out = subprocess.run(["chroot", str(root), "env", "-i", *env, *cmd], text=True,
                         capture_output=True, timeout=timeout)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
    return out


@pytest.fixture
def arm_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(_base())], check=True)
    shutil.copytree(_arm_wheels(), root / "wheels")
    mounts = [("/proc", root / "proc"), ("/dev", root / "dev")]
    for src, dest in mounts:
        subprocess.run(["mount", "--bind", src, str(dest)], check=True)
    try:
        yield root
    finally:
        for _, dest in reversed(mounts):
            subprocess.run(["umount", "-l", str(dest)], check=False)


class ChrootStation(HeadlessStation):
    """The headless station run inside the arm64 root, by its venv's own entry point."""

    def __init__(self, root: Path, config: str, log: Path) -> None:
        super().__init__(Path(config), log=log)
        self.root = root

    def start(self, timeout_s: float = 30.0) -> HeadlessStation:
        with self._lock:
            self.events = []
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["chroot", str(self.root), "env", "-i", "HOME=/var/lib/selfcheck", "LANG=C.UTF-8",
             f"PATH={PATH}", "PYTHONUNBUFFERED=1", "/opt/selfcheck/.venv/bin/selfcheck",
             "station", "--headless", "--events", "--config", str(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self.wait_for(lambda e: e.get("event") == "ready", timeout_s)
        return self


def _visit(st: HeadlessStation, start: str, mode: str, book: str) -> dict[str, object]:
    """One reader: start, one book on the pad, the central's answer, and away."""
    n = st.mark()
    st.send(start)
    st.wait_for(lambda e: e.get("mode") == mode, 120, after=n)
    st.send(f"place {book}")
    event = st.wait_for(lambda e: e.get("item") == book and e.get("status") == "done", 120,
                        after=n)
    m = st.mark()
    st.send(f"lift {book}", "touch done", "touch finish")
    st.wait_for(lambda e: e.get("mode") == "idle", 120, after=m)
    return event


def test_station_on_arm64_lends_and_takes_back(arm_root: Path, tmp_path: Path,
                                               broker: Broker) -> None:
    root = arm_root
    # Really aarch64: the root's Python is an ARM64 ELF (e_machine 183) and reports it.
    assert (root / "usr/bin/python3.11").read_bytes()[18:20] == (183).to_bytes(2, "little")
    assert _chroot(root, "python3", "-c",
                   "import platform; print(platform.machine())").stdout.strip() == "aarch64"

    # Installed as on a Pi: a venv of the distribution's Python, pip, the project's wheel.
    _chroot(root, "python3", "-m", "venv", "/opt/selfcheck/.venv")
    _chroot(root, "/opt/selfcheck/.venv/bin/pip", "install", "-q", "--no-index",
            "--find-links", "/wheels", "selfcheck", timeout=3000)
    _chroot(root, "/opt/selfcheck/.venv/bin/python", "-c", "import kivy, pydantic_core")
    (root / "var/lib/selfcheck").mkdir(parents=True)
    (root / "etc/selfcheck").mkdir(parents=True)
    (root / "etc/selfcheck/station.toml").write_text(
        f'site = "arm-lib"\nstation = "st-arm"\nbroker = "{broker.address}"\n'
        'journal = "/var/lib/selfcheck/journal.db"\nack_timeout_s = 10\ninactivity_s = 600\n'
        'pin = "never"\n')

    db = f"sqlite:///{tmp_path / 'central.db'}"
    book = "49000001"
    central = CentralProcess(broker.address, db, sample_items=5, sample_patrons=2,
                             log=tmp_path / "central.log").start()
    st = ChrootStation(root, "/etc/selfcheck/station.toml", tmp_path / "station.log")
    try:
        st.start(300)  # an emulated cold start of Python and the app
        st.wait_for(lambda e: e.get("online") is True, 120)
        loan = _visit(st, "card TN00001", "borrow", book)
        back = _visit(st, "touch return", "return", book)
        n = st.mark()
        st.send("drain")
        st.wait_for(lambda e: e.get("event") == "drained", 120, after=n)
        assert st.proc is not None and st.proc.wait(60) == 0
    finally:
        st.stop()
        central.stop()
    assert (loan["kind"], back["kind"]) == ("loan", "return")
    store = CirculationStore(db)
    try:
        rows = store.history([book])
        assert [r["msg_id"] for r in rows] == [loan["msg_id"], back["msg_id"]]
        assert book not in store.on_loan()
    finally:
        store.close()
    # The journal, written by the aarch64 station, kept nothing unsent.
    assert (root / "var/lib/selfcheck/journal.db").exists()

"""The station's installed releases, updated from the central's wheelhouse (no internet).

    RELEASES/
      0.1.0/venv/            one virtualenv per release, never changed once installed
      0.2.0/venv/
      current -> 0.2.0       what the station unit starts (current/venv/bin/selfcheck station)
      previous -> 0.1.0      what `rollback` (or a failed health check) goes back to

An update fetches the release's lock file (requirements with --hash lines) from the central,
checks it against the sha256 the operator sent, installs it into a new venv with pip
--require-hashes --no-index --find-links (only the central's wheels, each checked against
the lock), then starts the new release the way the running one was started, with --check: it
loads the config and the journal read-only and exits. Only a release that passes is switched
to; the links change by rename, which is atomic, so a power cut leaves one or the other.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOCK = "requirements.lock"
COMPLETE = "installed"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
FETCH_TIMEOUT_S = 30.0
INSTALL_TIMEOUT_S = 1800.0  # a Pi on a slow LAN with every wheel
CHECK_TIMEOUT_S = 120.0


class ReleaseError(Exception):
    """An update or rollback that did not happen; the message says why (for cmd/res)."""


@dataclass(frozen=True)
class Switched:
    version: str
    previous: str | None


class Releases:
    def __init__(self, root: Path, *, python: str | None = None) -> None:
        self.root = root
        # The interpreter new venvs are made from, and whose pip installs into them: the
        # running one (pip --python puts the packages into the new venv, which needs no pip).
        self.python = python or sys.executable

    def _link(self, name: str) -> str | None:
        try:
            return os.readlink(self.root / name)
        except OSError:
            return None

    @property
    def current(self) -> str | None:
        return self._link("current")

    @property
    def previous(self) -> str | None:
        return self._link("previous")

    def venv(self, version: str) -> Path:
        return self.root / version / "venv"

    def _set(self, name: str, version: str) -> None:
        tmp = self.root / f".{name}.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version)
        tmp.replace(self.root / name)  # rename(2): the link is never missing

    def fetch_lock(self, url: str, sha256: str) -> bytes:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/{LOCK}",
                                        timeout=FETCH_TIMEOUT_S) as resp:
                body: bytes = resp.read(1 << 20)
        except OSError as exc:
            raise ReleaseError(f"the lock file could not be fetched from {url}: {exc}") from None
        got = hashlib.sha256(body).hexdigest()
        if got != sha256.lower():
            raise ReleaseError(f"the lock file at {url} has sha256 {got}, not the {sha256} "
                               f"sent with the command: not installed")
        return body

    def install(self, version: str, url: str, sha256: str) -> Path:
        """The release in its own venv (again from scratch if a previous try was cut)."""
        if not VERSION_RE.match(version) or version in ("current", "previous"):
            raise ReleaseError(f"{version!r} is not a release name")
        if version == self.current:
            raise ReleaseError(f"{version} is the release running now")
        lock = self.fetch_lock(url, sha256)
        self.root.mkdir(parents=True, exist_ok=True)
        # Installed in place (a venv's scripts name its path, so it cannot be moved after);
        # the marker written last says it is whole, and only a whole release is switched to.
        home = self.root / version
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        (home / LOCK).write_bytes(lock)
        self._run([self.python, "-m", "venv", "--without-pip", str(home / "venv")],
                  "creating the venv", 120)
        # Only what the lock names, each file checked against its hash, only from the central.
        self._run([self.python, "-m", "pip", "--python", str(home / "venv" / "bin" / "python"),
                   "install", "--disable-pip-version-check", "--no-input", "--no-index",
                   "--find-links", url, "--require-hashes", "--only-binary", ":all:",
                   "--no-cache-dir", "-r", str(home / LOCK)], "pip install", INSTALL_TIMEOUT_S)
        (home / COMPLETE).write_text(sha256.lower() + "\n")
        return home / "venv"

    def check(self, version: str, argv: list[str]) -> None:
        """The new release started as the running one was (argv after the program), with
        --check: it must load everything and exit 0."""
        exe = self.venv(version) / "bin" / "selfcheck"
        try:
            done = subprocess.run([str(exe), *argv, "--check"], capture_output=True,
                                  timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReleaseError(f"{version} failed its health check: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-400:]
            raise ReleaseError(f"{version} failed its health check (exit {done.returncode}): "
                               f"{tail}")

    def switch(self, version: str) -> Switched:
        if not (self.root / version / COMPLETE).is_file():
            raise ReleaseError(f"release {version} is not installed")
        before = self.current
        if before is not None and before != version:
            self._set("previous", before)
        self._set("current", version)
        return Switched(version, before)

    def rollback(self) -> Switched:
        """Back to the previous release; the one left becomes `previous` (a second rollback
        undoes the first)."""
        before = self.previous
        if before is None or not (self.root / before / COMPLETE).is_file():
            raise ReleaseError("no previous release to go back to")
        return self.switch(before)

    def discard(self, version: str) -> None:
        """A release that failed its check: removed, so it cannot be switched to by mistake."""
        if version not in (self.current, self.previous):
            shutil.rmtree(self.root / version, ignore_errors=True)

    @staticmethod
    def _run(cmd: list[str], what: str, timeout: float) -> None:
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReleaseError(f"{what} failed: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-600:]
            raise ReleaseError(f"{what} failed (exit {done.returncode}): {tail}")


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
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK = "requirements.lock"
COMPLETE = "installed"
PENDING = "pending.json"  # a release switched to by `update` that has not yet proved itself
# Starts a new release gets to reach the broker before the one before it is put back: the
# --check before the switch catches a release that cannot start at all; this catches one that
# starts and then dies (systemd restarts it each time) before it ever gets on line.
MAX_STARTS = 3
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
        # The interpreter new venvs are made from: the running one (venv makes them from
        # the system's Python underneath it).
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
        if not VERSION_RE.match(version) or version in ("current", "previous", PENDING):
            raise ReleaseError(f"{version!r} is not a release name")
        if version == self.current:
            raise ReleaseError(f"{version} is the release running now")
        if version == self.previous:  # replacing it would leave nothing to roll back to
            raise ReleaseError(f"{version} is the previous release: send `rollback` for it")
        lock = self.fetch_lock(url, sha256)
        self.root.mkdir(parents=True, exist_ok=True)
        # Installed in place (a venv's scripts name its path, so it cannot be moved after);
        # the marker written last says it is whole, and only a whole release is switched to.
        home = self.root / version
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        (home / LOCK).write_bytes(lock)
        # With its own pip (ensurepip's bundled wheel, no download): the release installed
        # now is the one that installs the next.
        self._run([self.python, "-m", "venv", str(home / "venv")], "creating the venv", 300)
        # Only what the lock names, each file checked against its hash, only from the central.
        self._run([str(home / "venv" / "bin" / "python"), "-m", "pip", "install",
                   "--disable-pip-version-check", "--no-input", "--no-index",
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

    def switch(self, version: str, *, on_trial: bool = False) -> Switched:
        """`current` to `version`; `on_trial`: it must reach the broker within MAX_STARTS
        starts (see started), or the one before comes back."""
        if not (self.root / version / COMPLETE).is_file():
            raise ReleaseError(f"release {version} is not installed")
        before = self.current
        if before is not None and before != version:
            self._set("previous", before)
        pending = self.root / PENDING
        if on_trial and before is not None:
            tmp = self.root / f".{PENDING}.new"
            tmp.write_text(json.dumps({"version": version, "previous": before, "starts": 0}))
            tmp.replace(pending)
        else:
            pending.unlink(missing_ok=True)
        self._set("current", version)
        return Switched(version, before)

    def _pending(self) -> dict[str, Any] | None:
        try:
            trial = json.loads((self.root / PENDING).read_text())
        except (OSError, ValueError):
            return None
        return trial if isinstance(trial, dict) and trial.get("version") == self.current \
            else None

    def started(self) -> Switched | None:
        """At each start of the app, before anything else: count a start of a release on
        trial; past MAX_STARTS, put the previous one back (the caller exits for the unit to
        start it). None: go on."""
        trial = self._pending()
        if trial is None:
            return None
        starts = int(trial.get("starts", 0)) + 1
        if starts > MAX_STARTS and trial.get("previous"):
            done = self.switch(str(trial["previous"]))  # not on trial: it ran before
            return done
        trial["starts"] = starts
        tmp = self.root / f".{PENDING}.new"
        tmp.write_text(json.dumps(trial))
        tmp.replace(self.root / PENDING)
        return None

    def confirm(self) -> str | None:
        """The release on trial reached the broker: it stays. Its version, if one was."""
        trial = self._pending()
        if trial is None:
            return None
        (self.root / PENDING).unlink(missing_ok=True)
        return str(trial["version"])

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


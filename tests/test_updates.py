"""Updates from the central without the internet: `central wheelhouse build` makes a release
(wheels and a hashed lock), the fleet service serves it at /updates/, the fleet's `update`
command makes a real headless station install it with pip --no-index --require-hashes into
its own venv, check it by starting it with --check, switch `current` and restart; a release
that fails its check is dropped and the station stays on what it ran; `rollback` goes back.

The release is a tiny stand-in project (its own `selfcheck` script answers the health check),
so that the test installs two small wheels instead of the whole station."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.cli import main
from selfcheck.kiosk.runtime.agent import RESTART_EXIT_CODE
from selfcheck.kiosk.runtime.releases import MAX_STARTS
from selfcheck.lab.broker import Broker
from selfcheck.lab.stack import HeadlessStation
from tests.conftest import wait_until

SITE, STATION = "tv-up", "st-1"

# A PEP 517 backend in the project itself (no build requirements): pip wheel builds it with no
# index at all, as on a central without the internet.
BACKEND = '''
import base64, hashlib, json, os, zipfile

def _cfg():
    with open("release.json") as f:
        return json.load(f)

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    c = _cfg()
    name, ver = c["name"], c["version"]
    dist = f"{name}-{ver}.dist-info"
    files = {}
    for root, _dirs, names in os.walk(name):
        for n in names:
            if n.endswith(".py"):
                p = os.path.join(root, n)
                files[p] = open(p, "rb").read()
    meta = f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {ver}\\n"
    meta += "".join(f"Requires-Dist: {d}\\n" for d in c.get("requires", []))
    files[f"{dist}/METADATA"] = meta.encode()
    files[f"{dist}/WHEEL"] = (b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n"
                              b"Tag: py3-none-any\\n")
    if c.get("scripts"):
        files[f"{dist}/entry_points.txt"] = ("[console_scripts]\\n" + "".join(
            f"{k} = {v}\\n" for k, v in c["scripts"].items())).encode()
    record = ""
    for p, data in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{p},sha256={h},{len(data)}\\n"
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\\n").encode()
    whl = f"{name}-{ver}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, whl), "w") as z:
        for p, data in files.items():
            z.writestr(p, data)
    return whl
'''


def project(where: Path, name: str, version: str, source: str,
            requires: tuple[str, ...] = (), scripts: dict[str, str] | None = None) -> Path:
    where.mkdir(parents=True)
    (where / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = []
        build-backend = "backend"
        backend-path = ["."]

        [project]
        name = "{name}"
        version = "{version}"
        """))
    (where / "backend.py").write_text(BACKEND)
    (where / "release.json").write_text(json.dumps(
        {"name": name, "version": version, "requires": list(requires),
         "scripts": scripts or {}}))
    (where / name).mkdir()
    (where / name / "__init__.py").write_text(textwrap.dedent(source))
    return where


GOOD = """
    import sys
    import fakedep

    def main():
        # The health check: started as the station is, with --check.
        assert sys.argv[1] == "station" and "--check" in sys.argv, sys.argv
        print("check ok", fakedep.VALUE)
    """
BROKEN = """
    import no_such_module_in_this_release  # a release that cannot start

    def main():
        print("never")
    """


@pytest.fixture
def releases(tmp_path: Path) -> dict[str, str]:
    """Three releases built with the CLI into the served folder: their lock's sha256."""
    cache = tmp_path / "wheel-cache"  # the dependency, as a local wheel cache holds it
    dep = project(tmp_path / "src" / "fakedep", "fakedep", "1.0", "VALUE = 42\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                    "--wheel-dir", str(cache), str(dep)], check=True, capture_output=True)
    shas = {}
    for version, source in (("2.0", GOOD), ("2.1", GOOD), ("2.2", GOOD), ("3.0", BROKEN)):
        src = project(tmp_path / "src" / f"fakerel-{version}", "fakerel", version, source,
                      requires=("fakedep>=1",), scripts={"selfcheck": "fakerel:main"})
        out = tmp_path / "updates" / version
        assert main(["central", "wheelhouse", "build", "--out", str(out), "--project",
                     str(src), "--no-index", "--find-links", str(cache)]) == 0
        info = json.loads((out / "release.json").read_text())
        lock = (out / "requirements.lock").read_bytes()
        assert info["lock_sha256"] == hashlib.sha256(lock).hexdigest()
        # Both wheels, each pinned and hashed.
        assert sorted(p.name for p in out.glob("*.whl")) == [
            "fakedep-1.0-py3-none-any.whl", f"fakerel-{version}-py3-none-any.whl"]
        for whl in out.glob("*.whl"):
            assert hashlib.sha256(whl.read_bytes()).hexdigest() in lock.decode()
        assert "fakedep==1.0" in lock.decode() and f"fakerel=={version}" in lock.decode()
        shas[version] = info["lock_sha256"]
    return shas


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker) -> Iterator[FleetService]:
    svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}",
                       updates=tmp_path / "updates", flush_s=0.2)
    svc.start()
    assert svc.connected.wait(10)
    yield svc
    svc.stop()


def _send(fleet: FleetService, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Through the fleet's command path; the final state the station reported."""
    cmd_id = fleet.send_command(SITE, STATION, name, args, "an")
    wait_until(lambda: fleet.state.commands[cmd_id]["state"] in (
        "succeeded", "failed", "rejected"), 120, f"the station's answer to {name}")
    return dict(fleet.state.commands[cmd_id])


def _exits_to_restart(st: HeadlessStation) -> None:
    assert st.proc is not None
    assert st.proc.wait(30) == RESTART_EXIT_CODE


def test_the_wheelhouse_is_served_read_only_by_name(
        releases: dict[str, str], fleet: FleetService) -> None:
    index = urllib.request.urlopen(f"{fleet.url}/updates/2.0/", timeout=10).read().decode()
    assert 'href="fakerel-2.0-py3-none-any.whl"' in index
    assert 'href="requirements.lock"' in index
    lock = urllib.request.urlopen(f"{fleet.url}/updates/2.0/requirements.lock",
                                  timeout=10).read()
    assert hashlib.sha256(lock).hexdigest() == releases["2.0"]
    for bad in ("/updates/../central.db", "/updates/2.0/..%2F..%2Fcentral.db",
                "/updates/9.9/", "/updates/2.0/backend.py"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{fleet.url}{bad}", timeout=10)
        assert err.value.code == 404, bad
    with pytest.raises(urllib.error.HTTPError) as err:  # read only
        urllib.request.urlopen(urllib.request.Request(
            f"{fleet.url}/updates/2.0/x.whl", data=b"x", method="PUT"), timeout=10)
    assert err.value.code in (404, 405)
    # what the page's update form offers: each finished release with its lock's hash
    offered = json.loads(urllib.request.urlopen(f"{fleet.url}/api/releases", timeout=10).read())
    assert {r["release"]: r["sha256"] for r in offered} == {v: releases[v] for v in releases}


def test_a_station_updates_from_the_central_and_a_broken_release_is_rolled_back(
        tmp_path: Path, broker: Broker, releases: dict[str, str],
        fleet: FleetService, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "releases"
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "{SITE}"\nstation = "{STATION}"\nbroker = "{broker.address}"\n'
                   f'journal = "{tmp_path / "journal.db"}"\nreleases = "{root}"\n')
    log = tmp_path / "station.log"
    url = f"{fleet.url}/updates"
    # Nothing reaches the package index from here on: pip finds no proxy and no index.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    st = HeadlessStation(cfg, log=log)
    try:
        st = HeadlessStation(cfg, log=log).start()
        wait_until(lambda: (SITE, STATION) in fleet.state.stations, 15, "the station")

        # A lock that is not the one the operator sent: nothing installed.
        res = _send(fleet, "update", {"version": "2.0", "url": f"{url}/2.0/",
                                      "sha256": releases["2.1"]})
        assert res["state"] == "failed" and "sha256" in res["reason"], res
        assert not (root / "2.0").exists() and st.alive()

        res = _send(fleet, "update", {"version": "2.0", "url": f"{url}/2.0/",
                                      "sha256": releases["2.0"]})
        assert res["state"] == "succeeded", res
        assert res["result"] == {"version": "2.0", "previous": None}
        _exits_to_restart(st)
        assert os.readlink(root / "current") == "2.0"
        venv_python = root / "2.0" / "venv" / "bin" / "python"
        got = subprocess.run([str(venv_python), "-c", "import fakerel, fakedep; "
                              "print(fakedep.VALUE)"], capture_output=True, text=True)
        assert got.stdout.strip() == "42", got.stderr
        # The release has its own pip: running, it will install the next one.
        assert subprocess.run([str(venv_python), "-m", "pip", "--version"],
                              capture_output=True).returncode == 0

        st = HeadlessStation(cfg, log=log).start()  # what systemd does on exit 75
        # A release that cannot start fails its check: removed, the station keeps running.
        res = _send(fleet, "update", {"version": "3.0", "url": f"{url}/3.0/",
                                      "sha256": releases["3.0"]})
        assert res["state"] == "failed", res
        assert "health check" in res["reason"] and "no_such_module" in res["reason"]
        assert "still on 2.0" in res["reason"]
        assert os.readlink(root / "current") == "2.0" and not (root / "3.0").exists()
        assert st.alive()

        res = _send(fleet, "update", {"version": "2.1", "url": f"{url}/2.1/",
                                      "sha256": releases["2.1"]})
        assert res["state"] == "succeeded" and res["result"] == {
            "version": "2.1", "previous": "2.0"}, res
        _exits_to_restart(st)
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("2.1", "2.0")
        assert json.loads((root / "pending.json").read_text())["version"] == "2.1"

        # 2.1 passed its check but dies before it ever gets on line (here: a broker it
        # cannot reach, and a kill as from a crash), and systemd starts it again each time.
        bad = tmp_path / "bad.toml"
        bad.write_text(cfg.read_text().replace(str(broker.address), "127.0.0.1:9"))
        for _ in range(MAX_STARTS):
            crashing = HeadlessStation(bad, log=log).start()
            crashing.kill()
        assert json.loads((root / "pending.json").read_text())["starts"] == MAX_STARTS
        assert os.readlink(root / "current") == "2.1"
        again = subprocess.run([sys.executable, "-m", "selfcheck.cli", "station", "--headless",
                                "--config", str(bad)], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
        assert again.returncode == RESTART_EXIT_CODE, again.stderr
        assert "quay về bản 2.0" in again.stderr  # the station's language: vi by default
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("2.0", "2.1")
        assert not (root / "pending.json").exists()

        # A release that gets on line is kept.
        st = HeadlessStation(cfg, log=log).start()
        res = _send(fleet, "update", {"version": "2.2", "url": f"{url}/2.2/",
                                      "sha256": releases["2.2"]})
        assert res["state"] == "succeeded", res
        _exits_to_restart(st)
        assert (root / "pending.json").exists()
        st = HeadlessStation(cfg, log=log).start()
        wait_until(lambda: not (root / "pending.json").exists(), 15, "2.2 kept")

        res = _send(fleet, "rollback", {})
        assert res["state"] == "succeeded" and res["result"] == {
            "version": "2.0", "previous": "2.2"}, res
        _exits_to_restart(st)
        assert (os.readlink(root / "current"), os.readlink(root / "previous")) == ("2.0", "2.2")
    finally:
        st.stop()


def test_a_station_without_releases_refuses_updates(
        tmp_path: Path, broker: Broker, fleet: FleetService) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "{SITE}"\nstation = "{STATION}"\nbroker = "{broker.address}"\n'
                   f'journal = "{tmp_path / "journal.db"}"\n')
    st = HeadlessStation(cfg, log=tmp_path / "station.log").start()
    try:
        wait_until(lambda: (SITE, STATION) in fleet.state.stations, 15, "the station")
        res = _send(fleet, "rollback", {})
        assert res["state"] == "rejected" and "releases" in res["reason"], res
        assert st.alive()
    finally:
        st.stop()


"""Expected failures of the `selfcheck` commands: a few lines in the user's language saying what
is wrong and what to do, a non-zero exit, never a traceback. Real processes and services."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.fleet.service import FleetService
from selfcheck.cli.errors import suggest
from selfcheck.lab.broker import Broker, free_port
from tests.conftest import ROOT


def selfcheck(*args: str, lang: str = "en_US.UTF-8", timeout: float = 60,
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LANG": lang}
    env.pop("LC_ALL", None)
    env.pop("LC_MESSAGES", None)
    return subprocess.run([sys.executable, "-m", "selfcheck.cli", *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=timeout)


def short(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(r.stderr.splitlines()) <= 5, r.stderr
    return r.stderr


def test_fleet_once_with_the_service_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = selfcheck("fleet", "--once", "--url", url, "--lang", "en")
    assert r.returncode == 3
    err = short(r)
    assert f"The fleet service at {url} does not answer" in err
    assert "selfcheck fleet serve" in err
    r = selfcheck("fleet", "--once", "--url", url)  # the table's default language: vi
    assert "Dịch vụ giám sát trạm" in short(r) and r.returncode == 3


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetService]:
    with Broker(tmp_path / "broker") as broker:
        svc = FleetService(broker.address, f"sqlite:///{tmp_path / 'central.db'}", flush_s=0.2)
        svc.start()
        assert svc.connected.wait(10)
        yield svc
        svc.stop()


def test_fleet_unknown_site(fleet: FleetService) -> None:
    r = selfcheck("fleet", "--once", "--url", fleet.url, "--site", "no-such", "--lang", "en")
    assert r.returncode == 2
    assert "knows no station of site 'no-such'. Known sites: none yet." in short(r)
    assert r.stdout == ""  # no empty table that looks like an answer


def test_suggest() -> None:
    fields = ["inactivity_s", "summary_s", "pad_url", "card_url", "lang"]
    assert suggest("inactivity", fields) == "inactivity_s"
    assert suggest("pad_ulr", fields) == "pad_url"
    assert suggest("colour", fields) is None


def _config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "station.toml"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize("lang,expected", [
    ("en", "unknown key 'inactivity'; did you mean 'inactivity_s'?"),
    ("vi", "không có mục cấu hình 'inactivity'; có phải ý bạn là 'inactivity_s'?"),
])
def test_station_wrong_key_in_the_station_language(tmp_path: Path, lang: str,
                                                   expected: str) -> None:
    cfg = _config(tmp_path, f'lang = "{lang}"\ninactivity = 30\n')
    r = selfcheck("station", "--config", str(cfg), "--headless")
    assert r.returncode == 2
    err = short(r)
    assert expected in err and "selfcheck doctor --config" in err
    assert "pydantic" not in err


def test_station_bad_value_and_missing_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 'lang = "fr"\npassword = "hunter2"\ninactivity_s = -1\n')
    err = short(selfcheck("station", "--config", str(cfg), "--headless", lang="vi_VN.UTF-8"))
    assert "'lang' = 'fr'" in err and "'inactivity_s' = -1" in err
    r = selfcheck("station", "--config", str(tmp_path / "none.toml"), lang="vi_VN.UTF-8")
    assert r.returncode == 2 and "Không có tệp cấu hình" in short(r)


def test_station_says_at_once_that_broker_and_pad_are_missing(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, f'lang = "en"\nbroker = "127.0.0.1:{port}"\npad = "3m810"\n'
                  f'pad_url = "/dev/ttyNOPE0"\njournal = "{tmp_path}/j.db"\naudio = false\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "selfcheck.cli", "station", "--config",
                          str(cfg), "--headless"], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert p.stderr is not None
        seen: list[str] = []
        for line in p.stderr:
            seen.append(line)
            if any("book pad" in x for x in seen):
                break
        text = "".join(seen)
        assert f"The broker 127.0.0.1:{port} does not answer" in text, text
        assert "The book pad at /dev/ttyNOPE0 cannot be opened" in text, text
        assert p.poll() is None  # and it runs on: offline, retrying
    finally:
        p.terminate()
        p.wait(15)


def test_bad_ils_url() -> None:
    r = selfcheck("central", "--ils", "sip2://u:p@h:99?institution=x&colour=red")
    assert r.returncode == 2
    assert "The library system URL (--ils) is not valid" in short(r)
    assert "colour" in r.stderr


def test_help_table_matches_the_modules() -> None:
    import argparse
    import importlib

    from selfcheck.cli import TABLE

    for name, (module, help_line) in TABLE.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        helps = {a.dest: a.help for a in sub._choices_actions}
        assert helps.get(name) == help_line, (name, helps)


def test_top_level_help_loads_no_command() -> None:
    # What makes `selfcheck --help` quick: none of the commands' modules is imported.
    code = ("import sys, contextlib, io, selfcheck.cli as c\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    c.main(['--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('kiosk', 'central', 'pydantic', 'drivers', 'mqtt', 'sqlalchemy')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout
    assert out.strip() == "[]", out

"""Logging: set up once by the entry point, one key=value line per event, journald-friendly,
and no personal data (DESIGN.md invariant 5) even at DEBUG, through a real central and a real
headless station on a real broker."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.central.sample import PATRONS, PINS
from selfcheck.cli import logs
from selfcheck.lab.broker import Broker
from tests.conftest import ROOT, wait_until


class Proc:
    """A `selfcheck` child with its stdout and stderr lines collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", "selfcheck.cli", *args], cwd=ROOT,
                                  env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _pump(stream: io.TextIOBase | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            sink.append(line.rstrip("\n"))

    def send(self, *lines: str) -> None:
        assert self.p.stdin is not None
        for line in lines:
            self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def events(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in list(self.out) if x.startswith("{")]

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


# -- the formatter and the set-up
def _line(journald: bool, **extra: object) -> str:
    record = logging.LogRecord("selfcheck.central.bridge", logging.INFO, __file__, 1,
                               "answered %s", ("tx.loan/1",), None)
    record.__dict__.update(extra)
    return logs.LineFormatter(journald).format(record)


def test_line_carries_context_as_key_value() -> None:
    line = _line(False, **logs.ctx(station="st-1", msg_id="abc", seq=7, ils=None,
                                   state="login refused"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO central\.bridge: "
                        r'answered tx\.loan/1 station=st-1 msg_id=abc seq=7 state="login '
                        r'refused"', line), line


def test_under_journald_no_timestamp_and_a_priority_prefix() -> None:
    assert _line(True, station="st-1") == "<6>INFO central.bridge: answered tx.loan/1 station=st-1"


def test_importing_every_command_leaves_logging_alone() -> None:
    code = ("import logging, selfcheck.cli as c, selfcheck.kiosk.runtime.agent\n"
            "import selfcheck.kiosk.runtime.station, selfcheck.central.bridge\n"
            "c.build_parser()\n"
            "root = logging.getLogger()\n"
            "print(len(root.handlers), root.level)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), text=True,
                         capture_output=True, check=True).stdout
    assert out.split() == ["0", str(logging.WARNING)]


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_level_before_or_after_the_subcommand(where: str) -> None:
    # `schema --check` logs nothing itself; what is checked is that DEBUG reaches the handler.
    code = ("import logging, sys, selfcheck.cli as c\n"
            "c.main(sys.argv[1:])\n"
            "logging.getLogger('probe').debug('seen')\n")
    args = (["--log-level", "DEBUG", "schema", "--check"] if where == "before"
            else ["schema", "--check", "--log-level", "debug"])
    err = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=_env(), text=True,
                         capture_output=True).stderr
    assert "DEBUG probe: seen" in err, err


def test_level_from_the_environment_and_a_bad_one_refused() -> None:
    env = _env(SELFCHECK_LOG_LEVEL="loud", LANG="vi_VN.UTF-8")
    r = subprocess.run([sys.executable, "-m", "selfcheck.cli", "schema", "--check"], cwd=ROOT,
                       env=env, text=True, capture_output=True)
    assert r.returncode == 2
    assert "Tùy chọn không hợp lệ: SELFCHECK_LOG_LEVEL=loud" in r.stderr
    assert "Traceback" not in r.stderr


# -- no personal data, at DEBUG, through a whole flow
@pytest.fixture
def flow(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    broker = Broker(tmp_path / "broker")
    broker.start()
    env = _env(SELFCHECK_LOG_LEVEL="debug", JOURNAL_STREAM="8:1234", LANG="C.UTF-8")
    central = Proc(["central", "--broker", str(broker.address),
                    "--db", f"sqlite:///{tmp_path}/central.db", "--load-sample"], env)
    station: Proc | None = None
    try:
        wait_until(lambda: "central ready" in central.out, 30, "central ready")
        cfg = tmp_path / "station.toml"
        cfg.write_text(f'site = "demo-lib"\nstation = "st-logs"\nbroker = "{broker.address}"\n'
                       f'journal = "{tmp_path}/station.db"\npin = "always"\naudio = false\n')
        station = Proc(["station", "--headless", "--events", "--config", str(cfg)], env,
                       stdin=True)
        wait_until(lambda: any(e.get("event") == "screen" and e.get("online")
                               for e in station.events()), 30, "station online")
        yield central, station
    finally:
        if station is not None:
            station.stop()
        central.stop()
        broker.stop()


def _screen(station: Proc, mode: str) -> bool:
    return any(e.get("event") == "screen" and e.get("mode") == mode for e in station.events())


def test_no_card_number_name_or_pin_in_debug_logs(flow: tuple[Proc, Proc]) -> None:
    central, station = flow
    # A loan with the right PIN, then a reader who types a wrong one.
    station.send("card DG0001")
    wait_until(lambda: _screen(station, "pin"), 15, "PIN pad")
    station.send("pin 1234")
    wait_until(lambda: _screen(station, "borrow"), 15, "borrow screen")
    station.send("place 39000001")
    wait_until(lambda: any(e.get("status") == "done" for e in station.events()), 20, "loan")
    idle = sum(e.get("mode") == "idle" for e in station.events())
    station.send("touch done", "touch finish")
    wait_until(lambda: sum(e.get("mode") == "idle" for e in station.events()) > idle, 15,
               f"idle again: {station.events()}")
    station.send("card DG0002")
    wait_until(lambda: sum(e.get("mode") == "pin" for e in station.events()) >= 2, 15,
               "PIN pad again")
    station.send("pin 9753")
    wait_until(lambda: any("wrong PIN" in x for x in central.err), 15, "wrong PIN logged")

    logged = central.err + station.err
    text = "\n".join(logged)
    # The logs did say what happened, at DEBUG, with context, in journald form.
    assert any(x.startswith("<7>DEBUG central.bridge: answered tx.loan/1") and "msg_id=" in x
               and "station=st-logs" in x and "seq=1" in x for x in logged), text
    assert all(re.match(r"<\d>", x) or x.startswith(" ") for x in logged if x), text
    secrets = [p["card_id"] for p in PATRONS] + [p["name"] for p in PATRONS] \
        + list(PINS.values()) + ["9753"]
    for secret in secrets:
        # As a token: a PIN's digits may well occur inside a hex msg_id.
        pattern = rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])"
        found = [x for x in logged if re.search(pattern, x)]
        assert not found, f"{secret!r} logged: {found}"


def test_station_config_sets_the_level_below_option_and_env(tmp_path: Path) -> None:
    cfg = tmp_path / "station.toml"
    cfg.write_text('log_level = "warning"\nlang = "en"\n')
    code = ("import logging, sys\n"
            "from selfcheck import cli\n"
            "from selfcheck.cli import station as station_cmd\n"
            "station_cmd.preflight = lambda *a: sys.exit(logging.getLogger().level)\n"
            "cli.main(sys.argv[1:])\n")
    def level(*args: str, **env: str) -> int:
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                              env=_env(**env), capture_output=True).returncode
    base = ["station", "--config", str(cfg), "--headless"]
    assert level(*base) == logging.WARNING
    assert level(*base, SELFCHECK_LOG_LEVEL="DEBUG") == logging.DEBUG
    assert level(*base, "--log-level", "error") == logging.ERROR

"""The station's settings parsed once into frozen configs; the derived time-outs; a remote
change as a new config handed to the runtime, never an edit of the one in use."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from selfcheck.drivers.card.base import SimulatedCardReader
from selfcheck.drivers.pad.simulated import SimulatedPad
from selfcheck.drivers.printer import PrinterConfig
from selfcheck.drivers.printer.mail import MailConfig
from selfcheck.kiosk.runtime.station import StationRuntime
from selfcheck.kiosk.settings import StationSettings
from selfcheck.kiosk.timeouts import (
    ACK_TIMEOUT_MAX_S,
    ACK_TIMEOUT_S,
    MORE_TIME_WARN_S,
    SUMMARY_S,
    StationTimeouts,
)
from selfcheck.mqtt.connection import BrokerAddress
from selfcheck.mqtt.telemetry import ConfigSettings


def _timeouts(ack_s: float) -> StationTimeouts:
    return StationTimeouts(inactivity_s=45, summary_s=12, telemetry_s=60, ack_s=ack_s)


def test_derived_timeouts_follow_ack_timeout() -> None:
    t = _timeouts(5.0)
    assert (t.ack_way_back_s, t.loan_deadline_s, t.request_s) == (1.0, 4.0, 5.0)
    assert t.offline_list_request_s == 5.0
    t = _timeouts(2.0)  # a short time-out: the deadline keeps a quarter of it for the way back
    assert (t.ack_way_back_s, t.loan_deadline_s, t.request_s) == (0.5, 1.5, 2.0)
    assert t.offline_list_request_s == 5.0  # a page of the list never gets less
    assert _timeouts(8.0).offline_list_request_s == 8.0


def test_ack_timeout_has_one_bound_in_the_file_and_when_steered(tmp_path: Path) -> None:
    """A file may not set what an operator may not steer: a reader waits a minute at most."""
    ok = StationSettings(journal=tmp_path / "j.db", ack_timeout_s=ACK_TIMEOUT_MAX_S)
    assert ok.ack_timeout_s == ConfigSettings(ack_timeout_s=ACK_TIMEOUT_MAX_S).ack_timeout_s
    for too_long in (ACK_TIMEOUT_MAX_S + 1, 600.0):
        with pytest.raises(ValidationError, match="ack_timeout_s"):
            StationSettings(journal=tmp_path / "j.db", ack_timeout_s=too_long)
        with pytest.raises(ValidationError, match="ack_timeout_s"):
            ConfigSettings(ack_timeout_s=too_long)


def test_settings_parsed_once_into_frozen_configs(tmp_path: Path) -> None:
    s = StationSettings(broker="mqtt://localhost:1884", journal=tmp_path / "j.db",
                        printer_transport="network", printer_url="10.0.0.5",
                        receipt_mail={"host": "smtp.lan", "sender": "a@b.vn"},
                        ack_timeout_s=3, offline_loans=True)
    c = s.config
    assert c is s.config  # built once, with the settings
    assert c.broker.address == BrokerAddress("localhost", 1884)
    assert isinstance(c.printer, PrinterConfig) and c.printer.network_address() == (
        "10.0.0.5", 9100)
    assert isinstance(c.mail, MailConfig) and c.mail.host == "smtp.lan"
    assert (c.timeouts.ack_s, c.offline.loans, c.desk.library_name) == (3, True, "demo-lib")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.timeouts.ack_s = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.ack_timeout_s = 9
    assert StationSettings(journal=tmp_path / "j.db").config.timeouts.ack_s == ACK_TIMEOUT_S


def test_a_bad_printer_setting_still_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"printer\.codepage"):
        StationSettings(journal=tmp_path / "j.db", printer_transport="dummy",
                        printer_options={"codepage": 999})
    with pytest.raises(ValidationError, match=r"receipt_mail\.sender"):
        StationSettings(journal=tmp_path / "j.db", receipt_mail={"host": "h", "sender": "x"})


def test_steered_is_a_new_config_with_only_the_steered_values(tmp_path: Path) -> None:
    c = StationSettings(journal=tmp_path / "j.db").config
    new = c.steered(ConfigSettings(ack_timeout_s=2, offline_returns=False, lang="en"))
    assert (new.timeouts.ack_s, new.offline.returns, new.desk.lang) == (2, False, "en")
    assert new.timeouts.loan_deadline_s == 1.5
    assert (c.timeouts.ack_s, c.offline.returns, c.desk.lang) == (5, True, "vi")  # untouched
    assert dataclasses.replace(new, timeouts=c.timeouts, offline=c.offline, desk=c.desk) == c
    assert c.steered(ConfigSettings()) == c


def test_a_summary_configured_too_short_is_still_read_before_it_asks(tmp_path: Path) -> None:
    # 12 s, the old default: the question "more time?" (its last 20 s) opened it
    rt = StationRuntime(StationSettings(journal=tmp_path / "j.db", summary_s=12),
                        SimulatedPad(), SimulatedCardReader())
    try:
        assert rt.config.timeouts.summary_s == 12
        assert rt.core.config.summary_s == SUMMARY_S > MORE_TIME_WARN_S
    finally:
        rt.agent.close()
        rt.journal.close()


def test_remote_config_reaches_the_runtime_as_a_new_config(tmp_path: Path) -> None:
    rt = StationRuntime(StationSettings(journal=tmp_path / "j.db"), SimulatedPad(),
                        SimulatedCardReader())
    try:
        before = rt.config
        rt.agent.apply_settings(ConfigSettings(ack_timeout_s=2, offline_returns=False,
                                               lang="en", telemetry_s=7, summary_s=55))
        assert rt.config is not before and before.timeouts.ack_s == 5  # replaced, not edited
        assert rt.config.timeouts.ack_s == 2
        cfg = rt.core.config
        assert (cfg.ack_timeout_s, cfg.offline_returns, cfg.summary_s) == (2, False, 55)
        assert rt.core.lang == "en" and rt.agent.telemetry.period_s == 7
        assert rt.settings.ack_timeout_s == 5  # the file's value: what a reload compares
        assert rt.agent.snapshot(0, None).offline_policy == "none"
    finally:
        rt.agent.close()
        rt.journal.close()


def test_the_agent_does_not_import_the_runtime() -> None:
    code = ("import sys, selfcheck.kiosk.runtime.agent; "
            "assert 'selfcheck.kiosk.runtime.station' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_settings_loaded_at_once_in_threads_each_read_their_own_file(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from selfcheck.kiosk.settings import load_settings

    files = {}
    for lang in ("vi", "en"):
        files[lang] = tmp_path / f"{lang}.toml"
        files[lang].write_text(f'lang = "{lang}"\njournal = "{tmp_path / lang}.db"\n')
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda lang: (lang, load_settings(files[lang]).lang),
                            ["vi", "en"] * 40))
    assert all(want == lang for want, lang in got)
    assert StationSettings(journal=tmp_path / "j.db").lang == "vi"  # no file left behind

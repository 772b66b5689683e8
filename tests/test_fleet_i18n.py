"""Operators read the fleet page in Vietnamese or English: every word exists in both."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

from selfcheck.central.fleet.i18n import catalog
from selfcheck.mqtt.telemetry import EventKind

ROOT = Path(__file__).resolve().parent.parent


def test_catalogs_match_and_cover_every_event_and_alert() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert set(vi) == set(en) and all(vi.values()) and all(en.values())
    for kind in typing.get_args(EventKind):
        assert f"event.{kind}" in vi, kind
    alerts = re.findall(r'out\.append\("(\w+)"\)', (ROOT / "central/fleet/state.py").read_text())
    for alert in [*alerts, "paper_low", "paper_out"]:
        assert f"alert.{alert}" in vi, alert
    page = (ROOT / "central/fleet/page.html").read_text()
    for key in re.findall(r'data-t="([\w.]+)"', page):
        assert key in vi, key


def test_each_module_imports_first() -> None:
    # The message registry imports telemetry and commands; each must import on its own too.
    for module in ("selfcheck.mqtt.telemetry", "selfcheck.mqtt.commands",
                   "selfcheck.mqtt.messages", "selfcheck.mqtt.registry"):
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)

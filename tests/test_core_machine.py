"""The core as a machine: its event table, the events it ignores, its diagram, Reconfigure,
and what importing it costs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from selfcheck.cli.ui import machine_doc
from selfcheck.kiosk import core
from selfcheck.kiosk.runtime.edge import patron_checked, tx_answer
from selfcheck.mqtt.messages import AckTx, PatronCheckRes
from tests.test_core import borrow_session, make

ROOT = Path(__file__).resolve().parents[1]


def test_every_event_has_a_row_and_a_handler() -> None:
    events = set(typing.get_args(core.Event))
    assert set(core.TABLE) == events
    for event, (modes, handler) in core.TABLE.items():
        assert modes, event
        assert callable(getattr(core.SelfCheck, handler)), handler
    pairs = core.transitions()
    assert (core.Mode.CHECKING, "PatronChecked", "_on_patron") in pairs
    assert not any(m is core.Mode.IDLE and e == "PatronChecked" for m, e, _ in pairs)


def test_events_outside_their_modes_are_recorded_not_handled() -> None:
    sc = make()
    late = PatronCheckRes(ok=True, patron_ref="p-1", display_name="An", max_loans=5)
    assert sc.handle(patron_checked(late), 1) == []
    assert sc.mode is core.Mode.IDLE  # a late answer opens no session
    assert sc.handle(core.StaffSkip("E001"), 1) == []
    assert sc.ignored == {(core.Mode.IDLE, "PatronChecked"): 1, (core.Mode.IDLE, "StaffSkip"): 1}
    borrow_session(sc)
    assert sc.handle(core.CardRead("DG0002"), 2) == []  # a card mid-session: finish first
    assert sc.mode is core.Mode.BORROW
    assert sc.ignored[(core.Mode.BORROW, "CardRead")] == 1
    assert list(sc.ignored_recent)[-1] == (core.Mode.BORROW, "CardRead")
    before = sum(sc.ignored.values())
    sc.handle(core.Tick(), 3)
    sc.handle(core.Touch("lang"), 3)
    assert sum(sc.ignored.values()) == before  # handled events are not counted


def test_every_button_has_a_row_per_mode_and_others_are_recorded() -> None:
    for (_mode, button), handler in core.TOUCHES.items():
        assert callable(getattr(core.SelfCheck, handler)), (button, handler)
    pairs = core.transitions()
    assert (core.Mode.BORROW, "Touch finish", "_press_finish") in pairs
    # a mode's own row wins over the rows for many modes: cancel leaves the staff screen
    assert (core.Mode.STAFF, "Touch cancel", "_press_staff_exit") in pairs
    assert (core.Mode.STAFF, "Touch cancel", "_press_idle") not in pairs
    assert (core.Mode.HELP, "Touch cancel", "_press_help_back") in pairs
    assert (core.Mode.OUT_OF_SERVICE, "Touch lang", "_press_lang") in pairs
    assert not any(e == "Touch done" for m, e, _ in pairs if m is core.Mode.OUT_OF_SERVICE)
    sc = make()
    assert sc.handle(core.Touch("finish"), 1) == [] and sc.mode is core.Mode.IDLE
    assert sc.handle(core.Touch("no-such-button"), 1) == []
    assert sc.ignored == {(core.Mode.IDLE, "Touch finish"): 1,
                          (core.Mode.IDLE, "Touch no-such-button"): 1}


def test_an_ignored_card_still_counts_as_activity() -> None:
    sc = make(inactivity_s=10.0)
    borrow_session(sc)
    sc.handle(core.CardRead("DG0002"), 8)
    sc.handle(core.Tick(), 12)
    assert sc.mode is core.Mode.BORROW


def test_reconfigure_changes_settings_and_language_between_sessions() -> None:
    sc = make()
    sc.handle(core.Reconfigure(dataclasses.replace(sc.config, ack_timeout_s=2.0,
                                                   default_lang="en")), 0)
    assert sc.config.ack_timeout_s == 2.0 and sc.config.inactivity_s == 45.0
    assert sc.config.default_lang == "en" and sc.lang == "en"
    borrow_session(sc)
    sc.handle(core.Reconfigure(dataclasses.replace(sc.config, default_lang="vi",
                                                   offline_returns=False)), 2)
    assert sc.lang == "en"  # a busy reader keeps their language
    assert sc.config.default_lang == "vi" and sc.config.offline_returns is False
    sc.handle(core.Touch("cancel"), 3)
    assert sc.lang == "vi"


def test_view_is_built_by_keyword() -> None:
    with pytest.raises(TypeError):
        core.View(core.Mode.IDLE, "vi", True, None, (), None, None)  # type: ignore[misc]
    assert {f.name for f in dataclasses.fields(core.View)} >= {"mode", "central_ok"}


def test_the_diagram_in_docs_is_current() -> None:
    doc = ROOT / "docs" / "core-machine.md"
    assert doc.read_text(encoding="utf-8") == machine_doc(), (
        "regenerate: selfcheck ui machine > docs/core-machine.md")
    assert "PatronChecked / _on_patron" in doc.read_text(encoding="utf-8")


def test_importing_the_core_loads_no_io() -> None:
    code = ("import sys; import selfcheck.kiosk.core; import json; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    loaded = set(json.loads(out))
    heavy = ("threading", "socket", "serial", "sqlite3", "paho", "pydantic", "kivy", "asyncio")
    bad = sorted(m for m in loaded if m.split(".")[0] in heavy or m == "_socket")
    assert bad == []
    assert not any(m.startswith("selfcheck.mqtt") for m in loaded)


@pytest.mark.parametrize(("alert_type", "hold", "transit_to", "expected"), [
    (None, False, None, core.Route.SHELF),
    ("01", True, None, core.Route.HOLD_HERE),
    (None, True, None, core.Route.HOLD_HERE),
    ("02", True, "CN-B", core.Route.HOLD_ELSEWHERE),
    ("03", False, None, core.Route.TRANSIT),
    ("04", False, "CN-B", core.Route.TRANSIT),
    (None, False, "CN-B", core.Route.TRANSIT),
])
def test_the_edge_turns_sip2_alerts_into_routes(alert_type: str | None, hold: bool,
                                                transit_to: str | None,
                                                expected: core.Route) -> None:
    ack = AckTx(msg_id="0190a3c2-7b1e-7cc0-8d4e-1234567890ab", ok=True, item_id="39000001",
                alert_type=alert_type, hold=hold, transit_to=transit_to)
    answer = tx_answer(ack)
    assert answer.route is expected
    assert (answer.msg_id, answer.item_id, answer.transit_to) == (ack.msg_id, "39000001",
                                                                  transit_to)


def test_the_edge_turns_the_wire_account_into_the_cores_own() -> None:
    from selfcheck.kiosk.runtime.edge import account_loaded
    from selfcheck.mqtt.messages import (
        AccountLoan,
        AccountRes,
        Fine,
        HoldReady,
        HoldWaiting,
    )

    due = dt.date(2026, 12, 1)
    res = AccountRes(ok=True, fines_total=5, currency="USD", currency_exponent=2,
                     loans=[AccountLoan(item_id="39000010", title="Chí Phèo", due=due,
                                        overdue=True, renewable=False)],
                     holds_ready=[HoldReady(item_id="39000012", pickup_by=due,
                                            pickup_at="VN-HN-01")],
                     holds_waiting=[HoldWaiting(title="Số đỏ", position=2)],
                     fines=[Fine(description="Trả sách quá hạn", amount=5)])
    account = account_loaded(res).result
    assert account == core.Account(
        ok=True, fines_total=5, currency="USD", currency_exponent=2,
        loans=(core.AccountLoan("39000010", "Chí Phèo", due, True, False),),
        holds_ready=(core.HoldReady("39000012", None, due, "VN-HN-01"),),
        holds_waiting=(core.HoldWaiting("Số đỏ", 2),), fines=(core.Fine("Trả sách quá hạn", 5),))
    assert account_loaded(None).result is None

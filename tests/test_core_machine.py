"""The core as a machine: its table of (mode, event) rows and where they lead, the events
it ignores, its diagram, Reconfigure, and what importing it costs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from selfcheck.cli.ui import machine_doc
from selfcheck.kiosk import core, core_table
from selfcheck.kiosk.runtime.edge import patron_checked, tx_answer
from selfcheck.mqtt.messages import AckTx, PatronCheckRes
from tests.test_core import borrow_session, make, tag

ROOT = Path(__file__).resolve().parents[1]


def test_every_event_has_a_row_and_every_row_a_declared_method() -> None:
    events = {e.__name__ for e in typing.get_args(core.Event)} - {"Touch"} | {"StaffCard"}
    assert {event for event, _modes, _method in core_table.EVENT_ROWS} == events
    methods = {row.method for row in core_table.MACHINE.values()}
    assert methods == set(core_table.LEADS)  # each method used has its targets, none spare
    for method in methods:
        assert callable(getattr(core.SelfCheck, method)), method
    pairs = core_table.transitions()
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
    pairs = core_table.transitions()
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


def test_every_button_the_screens_offer_has_a_row() -> None:
    """Each button a screen or the staff panel sends is a Button the core's table takes
    in at least one mode (a button with no row anywhere would be ignored everywhere)."""
    sources = [*(ROOT / "kiosk" / "ui").glob("*.kv"), *(ROOT / "kiosk" / "ui").glob("*.py"),
               *(ROOT / "kiosk" / "runtime").glob("*.py")]
    sent = {m for f in sources
            for m in re.findall(r"(?:touch|Touch)\(\"([a-z_]+)\"\)", f.read_text("utf-8"))}
    # the staff screen's service button sends what `staff_action` holds
    sent |= set(re.findall(r'staff_action = (?:"[a-z_]+" if .* else )?"([a-z_]+)"',
                           (ROOT / "kiosk" / "ui" / "screens.py").read_text("utf-8")))
    sent |= set(re.findall(r'"(staff_[a-z_]+)" if', (ROOT / "kiosk" / "ui" /
                                                     "screens.py").read_text("utf-8")))
    assert len(sent) >= 20, sent
    buttons = set(typing.get_args(core.Button))
    assert sent <= buttons, sent - buttons
    with_row = {e.removeprefix("Touch ") for _m, e, _ in core_table.transitions()
                if e.startswith("Touch ")}
    assert buttons <= with_row, buttons - with_row


def test_every_mode_is_reachable_from_home_in_the_table() -> None:
    steps = core_table.edges()
    seen = {core.Mode.IDLE, core.Mode.RETURN_STATION}
    frontier = list(seen)
    while frontier:
        mode = frontier.pop()
        for (start, to) in steps:
            if start is mode and to not in seen:
                seen.add(to)
                frontier.append(to)
    assert seen == set(core.Mode)
    # and every mode may be left: no screen a reader can be stuck on
    assert {start for start, _to in steps} == set(core.Mode)


def _walk(seed: int, cfg: dict[str, object], steps: int) -> tuple[set[core.Mode], int]:
    """Random events, in random modes, on a strict core: any step to a mode its row does not
    declare raises. Returns the modes the walk was in and how many events it handled."""
    rnd = random.Random(seed)
    sc = make(staff_cards=frozenset({"STAFF1"}), help_after=2, **cfg)
    books = [tag(f"E00{i}", f"3900000{i}") for i in range(4)] + [tag("E0BAD", None)]
    sent: list[str] = []  # msg_ids the core asked to record
    seen: set[core.Mode] = set()
    now = 1.0
    account = core.Account(ok=True, loans=(core.AccountLoan("39000009", "Số đỏ"),))

    def answer(ok: bool) -> core.PatronChecked:
        if rnd.random() < 0.2:
            return core.PatronChecked(None)
        if ok:
            return core.PatronChecked(core.PatronAnswer(ok=True, patron_ref="p-1",
                                                        display_name="An"))
        reason = rnd.choice(["blocked", "wrong_pin", "pin_required", "pin_locked"])
        return core.PatronChecked(core.PatronAnswer(ok=False, reason=reason,
                                                    pin_required=reason != "blocked"))

    def ack_for(msg_id: str) -> core.AckReceived:
        confirm = core.Confirmation("rental", 5000) if rnd.random() < 0.6 else None
        ok = rnd.random() < 0.5
        return core.AckReceived(core.TxAnswer(msg_id=msg_id, ok=ok, item_id="39000001",
                                              reason=None if ok else "blocked",
                                              confirm=None if ok else confirm))

    def here(mode: core.Mode) -> list[str]:
        return [e.removeprefix("Touch ") for m, e, _ in core_table.transitions()
                if m is mode and e.startswith("Touch ") and e != "Touch lang"]

    makers: list[typing.Callable[[], core.Event]] = [
        lambda: core.CardRead(rnd.choice(["DG0001", "STAFF1"])),
        lambda: answer(rnd.random() < 0.75),
        lambda: core.PinEntered("1234" if rnd.random() < 0.85 else None),
        lambda: core.OfflineChecked(rnd.choice(
            [None, core.OfflinePatron("p-2", "Bình", rnd.randint(0, 2))])),
        lambda: core.AccountLoaded(rnd.choice([None, account])),
        lambda: core.Renew("39000009"),
        lambda: core.TagsPresent(tuple(rnd.sample(books, rnd.randint(0, 3)))),
        lambda: core.Recorded(sent[-1] if sent else "none"),
        lambda: ack_for(rnd.choice(sent[-2:]) if sent else "none"),
        lambda: core.LoanUndone(rnd.choice(sent) if sent else "none", "39000001", None),
        lambda: core.SecurityWritten(rnd.choice(books).uid, rnd.random() < 0.7),
        lambda: core.Touch(rnd.choice(here(sc.mode) if rnd.random() < 0.9
                                      else typing.get_args(core.Button))),
        lambda: core.Typed(),
        lambda: core.Tick(),
        lambda: core.Connectivity(rnd.random() < 0.9),
        lambda: core.SetService(rnd.random() < 0.8),
        lambda: core.StaffSkip(rnd.choice(books).uid),
        lambda: core.EmailEntered(rnd.choice([None, "", "an@example.vn", "bad"])),
        lambda: core.ReceiptSent(rnd.choice(["print", "email"]), rnd.random() < 0.8),
    ]
    weights = [4, 5, 4, 1, 2, 1, 4, 5, 5, 1, 2, 6, 1, 3, 1, 1, 1, 2, 1]
    handled = 0
    for _ in range(steps):
        now += rnd.choices([0.1, 0.5, 2.0, 30.0, 200.0], [30, 30, 30, 2, 1])[0]
        event = rnd.choices(makers, weights)[0]()
        for _try in range(8):  # mostly events the mode takes: the walk goes deep
            if (sc.mode, sc._key(event)) in core_table.MACHINE or rnd.random() < 0.1:
                break
            event = rnd.choices(makers, weights)[0]()
        before = sum(sc.ignored.values())
        actions = sc.handle(event, now)
        handled += sum(sc.ignored.values()) == before
        sent += [a.msg_id for a in actions if isinstance(a, core.RecordTx)]
        seen.add(sc.mode)
    assert not sc.undeclared
    return seen, handled


@pytest.mark.parametrize("cfg", [
    {},
    {"pin": "always", "confirm_count": True, "receipt": "ask", "can_print": True,
     "can_email": True},
    {"pin": "central", "offline_loans": True, "receipt": "email", "can_email": True},
    {"station_mode": "return-station"},
], ids=["plain", "pin-count-receipt", "central-pin-offline-email", "return-station"])
def test_a_random_walk_takes_only_the_steps_the_table_declares(cfg: dict[str, object]) -> None:
    seen: set[core.Mode] = set()
    for seed in range(6):
        modes, handled = _walk(seed, cfg, 1500)
        seen |= modes
        assert handled > 300  # the walk drives the machine, not only its ignored list
    if cfg.get("station_mode") == "return-station":
        assert {core.Mode.RETURN_STATION, core.Mode.STAFF, core.Mode.TAGGING,
                core.Mode.OUT_OF_SERVICE, core.Mode.HELP} <= seen
    else:
        assert core.Mode.RETURN_STATION not in seen
        assert {core.Mode.IDLE, core.Mode.CHECKING, core.Mode.BORROW, core.Mode.RETURN,
                core.Mode.SUMMARY, core.Mode.HELP, core.Mode.ACCOUNT, core.Mode.CONFIRM_LOAN,
                core.Mode.STAFF, core.Mode.TAGGING, core.Mode.OUT_OF_SERVICE} <= seen


def test_the_walks_together_visit_every_mode() -> None:
    configs: list[dict[str, object]] = [
        {"pin": "always", "confirm_count": True, "receipt": "ask", "can_print": True,
         "can_email": True}, {"station_mode": "return-station"}]
    seen = set().union(*(_walk(seed, cfg, 1500)[0] for seed in range(4) for cfg in configs))
    assert seen == set(core.Mode)


def test_a_step_the_table_does_not_declare_is_caught() -> None:
    sc = make()
    borrow_session(sc)
    original = core.SelfCheck._press_account

    def astray(self: core.SelfCheck, now: float) -> list[core.Action]:
        actions = original(self, now)
        self.mode = core.Mode.TAGGING  # not where an account button leads
        return actions

    try:
        core.SelfCheck._press_account = astray  # type: ignore[method-assign]
        with pytest.raises(core_table.UndeclaredStep, match="Touch account led from borrow"):
            sc.handle(core.Touch("account"), 2)
        sc.mode = core.Mode.BORROW
        core.SelfCheck.strict = False  # a station counts it and goes on
        sc.handle(core.Touch("account"), 3)
        assert sc.undeclared == {(core.Mode.BORROW, "Touch account", core.Mode.TAGGING): 2}
        assert sc.undeclared_last == (core.Mode.BORROW, "Touch account", core.Mode.TAGGING)
    finally:
        core.SelfCheck._press_account = original  # type: ignore[method-assign]
        core.SelfCheck.strict = True


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
    assert 'checking -- "PatronChecked' in doc.read_text(encoding="utf-8")


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

"""What each `selfcheck demo --headless --scenario NAME` needs besides its script (the script
lives in selfcheck/demo_walk.py, which loads Kivy): the site settings it plays under, what the
central store holds before it starts, and what the store and the station journal must hold
after it. Kivy-free, so that the CLI can list the scenarios without opening a window.

Adding a scenario (part B: `pin`, `account`, `offline`): a Scenario here, a script in
demo_walk.SCENARIOS under the same name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.printer import cp1258
from selfcheck.demo_library import OTHER_ITEM, SET_ITEM, STAFF_CARD

WALK_ITEMS = ("39000001", "39000002", "39000003")
STACK_ITEMS = ("39000004", "39000005", "39000006")
RS_ITEMS = ("39000001", "39000002", "39000004")
RS_HOLD_ITEM = "39000002"


@dataclass
class Outcome:
    """What a check reads after the run."""

    store: Any  # central.store.CirculationStore
    journal: Any  # kiosk.journal.Journal (the station's, reopened)
    printed: bytes = b""  # what the printer simulator received (receipt scenario)


Check = Callable[[Outcome], list[str]]  # problems; [] = as expected


@dataclass
class Scenario:
    name: str
    site: dict[str, Any] = field(default_factory=dict)  # StationSettings overrides
    desk: bool = True  # the demo's extra tags (a set of two parts, another library's book)
    printer: bool = False  # a printer simulator on a free port
    seed: Callable[[Any], None] | None = None  # fills the central store before the run
    check: Check | None = None


def _kinds(out: Outcome, items: tuple[str, ...]) -> tuple[list[str], list[str]]:
    rows = out.store.history(items)
    return (sorted(r["item_id"] for r in rows if r["kind"] == "loan"),
            sorted(r["item_id"] for r in rows if r["kind"] == "return"))


def _walk(out: Outcome) -> list[str]:
    loans, returns = _kinds(out, WALK_ITEMS)
    print(f"central store: {len(loans)} loans, {len(returns)} returns of {list(WALK_ITEMS)}")
    return [] if loans == returns == sorted(WALK_ITEMS) else ["walk: loans/returns differ"]


def _refusals(out: Outcome) -> list[str]:
    rows = out.store.history(None)
    print(f"central store: {len(rows)} circulation rows (expected none)")
    return [] if not rows else ["refusals: the store changed"]


def _stack(out: Outcome) -> list[str]:
    loans, returns = _kinds(out, (*STACK_ITEMS, OTHER_ITEM))
    print(f"central store: loans {loans} (another library's book never sent)")
    return [] if loans == sorted(STACK_ITEMS) and not returns else ["stack: loans differ"]


def _multipart(out: Outcome) -> list[str]:
    loans, _ = _kinds(out, (SET_ITEM,))
    print(f"central store: loans {loans} (one loan for the set of two parts)")
    return [] if loans == [SET_ITEM] else ["multipart: the set was not lent once"]


def _security(out: Outcome) -> list[str]:
    loans, _ = _kinds(out, ("39000001", "39000002"))
    log = out.journal.security_log()
    hows = sorted((item, how) for _uid, item, how, _staff in log)
    print(f"central store: loans {loans}; journal: security log {hows}, "
          f"pending {len(out.journal.pending_writes())}")
    problems = []
    if loans != ["39000001", "39000002"]:
        problems.append("security-pending: loans differ")
    if hows != [("39000001", "written"), ("39000002", "skipped")]:
        problems.append("security-pending: the security log differs")
    if any(staff is None for _u, _i, how, staff in log if how == "skipped"):
        problems.append("security-pending: a skip without its staff member")
    if out.journal.pending_writes():
        problems.append("security-pending: writes still pending")
    return problems


def _seed_loans(store: Any) -> None:
    """The return station's books are on loan before it starts, one with a hold."""
    from mqtt.ids import uuid7
    from mqtt.messages import TxLoan

    now = dt.datetime.now(dt.UTC)
    ref = store.ref_of("DG0001")
    store.apply([TxLoan(msg_id=uuid7(), seq=n, site="demo-lib", station="seed", at=now,
                        item_id=item, patron_ref=ref, deadline=now + dt.timedelta(hours=1))
                 for n, item in enumerate(RS_ITEMS, 1)])
    try:  # holds come with part B of issue 4; without them the demo shows sort bins only
        store.add_holds([{"item_id": RS_HOLD_ITEM, "patron_ref": store.ref_of("DG0002"),
                          "placed_at": now}])
    except Exception as exc:
        print(f"demo: no hold placed ({type(exc).__name__}: {exc})")


def _return_station(out: Outcome) -> list[str]:
    _, returns = _kinds(out, RS_ITEMS)
    print(f"central store: returns {returns} at the return station")
    return [] if returns == sorted(RS_ITEMS) else ["return-station: returns differ"]


RECEIPT_TITLE = "Truyện Kiều"


def _receipt(out: Outcome) -> list[str]:
    loans, _ = _kinds(out, ("39000001",))
    found = cp1258.encode(RECEIPT_TITLE) in out.printed
    print(f"central store: loans {loans}; printer received {len(out.printed)} bytes, "
          f"title {'found' if found else 'NOT found'}")
    problems = [] if loans == ["39000001"] else ["receipt: loan missing"]
    return problems + ([] if found else ["receipt: the title is not in the printed bytes"])


STAFF = {"staff_cards": [STAFF_CARD], "owner_isil": "VN-DEMO"}
SCENARIOS: dict[str, Scenario] = {
    "walk": Scenario("walk", desk=False, check=_walk),
    "refusals": Scenario("refusals", desk=False, check=_refusals),
    "stack": Scenario("stack", {**STAFF, "confirm_count": True}, check=_stack),
    "multipart": Scenario("multipart", {**STAFF, "multipart": "refuse"}, check=_multipart),
    "security-pending": Scenario("security-pending", STAFF, check=_security),
    "return-station": Scenario("return-station", {**STAFF, "mode": "return-station"},
                               seed=_seed_loans, check=_return_station),
    "receipt": Scenario("receipt", {**STAFF, "receipt": "ask"}, printer=True, check=_receipt),
}


def journal_path(workdir: Path) -> Path:
    return workdir / "station.db"

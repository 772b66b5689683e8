"""What each `selfcheck demo --headless --scenario NAME` needs besides its script (the script
lives in selfcheck/lab/demo_walk.py, which loads Kivy): the site settings it plays under, what the
central store holds before it starts, and what the store and the station journal must hold
after it. Kivy-free, so that the CLI can list the scenarios without opening a window.

Adding a scenario: a Scenario here, a script in demo_walk.SCENARIOS under the same name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfcheck.drivers.printer import cp1258
from selfcheck.lab.demo_library import OTHER_ITEM, SET_ITEM, STAFF_CARD

WALK_ITEMS = ("39000001", "39000002", "39000003")
STACK_ITEMS = ("39000004", "39000005", "39000006")
RS_ITEMS = ("39000001", "39000002", "39000004")
RS_HOLD_ITEM = "39000002"


@dataclass
class Outcome:
    """What a check reads after the run."""

    store: Any  # central.backends.store.CirculationStore
    journal: Any  # kiosk.journal.Journal (the station's, reopened)
    printed: bytes = b""  # what the printer simulator printed (receipt scenario)
    lang: str = "vi"
    started: dt.datetime | None = None  # the run's wall clock span (receipt times)
    ended: dt.datetime | None = None


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


def _accessibility(out: Outcome) -> list[str]:
    loans, _ = _kinds(out, WALK_ITEMS[:2])
    print(f"central store: loans {loans} (made in large text and in high contrast)")
    return [] if loans == sorted(WALK_ITEMS[:2]) else ["accessibility: loans differ"]


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
    from selfcheck.central.ledger import Ledger
    from selfcheck.mqtt.ids import uuid7
    from selfcheck.mqtt.messages import TxLoan

    now = dt.datetime.now(dt.UTC)
    ref = store.ref_of("DG0001")
    Ledger(store.engine, store).apply([
        TxLoan(msg_id=uuid7(), seq=n, site="demo-lib", station="seed", at=now, item_id=item,
               patron_ref=ref, deadline=now + dt.timedelta(hours=1))
        for n, item in enumerate(RS_ITEMS, 1)])
    try:  # a store without holds: the demo shows sort bins only
        store.add_holds([{"item_id": RS_HOLD_ITEM, "patron_ref": store.ref_of("DG0002"),
                          "placed_at": now}])
    except Exception as exc:
        print(f"demo: no hold placed ({type(exc).__name__}: {exc})")


def _return_station(out: Outcome) -> list[str]:
    _, returns = _kinds(out, RS_ITEMS)
    print(f"central store: returns {returns} at the return station")
    return [] if returns == sorted(RS_ITEMS) else ["return-station: returns differ"]


RECEIPT_TITLE = "Truyện Kiều"
RECEIPT_PATRON = "An"  # DG0001's given name: all the central tells a station
# The demo's printer: text-cp1258 puts the words themselves on the wire.
RECEIPT_PRINTER = {"transport": "network", "vietnamese": "text-cp1258"}


def expected_receipts(out: Outcome, site: str, station: str) -> list[bytes]:
    """The exact ESC/POS the printer must have received, rendered by drivers.printer from
    the receipt the scenario should produce: one candidate per minute of the run (the slip
    prints its time) and per possible due date (the central's UTC date)."""
    from selfcheck.drivers.printer import load_config
    from selfcheck.drivers.printer.render import render
    from selfcheck.kiosk.receipt import ReceiptItem, SessionSummary, build_receipt

    assert out.started is not None and out.ended is not None
    cfg = load_config({**RECEIPT_PRINTER, "url": "127.0.0.1:9100"})
    start = out.started.astimezone().replace(second=0, microsecond=0)
    minutes = int((out.ended - start).total_seconds() // 60) + 1
    dues = {(when.astimezone(dt.UTC).date() + dt.timedelta(days=14))
            for when in (out.started, out.ended)}  # adult loans: 14 days (central/sample)
    return [render(build_receipt(SessionSummary(
        library=site, station=station, when=start + dt.timedelta(minutes=m),
        patron_name=RECEIPT_PATRON,
        items=(ReceiptItem("39000001", RECEIPT_TITLE, "borrowed", due=due),)), out.lang), cfg)
        for m in range(minutes) for due in dues]


def _receipt(out: Outcome) -> list[str]:
    loans, _ = _kinds(out, ("39000001",))
    title = cp1258.encode(RECEIPT_TITLE) in out.printed
    exact = out.printed in expected_receipts(out, "demo-lib", "demo-1")
    print(f"central store: loans {loans}; printer received {len(out.printed)} bytes, "
          f"title {'found' if title else 'NOT found'}, "
          f"{'byte for byte as expected' if exact else 'NOT the expected ESC/POS'}")
    problems = [] if loans == ["39000001"] else ["receipt: loan missing"]
    if not title:
        problems.append("receipt: the title is not in the printed bytes")
    if not exact:
        problems.append("receipt: the printed bytes differ from the expected ESC/POS")
    return problems


PIN_CARD, PIN_ITEM = "DG0001", "39000001"


def _pin(out: Outcome) -> list[str]:
    from sqlalchemy import select

    from selfcheck.central.schema import patrons

    loans, _ = _kinds(out, (PIN_ITEM,))
    with out.store.engine.connect() as conn:
        failures = conn.execute(select(patrons.c.pin_failures)
                                .where(patrons.c.card_id == PIN_CARD)).scalar_one()
    journal = b"".join(p.read_bytes() for p in out.journal.path.parent.glob(
        out.journal.path.name + "*"))
    print(f"central store: loans {loans}; wrong PINs counted now {failures} (reset by the "
          f"right one); journal mentions a PIN: {b'pin' in journal.lower()}")
    problems = [] if loans == [PIN_ITEM] else ["pin: the loan is missing"]
    if failures:
        problems.append("pin: the wrong PIN was not reset by the right one")
    if b'"pin"' in journal:
        problems.append("pin: the station journal holds a PIN field")
    return problems


ACCOUNT_CARD = "DG0005"
ACCOUNT_RENEWED, ACCOUNT_HELD = "39000011", "39000010"  # central/sample.py LOANS


def _account(out: Outcome) -> list[str]:
    rows = [(r["kind"], r["item_id"]) for r in out.store.history((ACCOUNT_RENEWED,
                                                                  ACCOUNT_HELD))]
    print(f"central store: {rows} (the overdue book on hold for another reader not renewed)")
    return [] if rows == [("renew", ACCOUNT_RENEWED)] else ["account: renewals differ"]


OFFLINE_CARD, OFFLINE_LOAN, OFFLINE_RETURN = "DG0001", "39000001", "39000011"


def _offline(out: Outcome) -> list[str]:
    from selfcheck.central.ledger import refused_offline

    rows = out.store.history((OFFLINE_LOAN, OFFLINE_RETURN))
    applied = {(r["kind"], r["item_id"]): r["msg_id"] for r in rows}
    offline = {(kind, item): (msg_id, acked)
               for msg_id, kind, item, _ref, acked in out.journal.offline_transactions()}
    print(f"central store: {sorted(applied)}; station journal, offline: "
          f"{sorted((k, v[1]) for k, v in offline.items())}")
    problems = []
    for key in (("loan", OFFLINE_LOAN), ("return", OFFLINE_RETURN)):
        if key not in applied:
            problems.append(f"offline: the {key[0]} of {key[1]} is not in the store")
        elif offline.get(key, ("", False))[0] != applied[key]:
            problems.append(f"offline: the {key[0]} of {key[1]} was not sent as offline")
        elif not offline[key][1]:
            problems.append(f"offline: the {key[0]} of {key[1]} has no ack in the journal")
    if refused_offline(out.store.engine):
        problems.append("offline: the central refused an offline transaction")
    return problems


# The stock-take of shelf A: two stacks with a pause between, then finished. Shelf A of the
# demo site holds 39000001, 02, 04, 05, 09, 10 (on loan) and 12 in the sample catalogue.
STOCKTAKE_SHELF = "A"
STOCKTAKE_STACKS = (("39000001", "39000002", "39000004", "39000003"),
                    ("39000005", "39000010", OTHER_ITEM))
STOCKTAKE_REPORT = {"found": ["39000001", "39000002", "39000004", "39000005"],
                    "missing": ["39000009", "39000012"], "misplaced": ["39000003"],
                    "on_loan": ["39000010"], "unknown": [OTHER_ITEM]}


def _stocktake(out: Outcome) -> list[str]:
    from selfcheck.central.stocktake import Stocktakes

    reports = Stocktakes(out.store.engine).reports()
    if len(reports) != 1:
        return [f"stocktake: {len(reports)} stock-takes in the store, not 1"]
    r = reports[0]
    got = {v: sorted(x.item_id or "" for x in r.of(v)) for v in STOCKTAKE_REPORT}
    print(f"central store: stock-take of shelf {r.place.value}, {r.status}: {r.counts()}")
    problems = [] if r.status == "closed" else ["stocktake: not closed"]
    problems += [f"stocktake: {v} {got[v]} (expected {want})"
                 for v, want in STOCKTAKE_REPORT.items() if got[v] != want]
    if out.store.history(None):  # counted, never lent or returned
        problems.append("stocktake: the circulation changed")
    return problems


# Tagging the collection: barcodes the demo central knows, and one it does not
TAGGING_ITEMS = ("39000009", "39000010", "39000012", "39000013")
TAGGING_UNKNOWN = "KHONG-CO-999"


def _tagging(out: Outcome) -> list[str]:
    from sqlalchemy import select

    from selfcheck.central.schema import tagged_items

    with out.store.engine.connect() as conn:
        rows = {r.item_id: r for r in conn.execute(select(tagged_items))}
    problems = [f"tagging: {item} not recorded" for item in TAGGING_ITEMS if item not in rows]
    if TAGGING_UNKNOWN in rows:
        problems.append("tagging: the unknown barcode was recorded")
    if len(rows) != len(TAGGING_ITEMS):
        problems.append(f"tagging: {len(rows)} items recorded, not {len(TAGGING_ITEMS)}")
    overwrote = sorted(i for i, r in rows.items() if r.overwrote)
    if overwrote != [TAGGING_ITEMS[2]]:
        problems.append(f"tagging: overwritten {overwrote}, not [{TAGGING_ITEMS[2]}]")
    return problems


# Call numbers for the sample library's books; "895.9223" to "895.9223 N" holds four of them
# (one starting with the range's end is within): Tắt đèn, Nỗi buồn chiến tranh, Lão Hạc and
# Chí Phèo (on loan).
CALL_NUMBERS = {"39000001": "895.9221 NGU", "39000002": "895.9223 VU",
                "39000003": "895.9223 TO", "39000004": "895.9223 NGO",
                "39000005": "895.9223 BAO", "39000009": "895.9223 NAM",
                "39000010": "895.9223 NAM C", "39000007": "495.922 HOA"}
CALLS_RANGE = ("895.9223", "895.9223 N")
CALLS_IN_RANGE = 4
CALLS_STACK = "39000004"
CALLS_IDLE_S = 16.0  # the staff screen's time-out in this scenario (inactivity_s)


def _seed_calls(store: Any) -> None:
    from sqlalchemy import update

    from selfcheck.central.schema import items

    with store.engine.begin() as conn:
        for item_id, call in CALL_NUMBERS.items():
            conn.execute(update(items).where(items.c.item_id == item_id)
                         .values(call_number=call))


def _stocktake_calls(out: Outcome) -> list[str]:
    from selfcheck.central.stocktake import Stocktakes

    reports = Stocktakes(out.store.engine).reports()
    got = [(r.place.kind, r.place.value, r.place.upto, r.status, r.expected) for r in reports]
    print(f"central store: {got}")
    want = [("calls", *CALLS_RANGE, "paused", CALLS_IN_RANGE)]
    return [] if got == want else [f"stocktake-calls: {got}, not {want}"]


STAFF = {"staff_cards": [STAFF_CARD], "owner_isil": "VN-DEMO"}
SCENARIOS: dict[str, Scenario] = {
    "pin": Scenario("pin", {"pin": "always"}, desk=False, check=_pin),
    "account": Scenario("account", desk=False, check=_account),
    "stack": Scenario("stack", {**STAFF, "confirm_count": True}, check=_stack),
    "multipart": Scenario("multipart", {**STAFF, "multipart": "refuse"}, check=_multipart),
    "security-pending": Scenario("security-pending", STAFF, check=_security),
    "return-station": Scenario("return-station", {**STAFF, "mode": "return-station"},
                               seed=_seed_loans, check=_return_station),
    "offline": Scenario("offline", {"offline_loans": True, "ack_timeout_s": 2.0,
                                    "resend_after_s": 2.0}, desk=False, check=_offline),
    "receipt": Scenario("receipt", {**STAFF, "receipt": "ask"}, printer=True, check=_receipt),
    "walk": Scenario("walk", desk=False, check=_walk),
    "stocktake": Scenario("stocktake", STAFF, check=_stocktake),
    # a call-number range typed at the station, then the staff screen left alone
    "stocktake-calls": Scenario("stocktake-calls", {**STAFF, "inactivity_s": CALLS_IDLE_S},
                                seed=_seed_calls, check=_stocktake_calls),
    "tagging": Scenario("tagging", STAFF, check=_tagging),
    "refusals": Scenario("refusals", desk=False, check=_refusals),
    "accessibility": Scenario("accessibility", desk=False, check=_accessibility),
    # 25 s of inactivity: the time-out question comes after 5 s
    "reader-care": Scenario("reader-care", {"inactivity_s": 25.0}, desk=False,
                            check=_refusals),
}


def journal_path(workdir: Path) -> Path:
    return workdir / "station.db"
